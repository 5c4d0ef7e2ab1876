import type { FastifyInstance, FastifyRequest } from "fastify";
import { GATEHOUSE_VERSION, type HealthResponse } from "../../protocol/index.js";
import { requireScope } from "../../auth/roles.js";
import type { GatewayContext } from "../context.js";
import { authenticateRequest } from "../authenticate.js";

/**
 * Whether the caller of `/health` may see where the instances listen: a credential with
 * `node:status` (viewers, operators, admins). Anyone else — no credential, a node's certificate,
 * a credential that does not verify — gets the public answer, never an error: `/health` must
 * answer a node that holds nothing yet.
 */
async function mayListInstances(ctx: GatewayContext, request: FastifyRequest): Promise<boolean> {
  try {
    requireScope(await authenticateRequest(ctx, request), "node:status");
    return true;
  } catch {
    return false;
  }
}

export function registerHealthRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get("/health", async (request): Promise<HealthResponse> => {
    const health: HealthResponse = {
      status: "ok",
      service: "gatehouse",
      version: GATEHOUSE_VERSION,
      gatewayId: ctx.config.gatewayId,
      time: ctx.now().toISOString(),
      caFingerprints: ctx.tls.trustedCas().map((ca) => ca.fingerprint),
    };
    // Alone, `/health` stays as it was: the instance fields exist only among several instances.
    if (!ctx.cluster.enabled || ctx.cluster.instanceId === null) return health;
    // Which instance answered helps whoever debugs a balancer, and tells nothing of where it is.
    // Where each instance listens (internal addresses behind the balancer) is for the fleet's
    // viewers only (safe defaults: an unauthenticated caller learns no internal topology).
    const withInstance = { ...health, instanceId: ctx.cluster.instanceId };
    if (!(await mayListInstances(ctx, request))) return withInstance;
    // The list is the one the last heartbeat read: answering it costs no query.
    return {
      ...withInstance,
      instances: ctx.cluster.liveInstances().map(({ instanceId, listen, url, startedAt, heartbeatAt }) => ({
        instanceId,
        listen,
        url,
        startedAt,
        heartbeatAt,
      })),
    };
  });
}
