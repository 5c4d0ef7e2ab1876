/**
 * The handshake path on a real gateway over real TLS on loopback: a client certificate is read
 * once per connection (one `getPeerX509Certificate()`, never the legacy `getPeerCertificate()`,
 * which builds the whole certificate object and three more digests of it), however many requests
 * the connection carries; and a revoked device is still refused, on a full handshake (the CRL) and
 * when it offers a TLS session ticket from before the revocation (not resumed: the revocation
 * swapped the TLS context, so the certificate meets the new CRL).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { createCsr, exportPrivateKeyPem, generateKeyPair } from "../src/pki/index.js";

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
  it("reads the client certificate once per connection, whatever the number of requests", async () => {
    const x509 = vi.spyOn(tls.TLSSocket.prototype, "getPeerX509Certificate");
    const legacy = vi.spyOn(tls.TLSSocket.prototype, "getPeerCertificate");
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
      const readOn = x509.mock.contexts.filter(isServerSocket);
      expect(readOn).toHaveLength(1);
      // A second connection reads its own certificate, once.
      agent.destroy();
      const second = new https.Agent({ keepAlive: true, maxSockets: 1, ...device });
      expect((await validate(second)).status).toBe(200);
      expect((await validate(second)).status).toBe(200);
      second.destroy();
      const servers = x509.mock.contexts.filter(isServerSocket);
      expect(servers).toHaveLength(2);
      expect(servers[0]).not.toBe(servers[1]);
      expect(legacy.mock.contexts.filter(isServerSocket)).toHaveLength(0);
    } finally {
      agent.destroy();
      x509.mockRestore();
      legacy.mockRestore();
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
