import { fingerprintPrefix } from "../../pki/fingerprint.js";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { TLSSocket } from "node:tls";
import type { GatewayContext } from "../context.js";
import { authenticateRequest, peerThumbprint } from "../authenticate.js";
import { parseBody } from "../parse-body.js";
import { requestAuthorization } from "../authorization-header.js";
import { GatehouseError } from "../../protocol/errors.js";
import { apiKeyLabel, apiKeyPrefix } from "../../auth/api-keys.js";
import { authenticateClientCertificate } from "../../auth/client-cert.js";
import { tokenFingerprint } from "../../auth/token-service.js";
import { callerAddress } from "../caller-address.js";

// OAuth2 clients send extra parameters (client_id, scope, …): accept and ignore them.
const tokenRequest = z.object({
  grant_type: z.enum(["client_credentials", "refresh_token"], {
    error: "grant_type must be client_credentials or refresh_token",
  }),
  client_id: z.string().max(256).optional(),
  client_secret: z.string().max(512).optional(),
  refresh_token: z.string().max(512).optional(),
});

/**
 * The client secret (an API key) from the body or, RFC 6749 §2.3.1, from HTTP Basic
 * (client_id:client_secret). A malformed Authorization header is refused even when unused; a
 * bearer token is not a client credential and is ignored here. Sending the secret both ways is
 * refused (§2.3: one authentication method per request).
 */
function clientSecret(request: FastifyRequest, fromBody: string | undefined): string | undefined {
  const credentials = requestAuthorization(request);
  const basic = credentials?.scheme === "basic" ? credentials.clientSecret : undefined;
  if (basic !== undefined && fromBody !== undefined)
    throw new GatehouseError(
      "invalid_request",
      "the client secret came both in the body and as HTTP Basic: send it once",
    );
  return fromBody ?? basic;
}

export function registerAuthRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get("/.well-known/jwks.json", async (_request, reply) => {
    reply.header("cache-control", "public, max-age=300");
    return ctx.signingKeys.jwks();
  });

  app.post("/api/v1/auth/token", { bodyLimit: 16 * 1024 }, async (request, reply) => {
    reply.header("cache-control", "no-store");
    const body = parseBody(tokenRequest, request.body);
    const secret = clientSecret(request, body.client_secret);
    const thumbprint = peerThumbprint(request);
    let response;
    if (body.grant_type === "refresh_token") {
      if (!body.refresh_token) throw new GatehouseError("invalid_request", "refresh_token is missing");
      request.credentialTried = {
        credential: "refresh_token",
        fingerprint: fingerprintPrefix(tokenFingerprint(body.refresh_token)),
      };
      response = await ctx.tokens.refresh(body.refresh_token, thumbprint);
    } else {
      if (secret) {
        const prefix = apiKeyPrefix(secret);
        request.credentialTried = {
          credential: "api_key",
          ...(prefix ? { fingerprint: apiKeyLabel(prefix) } : {}),
        };
        response = await ctx.tokens.exchangeApiKey(secret, thumbprint);
      } else {
        // No API key: the client certificate itself is the client credential (RFC 8705).
        const principal = authenticateClientCertificate(
          request.raw.socket as TLSSocket,
          (id) => ctx.devices.get(id),
          ctx.now(),
        );
        response = await ctx.tokens.exchangeClientCertificate(principal, thumbprint!);
      }
    }
    ctx.audit.recordInBackground({
      type: body.grant_type === "refresh_token" ? "token.refresh" : "token.issue",
      outcome: "success",
      address: callerAddress(request),
      details: { ...request.credentialTried, scope: response.scope },
    });
    return response;
  });

  app.get("/api/v1/auth/validate", async (request) => {
    const principal = await authenticateRequest(ctx, request);
    return {
      valid: true,
      credential: principal.kind,
      subject: principal.subject,
      ...(principal.deviceId ? { deviceId: principal.deviceId } : {}),
      role: principal.role,
      scopes: principal.scopes,
      expiresAt: principal.expiresAt?.toISOString() ?? null,
    };
  });
}
