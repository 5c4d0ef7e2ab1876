import { GatehouseError } from "../protocol/errors.js";

export const SCOPES = [
  "node:connect",
  "node:status",
  "node:execute",
  "devices:read",
  "devices:write",
  "keys:write",
  "audit:read",
  "metrics:read",
] as const;
export type Scope = (typeof SCOPES)[number];

const viewer: Scope[] = ["node:status", "devices:read"];
export const BUILTIN_ROLES: Record<string, readonly Scope[]> = {
  node: ["node:connect"],
  viewer,
  operator: [...viewer, "node:execute", "audit:read"],
  admin: SCOPES,
};

export function scopesFromString(scope: string): Scope[] {
  return scope.split(" ").filter((s): s is Scope => (SCOPES as readonly string[]).includes(s));
}

export function scopesForRole(role: string): readonly Scope[] {
  return BUILTIN_ROLES[role] ?? [];
}

export function isKnownRole(role: string): boolean {
  return Object.hasOwn(BUILTIN_ROLES, role);
}

/** Who is asking, once a credential has been checked. */
export interface Principal {
  /** Which credential proved it: a client certificate or a bearer access token. */
  kind: "certificate" | "access_token";
  /** `device:<id>` or `key:<id>`: the stable name of who is asking (audit actor, token subject). */
  subject: string;
  /** The device behind a certificate, or behind a token minted over mutual TLS. */
  deviceId?: string;
  deviceKind?: "node" | "operator";
  apiKeyId?: string;
  role: string;
  scopes: readonly Scope[];
  /** sha256 fingerprint of the credential presented (never the credential itself). */
  credentialFingerprint: string;
  /** When the credential stops being valid (access tokens). */
  expiresAt?: Date;
}

export function requireScope(principal: Principal, scope: Scope): void {
  if (!principal.scopes.includes(scope)) {
    throw new GatehouseError(
      "insufficient_scope",
      `this action needs the scope ${scope}; the credential's role ${principal.role} does not grant it`,
    );
  }
}
