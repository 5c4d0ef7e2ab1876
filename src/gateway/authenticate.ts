import { fingerprintPrefix } from "../pki/fingerprint.js";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { TLSSocket } from "node:tls";
import { authenticateClientCertificate, peerIdentity } from "../auth/client-cert.js";
import { requireScope, type Principal, type Scope } from "../auth/roles.js";
import { tokenFingerprint } from "../auth/token-service.js";
import { GatehouseError } from "../protocol/errors.js";
import type { GatewayContext } from "./context.js";
import { requestAuthorization } from "./authorization-header.js";
import { sessionCookieValue } from "./dashboard/cookie.js";
import { dashboardPrincipal, secretHash, type DashboardSession } from "./dashboard/sessions.js";

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
 * The one function that turns a request's credential into a principal, in this order: a bearer
 * token when one is sent; else the dashboard session cookie when one is sent (a non-safe method
 * must also carry its CSRF token, see DashboardSessions.authenticate); else the client certificate.
 * Every path reads memory only, except a dashboard session among several instances (one read of
 * the shared store; alone the sessions are in memory too).
 * @throws GatehouseError with the catalogue code of the refusal (`invalid_token` for an ended
 *   dashboard session, `csrf_failed`, the certificate's codes, …).
 */
export async function authenticateRequest(ctx: GatewayContext, request: FastifyRequest): Promise<Principal> {
  const token = bearerToken(request);
  if (token !== undefined) return ctx.tokens.authenticateBearer(token, peerThumbprint(request));
  if (sessionCookieValue(request) !== undefined) {
    const session = await authenticateDashboardSession(ctx, request);
    return dashboardPrincipal(session, ctx.dashboard.expiresAt(session));
  }
  return authenticateClientCertificate(socketOf(request), (id) => ctx.devices.get(id), ctx.now());
}

/**
 * The dashboard session a request's cookie opens (routes that take only the cookie: the session
 * description and logout). A non-safe method must carry the session's CSRF token. The session is
 * read from where DashboardSessions keeps them (memory alone, the shared store among several).
 * @throws GatehouseError `missing_credentials` without the cookie; `invalid_token` for an ended
 *   session; `csrf_failed`.
 */
export function authenticateDashboardSession(
  ctx: GatewayContext,
  request: FastifyRequest,
): Promise<DashboardSession> {
  const cookie = sessionCookieValue(request);
  if (cookie === undefined) {
    throw new GatehouseError(
      "missing_credentials",
      "this route takes only a dashboard session's cookie, and none was sent",
      "Run `gatehouse dashboard` and open the login link it prints.",
    );
  }
  return ctx.dashboard.authenticate(cookie, {
    method: request.method,
    csrfToken: request.headers["x-csrf-token"],
  });
}

/**
 * Refuses a dashboard session the routes that mint a credential (login links, API keys, enroll
 * tokens): a browser session lasts hours at most, and a stolen or scripted one must not turn into a
 * credential that outlives it. Those come from the CLI, with the admin credential.
 * @param what the credential, as a sentence names it ("API keys").
 * @throws GatehouseError `insufficient_scope` when `principal` is a dashboard session.
 */
export function refuseDashboardSession(principal: Principal, what: string): void {
  if (principal.kind !== "dashboard_session") return;
  throw new GatehouseError(
    "insufficient_scope",
    `a dashboard session cannot create ${what}: a credential made from a browser would outlive its session`,
    "Use the CLI with the admin credential of the gateway's home (or a copy of its admin/).",
  );
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
  const cookie = sessionCookieValue(request);
  // The session's fingerprint prefix (sha256 of the value, as stored), never the cookie itself.
  if (cookie !== undefined)
    return { credential: "dashboard_session", fingerprint: fingerprintPrefix(secretHash(cookie)) };
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
