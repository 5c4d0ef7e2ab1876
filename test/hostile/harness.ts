/**
 * Shared parts of the hostile-input suite: a gateway started in this process on a temp home (real
 * TLS on 127.0.0.1, real SQLite), HTTPS calls over reused agents, a digest of the stored state, the
 * check that an answer is a catalogue error, and fast-check's seeded parameters.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { IncomingMessage } from "node:http";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { pino } from "pino";
import { expect } from "vitest";
import WebSocket from "ws";
import type fc from "fast-check";
import { GATEWAY_FILES } from "../../src/config/index.js";
import { initGatewayHome } from "../../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../../src/gateway/start.js";
import { ERROR_CATALOGUE, isErrorCode } from "../../src/protocol/errors.js";
import { createCsr, exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.js";

/** One seed for the whole suite: set GATEHOUSE_FC_SEED to replay a failure printed by a run. */
export const SEED = Number(process.env.GATEHOUSE_FC_SEED ?? 20_261_129);
/** Cases per property scale with GATEHOUSE_FC_SCALE (1 by default; CI keeps it small). */
const SCALE = Number(process.env.GATEHOUSE_FC_SCALE ?? 1);

let seedPrinted = false;

/** fast-check parameters: seeded, and the seed is printed once per file so a failure can be replayed. */
export function runs(numRuns: number): fc.Parameters<unknown> {
  if (!seedPrinted) {
    seedPrinted = true;
    console.log(`hostile-input suite: GATEHOUSE_FC_SEED=${SEED}`);
  }
  return { seed: SEED, numRuns: Math.max(1, Math.round(numRuns * SCALE)) };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

export interface CallOptions {
  method?: string;
  /** The raw request path with its query, sent as is. */
  path: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  agent?: https.Agent;
}

/** The parsed JSON of a body, or undefined when it is not JSON. */
export function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Reads a whole HTTP response into a Reply. */
export function readReply(response: IncomingMessage): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on("data", (chunk: Buffer) => chunks.push(chunk));
    response.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        text,
        json: jsonOrUndefined(text),
      });
    });
    response.on("error", reject);
  });
}

/** A request that gets no answer in this long is a hang, and a failure of the property. */
const HANG_MS = 20_000;

export function call(url: string, options: CallOptions): Promise<Reply> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: target.hostname,
        port: target.port,
        method: options.method ?? (options.body === undefined ? "GET" : "POST"),
        path: options.path,
        agent: options.agent,
        headers: {
          ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
          ...options.headers,
        },
      },
      (response) => {
        readReply(response).then((reply) => {
          clearTimeout(timer);
          resolve(reply);
        }, reject);
      },
    );
    const timer = setTimeout(() => {
      request.destroy();
      reject(new Error(`no answer to ${options.method ?? "GET"} ${options.path} within ${HANG_MS} ms`));
    }, HANG_MS);
    request.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    request.end(options.body);
  });
}

/**
 * The answer is a catalogue error: a JSON body of exactly {error, error_description, hint} whose
 * code is in the catalogue, with that code's HTTP status, and never internal_error.
 */
export function expectCatalogueError(reply: Reply, context = ""): void {
  const where = `${context} -> ${reply.status} ${reply.text.slice(0, 300)}`;
  expect(reply.json, `a JSON body ${where}`).toBeTypeOf("object");
  const body = reply.json as Record<string, unknown>;
  expect(Object.keys(body ?? {}).sort(), `the catalogue's fields ${where}`).toEqual([
    "error",
    "error_description",
    "hint",
  ]);
  expect(isErrorCode(body.error), `a catalogue code ${where}`).toBe(true);
  expect(body.error, `not an internal error ${where}`).not.toBe("internal_error");
  expect(reply.status, `the code's own status ${where}`).toBe(
    ERROR_CATALOGUE[body.error as keyof typeof ERROR_CATALOGUE].status,
  );
  expect(typeof body.error_description).toBe("string");
  expect(typeof body.hint).toBe("string");
  expect(String(reply.headers["content-type"] ?? ""), `a JSON content type ${where}`).toMatch(
    /^application\/json/,
  );
}

/** Either a success with a JSON body, or a catalogue error: never a 500 or a framework's body. */
export function expectSuccessOrCatalogue(reply: Reply, context = ""): void {
  if (reply.status >= 200 && reply.status < 300) {
    expect(reply.json, `${context} -> ${reply.status} ${reply.text.slice(0, 200)}`).toBeTypeOf("object");
    return;
  }
  expectCatalogueError(reply, context);
}

/** The tables a refused request must leave as they were (audit entries and sessions may change). */
export const STATE_TABLES = [
  "devices",
  "registration_requests",
  "certificates",
  "api_keys",
  "refresh_tokens",
  "token_families",
  "enroll_tokens",
  "signing_keys",
  "exec_history",
] as const;

export interface Credential {
  key: string;
  cert: string;
}

export interface HostileGateway {
  running: RunningGateway;
  home: string;
  url: string;
  caPem: string;
  admin: Credential;
  adminAgent: https.Agent;
  anonymousAgent: https.Agent;
  agentFor(credential?: Credential): https.Agent;
  call(options: CallOptions): Promise<Reply>;
  adminCall(options: CallOptions): Promise<Reply>;
  /** A digest of every row of the given tables, once the gateway's background writes are done. */
  snapshot(tables?: readonly string[], ignoreColumns?: Record<string, string[]>): Promise<string>;
  /** Rows of a read-only query on the gateway's database. */
  rows(sql: string): unknown[];
  close(): Promise<void>;
}

/**
 * `gateway init` and `startGateway` in this process on a temp home, listening on 127.0.0.1 port 0.
 * Registrations are not rate-limited here, so the properties reach the parsers behind the limit.
 */
export async function startHostileGateway(
  configure: (config: Record<string, unknown>) => void = () => {},
): Promise<HostileGateway> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-hostile-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  const configFile = path.join(home, GATEWAY_FILES.config);
  const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
  config.enroll = { perAddressPerMinute: 1_000_000 };
  config.logLevel = "silent";
  configure(config);
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const running = await startGateway(home, { logger: pino({ level: "silent" }) });
  const read = (file: string) => readFileSync(path.join(home, file), "utf8");
  const caPem = read(GATEWAY_FILES.caCert);
  const admin = { key: read(GATEWAY_FILES.adminKey), cert: read(GATEWAY_FILES.adminCert) };
  const agents: https.Agent[] = [];
  const agentFor = (credential?: Credential) => {
    const agent = new https.Agent({ ca: caPem, keepAlive: true, maxSockets: 4, ...credential });
    agents.push(agent);
    return agent;
  };
  const adminAgent = agentFor(admin);
  const anonymousAgent = agentFor();
  const db = new Database(path.join(home, GATEWAY_FILES.database), { readonly: true, fileMustExist: true });
  return {
    running,
    home,
    url: running.url,
    caPem,
    admin,
    adminAgent,
    anonymousAgent,
    agentFor,
    call: (options) => call(running.url, { agent: anonymousAgent, ...options }),
    adminCall: (options) => call(running.url, { agent: adminAgent, ...options }),
    async snapshot(tables = STATE_TABLES, ignoreColumns = {}) {
      await running.ctx.background.drain();
      const hash = createHash("sha256");
      for (const table of tables) {
        const ignored = new Set(ignoreColumns[table] ?? []);
        const rows = db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).all() as Record<string, unknown>[];
        for (const row of rows) {
          const kept = Object.entries(row).filter(([column]) => !ignored.has(column));
          hash.update(
            JSON.stringify(kept, (_key, value: unknown) =>
              Buffer.isBuffer(value)
                ? value.toString("base64")
                : typeof value === "bigint"
                  ? String(value)
                  : value,
            ),
          );
          hash.update("\n");
        }
        hash.update(`-- ${table} --\n`);
      }
      return hash.digest("hex");
    },
    rows: (sql) => db.prepare(sql).all(),
    async close() {
      for (const agent of agents) agent.destroy();
      db.close();
      await running.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RegisteredNode extends Credential {
  deviceId: string;
  name: string;
  keys: CryptoKeyPair;
}

/** A node registered over the API and approved by the admin: its key, certificate and id. */
export async function registerApprovedNode(gateway: HostileGateway, name: string): Promise<RegisteredNode> {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, name);
  const enrolled = await gateway.call({ path: "/api/v1/enroll", body: JSON.stringify({ csr, name }) });
  if (enrolled.status !== 202) throw new Error(`enroll: ${enrolled.status} ${enrolled.text}`);
  const { requestId, deviceId } = enrolled.json as { requestId: string; deviceId: string };
  const approved = await gateway.adminCall({
    path: `/api/v1/devices/${deviceId}/approve`,
    body: "{}",
  });
  if (approved.status !== 200) throw new Error(`approve: ${approved.status} ${approved.text}`);
  const status = await gateway.call({ path: `/api/v1/enroll/${requestId}` });
  const { certificate } = status.json as { certificate?: string };
  if (!certificate) throw new Error(`no certificate: ${status.text}`);
  return { deviceId, name, keys, key: await exportPrivateKeyPem(keys.privateKey), cert: certificate };
}

/** A node session over mTLS with a raw WebSocket: resolves once the gateway's welcome arrived. */
export function openNodeSession(
  gateway: HostileGateway,
  credential: Credential | { headers: Record<string, string> },
): Promise<{ socket: WebSocket; welcome: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(gateway.url.replace(/^https:/, "wss:") + "/api/v1/connect", {
      ca: gateway.caPem,
      ...credential,
      handshakeTimeout: HANG_MS,
    });
    socket.once("message", (data) => {
      const welcome = JSON.parse(data.toString()) as Record<string, unknown>;
      if (welcome.type !== "welcome") reject(new Error(`no welcome: ${data.toString()}`));
      else resolve({ socket, welcome });
    });
    socket.once("unexpected-response", (_request, response) => {
      reject(new Error(`session refused: HTTP ${response.statusCode}`));
    });
    socket.once("error", reject);
  });
}

/** Sends a heartbeat on a session and waits for its ack: the session is up and answering. */
export function heartbeatRoundTrip(socket: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    const ts = Date.now();
    const timer = setTimeout(() => reject(new Error("no heartbeat_ack")), HANG_MS);
    const onMessage = (data: WebSocket.RawData) => {
      const message = JSON.parse(data.toString()) as { type?: string; ts?: number };
      if (message.type === "heartbeat_ack" && message.ts === ts) {
        clearTimeout(timer);
        socket.off("message", onMessage);
        resolve();
      }
    };
    socket.on("message", onMessage);
    if (socket.readyState !== WebSocket.OPEN) {
      clearTimeout(timer);
      reject(new Error(`the session is not open (readyState ${socket.readyState})`));
      return;
    }
    socket.send(JSON.stringify({ type: "heartbeat", ts }));
  });
}

/** A WebSocket upgrade to the node session with the given headers; resolves with the refusal. */
export function upgradeWith(
  gateway: HostileGateway,
  headers: Record<string, string>,
  credential?: Credential,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(gateway.url.replace(/^https:/, "wss:") + "/api/v1/connect", {
      ca: gateway.caPem,
      headers,
      ...credential,
      handshakeTimeout: HANG_MS,
    });
    socket.on("open", () => {
      socket.terminate();
      reject(new Error("the session opened"));
    });
    socket.on("unexpected-response", (_request, response) => {
      readReply(response).then((reply) => {
        socket.terminate();
        resolve(reply);
      }, reject);
    });
    socket.on("error", reject);
  });
}

/**
 * A node session opened before a run, to show after it that connected sessions stayed up: the
 * session is still open, still listed online, and still answers a heartbeat.
 */
export async function watchSession(gateway: HostileGateway, name: string) {
  const node = await registerApprovedNode(gateway, name);
  const { socket } = await openNodeSession(gateway, node);
  return {
    node,
    async expectStillUp(): Promise<void> {
      expect(socket.readyState, `the session of ${name}`).toBe(WebSocket.OPEN);
      expect(gateway.running.ctx.sessions.isOnline(node.deviceId), `${name} listed online`).toBe(true);
      await heartbeatRoundTrip(socket);
    },
    close: () => socket.terminate(),
  };
}
