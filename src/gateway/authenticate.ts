import type { FastifyReply, FastifyRequest } from "fastify";
import type { TLSSocket } from "node:tls";
import { authenticateClientCertificate, peerIdentity } from "../auth/client-cert.js";
import { requireScope, type Principal, type Scope } from "../auth/roles.js";
import type { GatewayContext } from "./context.js";

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** An `onRequest` hook for a route that needs a scope: resolves the principal from memory. */
export function requireScopeHook(ctx: GatewayContext, scope: Scope) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const principal = authenticateClientCertificate(request.raw.socket as TLSSocket, (id) =>
      ctx.devices.get(id),
    );
    requireScope(principal, scope);
    request.principal = principal;
  };
}

/** What a log line or an audit entry may say about the credential tried: its kind and prefix. */
export function credentialSummary(request: FastifyRequest): { credential: string; fingerprint?: string } {
  const identity = peerIdentity(request.raw.socket as TLSSocket);
  if (identity.fingerprint) {
    const summary: { credential: string; fingerprint?: string } = {
      credential: "client-certificate",
      fingerprint: identity.fingerprint.slice(0, 19),
    };
    return summary;
  }
  return { credential: "none" };
}
