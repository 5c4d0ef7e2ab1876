import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { IncomingMessage, ServerResponse } from "node:http";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import WebSocket from "ws";
import { pino } from "pino";
import { SessionRegistry, type LiveSession } from "../src/gateway/sessions.js";
import { SessionJournal } from "../src/gateway/session-journal.js";
import type { Store } from "../src/store/index.js";
import { NODE_FILES } from "../src/config/index.js";
import { registerApprovedNode, startBenchGateway, type BenchGateway } from "../bench/gateway-fixture.js";
import { closeTempStore, deviceRecord, openTempStore } from "./fixtures/store.js";

/** A session whose socket records how it was closed. */
function fakeSession(
  id: string,
  at: Date,
  expiresAt: number | null = null,
): LiveSession & { closed: number[] } {
  const closed: number[] = [];
  const socket = {
    CLOSED: 3,
    readyState: 1,
    close: (code: number) => closed.push(code),
    terminate: () => undefined,
    once: () => undefined,
  } as unknown as WebSocket;
  return {
    sessionId: id,
    deviceId: `dev_${id}`,
    name: id,
    socket,
    address: "127.0.0.1",
    connectedAt: at,
    lastHeartbeat: at,
    platform: null,
    version: null,
    hostname: null,
    uptimeSeconds: null,
    uptimeReportedAt: null,
    expiresAt,
    expiryReason: "token_expired",
    closed,
  };
}

describe("the session registry keeps time for all its sessions with one sweep and one timer", () => {
  afterEach(() => vi.useRealTimers());

  it("closes a silent session 4408 and an expired one 4401, counts each as a refusal, and stops when empty", () => {
    vi.useFakeTimers();
    const refused: string[] = [];
    const intervals = vi.spyOn(globalThis, "setInterval");
    const registry = new SessionRegistry(() => undefined, {
      now: () => new Date(Date.now()),
      heartbeatTimeoutMs: 45_000,
      sweepEveryMs: 5000,
      refused: (code) => refused.push(code),
    });
    const start = new Date(Date.now());
    const talkative = fakeSession("a", start);
    const silent = fakeSession("b", start);
    const expiring = fakeSession("c", start, Date.now() + 10_000);
    for (const session of [talkative, silent, expiring]) registry.add(session);
    // One interval for three sessions.
    expect(intervals).toHaveBeenCalledTimes(1);

    vi.advanceTimersByTime(10_000);
    expect(expiring.closed).toEqual([4401]);
    expect(refused).toEqual(["token_expired"]);

    // A refreshed token moves the end: no close at the old time.
    registry.remove(expiring);
    const refreshed = fakeSession("d", new Date(Date.now()), Date.now() + 1000);
    registry.add(refreshed);
    registry.setExpiry(refreshed, new Date(Date.now() + 60_000));
    vi.advanceTimersByTime(2000);
    expect(refreshed.closed).toEqual([]);

    for (let t = 0; t < 40_000; t += 5000) {
      talkative.lastHeartbeat = new Date(Date.now());
      vi.advanceTimersByTime(5000);
    }
    expect(silent.closed).toEqual([4408]);
    expect(talkative.closed).toEqual([]);
    expect(refused).toContain("heartbeat_timeout");

    for (const session of [talkative, silent, refreshed]) registry.remove(session);
    expect(registry.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    intervals.mockRestore();
  });

  it("a renewed certificate extends only certificate sessions", () => {
    vi.useFakeTimers();
    const registry = new SessionRegistry(() => undefined, {
      now: () => new Date(Date.now()),
      heartbeatTimeoutMs: 10 * 60_000,
      sweepEveryMs: 5000,
    });
    const cert = {
      ...fakeSession("e", new Date(Date.now()), Date.now() + 1000),
      expiryReason: "cert_expired" as const,
    };
    cert.deviceId = "dev_x";
    registry.add(cert);
    registry.extendCredential("dev_x", new Date(Date.now() + 120_000));
    vi.advanceTimersByTime(60_000);
    expect(cert.closed).toEqual([]);
    vi.advanceTimersByTime(60_000);
    expect(cert.closed).toEqual([4401]);
  });
});

describe("the session journal", () => {
  let dir: string;
  let store: Store;
  beforeAll(async () => {
    ({ dir, store } = await openTempStore("gh-journal-"));
    await store.upsertDevice(deviceRecord("dev_1", { status: "approved" }));
  });
  afterAll(() => closeTempStore(dir, store));

  it("writes opens and ends in order, and each device's last seen, once drained", async () => {
    const seen: string[] = [];
    const journal = new SessionJournal(store, pino({ level: "silent" }), (id, lastSeen) =>
      seen.push(`${id}@${lastSeen}`),
    );
    const open = (sessionId: string) =>
      journal.opened({
        sessionId,
        deviceId: "dev_1",
        address: "127.0.0.2",
        connectedAt: "2026-01-01T00:00:00.000Z",
        disconnectedAt: null,
        closeCode: null,
        closeReason: null,
      });
    open("ses_1");
    open("ses_2");
    // Closed in the same batch as its open: the end must not be lost.
    journal.closed(
      {
        sessionId: "ses_1",
        deviceId: "dev_1",
        at: "2026-01-01T00:01:00.000Z",
        closeCode: 1000,
        closeReason: null,
      },
      "127.0.0.2",
    );
    await journal.drain();
    expect(journal.pending).toBe(0);
    const db = new Database(path.join(dir, "gatehouse.db"), { readonly: true });
    const rows = db
      .prepare("SELECT session_id, disconnected_at, close_code FROM sessions ORDER BY session_id")
      .all();
    db.close();
    expect(rows).toEqual([
      { session_id: "ses_1", disconnected_at: "2026-01-01T00:01:00.000Z", close_code: 1000 },
      { session_id: "ses_2", disconnected_at: null, close_code: null },
    ]);
    expect(seen).toEqual(["dev_1@2026-01-01T00:01:00.000Z"]);
    expect(await store.getDevice("dev_1")).toMatchObject({
      lastSeen: "2026-01-01T00:01:00.000Z",
      address: "127.0.0.2",
    });
  });
});

describe("a live node session on a real gateway", () => {
  let gateway: BenchGateway;
  let nodeDir: string;
  let tlsFiles: { key: string; cert: string; ca: string };
  beforeAll(async () => {
    gateway = await startBenchGateway();
    nodeDir = mkdtempSync(path.join(os.tmpdir(), "gh-session-node-"));
    const home = path.join(nodeDir, "home");
    await registerApprovedNode(gateway, home, "memory");
    const read = (file: string) => readFileSync(path.join(home, file), "utf8");
    tlsFiles = {
      key: read(NODE_FILES.deviceKey),
      cert: read(NODE_FILES.deviceCert),
      ca: read(NODE_FILES.caCert),
    };
  }, 60_000);
  afterAll(async () => {
    await gateway?.close();
    rmSync(nodeDir, { recursive: true, force: true });
  });

  it("holds no upgrade request or response, and adds no interval of its own", async () => {
    const intervals = vi.spyOn(globalThis, "setInterval");
    const sockets: WebSocket[] = [];
    for (let i = 0; i < 3; i++) {
      const socket = new WebSocket(`wss://127.0.0.1:${gateway.port}/api/v1/connect`, tlsFiles);
      await new Promise<void>((resolve, reject) => {
        socket.once("message", () => resolve());
        socket.once("error", reject);
      });
      sockets.push(socket);
    }
    const sessions = gateway.running.ctx.sessions.all();
    expect(sessions).toHaveLength(3);
    for (const session of sessions) {
      for (const value of Object.values(session)) {
        expect(value).not.toBeInstanceOf(IncomingMessage);
        expect(value).not.toBeInstanceOf(ServerResponse);
      }
      // The TLS socket under the session no longer points at the upgrade's HTTP response…
      const raw = (session.socket as unknown as { _socket: { _httpMessage?: unknown } })._socket;
      expect(raw._httpMessage ?? null).toBeNull();
      // …and no listener on the session's WebSocket closes over the upgrade's request.
      expect(session.socket.listenerCount("error")).toBe(1);
    }
    // The three sessions share the registry's one sweep (started by the first).
    expect(intervals.mock.calls.length).toBeLessThanOrEqual(1);
    intervals.mockRestore();
    for (const socket of sockets) socket.close();
  });
});
