/**
 * The one answer to "which nodes are online" (GET /api/v1/nodes, `nodes list`, the dashboard):
 * this instance's sessions, and with several instances those the other live instances hold, as
 * one row per device.
 */
import { GatehouseError } from "../../protocol/errors.js";
import type { NodeList, NodeView } from "../../protocol/messages.js";
import type { GatewayContext } from "../context.js";
import type { RemoteSession } from "./exec-relay.js";

/**
 * One view per device: its newest session (latest `connectedAt`; on a tie the first given, so a
 * session held here wins over a row of another instance), oldest connection first.
 *
 * Why: a device is one node. Its agent holds one connection, but the sessions a gateway knows
 * of can outlive it: a session here whose peer went away unseen stays open until its heartbeat
 * timeout, and an instance killed with `kill -9` keeps its rows open and looks live for up to
 * INSTANCE_STALE_AFTER_MS while the node has reconnected elsewhere. The newest session is the one
 * the node uses now (and the one a command goes to: SessionRegistry.newestOf, ExecRelay.locate).
 */
export function newestPerDevice(views: NodeView[]): NodeView[] {
  const newest = new Map<string, NodeView>();
  for (const view of views) {
    const kept = newest.get(view.deviceId);
    if (!kept || Date.parse(view.connectedAt) > Date.parse(kept.connectedAt)) newest.set(view.deviceId, view);
  }
  // A stable sort: views with the same connectedAt keep the order they were given in.
  return [...newest.values()].sort((a, b) => Date.parse(a.connectedAt) - Date.parse(b.connectedAt));
}

/**
 * A session another live instance holds, from the shared sessions table: what the table keeps
 * (device, address, since when, which instance). What lives only in the holder's memory (platform,
 * version, hostname, uptime, last heartbeat) is null: the holder closes a silent session itself.
 */
function remoteNodeView(ctx: GatewayContext, { session, instance }: RemoteSession): NodeView {
  return {
    deviceId: session.deviceId,
    name: ctx.devices.get(session.deviceId)?.name ?? session.deviceId,
    platform: null,
    version: null,
    hostname: null,
    address: session.address,
    sessionId: session.sessionId,
    connectedAt: session.connectedAt,
    lastHeartbeat: null,
    uptimeSeconds: null,
    online: true,
    instanceId: instance.instanceId,
  };
}

/**
 * The online nodes, one per device (newestPerDevice). Alone: this gateway's sessions, as they
 * always were. With several instances each node says which instance holds it, and the other live
 * instances' sessions are read from the shared sessions table; when that read fails (the database
 * is out of reach) the answer still holds this instance's own sessions — it knows them without the
 * database — and `incomplete` says what could not be read. Never throws for the database.
 */
export async function listOnlineNodes(ctx: GatewayContext): Promise<NodeList> {
  const now = ctx.now();
  const local = ctx.sessions.all().map((session) => ctx.sessions.view(session, now));
  const relay = ctx.relay;
  if (!relay) return { nodes: newestPerDevice(local) };
  const here = local.map((view) => ({ ...view, instanceId: relay.instanceId }));
  let elsewhere: RemoteSession[];
  try {
    elsewhere = await relay.remoteSessions();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    ctx.logger.warn(
      { err: reason },
      "nodes list: the other instances' sessions could not be read; answered with this instance's",
    );
    const incomplete = new GatehouseError(
      "unavailable",
      `only the nodes connected to instance ${relay.instanceId} are listed: the other instances' sessions could not be read from the shared database (${reason})`,
      "Check that the database answers (`gatehouse doctor` names it); ask another instance, or again once it is back.",
    ).toBody();
    return { nodes: newestPerDevice(here), incomplete };
  }
  return { nodes: newestPerDevice([...here, ...elsewhere.map((held) => remoteNodeView(ctx, held))]) };
}

/** Which devices are online, as listOnlineNodes says, for the views of devices. */
export interface OnlineDevices {
  has(deviceId: string): boolean;
  /** Only with several instances: the others' sessions could not be read (as in NodeList). */
  incomplete?: NonNullable<NodeList["incomplete"]>;
}

/**
 * Which devices are online (`devices list`, `devices show`, the dashboard's devices): a device is
 * online when listOnlineNodes lists it, so every instance says the same of a node whichever
 * instance holds it. Alone: this gateway's sessions, read from memory as always. Never throws for
 * the database (see listOnlineNodes: this instance's sessions, and `incomplete`).
 */
export async function onlineDevices(ctx: GatewayContext): Promise<OnlineDevices> {
  if (!ctx.relay) return { has: (deviceId) => ctx.sessions.isOnline(deviceId) };
  const { nodes, incomplete } = await listOnlineNodes(ctx);
  const online = new Set(nodes.map((node) => node.deviceId));
  return { has: (deviceId) => online.has(deviceId), ...(incomplete ? { incomplete } : {}) };
}
