/**
 * The node agent against a hostile gateway: a fake gateway (real TLS, the node's pinned CA, a real
 * WebSocket) sends arbitrary and mutated frames of every gateway message type. The agent does not
 * crash, runs nothing its owner did not allow, keeps its files (ca.pem, the pin in node.json, its
 * key and certificate) unless a rotation is signed by the pinned CA, and still answers on its
 * session (or on the next one) afterwards.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import WebSocket, { WebSocketServer } from "ws";
import { junkString, junkValue, longString, pem } from "./arbitraries.js";
import { runs } from "./harness.js";
import { fakeGatewayTls } from "../fixtures/fake-gateway.js";
import { loadNodeConfig, NODE_FILES, writeJsonAtomic } from "../../src/config/index.js";
import { NodeAgent } from "../../src/node/agent.js";
import { isErrorCode } from "../../src/protocol/errors.js";

let home: string;
let server: https.Server;
let wss: WebSocketServer;
let agent: NodeAgent;
let deviceId: string;
let current: WebSocket | undefined;
let connections = 0;
let nextConnection: { promise: Promise<WebSocket>; resolve: (socket: WebSocket) => void };
const received: { id?: string; type?: string; outcome?: string }[] = [];

/**
 * The heartbeat paces the agent arms (its setInterval delays), recorded without changing them: a
 * pace the gateway sends must not become a timer of 0 ms or one past what a timer can hold.
 */
const paces: number[] = [];
const realSetInterval = globalThis.setInterval;
vi.spyOn(globalThis, "setInterval").mockImplementation(((
  callback: (...args: unknown[]) => void,
  ms?: number,
  ...args: unknown[]
) => {
  if (new Error().stack?.includes("/src/node/agent.")) paces.push(Number(ms));
  return realSetInterval(callback, ms, ...args);
}) as typeof setInterval);

function armNextConnection() {
  let resolve!: (socket: WebSocket) => void;
  const promise = new Promise<WebSocket>((r) => (resolve = r));
  nextConnection = { promise, resolve };
}

function welcome(): string {
  return JSON.stringify({
    type: "welcome",
    sessionId: "ses_fake",
    deviceId,
    heartbeatIntervalMs: 15_000,
    serverTime: new Date().toISOString(),
  });
}

function filesDigest(): string {
  const hash = createHash("sha256");
  for (const file of [NODE_FILES.caCert, NODE_FILES.config, NODE_FILES.deviceCert, NODE_FILES.deviceKey])
    hash.update(readFileSync(path.join(home, file)));
  return hash.digest("hex");
}

beforeAll(async () => {
  const tls = await fakeGatewayTls("Fake gateway CA");
  deviceId = tls.deviceId;
  server = https.createServer(tls.serverOptions);
  wss = new WebSocketServer({ server, path: "/api/v1/connect", maxPayload: 1024 * 1024 });
  armNextConnection();
  wss.on("connection", (socket) => {
    connections += 1;
    current = socket;
    socket.on("message", (data) => {
      try {
        const message = JSON.parse(data.toString()) as { id?: string; type?: string; ts?: number };
        received.push(message);
        if (message.type === "heartbeat")
          socket.send(
            JSON.stringify({ type: "heartbeat_ack", ts: message.ts, serverTime: new Date().toISOString() }),
          );
      } catch {
        received.push({ type: "unparsable" });
      }
    });
    socket.on("error", () => {});
    socket.send(welcome());
    const arrived = nextConnection;
    armNextConnection();
    arrived.resolve(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  home = mkdtempSync(path.join(os.tmpdir(), "gh-hostile-node-"));
  writeJsonAtomic(path.join(home, NODE_FILES.config), {
    gatewayUrl: `https://127.0.0.1:${port}`,
    caFingerprint: tls.caFingerprint,
    deviceId,
    logLevel: "silent",
    exec: { allow: [] },
    reconnect: { initialDelay: "20ms", maxDelay: "200ms" },
  });
  writeFileSync(path.join(home, NODE_FILES.caCert), tls.caPem);
  writeFileSync(path.join(home, NODE_FILES.deviceCert), tls.certPem);
  writeFileSync(path.join(home, NODE_FILES.deviceKey), tls.keyPem, { mode: 0o600 });
  const { config } = loadNodeConfig(home);
  agent = new NodeAgent(
    home,
    config,
    { caPem: tls.caPem, keyPem: tls.keyPem, certPem: tls.certPem },
    pino({ level: "silent" }),
  );
  const first = nextConnection.promise;
  agent.start();
  await first;
});

afterAll(async () => {
  await agent?.stop();
  for (const client of wss?.clients ?? []) client.terminate();
  wss?.close();
  server?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

const notice = fc.record(
  {
    statement: fc.oneof(
      fc.record(
        {
          version: fc.oneof(fc.constant(1), junkValue),
          previousFingerprint: fc.oneof(junkString(80), fc.constant("sha256:" + "0".repeat(64))),
          nextFingerprint: fc.oneof(junkString(80), fc.constant("sha256:" + "f".repeat(64))),
          nextCaPem: fc.oneof(
            junkString(200),
            fc.uint8Array({ maxLength: 400 }).map((d) => pem("CERTIFICATE", d)),
            fc.constant(pem("CERTIFICATE", Buffer.alloc(300, 0x30))),
          ),
          issuedAt: fc.oneof(
            fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
            junkString(30),
          ),
        },
        { requiredKeys: [] },
      ),
      junkValue,
    ),
    signature: fc.oneof(fc.base64String({ maxLength: 200 }), junkValue),
  },
  { requiredKeys: [] },
);

/** Frames of every gateway message type, valid-looking and mutated, plus junk and huge frames. */
const gatewayFrame: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc
    .record(
      {
        type: fc.constant("welcome"),
        sessionId: fc.oneof(junkString(60), longString),
        deviceId: junkString(60),
        heartbeatIntervalMs: fc.oneof(
          fc.constantFrom(-1, 0, 1, 2 ** 31, 1e308, 0.5, 15_000),
          fc.integer({ min: -100, max: 10 ** 12 }),
          junkValue,
        ),
        serverTime: junkString(40),
        credentialExpiresAt: junkString(40),
        caRotation: notice,
      },
      { requiredKeys: ["type"] },
    )
    .map((m) => JSON.stringify(m)),
  fc
    .record(
      { type: fc.constant("heartbeat_ack"), ts: junkValue, serverTime: junkValue },
      { requiredKeys: ["type"] },
    )
    .map((m) => JSON.stringify(m)),
  fc
    .record({ type: fc.constant("token_refreshed"), expiresAt: junkValue }, { requiredKeys: ["type"] })
    .map((m) => JSON.stringify(m)),
  notice.map((caRotation) => JSON.stringify({ type: "ca_rotation", caRotation })),
  fc
    .record(
      {
        type: fc.constant("exec"),
        id: fc.oneof(junkString(70), fc.uuid()),
        command: fc.oneof(
          fc.constantFrom("sh", "/bin/sh", "rm", "status ", "../status", "STATUS", "node"),
          junkString(40),
        ),
        args: fc.oneof(fc.array(junkString(30), { maxLength: 70 }), junkValue),
        timeoutMs: fc.oneof(fc.integer({ min: -5, max: 2 ** 31 + 10 }), fc.constant(1e15), junkValue),
        maxOutputBytes: fc.oneof(fc.integer({ min: -5, max: 2 ** 40 }), junkValue),
      },
      { requiredKeys: ["type"] },
    )
    .map((m) => JSON.stringify(m)),
  fc
    .oneof(
      fc.constantFrom("__proto__", "constructor", "hello", "heartbeat", "exec_result", ""),
      junkString(20),
    )
    .map((type) => JSON.stringify({ type })),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null"),
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
  fc
    .integer({ min: 512 * 1024, max: 1536 * 1024 })
    .map((n) => JSON.stringify({ type: "heartbeat_ack", ts: 1, serverTime: "x".repeat(n) })),
  fc.constant("[".repeat(20_000) + "]".repeat(20_000)),
);

/** Asks the agent to run the built-in `status` until it answers, reconnecting sessions as needed. */
async function probe(n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  const id = `probe-${n}`;
  while (Date.now() < deadline) {
    let socket = current;
    if (!socket || socket.readyState !== WebSocket.OPEN) socket = await nextConnection.promise;
    socket.send(
      JSON.stringify({
        type: "exec",
        id,
        command: "status",
        args: [],
        timeoutMs: 5000,
        maxOutputBytes: 65_536,
      }),
    );
    const answered = await new Promise<boolean>((resolve) => {
      const started = Date.now();
      const check = setInterval(() => {
        if (received.some((m) => m.id === id && m.type === "exec_result")) {
          clearInterval(check);
          resolve(true);
        } else if (Date.now() - started > 2000 || socket.readyState !== WebSocket.OPEN) {
          clearInterval(check);
          resolve(false);
        }
      }, 10);
    });
    if (answered) return;
  }
  throw new Error(`the agent did not answer a status probe (state ${agent.status.state})`);
}

describe("a hostile gateway, node side", () => {
  it("any frame from the gateway: the agent survives, runs nothing unallowed, keeps its files, answers after", async () => {
    const before = filesDigest();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(gatewayFrame, { minLength: 1, maxLength: 4 }), async (frames) => {
        n += 1;
        let socket = current;
        if (!socket || socket.readyState !== WebSocket.OPEN) socket = await nextConnection.promise;
        const execIds = new Set<string>();
        const sessionsBefore = connections;
        paces.length = 0;
        // Only a frame over the agent's own size limit may end the session (WebSocket close 1009).
        const withinLimits = frames.every((frame) => Buffer.byteLength(frame) <= 1024 * 1024);
        for (const frame of frames) {
          try {
            const parsed = JSON.parse(frame.toString()) as { type?: string; id?: unknown; command?: unknown };
            if (parsed?.type === "exec" && typeof parsed.id === "string" && parsed.command !== "status")
              execIds.add(parsed.id);
          } catch {
            // not JSON: nothing to track
          }
          if (socket.readyState === WebSocket.OPEN) socket.send(frame, { binary: Buffer.isBuffer(frame) });
        }
        await probe(n);
        for (const message of received) {
          if (message.type === "exec_result" && message.id !== undefined && execIds.has(message.id))
            expect(message.outcome, `exec ${message.id} ran without being allowed`).toBe("refused");
        }
        expect(filesDigest(), "the node's CA, pin, key and certificate").toBe(before);
        for (const pace of paces)
          expect(pace >= 1000 && pace <= 2 ** 31 - 1, `a heartbeat every ${pace} ms`).toBe(true);
        if (withinLimits) expect(connections, "the session stayed up (no reconnect)").toBe(sessionsBefore);
        expect(agent.status.state, "the agent is not stopped").not.toBe("stopped");
        if (agent.status.lastError) expect(isErrorCode(agent.status.lastError.code)).toBe(true);
      }),
      runs(80),
    );
  });
});
