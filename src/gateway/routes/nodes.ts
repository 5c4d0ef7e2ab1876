import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { parseBody } from "../parse-body.js";
import type { ExecHistoryEntry } from "../../protocol/messages.js";
import { listOnlineNodes } from "../cluster/online-nodes.js";
import { DEFAULT_EXEC_TIMEOUT_MS, MAX_EXEC_TIMEOUT_MS } from "../exec.js";
import type { GatewayContext } from "../context.js";
import { requireScopeHook } from "../authenticate.js";
import { resolveNodeTarget } from "../node-target.js";

/** The body of POST /api/v1/nodes/:id/exec (and, with the node's device id, of a relayed exec). */
export const execBodyShape = {
  command: z.string().min(1).max(256),
  args: z.array(z.string().max(4096)).max(64).default([]),
  timeoutMs: z.number().int().min(100).max(MAX_EXEC_TIMEOUT_MS).default(DEFAULT_EXEC_TIMEOUT_MS),
};
const execBody = z.strictObject(execBodyShape);

export function registerNodeRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  // One row per device, and with several instances those of the others (cluster/online-nodes.ts).
  app.get("/api/v1/nodes", { onRequest: requireScopeHook(ctx, "node:status") }, () => listOnlineNodes(ctx));

  app.post<{ Params: { id: string } }>(
    "/api/v1/nodes/:id/exec",
    { onRequest: requireScopeHook(ctx, "node:execute") },
    async (request) => {
      const body = parseBody(execBody, request.body);
      return ctx.exec.run(request.principal!, request.params.id, body.command, body.args, body.timeoutMs);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { limit?: string } }>(
    "/api/v1/nodes/:id/history",
    { onRequest: requireScopeHook(ctx, "audit:read") },
    async (request) => {
      const limit = Math.min(500, Math.max(1, Number(request.query.limit ?? 50) || 50));
      // The same resolver as exec: an unknown node is node_not_found, never an empty history.
      const { deviceId } = resolveNodeTarget(ctx, request.params.id);
      const rows = await ctx.store.listExecs(deviceId, limit);
      const history: ExecHistoryEntry[] = rows.map((h) => ({ ...h, args: JSON.parse(h.args) as string[] }));
      return { history };
    },
  );
}
