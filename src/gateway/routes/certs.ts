import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { GatewayContext } from "../context.js";
import { requireScopeHook } from "../authenticate.js";
import { parseBody } from "../parse-body.js";
import { GatehouseError } from "../../protocol/errors.js";
import { lifetimeSchemaWithin } from "../../config/duration.js";
import { reissueLocalAdmin } from "../admin-credential.js";
import { callerAddress } from "../caller-address.js";

const renewBody = z.strictObject({ csr: z.string().min(1).max(8192) });
const challengeBody = z.strictObject({ deviceId: z.string().max(64) });
const reissueBody = z.strictObject({
  deviceId: z.string().max(64),
  challenge: z.string().max(128),
  signature: z.string().max(256),
  csr: z.string().min(1).max(8192),
});
const rotateBody = z.strictObject({ overlap: lifetimeSchemaWithin().prefault("7d") });

export function registerCertificateRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const limited = {
    bodyLimit: 16 * 1024,
    onRequest: async (request: FastifyRequest) => {
      const wait = await ctx.enrollLimiter.take(callerAddress(request));
      if (wait > 0) {
        const error = new GatehouseError(
          "rate_limited",
          `too many requests from ${callerAddress(request)}; retry in ${wait}s`,
        );
        error.retryAfterSeconds = wait;
        throw error;
      }
    },
  };

  app.post(
    "/api/v1/certs/renew",
    { bodyLimit: 16 * 1024, onRequest: requireScopeHook(ctx, "node:connect") },
    async (request) => {
      const { csr } = parseBody(renewBody, request.body);
      return ctx.certificates.renew(request.principal!, csr, callerAddress(request));
    },
  );

  app.post("/api/v1/certs/challenge", limited, async (request) => {
    const { deviceId } = parseBody(challengeBody, request.body);
    return ctx.certificates.challenge(deviceId);
  });

  app.post("/api/v1/certs/reissue", limited, async (request) => {
    const body = parseBody(reissueBody, request.body);
    return ctx.certificates.reissue(body, callerAddress(request));
  });

  app.get<{ Querystring: { format?: string } }>("/api/v1/crl", async (request, reply) => {
    const crl = await ctx.tls.currentCrl();
    reply.header("cache-control", "max-age=300");
    if (request.query.format === "pem" || /x-pem-file/.test(request.headers.accept ?? "")) {
      return reply.type("application/x-pem-file").send(crl.pem);
    }
    return reply.type("application/pkix-crl").send(Buffer.from(crl.der));
  });

  app.post("/api/v1/ca/rotate", { onRequest: requireScopeHook(ctx, "keys:write") }, async (request) => {
    const { overlap } = parseBody(rotateBody, request.body);
    if (overlap < ctx.config.certificates.clientTtl) {
      // Every node must get to renew once within the window, or it is cut off at retirement.
      throw new GatehouseError(
        "invalid_request",
        `the overlap must be at least the client certificate lifetime`,
      );
    }
    if (ctx.tls.rotation) {
      throw new GatehouseError(
        "invalid_request",
        `a CA rotation is already under way until ${ctx.tls.rotation.retireAt}`,
      );
    }
    const rotation = await ctx.tls.rotateCa(overlap);
    await reissueLocalAdmin(ctx);
    const notified = ctx.sessions.broadcast({
      type: "ca_rotation",
      caRotation: { statement: rotation.statement, signature: rotation.signature },
    });
    await ctx.audit.record({
      type: "ca.rotate",
      outcome: "success",
      actor: request.principal?.subject ?? null,
      details: {
        previous: rotation.statement.previousFingerprint,
        next: rotation.statement.nextFingerprint,
        retireAt: rotation.retireAt,
        notified,
      },
    });
    return {
      previousFingerprint: rotation.statement.previousFingerprint,
      nextFingerprint: rotation.statement.nextFingerprint,
      retireAt: rotation.retireAt,
      sessionsNotified: notified,
    };
  });
}
