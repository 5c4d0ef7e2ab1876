import type { FastifyInstance } from "fastify";
import { GATEHOUSE_VERSION, type HealthResponse } from "../../protocol/index.js";
import type { GatewayContext } from "../context.js";

export function registerHealthRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get("/health", async (): Promise<HealthResponse> => {
    const health: HealthResponse = {
      status: "ok",
      service: "gatehouse",
      version: GATEHOUSE_VERSION,
      gatewayId: ctx.config.gatewayId,
      time: ctx.now().toISOString(),
      caFingerprints: ctx.tls.trustedCas().map((ca) => ca.fingerprint),
    };
    // Alone, `/health` stays as it was: the instance fields exist only among several instances.
    // The list is the one the last heartbeat read: answering it costs no query.
    if (!ctx.cluster.enabled || ctx.cluster.instanceId === null) return health;
    return {
      ...health,
      instanceId: ctx.cluster.instanceId,
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
