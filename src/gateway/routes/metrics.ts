import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { GatewayContext } from "../context.js";
import { requireScopeHook } from "../authenticate.js";
import { callerAddress } from "../caller-address.js";

/** Whether an address is this machine's own: 127.0.0.0/8, ::1, or either written as IPv4-mapped IPv6. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice("::ffff:".length) : address;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4) || address === "::1";
}

/** GET /metrics: Prometheus text, for a scraper on the gateway's machine or a `metrics:read` credential. */
export function registerMetricsRoute(app: FastifyInstance, ctx: GatewayContext): void {
  const needsScope = requireScopeHook(ctx, "metrics:read");
  const loopbackOrScope = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // The socket's peer, or the source a trusted balancer's PROXY header gave: no HTTP header
    // (X-Forwarded-For) can make a remote caller look local.
    if (isLoopbackAddress(callerAddress(request))) return;
    await needsScope(request, reply);
  };

  app.get("/metrics", { onRequest: loopbackOrScope }, async (_request, reply) =>
    reply.type(ctx.metrics.contentType).send(await ctx.metrics.render()),
  );
}
