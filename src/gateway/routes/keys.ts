import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { printableSchema } from "../../protocol/messages.js";
import type { GatewayContext } from "../context.js";
import { refuseDashboardSession, requireScopeHook } from "../authenticate.js";
import { parseBody } from "../parse-body.js";
import { nameSchema } from "../../protocol/device-name.js";
import { lifetimeSchemaWithin } from "../../config/duration.js";
import type { ApiKeyRecord } from "../../store/token-types.js";
import { apiKeyLabel } from "../../auth/api-keys.js";

const createBody = z.strictObject({
  name: nameSchema({ field: "name" }),
  role: z.string().min(1).max(64),
  expires: lifetimeSchemaWithin().optional(),
});
const revokeBody = z.strictObject({ reason: printableSchema("reason", 500).optional() });
// A grace of 0 ends the old key at once (a leaked key is replaced now); anything else is a
// lifetime, long enough for its holders to switch.
const rotateBody = z.strictObject({ grace: lifetimeSchemaWithin({ allowZero: true }).prefault("24h") });

/** An API key as the API shows it: never the secret, never its hash. */
function keyView(key: ApiKeyRecord) {
  return {
    keyId: key.keyId,
    prefix: apiKeyLabel(key.prefix),
    name: key.name,
    role: key.role,
    createdAt: key.createdAt,
    expiresAt: key.expiresAt,
    revokedAt: key.revokedAt,
    replacedBy: key.replacedBy,
    graceUntil: key.graceUntil,
    lastUsedAt: key.lastUsedAt,
  };
}

export function registerKeyRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const write = { onRequest: requireScopeHook(ctx, "keys:write") };
  const actor = (request: { principal?: { subject: string } }) => request.principal?.subject ?? null;

  app.get("/api/v1/keys", write, async () => ({ keys: ctx.tokens.listApiKeys().map(keyView) }));

  app.post("/api/v1/keys", write, async (request, reply) => {
    refuseDashboardSession(request.principal!, "API keys");
    const body = parseBody(createBody, request.body);
    const { record, secret } = await ctx.tokens.createApiKey({
      name: body.name,
      role: body.role,
      ...(body.expires ? { expiresInMs: body.expires } : {}),
    });
    await ctx.audit.record({
      type: "key.create",
      outcome: "success",
      actor: actor(request),
      subject: record.keyId,
      details: { role: record.role, prefix: apiKeyLabel(record.prefix) },
    });
    reply.header("cache-control", "no-store");
    return reply.code(201).send({ key: keyView(record), apiKey: secret });
  });

  app.post<{ Params: { id: string } }>("/api/v1/keys/:id/revoke", write, async (request) => {
    const { reason } = parseBody(revokeBody, request.body);
    const key = await ctx.tokens.revokeApiKey(request.params.id, reason ?? null);
    await ctx.audit.record({
      type: "key.revoke",
      outcome: "success",
      actor: actor(request),
      subject: key.keyId,
      details: { reason: reason ?? null },
    });
    return { key: keyView(key) };
  });

  app.post<{ Params: { id: string } }>("/api/v1/keys/:id/rotate", write, async (request, reply) => {
    refuseDashboardSession(request.principal!, "API keys");
    const { grace } = parseBody(rotateBody, request.body);
    const { record, secret, previous } = await ctx.tokens.rotateApiKey(request.params.id, grace);
    await ctx.audit.record({
      type: "key.rotate",
      outcome: "success",
      actor: actor(request),
      subject: previous.keyId,
      details: { replacedBy: record.keyId, graceUntil: previous.graceUntil },
    });
    reply.header("cache-control", "no-store");
    return { key: keyView(record), apiKey: secret, previous: keyView(previous) };
  });

  app.post("/api/v1/signing-keys/rotate", write, async (request) => {
    // The old key verifies for one access-token lifetime plus the clock leeway: every token it
    // signed stays valid to its natural end.
    const result = await ctx.signingKeys.rotate(ctx.config.tokens.accessTtl + 60_000);
    await ctx.audit.record({
      type: "signing-key.rotate",
      outcome: "success",
      actor: actor(request),
      subject: result.kid,
      details: { previous: result.previous, previousVerifyUntil: result.previousVerifyUntil },
    });
    return result;
  });
}
