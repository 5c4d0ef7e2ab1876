import { GatehouseError } from "../protocol/errors.js";
import { safeJson } from "../protocol/safe-text.js";
import type { DeviceRecord } from "../store/types.js";
import type { GatewayContext } from "./context.js";

/** The node an operator named, as every route under `/api/v1/nodes/:id` reads it. */
export interface NodeTarget {
  /** The id its sessions, exec history and audit entries are kept under. */
  deviceId: string;
  /** Its device record; absent for a node that connects with an API key (no device). */
  device?: DeviceRecord;
}

/**
 * The one reading of the node in `/api/v1/nodes/:id/…` (exec, history, and whatever takes a node
 * next), so that every command accepts the same forms:
 * - a device id of a node, in any state (a revoked node's history stays readable);
 * - the name of an approved node (`DeviceDirectory.resolveNode`: compared as a person reads it;
 *   a name two approved nodes share is refused as ambiguous, naming both ids);
 * - the subject a node on an API key is listed under in `nodes list` (`key:<keyId>`), while it is
 *   connected or as long as the gateway knows the key;
 * - any id a live session is listed under (an admin credential may hold a node session too).
 * An operator's own device (the admin credential) is no node.
 * @throws GatehouseError `node_not_found` (404) when none of these matches; `invalid_request` for
 *   an ambiguous name.
 */
export function resolveNodeTarget(
  ctx: Pick<GatewayContext, "devices" | "sessions" | "tokens">,
  idOrName: string,
): NodeTarget {
  const device = ctx.devices.resolveNode(idOrName);
  if (device && (device.kind === "node" || ctx.sessions.isOnline(device.deviceId)))
    return { deviceId: device.deviceId, device };
  if (!device) {
    const keyed = ctx.tokens.listApiKeys().some((key) => `key:${key.keyId}` === idOrName);
    if (keyed || ctx.sessions.isOnline(idOrName)) return { deviceId: idOrName };
  }
  throw new GatehouseError(
    "node_not_found",
    `no node ${safeJson(idOrName)}: no node has that device id, no approved node that name, and no node on an API key that subject`,
    "`gatehouse nodes list` shows the nodes online; `gatehouse devices list` shows every device with its id and name.",
  );
}
