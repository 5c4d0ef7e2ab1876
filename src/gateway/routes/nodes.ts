import type { FastifyInstance } from "fastify";
import type { GatewayContext } from "../context.js";
import { requireScopeHook } from "../authenticate.js";

export function registerNodeRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get("/api/v1/nodes", { onRequest: requireScopeHook(ctx, "node:status") }, async () => {
    const now = ctx.now();
    const nodes = ctx.sessions
      .all()
      .sort((a, b) => a.connectedAt.getTime() - b.connectedAt.getTime())
      .map((session) => ctx.sessions.view(session, now));
    return { nodes };
  });
}
