import type { FastifyInstance } from "fastify";
import { GatehouseError } from "../../protocol/errors.js";
import { enrollRequestSchema } from "../../protocol/messages.js";
import type { GatewayContext } from "../context.js";
import { parseBody } from "../parse-body.js";
import { tokenFingerprint } from "../../auth/token-service.js";
import { fingerprintPrefix } from "../../pki/fingerprint.js";
import { callerAddress } from "../caller-address.js";

export function registerEnrollRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.post(
    "/api/v1/enroll",
    {
      bodyLimit: ctx.config.enroll.maxBodyBytes,
      onRequest: async (request) => {
        const waitSeconds = await ctx.enrollLimiter.take(callerAddress(request));
        if (waitSeconds > 0) {
          const error = new GatehouseError(
            "rate_limited",
            `too many registrations from ${callerAddress(request)}; retry in ${waitSeconds}s`,
          );
          error.retryAfterSeconds = waitSeconds;
          throw error;
        }
      },
    },
    async (request, reply) => {
      const body = parseBody(enrollRequestSchema, request.body);
      // A refused enroll token is logged and audited by its fingerprint prefix, never its value.
      if (body.enrollToken !== undefined)
        request.credentialTried = {
          credential: "enroll-token",
          fingerprint: fingerprintPrefix(tokenFingerprint(body.enrollToken)),
        };
      const response = await ctx.registrations.enroll(body, callerAddress(request));
      return reply.code(202).send(response);
    },
  );

  app.get<{ Params: { requestId: string } }>("/api/v1/enroll/:requestId", async (request) => {
    return ctx.registrations.status(request.params.requestId);
  });
}
