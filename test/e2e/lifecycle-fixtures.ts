import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import WebSocket from "ws";
import {
  createCsr,
  importKeyPairPem,
  issueClientCertificate,
  loadCertificateAuthority,
  sha256Fingerprint,
} from "../../src/pki/index.js";
import type { TestConnectionResult } from "../../src/node/test-connection.js";
import { runCli, runJson, type Running, type TestGateway } from "./harness.js";

/** A node home's TLS material, as the agent reads it. */
export interface NodeTls {
  ca: string;
  key: string;
  cert: string;
}

export function nodeTls(home: string): NodeTls {
  const read = (name: string) => readFileSync(path.join(home, name), "utf8");
  return { ca: read("ca.pem"), key: read("device.key"), cert: read("device.pem") };
}

export function deviceCertificate(home: string): X509Certificate {
  return new X509Certificate(readFileSync(path.join(home, "device.pem"), "utf8"));
}

export function fingerprintOf(cert: X509Certificate): string {
  return sha256Fingerprint(cert.raw);
}

/** Every certificate of a PEM bundle (ca.pem during and after a CA rotation holds two). */
export function pemBundle(file: string): X509Certificate[] {
  const text = readFileSync(file, "utf8");
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (pem) => new X509Certificate(pem),
  );
}

/** True when a certificate was signed by the given CA certificate. */
export function issuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

/**
 * Puts a node in the state of one that was offline while its certificate ran out: device.pem
 * becomes a certificate the gateway's CA issued for the node's own key `agoMs` milliseconds ago,
 * with a life of `lifeMs` (so it expired `agoMs - lifeMs` ms ago). The certificate is moved back in
 * time instead of the test waiting out a lifetime; the gateway judges it by its dates alone.
 */
export async function backdateDeviceCertificate(
  gatewayHome: string,
  home: string,
  { agoMs, lifeMs }: { agoMs: number; lifeMs: number },
): Promise<X509Certificate> {
  const read = (file: string) => readFileSync(file, "utf8");
  const ca = await loadCertificateAuthority(
    read(path.join(gatewayHome, "pki", "ca.pem")),
    read(path.join(gatewayHome, "pki", "ca.key")),
  );
  const { deviceId } = JSON.parse(read(path.join(home, "node.json"))) as { deviceId: string };
  const keys = await importKeyPairPem(read(path.join(home, "device.key")));
  const issued = await issueClientCertificate(ca, {
    publicKey: keys.publicKey,
    deviceId,
    now: new Date(Date.now() - agoMs),
    ttlMs: lifeMs,
  });
  writeFileSync(path.join(home, "device.pem"), issued.pem.trimEnd() + "\n");
  return deviceCertificate(home);
}

/** The node's private key and its certificate's public key are a pair. */
export function keyMatchesCertificate(home: string): boolean {
  const key = readFileSync(path.join(home, "device.key"), "utf8");
  return deviceCertificate(home).publicKey.equals(createPublicKey(createPrivateKey(key)));
}

export type LogLine = Record<string, unknown>;

export function withMsg(process: Running, msg: string): LogLine[] {
  return process.logLines().filter((line) => line.msg === msg);
}

export function withState(process: Running, state: string): LogLine[] {
  return process.logLines().filter((line) => line.state === state);
}

/**
 * The agent's states from its first connection on: `["connected"]` as long as that session has
 * lasted. What came before (a certificate that ran out while a loaded machine started the
 * process, and its re-issue) is the start, not the session.
 */
export function statesSinceConnected(process: Running): unknown[] {
  const states = process
    .logLines()
    .filter((line) => line.state !== undefined)
    .map((line) => line.state);
  const first = states.indexOf("connected");
  return first < 0 ? [] : states.slice(first);
}

/** Waits until a process has printed at least `count` log lines with this message. */
export function waitForMsg(process: Running, msg: string, count = 1, timeoutMs = 20_000): Promise<void> {
  return process.waitFor(() => withMsg(process, msg).length >= count, `${count} × "${msg}"`, timeoutMs);
}

export function waitConnected(process: Running, count = 1, timeoutMs = 20_000): Promise<void> {
  return process.waitFor(
    () => withState(process, "connected").length >= count,
    `${count} × state connected`,
    timeoutMs,
  );
}

export interface NodeView {
  deviceId: string;
  name: string;
  online: boolean;
  sessionId: string;
}

export async function nodesList(gateway: TestGateway): Promise<NodeView[]> {
  return (await runJson<{ nodes: NodeView[] }>(["nodes", "list", "--home", gateway.home])).nodes;
}

export interface DeviceDetail {
  deviceId: string;
  status: string;
  certExpiresAt: string | null;
  certFingerprint: string | null;
}

export async function deviceShow(gateway: TestGateway, deviceId: string): Promise<DeviceDetail> {
  return (await runJson<{ device: DeviceDetail }>(["devices", "show", deviceId, "--home", gateway.home]))
    .device;
}

export async function testConnection(
  home: string,
): Promise<{ exit: number | null; result: TestConnectionResult }> {
  const run = await runCli(["node", "test-connection", "--home", home, "--json"]);
  try {
    return { exit: run.code, result: JSON.parse(run.stdout) as TestConnectionResult };
  } catch {
    throw new Error(`test-connection printed no JSON (exit ${run.code})\n${run.stdout}\n${run.stderr}`);
  }
}

export interface RawResponse {
  status: number;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

/** One HTTPS request on a fresh connection (no agent, no keep-alive); never throws on a status. */
export function httpsRequest(
  url: string,
  options: { method?: string; body?: unknown; tls: Partial<NodeTls> & { ca: string } },
): Promise<RawResponse> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {
        method: options.method ?? (payload ? "POST" : "GET"),
        agent: false,
        ...options.tls,
        headers: payload
          ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
          : {},
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const body = Buffer.concat(chunks);
          resolve({
            status: response.statusCode ?? 0,
            body,
            json: <T>() => JSON.parse(body.toString("utf8")) as T,
          });
        });
        response.on("error", reject);
      },
    );
    request.on("error", reject);
    request.end(payload);
  });
}

/** The certificate a new TLS connection is shown, and the CA certificate sent with it. */
export function presentedServerCertificate(
  url: string,
): Promise<{ leaf: X509Certificate; issuer: X509Certificate | undefined }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false });
    socket.once("error", reject);
    socket.once("secureConnect", () => {
      const peer = socket.getPeerCertificate(true);
      const leaf = new X509Certificate(peer.raw);
      const issuer =
        peer.issuerCertificate?.raw && !peer.issuerCertificate.raw.equals(peer.raw)
          ? new X509Certificate(peer.issuerCertificate.raw)
          : undefined;
      socket.end();
      resolve({ leaf, issuer });
    });
  });
}

/** A node session opened directly with a node home's credentials, with the moment it closed. */
export interface DirectSession {
  socket: WebSocket;
  sessionId: string;
  closed: Promise<{ code: number; reason: string; at: number }>;
}

export function openDirectSession(url: string, home: string): Promise<DirectSession> {
  const credentials = nodeTls(home);
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^https:/, "wss:") + "/api/v1/connect", credentials);
    const closed = new Promise<{ code: number; reason: string; at: number }>((done) =>
      socket.once("close", (code, reason) => done({ code, reason: reason.toString(), at: Date.now() })),
    );
    socket.on("message", (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { type: string; sessionId?: string };
      if (message.type === "welcome") resolve({ socket, sessionId: message.sessionId!, closed });
    });
    socket.once("unexpected-response", (_request, response) =>
      reject(new Error(`the session was refused with HTTP ${response.statusCode}`)),
    );
    socket.once("error", reject);
  });
}

export interface RenewalTraffic {
  status: number;
  /** TCP payload bytes: TLS handshake and records included. */
  wire: { sent: number; received: number };
  /** Bytes above TLS: the HTTP request and response. */
  http: { sent: number; received: number };
}

/**
 * One POST /api/v1/certs/renew over a fresh TLS connection with a node's key and certificate,
 * counting the bytes on the TCP socket under the TLS layer (a TLSSocket's own counters only see
 * the plaintext) until the connection has closed.
 */
export async function renewalOnTheWire(url: string, home: string): Promise<RenewalTraffic> {
  const credentials = nodeTls(home);
  const csr = await createCsr(await importKeyPairPem(credentials.key), "device");
  const payload = JSON.stringify({ csr });
  const { hostname, port } = new URL(url);
  const raw = net.connect({ host: hostname, port: Number(port) });
  let secure: tls.TLSSocket | undefined;
  return new Promise((resolve, reject) => {
    const request = https.request(
      `${url}/api/v1/certs/renew`,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
          connection: "close",
        },
        createConnection: () => {
          secure = tls.connect({ socket: raw, host: hostname, ...credentials });
          return secure;
        },
      },
      (response) => {
        response.resume();
        response.on("end", () => {
          const status = response.statusCode ?? 0;
          const done = () =>
            resolve({
              status,
              wire: { sent: raw.bytesWritten, received: raw.bytesRead },
              http: { sent: secure?.bytesWritten ?? 0, received: secure?.bytesRead ?? 0 },
            });
          if (raw.closed) done();
          else raw.once("close", done);
        });
      },
    );
    request.on("error", reject);
    request.end(payload);
  });
}
