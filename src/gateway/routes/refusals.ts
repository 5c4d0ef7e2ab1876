import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { ERROR_CATALOGUE, GatehouseError } from "../../protocol/errors.js";
import { requireScopeHook } from "../authenticate.js";
import type { GatewayContext } from "../context.js";
import { MAX_RECENT_REFUSALS, type RecordedFailure } from "../failures.js";
import { fingerprintPrefix } from "../../pki/fingerprint.js";

const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_RECENT_REFUSALS).default(50),
});

/** One refusal as the route answers it: the recorded entry and what the device record adds. */
export interface RefusalView extends RecordedFailure {
  /** What the reply said (the catalogue's text only for entries recorded without their own). */
  description: string;
  hint: string;
  /** The device's name, when `deviceId` names a device this gateway knows. */
  deviceName?: string;
  /**
   * The device's KEY fingerprint prefix (`sha256:` + 12 hex), as `node register` and the Pending
   * page show it; `fingerprint` is the presented CERTIFICATE's.
   */
  deviceKeyFingerprint?: string;
}

/**
 * One recorded refusal with its text and the device it names resolved now (a device renamed or
 * forgotten since shows as it is now; an unknown one shows by id only).
 */
export function refusalView(ctx: Pick<GatewayContext, "devices">, failure: RecordedFailure): RefusalView {
  const device = failure.deviceId ? ctx.devices.get(failure.deviceId) : undefined;
  return {
    ...failure,
    description: failure.description ?? ERROR_CATALOGUE[failure.code].description,
    hint: failure.hint ?? ERROR_CATALOGUE[failure.code].hint,
    ...(device
      ? { deviceName: device.name, deviceKeyFingerprint: fingerprintPrefix(device.keyFingerprint) }
      : {}),
  };
}

/**
 * `GET /api/v1/refusals?limit=N` (devices:read; N 1..MAX_RECENT_REFUSALS, default 50) →
 * `{"since", "refusals": [RefusalView…]}`: the last refused attempts, newest first, each with the
 * description and hint its reply gave and the device it names, so "why can't my node connect?"
 * is answered without the log. Kept in memory since `since` (the gateway's start); the audit log
 * keeps them all.
 * @throws GatehouseError `invalid_request` for a bad limit.
 */
export function registerRefusalRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get("/api/v1/refusals", { onRequest: requireScopeHook(ctx, "devices:read") }, async (request) => {
    const parsed = listQuery.safeParse(request.query);
    if (!parsed.success)
      throw new GatehouseError(
        "invalid_request",
        `limit must be a whole number from 1 to ${MAX_RECENT_REFUSALS}`,
      );
    return {
      since: ctx.failures.since,
      refusals: ctx.failures.recent(parsed.data.limit).map((failure) => refusalView(ctx, failure)),
    };
  });
}
