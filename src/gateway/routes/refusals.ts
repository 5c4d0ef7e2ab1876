import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { ERROR_CATALOGUE, GatehouseError } from "../../protocol/errors.js";
import { requireScopeHook } from "../authenticate.js";
import type { GatewayContext } from "../context.js";
import { MAX_RECENT_REFUSALS } from "../failures.js";

const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_RECENT_REFUSALS).default(50),
});

/**
 * `GET /api/v1/refusals?limit=N` (devices:read): the last refused attempts, newest first, each with
 * the catalogue's hint for its code, so "why can't my node connect?" is answered without the log.
 * Kept in memory (the last MAX_RECENT_REFUSALS); the audit log keeps them all.
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
      refusals: ctx.failures
        .recent(parsed.data.limit)
        .map((failure) => ({ ...failure, hint: ERROR_CATALOGUE[failure.code].hint })),
    };
  });
}
