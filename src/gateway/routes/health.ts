import type { FastifyInstance } from "fastify";
import { GATEHOUSE_VERSION, type HealthResponse } from "../../protocol/index.js";
import type { GatewayContext } from "../context.js";

export function registerHealthRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get("/health", async (): Promise<HealthResponse> => ({
    status: "ok",
    service: "gatehouse",
    version: GATEHOUSE_VERSION,
    gatewayId: ctx.config.gatewayId,
    time: ctx.now().toISOString(),
    caFingerprints: ctx.tls.trustedCas().map((ca) => ca.fingerprint),
  }));
}
