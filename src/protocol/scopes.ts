/** Scopes and built-in roles: part of the contract (PRODUCT.md, "Roles and scopes"). */
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
