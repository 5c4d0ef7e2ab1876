import { GatehouseError } from "../protocol/errors.js";

import { BUILTIN_ROLES, type Scope } from "../protocol/scopes.js";

export { SCOPES, BUILTIN_ROLES, scopesFromString, type Scope } from "../protocol/scopes.js";

/** Roles defined in gateway.json (`roles: { name: [scopes] }`), beside the built-in ones. */
let customRoles: Record<string, readonly Scope[]> = {};

export function configureCustomRoles(roles: Record<string, readonly Scope[]>): void {
  customRoles = { ...roles };
}

export function scopesForRole(role: string): readonly Scope[] {
  if (Object.hasOwn(BUILTIN_ROLES, role)) return BUILTIN_ROLES[role]!;
  return Object.hasOwn(customRoles, role) ? customRoles[role]! : [];
}

export function isKnownRole(role: string): boolean {
  return Object.hasOwn(BUILTIN_ROLES, role) || Object.hasOwn(customRoles, role);
}

/** Every role name a credential may be given: the built-in ones, then those gateway.json defines. */
export function knownRoles(): string[] {
  return [...Object.keys(BUILTIN_ROLES), ...Object.keys(customRoles)];
}

/**
 * Refuses a role name that is neither built in nor configured, naming the roles there are, so a
 * typo is fixed without reading the docs.
 * @throws GatehouseError `invalid_request`
 */
export function requireKnownRole(role: string): void {
  if (isKnownRole(role)) return;
  throw new GatehouseError(
    "invalid_request",
    `unknown role ${JSON.stringify(role)}; the roles are ${knownRoles().join(", ")}`,
    `Use one of ${knownRoles().join(", ")}, or define the role under "roles" in gateway.json.`,
  );
}

/** Who is asking, once a credential has been checked. */
export interface Principal {
  /** Which credential proved it: a client certificate, a bearer access token or a dashboard cookie. */
  kind: "certificate" | "access_token" | "dashboard_session";
  /** `device:<id>`, `key:<id>` or `dashboard:<hash prefix>`: the stable name of who is asking (audit actor, token subject). */
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
  /** A dashboard session: the subject of the credential that asked for its login link. */
  onBehalfOf?: string;
}

export function requireScope(principal: Principal, scope: Scope): void {
  if (!principal.scopes.includes(scope)) {
    throw new GatehouseError(
      "insufficient_scope",
      `this action needs the scope ${scope}; the credential's role ${principal.role} does not grant it`,
    );
  }
}
