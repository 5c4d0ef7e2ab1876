import { afterEach, describe, expect, it } from "vitest";
import { configureCustomRoles, isKnownRole, requireScope, scopesForRole } from "../src/auth/roles.js";
import { gatewayConfigSchema } from "../src/config/schema.js";
import { GatehouseError } from "../src/protocol/errors.js";

afterEach(() => configureCustomRoles({}));

describe("roles and scopes", () => {
  it("gives the built-in roles the contract's scopes", () => {
    expect(scopesForRole("node")).toEqual(["node:connect"]);
    expect(scopesForRole("viewer")).toEqual(["node:status", "devices:read"]);
    expect(scopesForRole("operator")).toEqual(["node:status", "devices:read", "node:execute", "audit:read"]);
    expect(scopesForRole("admin")).toHaveLength(8);
    expect(scopesForRole("toString")).toEqual([]);
    expect(isKnownRole("constructor")).toBe(false);
  });

  it("adds custom roles from the gateway config", () => {
    const config = gatewayConfigSchema.parse({
      gatewayId: "gw_test",
      roles: { deployer: ["node:status", "node:execute"] },
    });
    configureCustomRoles(config.roles);
    expect(isKnownRole("deployer")).toBe(true);
    expect(scopesForRole("deployer")).toEqual(["node:status", "node:execute"]);
  });

  it("refuses a custom role that redefines a built-in one or names an unknown scope", () => {
    expect(gatewayConfigSchema.safeParse({ gatewayId: "gw", roles: { admin: [] } }).success).toBe(false);
    expect(gatewayConfigSchema.safeParse({ gatewayId: "gw", roles: { ops: ["root:all"] } }).success).toBe(
      false,
    );
  });

  it("names the missing scope when refusing", () => {
    const viewer = { subject: "key:k", role: "viewer", scopes: scopesForRole("viewer") };
    let caught: unknown;
    try {
      requireScope(viewer as never, "node:execute");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(GatehouseError);
    expect((caught as GatehouseError).code).toBe("insufficient_scope");
    expect((caught as GatehouseError).message).toContain("node:execute");
  });
});
