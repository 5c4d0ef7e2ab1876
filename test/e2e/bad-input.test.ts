import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import {
  createCsr,
  exportPrivateKeyPem,
  generateKeyPair,
  identityOfSpki,
  issueClientCertificate,
  loadCertificateAuthority,
  spkiOf,
  x509,
} from "../../src/pki/index.js";
import {
  cleanupAll,
  listDevices,
  probeHealth,
  registeredNode,
  startTestGateway,
  type TestGateway,
} from "./harness.js";
import { opensslSelfSigned } from "./openssl.js";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error?: string; error_description?: string; hint?: string; [key: string]: unknown };
}

function call(
  gateway: TestGateway,
  route: string,
  options: {
    method?: string;
    body?: string | Buffer;
    contentType?: string;
    key?: string;
    cert?: string;
  } = {},
): Promise<Reply> {
  const ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
  return new Promise((resolve, reject) => {
    const request = https.request(
      gateway.url + route,
      {
        method: options.method ?? (options.body ? "POST" : "GET"),
        ca,
        key: options.key,
        cert: options.cert,
        headers: options.body ? { "content-type": options.contentType ?? "application/json" } : {},
      },
      (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: text ? JSON.parse(text) : {},
          }),
        );
      },
    );
    request.on("error", reject);
    request.end(options.body);
  });
}

function upgrade(
  gateway: TestGateway,
  tls: { key?: string; cert?: string },
): Promise<{ status: number; error: string }> {
  const ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(gateway.url.replace("https:", "wss:") + "/api/v1/connect", { ca, ...tls });
    socket.on("unexpected-response", (_req, response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, error: JSON.parse(body).error }));
    });
    socket.on("open", () => reject(new Error("the upgrade was accepted")));
    socket.on("error", reject);
  });
}

/** The same CSR with one byte of its signature flipped. */
function tamperedCsr(pem: string): string {
  const der = new Uint8Array(x509.PemConverter.decodeFirst(pem));
  der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0x01;
  return x509.PemConverter.encode(der.buffer, "CERTIFICATE REQUEST");
}

async function validCsr(): Promise<string> {
  const keys = await generateKeyPair();
  return createCsr(keys, "x");
}

/** A CA and client certificate made by openssl, unrelated to the gateway. */
function foreignCertificate(): { key: string; cert: string; rsaCsr: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-foreign-"));
  const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  opensslSelfSigned(dir, "ca", { commonName: "Forgotten Container CA" });
  run([
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "client.key",
    "-out",
    "client.csr",
    "-subj",
    "/CN=intruder",
  ]);
  run([
    "x509",
    "-req",
    "-in",
    "client.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "client.pem",
    "-days",
    "1",
  ]);
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.key", "-out", "rsa.csr", "-subj", "/CN=rsa"]);
  const read = (name: string) => readFileSync(path.join(dir, name), "utf8");
  return { key: read("client.key"), cert: read("client.pem"), rsaCsr: read("rsa.csr") };
}

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway({
    configure: (config) => {
      config.enroll = { perAddressPerMinute: 20, maxPending: 3 };
    },
  });
});
afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

describe("credentials that must be refused, with a name", () => {
  it("refuses a client certificate from an unrelated CA with cert_untrusted, in HTTP and at the upgrade", async () => {
    const foreign = foreignCertificate();
    const reply = await call(gateway, "/api/v1/nodes", foreign);
    expect(reply.status).toBe(401);
    expect(reply.body.error).toBe("cert_untrusted");
    expect(reply.body.hint).toBeTruthy();
    expect(await upgrade(gateway, foreign)).toEqual({ status: 401, error: "cert_untrusted" });

    // The gateway logged the refusal with the address and a fingerprint prefix, never the certificate.
    await new Promise((r) => setTimeout(r, 200));
    const refusals = gateway.process
      .logLines()
      .filter((l) => l.msg === "refused" && l.code === "cert_untrusted");
    expect(refusals.length).toBeGreaterThanOrEqual(2);
    expect(refusals[0]).toMatchObject({ address: "127.0.0.1", credential: "client-certificate" });
    expect(String(refusals[0]!.fingerprint)).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(gateway.process.stdout).not.toContain("BEGIN CERTIFICATE");
  });

  it("refuses an expired certificate from our own CA with cert_expired", async () => {
    const ca = await loadCertificateAuthority(
      readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8"),
      readFileSync(path.join(gateway.home, "pki/ca.key"), "utf8"),
    );
    const keys = await generateKeyPair();
    const { deviceId } = identityOfSpki(await spkiOf(keys.publicKey));
    const issued = await issueClientCertificate(ca, {
      publicKey: keys.publicKey,
      deviceId,
      now: new Date(Date.now() - 2 * 86_400_000),
      ttlMs: 3_600_000,
    });
    const tls = { key: await exportPrivateKeyPem(keys.privateKey), cert: issued.pem };
    const reply = await call(gateway, "/api/v1/nodes", tls);
    expect(reply.status).toBe(401);
    expect(reply.body.error).toBe("cert_expired");
    expect(await upgrade(gateway, tls)).toEqual({ status: 401, error: "cert_expired" });
  });

  it("asks for a credential when none is given, and refuses a node's certificate on admin routes", async () => {
    const none = await call(gateway, "/api/v1/devices");
    expect(none.status).toBe(401);
    expect(none.body.error).toBe("missing_credentials");
    expect((await upgrade(gateway, {})).error).toBe("missing_credentials");

    const { home } = await registeredNode(gateway, "plain-node");
    const read = (name: string) => readFileSync(path.join(home, name), "utf8");
    const asNode = await call(gateway, "/api/v1/devices", {
      key: read("device.key"),
      cert: read("device.pem"),
    });
    expect(asNode.status).toBe(403);
    expect(asNode.body.error).toBe("insufficient_scope");
    expect(asNode.body.error_description).toContain("devices:read");
  });
});

describe("registration input that must be refused, while the gateway keeps serving", () => {
  it("names what is wrong with each malformed request", async () => {
    const before = (await listDevices(gateway)).length;
    const enroll = (body: string | Buffer, contentType?: string) =>
      call(gateway, "/api/v1/enroll", { body, ...(contentType ? { contentType } : {}) });
    const csr = await validCsr();
    const cases: [string | Buffer, number, string, RegExp, string?][] = [
      ["{not json", 400, "invalid_request", /not valid JSON/],
      ["{}", 400, "invalid_request", /csr/],
      [JSON.stringify({ csr: "hello", name: "n" }), 400, "invalid_request", /not a PEM/],
      [JSON.stringify({ csr: tamperedCsr(csr), name: "n" }), 400, "invalid_request", /signature|well-formed/],
      [
        JSON.stringify({ csr: foreignCertificate().rsaCsr, name: "n" }),
        400,
        "invalid_request",
        /RSA.*not allowed/,
      ],
      [JSON.stringify({ csr, name: "bad\u0007name" }), 400, "invalid_request", /control characters/],
      [JSON.stringify({ csr, name: "x".repeat(65) }), 400, "invalid_request", /longer than 64/],
      // A right-to-left override would make the admin read another name than the one stored.
      [JSON.stringify({ csr, name: "laptop\u202egpj.exe" }), 400, "invalid_request", /control characters/],
      [JSON.stringify({ csr, name: "n", platform: "linux\u001b[2J" }), 400, "invalid_request", /platform/],
      [JSON.stringify({ csr, name: "n", admin: true }), 400, "invalid_request", /unknown field admin/],
      [Buffer.alloc(1024 * 1024, 0x61), 413, "payload_too_large", /larger/],
      [Buffer.from([0xde, 0xad, 0xbe, 0xef]), 400, "invalid_request", /JSON/, "application/octet-stream"],
    ];
    for (const [body, status, code, description, contentType] of cases) {
      const reply = await enroll(body, contentType);
      expect({ status: reply.status, code: reply.body.error }).toEqual({ status, code });
      expect(reply.body.error_description).toMatch(description);
    }
    expect(await probeHealth(gateway.url)).toBe(true);
    expect(await listDevices(gateway)).toHaveLength(before);
  });

  it("caps pending registrations and rate-limits one address", async () => {
    const statuses: number[] = [];
    let last: Reply | undefined;
    for (let i = 0; i < 25; i++) {
      last = await call(gateway, "/api/v1/enroll", {
        body: JSON.stringify({ csr: await validCsr(), name: `flood-${i}` }),
      });
      statuses.push(last.status);
    }
    // The cap (3 pending) is reached first, then the per-address budget runs out.
    expect(statuses.filter((s) => s === 202).length).toBeLessThanOrEqual(3);
    expect(statuses.slice(3).every((s) => s === 429)).toBe(true);
    expect(last?.body.error).toBe("rate_limited");
    expect(Number(last?.headers["retry-after"])).toBeGreaterThan(0);
    expect((await listDevices(gateway, true)).length).toBeLessThanOrEqual(3);
    expect(await probeHealth(gateway.url)).toBe(true);
  });
});
