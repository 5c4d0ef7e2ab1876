import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { GatewayContext } from "../context.js";
import { refuseDashboardSession, requireScopeHook } from "../authenticate.js";
import { parseBody } from "../parse-body.js";
import { nameSchema, namePrefixSchema } from "../../protocol/device-name.js";
import { lifetimeSchemaWithin } from "../../config/duration.js";
import { ENROLL_TOKEN_MAX_LIFETIME_MS, enrollTokenView } from "../enroll-tokens.js";
import { ENROLL_TOKEN_MAX_LENGTH } from "../../protocol/messages.js";

const createBody = z.strictObject({
  name: nameSchema({ field: "name" }).default("enroll"),
  role: z.string().min(1).max(64).default("node"),
  uses: z.number().int().min(1).max(10_000).default(1),
  expires: lifetimeSchemaWithin({ maxMs: ENROLL_TOKEN_MAX_LIFETIME_MS }).prefault("1h"),
  namePrefix: namePrefixSchema.optional(),
  /** The old shared token, imported by `gatehouse migrate --from-legacy`. */
  legacySecret: z.string().min(1).max(ENROLL_TOKEN_MAX_LENGTH).optional(),
});

export function registerEnrollTokenRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const read = { onRequest: requireScopeHook(ctx, "devices:read") };
  const write = { onRequest: requireScopeHook(ctx, "devices:write") };
  const actor = (request: { principal?: { subject: string } }) => request.principal?.subject ?? "unknown";

  app.get("/api/v1/enroll-tokens", read, async () => ({
    enrollTokens: (await ctx.enrollTokens.list()).map(enrollTokenView),
  }));

  app.post("/api/v1/enroll-tokens", write, async (request, reply) => {
    refuseDashboardSession(request.principal!, "enroll tokens");
    const body = parseBody(createBody, request.body);
    const { token, record } = await ctx.enrollTokens.create(
      {
        name: body.name,
        role: body.role,
        uses: body.uses,
        expiresInMs: body.expires,
        ...(body.namePrefix ? { namePrefix: body.namePrefix } : {}),
        ...(body.legacySecret ? { legacySecret: body.legacySecret } : {}),
      },
      actor(request),
    );
    reply.header("cache-control", "no-store");
    // An imported legacy token is not echoed: the caller has it, and it should travel no further.
    return reply
      .code(201)
      .send({ enrollToken: enrollTokenView(record), ...(body.legacySecret ? {} : { token }) });
  });

  app.post<{ Params: { id: string } }>("/api/v1/enroll-tokens/:id/revoke", write, async (request) => ({
    enrollToken: enrollTokenView(await ctx.enrollTokens.revoke(request.params.id, actor(request))),
  }));
}
