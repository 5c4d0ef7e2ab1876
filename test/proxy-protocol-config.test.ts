/**
 * `proxyProtocol.trusted` in gateway.json: addresses and CIDRs only, off by default, and what
 * doctor says about it (including the traps that would close the connections of callers that dial
 * the gateway directly).
 */
import { describe, expect, it } from "vitest";
import { gatewayConfigSchema } from "../src/config/schema.js";
import { checkProxyProtocol } from "../src/doctor/proxy-protocol-check.js";

const withTrusted = (trusted: unknown) =>
  gatewayConfigSchema.safeParse({ gatewayId: "gw_test", proxyProtocol: { trusted } });

describe("proxyProtocol.trusted", () => {
  it("is off by default, and doctor says nothing about it then", () => {
    const config = gatewayConfigSchema.parse({ gatewayId: "gw_test" });
    expect(config.proxyProtocol.trusted).toEqual([]);
    expect(checkProxyProtocol(config)).toBeUndefined();
  });

  it("takes IPv4 and IPv6 addresses and CIDRs, and refuses anything else naming it", () => {
    expect(withTrusted(["127.0.0.10", "10.0.0.0/8", "fd00::/8", "2001:db8::1"]).success).toBe(true);
    for (const bad of ["haproxy.local", "10.0.0.0/33", "::/129", "10.0.0.0/8/1", "10.0.0.0/", "300.1.1.1"]) {
      const result = withTrusted([bad]);
      expect(result.success).toBe(false);
      expect(result.error?.issues[0]?.message).toContain(JSON.stringify(bad));
    }
  });

  it("doctor names the trusted balancers, and warns when the list covers loopback or every address", () => {
    const config = (trusted: string[]) =>
      gatewayConfigSchema.parse({ gatewayId: "gw_test", proxyProtocol: { trusted } });
    expect(checkProxyProtocol(config(["10.1.0.5"]))).toMatchObject({
      severity: "ok",
      check: "proxy-protocol",
    });
    expect(checkProxyProtocol(config(["127.0.0.1"]))).toMatchObject({
      severity: "warning",
      message: expect.stringContaining("loopback"),
      fix: expect.stringContaining("source 127.0.0.10"),
    });
    expect(checkProxyProtocol(config(["0.0.0.0/0"]))).toMatchObject({
      severity: "warning",
      message: expect.stringContaining("every address"),
    });
  });
});
