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

export function scopesForRole(role: string): readonly Scope[] {
  return BUILTIN_ROLES[role] ?? [];
}

export function isKnownRole(role: string): boolean {
  return Object.hasOwn(BUILTIN_ROLES, role);
}

/** Who is asking, once a credential has been checked. */
export interface Principal {
  kind: "device";
  deviceId: string;
  deviceKind: "node" | "operator";
  role: string;
  scopes: readonly Scope[];
  /** sha256 fingerprint of the credential presented (the client certificate). */
  credentialFingerprint: string;
}

export function requireScope(principal: Principal, scope: Scope): void {
  if (!principal.scopes.includes(scope)) {
    throw new GatehouseError(
      "insufficient_scope",
      `this action needs the scope ${scope}; the credential's role ${principal.role} does not grant it`,
    );
  }
}
