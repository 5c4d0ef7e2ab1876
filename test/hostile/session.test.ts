/**
 * The node session, gateway side: a real node (its own mTLS certificate) sends arbitrary and
 * mutated frames of every message type (src/protocol/messages.ts). The gateway answers or closes
 * that session with a catalogue close code and reason; nothing stored changes; other sessions stay
 * up (a raw session still answers heartbeats, a real node agent still runs `status`). A node's
 * answer to an exec request never chooses the operator's error.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import WebSocket from "ws";
import { junkString, junkValue, longString, TRICKY_CHARS } from "./arbitraries.js";
import {
  expectCatalogueError,
  heartbeatRoundTrip,
  openNodeSession,
  registerApprovedNode,
  runs,
  startHostileGateway,
  STATE_TABLES,
  type HostileGateway,
  type RegisteredNode,
} from "./harness.js";
import { closeCodeFor, isErrorCode } from "../../src/protocol/errors.js";
import { NodeAgent } from "../../src/node/agent.js";
import { loadNodeConfig, NODE_FILES, writeJsonAtomic } from "../../src/config/index.js";

let gateway: HostileGateway;
let rogue: RegisteredNode;
let bystander: RegisteredNode;
let watcher: RegisteredNode;
let watcherSocket: WebSocket;
let agent: NodeAgent;
let agentHome: string;

/** A session's end changes its device's last-seen fields; nothing else may change. */
const SESSION_COLUMNS = { devices: ["last_seen", "address", "updated_at"] };

beforeAll(async () => {
  gateway = await startHostileGateway();
  rogue = await registerApprovedNode(gateway, "session-rogue");
  bystander = await registerApprovedNode(gateway, "session-bystander");
  watcher = await registerApprovedNode(gateway, "session-watcher");
  watcherSocket = (await openNodeSession(gateway, watcher)).socket;

  // A real node agent, started in this process on its own home.
  agentHome = mkdtempSync(path.join(os.tmpdir(), "gh-hostile-agent-"));
  const fingerprint = new X509Certificate(gateway.caPem).fingerprint256.replace(/:/g, "").toLowerCase();
  writeJsonAtomic(path.join(agentHome, NODE_FILES.config), {
    gatewayUrl: gateway.url,
    caFingerprint: `sha256:${fingerprint}`,
    deviceId: bystander.deviceId,
    logLevel: "silent",
  });
  const { config } = loadNodeConfig(agentHome);
  agent = new NodeAgent(
    agentHome,
    config,
    { caPem: gateway.caPem, keyPem: bystander.key, certPem: bystander.cert },
    pino({ level: "silent" }),
  );
  const connected = new Promise<void>((resolve) =>
    agent.on("state", (state: string) => state === "connected" && resolve()),
  );
  agent.start();
  await connected;
});

afterAll(async () => {
  await agent?.stop();
  watcherSocket?.terminate();
  await gateway?.close();
  if (agentHome) rmSync(agentHome, { recursive: true, force: true });
});

/** Frames of every node message type, valid and mutated, plus junk text, binary and huge frames. */
const nodeFrame: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc
    .record(
      {
        type: fc.constant("hello"),
        version: fc.oneof(fc.constant("0.1.0"), junkString(80), junkValue),
        platform: fc.oneof(fc.constant("linux-x64"), junkString(80), junkValue),
        hostname: fc.oneof(junkString(300), junkValue),
        uptimeSeconds: fc.oneof(fc.double(), junkValue),
      },
      { requiredKeys: ["type"] },
    )
    .map((m) => JSON.stringify(m)),
  fc
    .record(
      { type: fc.constant("heartbeat"), ts: fc.oneof(fc.double(), junkValue) },
      { requiredKeys: ["type"] },
    )
    .map((m) => JSON.stringify(m)),
  fc
    .record(
      { type: fc.constant("token_refresh"), accessToken: fc.oneof(junkString(100), longString, junkValue) },
      { requiredKeys: ["type"] },
    )
    .map((m) => JSON.stringify(m)),
  fc
    .record(
      {
        type: fc.constant("exec_result"),
        id: fc.oneof(junkString(70), fc.constant("exe_unknown")),
        outcome: fc.oneof(
          fc.constantFrom("completed", "refused", "timeout", "truncated", "failed"),
          junkValue,
        ),
        exitCode: fc.oneof(fc.integer(), fc.constant(null), junkValue),
        signal: fc.oneof(fc.constant(null), junkString(40)),
        stdout: fc.oneof(fc.base64String({ maxLength: 200 }), junkValue),
        stderr: fc.oneof(fc.base64String({ maxLength: 200 }), junkValue),
        durationMs: fc.oneof(fc.double(), junkValue),
        code: fc.oneof(
          fc.constantFrom("device_revoked", "internal_error", "insufficient_scope"),
          junkString(70),
        ),
        message: fc.oneof(junkString(200), fc.constantFrom(...TRICKY_CHARS)),
      },
      { requiredKeys: ["type"] },
    )
    .map((m) => JSON.stringify(m)),
  fc
    .oneof(
      fc.constantFrom("welcome", "exec", "__proto__", "constructor", "toString", "hasOwnProperty", ""),
      junkString(20),
    )
    .map((type) => JSON.stringify({ type, ts: 1 })),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null"),
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
  fc
    .integer({ min: 64 * 1024, max: 200 * 1024 })
    .map((n) => JSON.stringify({ type: "heartbeat", ts: 1, pad: "x".repeat(n) })),
  fc.constantFrom(
    '{"type":"heartbeat","ts":1,"__proto__":{"type":"exec_result"}}',
    "[".repeat(5000) + "]".repeat(5000),
  ),
);

interface Outcome {
  closed?: { code: number; reason: string };
  acked: boolean;
}

/** Sends the frames then a heartbeat; resolves with the ack, or with how the gateway closed it. */
function exchange(socket: WebSocket, frames: (string | Buffer)[]): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ts = Date.now() + Math.random();
    const timer = setTimeout(() => reject(new Error("the gateway neither answered nor closed")), 20_000);
    socket.on("message", (data) => {
      const message = JSON.parse(data.toString()) as { type?: string; ts?: number };
      if (message.type === "heartbeat_ack" && message.ts === ts) {
        clearTimeout(timer);
        resolve({ acked: true });
      }
    });
    socket.on("close", (code, reason) => {
      clearTimeout(timer);
      resolve({ acked: false, closed: { code, reason: reason.toString() } });
    });
    for (const frame of frames) socket.send(frame, { binary: Buffer.isBuffer(frame) });
    socket.send(JSON.stringify({ type: "heartbeat", ts }));
  });
}

async function othersStillUp(): Promise<void> {
  await heartbeatRoundTrip(watcherSocket);
  expect(agent.status.state, "the node agent's session").toBe("connected");
  expect(gateway.running.ctx.sessions.isOnline(bystander.deviceId)).toBe(true);
}

describe("hostile node session frames", () => {
  it("any frame from a node: an answer, or a close with a catalogue code; nothing stored; others stay up", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(nodeFrame, { minLength: 1, maxLength: 3 }), async (frames) => {
        const before = await gateway.snapshot(STATE_TABLES, SESSION_COLUMNS);
        const { socket } = await openNodeSession(gateway, rogue);
        const outcome = await exchange(socket, frames);
        socket.terminate();
        if (outcome.closed) {
          const { code, reason } = outcome.closed;
          expect(isErrorCode(reason), `close reason ${JSON.stringify(reason)} (code ${code})`).toBe(true);
          expect(code, `the close code of ${reason}`).toBe(closeCodeFor(reason as never));
        }
        await new Promise(
          (resolve) => socket.once("close", resolve).readyState === WebSocket.CLOSED && resolve(null),
        );
        expect(await gateway.snapshot(STATE_TABLES, SESSION_COLUMNS), "stored state").toBe(before);
        await othersStillUp();
      }),
      runs(100),
    );
  });

  it("a node's answer to an exec request never picks the operator's error", async () => {
    const answer = fc.record(
      {
        outcome: fc.oneof(
          fc.constantFrom("completed", "refused", "timeout", "truncated", "failed"),
          junkValue,
        ),
        exitCode: fc.oneof(fc.integer({ min: -1, max: 255 }), fc.constant(null)),
        signal: fc.oneof(fc.constant(null), fc.constantFrom("SIGKILL", "\u001b[2J")),
        stdout: fc.oneof(fc.base64String({ maxLength: 100 }), junkString(40)),
        stderr: fc.oneof(fc.base64String({ maxLength: 100 }), junkString(40)),
        durationMs: fc.oneof(fc.nat(), fc.double()),
        code: fc.oneof(
          fc.constantFrom(
            "device_revoked",
            "device_denied",
            "insufficient_scope",
            "invalid_token",
            "internal_error",
            "rate_limited",
            "not_found",
            "command_not_allowed",
          ),
          junkString(40),
        ),
        message: fc.oneof(junkString(200), fc.constant("\u001b]0;owned\u0007\u001b[2J\u001b[31mREVOKED")),
      },
      { requiredKeys: ["outcome", "exitCode", "signal", "stdout", "stderr", "durationMs"] },
    );
    // The codes the gateway itself picks for an exec (a failed start is the operator's request
    // problem); a node's own `code` may never surface as the operator's error.
    const allowed = new Set([
      "command_not_allowed",
      "exec_timeout",
      "node_offline",
      "unavailable",
      "invalid_request",
    ]);
    let socket: WebSocket | undefined;
    await fc.assert(
      fc.asyncProperty(answer, async (fields) => {
        if (!socket || socket.readyState !== WebSocket.OPEN)
          socket = (await openNodeSession(gateway, rogue)).socket;
        const session = socket;
        await gateway.running.ctx.background.drain();
        const refusalsBefore = countOperatorRefusals();
        session.removeAllListeners("message");
        session.on("message", (data) => {
          const message = JSON.parse(data.toString()) as { type?: string; id?: string };
          if (message.type === "exec")
            session.send(JSON.stringify({ type: "exec_result", id: message.id, ...fields }));
        });
        const reply = await gateway.adminCall({
          path: `/api/v1/nodes/${rogue.deviceId}/exec`,
          body: JSON.stringify({ command: "status", timeoutMs: 5000 }),
        });
        const context = `node answered ${JSON.stringify(fields)}`;
        if (reply.status === 200) {
          const body = reply.json as Record<string, unknown>;
          expect(["completed", "refused", "timeout", "truncated", "failed"], context).toContain(body.outcome);
        } else {
          expectCatalogueError(reply, context);
          expect(allowed.has((reply.json as { error: string }).error), `${context} -> ${reply.text}`).toBe(
            true,
          );
        }
        await gateway.running.ctx.background.drain();
        expect(countOperatorRefusals(), `${context}: no auth.refused against the operator`).toBe(
          refusalsBefore,
        );
      }),
      runs(100),
    );
    socket?.terminate();
    await othersStillUp();
  });

  it("after the run: the real node agent still runs `status` for an operator", async () => {
    const reply = await gateway.adminCall({
      path: `/api/v1/nodes/${bystander.deviceId}/exec`,
      body: JSON.stringify({ command: "status" }),
    });
    expect(reply.status, reply.text).toBe(200);
    expect((reply.json as { outcome: string }).outcome).toBe("completed");
    await othersStillUp();
  });
});

/** Refusals the audit log holds (one row each, or a summary row per address and code). */
function countOperatorRefusals(): number {
  const rows = gateway.rows("SELECT count(*) AS n FROM audit_events WHERE type LIKE 'auth.refused%'");
  return Number((rows[0] as { n: number }).n);
}
