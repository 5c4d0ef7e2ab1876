import { fingerprintPrefix } from "../pki/fingerprint.js";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { TLSSocket } from "node:tls";
import { authenticateClientCertificate, peerIdentity } from "../auth/client-cert.js";
import { requireScope, type Principal, type Scope } from "../auth/roles.js";
import { tokenFingerprint } from "../auth/token-service.js";
import { GatehouseError } from "../protocol/errors.js";
import type { GatewayContext } from "./context.js";
import { requestAuthorization } from "./authorization-header.js";

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
    /** Set by routes that read a credential themselves (the token endpoint), for refusal logs. */
    credentialTried?: { credential: string; fingerprint?: string };
  }
}

function socketOf(request: FastifyRequest): TLSSocket {
  return request.raw.socket as TLSSocket;
}

/** The certificate thumbprint of this connection, when it presents one from our CA. */
export function peerThumbprint(request: FastifyRequest): string | undefined {
  return peerIdentity(socketOf(request)).thumbprint;
}

/**
 * The bearer token of a request (RFC 6750 §2.1), or undefined when it sends no Authorization
 * header. Throws `invalid_request` for a malformed header or another scheme (Basic is a client
 * credential: only the token endpoint takes it).
 */
export function bearerToken(request: FastifyRequest): string | undefined {
  const credentials = requestAuthorization(request);
  if (credentials === undefined) return undefined;
  if (credentials.scheme !== "bearer") {
    throw new GatehouseError(
      "invalid_request",
      "Basic credentials are taken only by the token endpoint (POST /api/v1/auth/token)",
      "Exchange the API key for an access token there, then send `Authorization: Bearer <access token>`.",
    );
  }
  return credentials.token;
}

/**
 * The one function that turns a request's credential into a principal: a bearer token when one is
 * sent, otherwise the client certificate. Both paths read memory only.
 */
export async function authenticateRequest(ctx: GatewayContext, request: FastifyRequest): Promise<Principal> {
  const token = bearerToken(request);
  if (token !== undefined) return ctx.tokens.authenticateBearer(token, peerThumbprint(request));
  return authenticateClientCertificate(socketOf(request), (id) => ctx.devices.get(id), ctx.now());
}

/** An `onRequest` hook for a route that needs a scope. */
export function requireScopeHook(ctx: GatewayContext, scope: Scope) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const principal = await authenticateRequest(ctx, request);
    requireScope(principal, scope);
    request.principal = principal;
  };
}

/** What a log line or an audit entry may say about the credential tried: its kind and prefix. */
export function credentialSummary(request: FastifyRequest): {
  credential: string;
  fingerprint?: string;
  deviceId?: string;
} {
  if (request.credentialTried) return request.credentialTried;
  let credentials;
  try {
    credentials = requestAuthorization(request);
  } catch {
    // Called while rendering a refusal: a malformed header is summarised, never thrown again.
    return { credential: "malformed" };
  }
  if (credentials?.scheme === "bearer")
    return {
      credential: "access_token",
      fingerprint: fingerprintPrefix(tokenFingerprint(credentials.token)),
    };
  const identity = peerIdentity(socketOf(request));
  const deviceId = identity.deviceId ?? identity.claimedDeviceId;
  if (identity.fingerprint) {
    return {
      credential: "client-certificate",
      fingerprint: fingerprintPrefix(identity.fingerprint),
      ...(deviceId ? { deviceId } : {}),
    };
  }
  return { credential: "none" };
}
