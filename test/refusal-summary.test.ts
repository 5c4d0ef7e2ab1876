import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../src/audit/audit-log.js";
import { AuditLog } from "../src/audit/audit-log.js";
import { verifyAuditChain } from "../src/audit/chain.js";
import { RefusalSummary, type Schedule } from "../src/audit/refusal-summary.js";
import { openSqliteStore } from "../src/store/index.js";

const T0 = Date.parse("2025-03-01T10:00:00.000Z");
const WINDOW = 60_000;

/** A clock the test moves, a timer the test fires, and a sink that keeps what was written. */
function harness(options: ConstructorParameters<typeof RefusalSummary>[2] = {}) {
  let now = T0;
  const written: { event: AuditEvent; durable: boolean }[] = [];
  let pendingTimer: (() => void) | undefined;
  const schedule: Schedule = (fire) => {
    pendingTimer = fire;
    return () => (pendingTimer = undefined);
  };
  const summary = new RefusalSummary(
    {
      background: async (event) => void written.push({ event, durable: false }),
      durable: async (event) => void written.push({ event, durable: true }),
    },
    () => new Date(now),
    { windowMs: WINDOW, ...options },
    schedule,
  );
  return {
    summary,
    written,
    advance: (ms: number) => (now += ms),
    fireTimer: () => pendingTimer?.(),
    rows: (type: string) => written.filter((w) => w.event.type === type).map((w) => w.event),
  };
}

const refusal = (address: string, code = "missing_credentials", n = 0): AuditEvent => ({
  type: "auth.refused",
  outcome: "failure",
  address,
  code,
  details: {
    route: "/api/v1/devices",
    credential: "none",
    fingerprint: `sha256:${String(n % 20).padStart(4, "0")}`,
  },
});

describe("refusal summaries", () => {
  it("writes the first few of 1,000 refusals from one address and one summary counting the rest", async () => {
    const h = harness({ individualPerKey: 5 });
    for (let i = 0; i < 1000; i++) {
      h.summary.refuse(refusal("203.0.113.7", "missing_credentials", i));
      h.advance(10); // 10 s in all: one window
    }
    expect(h.rows("auth.refused")).toHaveLength(5);
    expect(h.rows("auth.refused.summary")).toHaveLength(0); // the window has not ended

    h.advance(WINDOW);
    h.fireTimer();
    const [summary, ...more] = h.rows("auth.refused.summary");
    expect(more).toHaveLength(0);
    expect(summary).toMatchObject({
      outcome: "failure",
      address: "203.0.113.7",
      code: "missing_credentials",
      details: {
        count: 995,
        individual: 5,
        routes: ["/api/v1/devices"],
        credentials: ["none"],
        window: { start: "2025-03-01T10:00:00.000Z", end: "2025-03-01T10:01:00.000Z" },
      },
    });
    // Samples are bounded: 20 distinct fingerprint prefixes were tried, 8 are kept.
    expect((summary!.details!.fingerprints as string[]).length).toBe(8);
    expect(h.written).toHaveLength(6);
  });

  it("counts addresses and codes apart, and starts again in the next window", () => {
    const h = harness({ individualPerKey: 2 });
    for (let i = 0; i < 10; i++) {
      h.summary.refuse(refusal("198.51.100.1"));
      h.summary.refuse(refusal("198.51.100.2"));
      h.summary.refuse(refusal("198.51.100.2", "invalid_token"));
    }
    h.advance(WINDOW); // the next refusal, in the next window, writes the last window's summaries
    h.summary.refuse(refusal("198.51.100.1"));
    const summaries = h.rows("auth.refused.summary").map((e) => [e.address, e.code, e.details!.count]);
    expect(summaries).toEqual([
      ["198.51.100.1", "missing_credentials", 8],
      ["198.51.100.2", "missing_credentials", 8],
      ["198.51.100.2", "invalid_token", 8],
    ]);
    // 3 keys x 2 individual, then the new window's first refusal is written as it is.
    expect(h.rows("auth.refused")).toHaveLength(7);
  });

  it("holds at most maxKeys keys for 100,000 distinct addresses and folds the rest into one bucket", async () => {
    const h = harness({ maxKeys: 1000, individualPerKey: 5, individualPerWindow: 100 });
    for (let i = 0; i < 100_000; i++) {
      h.summary.refuse(refusal(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`));
      expect(h.summary.keys).toBeLessThanOrEqual(1001);
    }
    await h.summary.stop();
    const individual = h.rows("auth.refused");
    const summaries = h.rows("auth.refused.summary");
    // One window's rows are bounded by the per-window cap plus one summary per held key plus the fold.
    expect(individual.length).toBeGreaterThan(0);
    expect(individual.length).toBeLessThanOrEqual(100);
    expect(summaries.length).toBeLessThanOrEqual(1000 + 1);
    const folded = summaries.filter((s) => s.details!.otherAddresses === true);
    expect(folded).toHaveLength(1);
    expect(folded[0]).toMatchObject({
      address: null,
      code: "missing_credentials",
      details: { count: 99_000 },
    });
    expect((folded[0]!.details!.addressSample as string[]).length).toBeLessThanOrEqual(8);
    // Nothing is lost: individual rows plus summary counts are every refusal.
    const counted = summaries.reduce((sum, s) => sum + (s.details!.count as number), 0);
    expect(individual.length + counted).toBe(100_000);
  });

  it("stop() writes the pending summaries durably, and a refusal after it is still written", async () => {
    const h = harness({ individualPerKey: 1 });
    for (let i = 0; i < 50; i++) h.summary.refuse(refusal("192.0.2.9"));
    await h.summary.stop();
    expect(h.written.filter((w) => w.durable).map((w) => [w.event.type, w.event.details!.count])).toEqual([
      ["auth.refused.summary", 49],
    ]);
    h.summary.refuse(refusal("192.0.2.9"));
    expect(h.rows("auth.refused")).toHaveLength(2);
  });

  it("counts instead of queueing once too many refusal writes are in flight", () => {
    const settle: (() => void)[] = [];
    const written: AuditEvent[] = [];
    const summary = new RefusalSummary(
      {
        background: (event) => new Promise<void>((resolve) => (written.push(event), settle.push(resolve))),
        durable: async () => undefined,
      },
      () => new Date(T0),
      { individualPerKey: 1000, individualPerWindow: 1000, maxPendingWrites: 3 },
      () => () => undefined,
    );
    for (let i = 0; i < 100; i++) summary.refuse(refusal(`192.0.2.${i}`));
    expect(written).toHaveLength(3);
  });
});

describe("refusal summaries in the audit log", () => {
  it("chain like any entry: the log verifies with summaries in it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-refusals-"));
    const store = await openSqliteStore(path.join(dir, "gatehouse.db"));
    try {
      await store.migrate();
      const pending: Promise<unknown>[] = [];
      const audit = new AuditLog(
        store,
        pino({ level: "silent" }),
        () => new Date(T0),
        (work) => pending.push(work),
        { individualPerKey: 3 },
      );
      await audit.record({ type: "gateway.start", outcome: "success" });
      for (let i = 0; i < 1000; i++) audit.recordRefusal(refusal("203.0.113.7"));
      await audit.close();
      await Promise.all(pending);
      const entries = await store.listAudit({ limit: 1000 });
      expect(entries.map((e) => e.type)).toEqual([
        "gateway.start",
        "auth.refused",
        "auth.refused",
        "auth.refused",
        "auth.refused.summary",
      ]);
      expect(entries.at(-1)!.details).toMatchObject({ count: 997 });
      expect(verifyAuditChain(entries)).toMatchObject({ ok: true, checked: 5 });
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
