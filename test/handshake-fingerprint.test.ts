/**
 * The handshake path on a real gateway over real TLS on loopback: a client certificate is read
 * once per connection (one `getPeerCertificate()`), however many requests the connection carries,
 * and its fingerprint and RFC 8705 thumbprint come from the SHA-256 the TLS layer already made:
 * the gateway hashes the certificate no more; and a revoked device is still refused, on a full handshake (the CRL) and
 * when it offers a TLS session ticket from before the revocation (not resumed: the revocation
 * swapped the TLS context, so the certificate meets the new CRL).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import {
  certificateDigests,
  createCsr,
  digestsOfFingerprint256,
  exportPrivateKeyPem,
  generateKeyPair,
  sha256Fingerprint,
} from "../src/pki/index.js";

/** Every buffer the gateway's own code fed to a hash (node:crypto createHash), in order. */
const hashed = vi.hoisted(() => [] as Buffer[]);
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>();
  return {
    ...actual,
    createHash: (...args: Parameters<typeof actual.createHash>) => {
      const hash = actual.createHash(...args);
      const update = hash.update.bind(hash);
      hash.update = ((data: unknown, encoding?: BufferEncoding) => {
        if (data instanceof Uint8Array) hashed.push(Buffer.from(data));
        return encoding ? update(data as string, encoding) : update(data as Buffer);
      }) as typeof hash.update;
      return hash;
    },
  };
});

let dir: string;
let gateway: RunningGateway;
let url: URL;
let device: { deviceId: string; cert: string; key: string; ca: string };

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-handshake-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  gateway = await startGateway(home, { logger: pino({ level: "silent" }) });
  url = new URL(gateway.url);
  const keys = await generateKeyPair();
  const reply = await gateway.ctx.registrations.enroll(
    { csr: await createCsr(keys, "handshake-node"), name: "handshake-node" },
    "127.0.0.1",
  );
  await gateway.ctx.registrations.approve(reply.userCode, "node", "admin");
  const status = await gateway.ctx.registrations.status(reply.requestId);
  device = {
    deviceId: reply.deviceId,
    cert: status.certificate!,
    key: await exportPrivateKeyPem(keys.privateKey),
    ca: status.caBundle!,
  };
});

afterAll(async () => {
  vi.restoreAllMocks();
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: { valid?: boolean; deviceId?: string; error?: string };
}

/** GET /api/v1/auth/validate through `agent` (keep-alive: one connection for every request). */
function validate(agent: https.Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      { host: url.hostname, port: url.port, path: "/api/v1/auth/validate", agent },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (text += chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Answer["body"] }),
        );
      },
    );
    request.on("error", reject);
    request.end();
  });
}

/**
 * One request on a new raw TLS connection, offering `session` when given; resolves with the
 * answer, whether the session was resumed, and the session ticket the server sent.
 */
function validateOnce(session?: Buffer): Promise<Answer & { resumed: boolean; ticket?: Buffer }> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    let resumed = false;
    let text = "";
    const socket = tls.connect({
      host: url.hostname,
      port: Number(url.port),
      ca: device.ca,
      cert: device.cert,
      key: device.key,
      ...(session ? { session } : {}),
    });
    socket.on("session", (t: Buffer) => (ticket = t));
    socket.once("secureConnect", () => {
      resumed = socket.isSessionReused();
      socket.write(`GET /api/v1/auth/validate HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
    });
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (text += chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4) || "{}") as Answer["body"];
      resolve({ status, body, resumed, ...(ticket ? { ticket } : {}) });
    });
  });
}

const isServerSocket = (socket: unknown) =>
  (socket as { _tlsOptions?: { isServer?: boolean } })._tlsOptions?.isServer === true;

describe("the handshake path", () => {
  it("reads the client certificate once per connection, whatever the number of requests, and hashes it never", async () => {
    const read = vi.spyOn(tls.TLSSocket.prototype, "getPeerCertificate");
    const der = new X509Certificate(device.cert).raw;
    const hashesOfCertificate = () => hashed.filter((data) => data.equals(der)).length;
    const hashesBefore = hashesOfCertificate();
    const agent = new https.Agent({
      keepAlive: true,
      maxSockets: 1,
      ca: device.ca,
      cert: device.cert,
      key: device.key,
    });
    try {
      for (let i = 0; i < 3; i++) {
        const answer = await validate(agent);
        expect(answer.status).toBe(200);
        expect(answer.body).toMatchObject({ valid: true, deviceId: device.deviceId });
      }
      expect(read.mock.contexts.filter(isServerSocket)).toHaveLength(1);
      // A second connection reads its own certificate, once.
      agent.destroy();
      const second = new https.Agent({ keepAlive: true, maxSockets: 1, ...device });
      expect((await validate(second)).status).toBe(200);
      expect((await validate(second)).status).toBe(200);
      second.destroy();
      const servers = read.mock.contexts.filter(isServerSocket);
      expect(servers).toHaveLength(2);
      expect(servers[0]).not.toBe(servers[1]);
      expect(hashesOfCertificate() - hashesBefore).toBe(0);
      // The TLS layer's digest gives the same identities as hashing the DER would.
      const fromTls = digestsOfFingerprint256(new X509Certificate(device.cert).fingerprint256);
      expect(fromTls).toEqual(certificateDigests(der));
      expect(fromTls?.fingerprint).toBe(sha256Fingerprint(der));
    } finally {
      agent.destroy();
      read.mockRestore();
    }
  });

  it("still refuses a revoked device: on a full handshake (CRL), and a session from before is not resumed", async () => {
    const first = await validateOnce();
    expect(first.status).toBe(200);
    // TLS 1.3 tickets come after the handshake; take the one of a connection that resumed, too.
    expect(first.ticket).toBeDefined();
    const resumedBefore = await validateOnce(first.ticket);
    expect(resumedBefore).toMatchObject({ status: 200, resumed: true });

    await gateway.ctx.registrations.revoke(device.deviceId, "test", "admin");

    const full = await validateOnce();
    expect(full.resumed).toBe(false);
    expect(full.status).toBe(403);
    expect(full.body.error).toBe("device_revoked");
    // The revocation swapped the TLS context (new CRL): a ticket from before is not taken, so
    // the certificate meets the CRL in a full handshake again.
    const offered = await validateOnce(first.ticket);
    expect(offered.resumed).toBe(false);
    expect(offered.status).toBe(403);
    expect(offered.body.error).toBe("device_revoked");
  });
});
