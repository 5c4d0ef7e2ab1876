import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  cleanupAll,
  registeredNode,
  runJson,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";

const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  cleanupAll();
});

/** Every .pem and .key file under `dir`, by path relative to it. */
function pemFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((name) => /\.(pem|key)$/.test(name));
}

function openssl(args: string[]): string {
  return execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("PEM files", () => {
  it("every PEM file of a gateway home and a node home ends with a newline", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    const node = await registeredNode(gateway, "pem-node");
    const files = [
      ...pemFiles(gateway.home).map((name) => path.join(gateway.home, name)),
      ...pemFiles(node.home).map((name) => path.join(node.home, name)),
    ];
    for (const expected of ["pki/ca.pem", "pki/server.pem", "admin/admin.pem", "admin/ca.pem"])
      expect(files).toContain(path.join(gateway.home, expected));
    for (const expected of ["device.pem", "ca.pem", "device.key"])
      expect(files).toContain(path.join(node.home, expected));
    const pems = files.filter((file) => readFileSync(file, "utf8").startsWith("-----BEGIN "));
    const withoutNewline = pems.filter((file) => !readFileSync(file, "utf8").endsWith("-----\n"));
    expect(withoutNewline).toEqual([]);
  });

  it("`cat ca.pem ca-previous.pem > bundle.pem` after a CA rotation is a bundle openssl accepts", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    await runJson(["rotate", "ca", "--home", gateway.home]);
    const pki = path.join(gateway.home, "pki");
    const bundle = path.join(tempHome("bundle") + ".pem");
    writeFileSync(
      bundle,
      readFileSync(path.join(pki, "ca.pem"), "utf8") +
        readFileSync(path.join(pki, "ca-previous.pem"), "utf8"),
    );
    // The server certificate is still signed by the previous CA, the second in the bundle.
    expect(openssl(["verify", "-CAfile", bundle, path.join(pki, "server.pem")])).toContain(": OK");
    // Both certificates of the bundle are read, not just the first.
    const listed = openssl(["storeutl", "-noout", "-certs", bundle]);
    expect(listed).toContain("Total found: 2");
    expect(openssl(["x509", "-in", bundle, "-noout", "-subject"])).toMatch(/rotated/);
  });
});
