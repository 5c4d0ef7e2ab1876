import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AdminClient } from "../src/cli/admin-client.js";
import { nameFailure } from "../src/client/credential-source.js";
import { GatehouseError } from "../src/protocol/errors.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A home holding an admin credential (contents are not parsed here), and a gateway.json if given. */
function home(gatewayJson?: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-admin-target-"));
  dirs.push(dir);
  mkdirSync(path.join(dir, "admin"));
  for (const name of ["ca.pem", "admin.pem", "admin.key"])
    writeFileSync(path.join(dir, "admin", name), "PEM");
  writeFileSync(
    path.join(dir, "admin", "gateway.json"),
    JSON.stringify({ gatewayUrl: "https://127.0.0.1:18789", gatewayId: "gw_x" }),
  );
  if (gatewayJson) writeFileSync(path.join(dir, "gateway.json"), JSON.stringify(gatewayJson));
  return dir;
}

describe("where an admin command's gateway and credential come from", () => {
  it("follows a gateway home's listen, and a copy of admin/ its stored URL", () => {
    const gateway = home({ gatewayId: "gw_x", listen: "0.0.0.0:19000" });
    expect(AdminClient.fromHome(gateway, {}, {}).gatewayUrl).toBe("https://127.0.0.1:19000");
    expect(AdminClient.fromHome(gateway, {}, {}).urlSource).toMatchObject({ kind: "listen" });
    const copy = home();
    expect(AdminClient.fromHome(copy, {}, {}).gatewayUrl).toBe("https://127.0.0.1:18789");
    expect(AdminClient.fromHome(copy, {}, {}).urlSource).toMatchObject({ kind: "admin-copy" });
    expect(AdminClient.fromHome(copy, { gateway: "https://gw.lan:1" }, {}).urlSource).toEqual({
      kind: "flag",
    });
  });

  it("names a listen that is not HOST:PORT as config_invalid, and ignores the other settings", () => {
    expect(() => AdminClient.fromHome(home({ listen: "18789" }), {}, {})).toThrow(
      /listen in .*gateway\.json/,
    );
    expect(AdminClient.fromHome(home({ listen: "[::]:1", certificates: 7 }), {}, {}).gatewayUrl).toBe(
      "https://[::1]:1",
    );
  });

  it("takes --token over GATEHOUSE_TOKEN over the home's certificate, and knows what each shadows", () => {
    const dir = home({ listen: "127.0.0.1:1" });
    const cert = path.join(dir, "admin", "admin.pem");
    expect(AdminClient.fromHome(dir, { token: "t" }, { GATEHOUSE_TOKEN: "e" }).credentialSource).toEqual({
      kind: "token-flag",
      next: "the GATEHOUSE_TOKEN variable",
    });
    expect(AdminClient.fromHome(dir, {}, { GATEHOUSE_TOKEN: "e" }).credentialSource).toEqual({
      kind: "token-variable",
      next: `this home's admin certificate (${cert})`,
    });
    expect(AdminClient.fromHome(dir, {}, {}).credentialSource).toEqual({
      kind: "admin-certificate",
      file: cert,
    });
    // An empty --token "" means no token at all: the variable is not read either.
    expect(AdminClient.fromHome(dir, { token: "" }, { GATEHOUSE_TOKEN: "e" }).credentialSource.kind).toBe(
      "admin-certificate",
    );
  });

  it("names the credential in a refusal, and leaves other failures as they are", () => {
    const refused = nameFailure(
      new GatehouseError("token_expired"),
      { kind: "token-variable", next: "this home's admin certificate (/h/admin/admin.pem)" },
      { kind: "flag" },
    ) as GatehouseError;
    expect(refused.code).toBe("token_expired");
    expect(refused.message).toContain("the access token in the GATEHOUSE_TOKEN variable");
    expect(refused.hint).toContain("unset GATEHOUSE_TOKEN to use this home's admin certificate");
    const other = new GatehouseError("node_offline");
    expect(nameFailure(other, { kind: "none" }, { kind: "flag" })).toBe(other);
  });
});
