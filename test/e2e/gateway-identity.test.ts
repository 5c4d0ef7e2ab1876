import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { TestConnectionResult } from "../../src/node/test-connection.js";
import {
  cleanupAll,
  registeredNode,
  runCli,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";

let gateway: TestGateway;
let nodeHome: string;

/**
 * An HTTPS server on loopback that presents a certificate from the gateway's real CA (with the
 * CA itself in the chain, so "chains to the pinned CA" holds) and counts every request it gets.
 */
interface Impostor {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

async function impostor(key: string, cert: string, host = "127.0.0.1"): Promise<Impostor> {
  const ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
  const requests: string[] = [];
  const server = https.createServer({ key, cert: cert.trimEnd() + "\n" + ca }, (request, response) => {
    requests.push(`${request.method} ${request.url}`);
    response.writeHead(404, { "content-type": "application/json" }).end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://${host}:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function register(url: string) {
  const home = tempHome("impostor-node");
  const run = runCli([
    "node",
    "register",
    "--home",
    home,
    "--gateway",
    url,
    "--ca-fingerprint",
    gateway.caFingerprint,
    "--name",
    "fooled",
    "--json",
  ]);
  return { home, run };
}

beforeAll(async () => {
  gateway = await startTestGateway();
  ({ home: nodeHome } = await registeredNode(gateway, "honest"));
});

afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

describe("a node and the CLI accept only the gateway's server certificate as the gateway", () => {
  it("a server presenting a node's client certificate from the pinned CA is ca_mismatch, and gets no CSR", async () => {
    const read = (name: string) => readFileSync(path.join(nodeHome, name), "utf8");
    const fake = await impostor(read("device.key"), read("device.pem"));
    try {
      const { home, run } = register(fake.url);
      const result = await run;
      expect(result.code).toBe(1);
      const body = JSON.parse(result.stdout) as { error: string; error_description: string };
      expect(body.error).toBe("ca_mismatch");
      expect(body.error_description).toContain("not a server certificate");
      expect(fake.requests).toEqual([]);
      expect(existsSync(path.join(home, "device.key"))).toBe(false);

      // test-connection names the TLS layer.
      const tested = await runCli([
        "node",
        "test-connection",
        "--home",
        nodeHome,
        "--gateway",
        fake.url,
        "--json",
      ]);
      expect(tested.code).toBe(1);
      const report = JSON.parse(tested.stdout) as TestConnectionResult;
      expect(report.error).toMatchObject({ layer: "tls", code: "ca_mismatch" });
      expect(report.error?.description).toContain("not a server certificate");

      // Every later, fully verified connection names it the same way (not a bare INVALID_PURPOSE).
      const listed = await runCli(["nodes", "list", "--home", nodeHome, "--gateway", fake.url, "--json"]);
      expect(listed.code).toBe(1);
      expect(JSON.parse(listed.stdout)).toMatchObject({
        error: "ca_mismatch",
        error_description: expect.stringContaining("not a server certificate"),
      });
      expect(fake.requests).toEqual([]);
    } finally {
      await fake.close();
    }
  });

  it("the gateway's own server certificate at a name it does not hold is san_mismatch before anything is written", async () => {
    const read = (name: string) => readFileSync(path.join(gateway.home, name), "utf8");
    // 127.0.0.2 is loopback too, but the certificate names only localhost and 127.0.0.1.
    const elsewhere = await impostor(read("pki/server.key"), read("pki/server.pem"), "127.0.0.2");
    try {
      const { home, run } = register(elsewhere.url);
      const result = await run;
      expect(result.code).toBe(1);
      const body = JSON.parse(result.stdout) as { error: string; error_description: string };
      // The right gateway's certificate, short of a name: not an impostor (see tls-names.test.ts).
      expect(body.error).toBe("san_mismatch");
      expect(body.error_description).toContain("does not cover 127.0.0.2");
      expect(existsSync(path.join(home, "node.json"))).toBe(false);
      expect(existsSync(path.join(home, "device.key"))).toBe(false);
      expect(elsewhere.requests).toEqual([]);
    } finally {
      await elsewhere.close();
    }
  });
});
