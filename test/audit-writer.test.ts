import path from "node:path";
import Database from "better-sqlite3";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditLog } from "../src/audit/audit-log.js";
import { verifyAuditChain } from "../src/audit/chain.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { SqliteAuditWriter } from "../src/store/sqlite-audit-writer.js";
import { openSqliteStore, type AuditWrite, type ExecRecord, type Store } from "../src/store/index.js";
import { closeTempStore, deviceRecord, openTempStore, registrationRecord } from "./fixtures/store.js";

let dir: string;
let file: string;
let store: Store;

beforeEach(async () => {
  ({ dir, file, store } = await openTempStore("gh-audit-writer-"));
});

afterEach(() => closeTempStore(dir, store));

function entry(n: number, subject = "dev1"): AuditWrite {
  return {
    event: {
      ts: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
      type: "exec.request",
      outcome: "success",
      actor: "admin",
      subject,
      address: null,
      code: null,
      // Key order and nested values are hashed as stored: they must survive the trip to the thread.
      details: { n, nested: { b: 1, a: [1, "x"] }, quote: 'say "hi"\n' },
    },
  };
}

function history(execId: string): ExecRecord {
  return {
    execId,
    deviceId: "dev1",
    requestedBy: "admin",
    command: "status",
    args: '["-v"]',
    requestedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:00:01.000Z",
    outcome: "completed",
    exitCode: 0,
    durationMs: 12,
    stdoutBytes: 34,
    stderrBytes: 0,
    code: null,
  };
}

/** The rows as another process (the `audit` CLI, an auditor with sqlite3) reads them from the file. */
function rowsOnDisk(): { auditRows: number; execRows: number } {
  const db = new Database(file, { readonly: true });
  try {
    const count = (table: string) =>
      (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { auditRows: count("audit_events"), execRows: count("exec_history") };
  } finally {
    db.close();
  }
}

describe("the audit writer thread", () => {
  it("chains batches written off the event loop exactly as the in-thread store does", async () => {
    // Batch after batch through the same prepared statements, some with their history rows.
    const ids: number[] = [];
    for (let b = 0; b < 20; b++) {
      const writes = Array.from({ length: 5 }, (_, i) => entry(b * 5 + i));
      writes[0]!.exec = history(`exe_${b}`);
      ids.push(...(await store.appendAudit(writes)));
    }
    expect(ids).toEqual(Array.from({ length: 100 }, (_, n) => n + 1));

    const entries = await store.listAudit({ limit: 1000 });
    expect(entries.map((e) => e.seq)).toEqual(ids);
    expect(entries.map((e) => e.details.n)).toEqual(Array.from({ length: 100 }, (_, n) => n));
    expect(entries[7]!.details).toEqual({ n: 7, nested: { b: 1, a: [1, "x"] }, quote: 'say "hi"\n' });
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true, checked: 100 });
    expect(rowsOnDisk()).toEqual({ auditRows: 100, execRows: 20 });
    expect(await store.listExecs("dev1", 100)).toHaveLength(20);
    expect((await store.listExecs("dev1", 100)).find((h) => h.execId === "exe_3")).toMatchObject(
      history("exe_3"),
    );
  });

  it("continues the chain of entries an earlier gateway wrote, and `audit verify` holds across both", async () => {
    await store.appendAudit([entry(1), entry(2)]);
    await store.close();
    // The next start: a new store, a new writer thread, the same file.
    store = await openSqliteStore(file);
    await store.migrate();
    await store.appendAudit([entry(3)]);
    const entries = await store.listAudit({ limit: 10 });
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true, checked: 3 });
  });

  it("group-commits concurrent records through the writer, reports each commit and the queue depth", async () => {
    const audit = new AuditLog(store, pino({ level: "silent" }), () => new Date("2026-01-01T00:00:00Z"));
    const commits: number[] = [];
    audit.onCommitted((entries, seconds) => {
      expect(seconds).toBeGreaterThanOrEqual(0);
      commits.push(entries);
    });
    const all = Array.from({ length: 300 }, (_, n) =>
      audit.record({ type: "t", outcome: "success", details: { n } }),
    );
    expect(audit.queueDepth).toBe(300);
    await Promise.all(all);
    expect(audit.queueDepth).toBe(0);
    expect(commits.reduce((a, b) => a + b, 0)).toBe(300);
    const entries = await store.listAudit({ limit: 1000 });
    expect(entries.map((e) => e.details.n)).toEqual(Array.from({ length: 300 }, (_, n) => n));
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true, checked: 300 });
  });

  it("rejects a batch the database refuses, keeps nothing of it, and goes on chaining", async () => {
    await store.appendAudit([{ ...entry(1), exec: history("exe_dup") }]);
    const refused = await store.appendAudit([entry(2), { ...entry(3), exec: history("exe_dup") }]).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(GatehouseError);
    expect(refused).toMatchObject({ code: "unavailable" });
    expect((refused as Error).message).toMatch(/SQLITE_CONSTRAINT/);
    expect(rowsOnDisk()).toEqual({ auditRows: 1, execRows: 1 });

    expect(await store.appendAudit([entry(4)])).toEqual([2]);
    const entries = await store.listAudit({ limit: 10 });
    expect(entries.map((e) => e.details.n)).toEqual([1, 4]);
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true, checked: 2 });
  });

  it("rejects what it holds when its thread cannot work, instead of leaving a caller waiting", async () => {
    const writer = new SqliteAuditWriter(path.join(dir, "no-such-folder", "gatehouse.db"));
    const refused = await writer.append([entry(1)]).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({ code: "unavailable" });
    expect(writer.pending).toBe(0);
    expect(writer.running).toBe(false);
    await writer.close();
  });

  it("rejects the batches in flight when the thread dies, and the next append starts a new one", async () => {
    const writer = new SqliteAuditWriter(file);
    expect(await writer.append([entry(1)])).toEqual([1]);
    const inFlight = writer.append([entry(2)]);
    // The thread is ended from outside (as an out-of-memory kill of the thread would).
    await (writer as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    const outcome = await inFlight.then(
      (ids) => ({ ids }),
      (error: unknown) => ({ error }),
    );
    // Either the batch was committed before the thread ended, or its caller hears it was not.
    if ("error" in outcome) expect(outcome.error).toMatchObject({ code: "unavailable" });
    else expect(outcome.ids).toEqual([2]);
    expect(writer.pending).toBe(0);

    const [next] = await writer.append([entry(3)]);
    const entries = await store.listAudit({ limit: 10 });
    expect(entries.at(-1)).toMatchObject({ id: next, details: { n: 3 } });
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true });
    await writer.close();
  });

  it("finishes what it holds on close, ends its thread, and refuses appends after", async () => {
    const writer = new SqliteAuditWriter(file);
    const last = writer.append([entry(1), entry(2)]);
    await writer.close();
    expect(await last).toEqual([1, 2]);
    expect(writer.running).toBe(false);
    await expect(writer.append([entry(3)])).rejects.toMatchObject({ code: "unavailable" });
    expect(rowsOnDisk()).toEqual({ auditRows: 2, execRows: 0 });
  });

  it("lets the gateway's own transactions write while the thread commits (no busy-snapshot failure)", async () => {
    // Registrations read then write in one transaction; audit commits land between those steps.
    const now = "2026-01-01T00:00:00.000Z";
    const later = "2026-01-01T00:15:00.000Z";
    const appends: Promise<number[]>[] = [];
    const registrations: Promise<unknown>[] = [];
    for (let n = 0; n < 150; n++) {
      appends.push(store.appendAudit([entry(n)]));
      registrations.push(
        store.recordRegistration({
          maxPending: 1000,
          registration: registrationRecord(`req_${n}`, `dev_${n}`, { createdAt: now, expiresAt: later }),
          device: deviceRecord(`dev_${n}`, { createdAt: now, updatedAt: now }),
        }),
      );
      if (n % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const settled = await Promise.allSettled([...appends, ...registrations]);
    expect(
      settled.filter((s) => s.status === "rejected").map((s) => String((s as PromiseRejectedResult).reason)),
    ).toEqual([]);
    expect(await store.countPendingRegistrations(now)).toBe(150);
    expect(verifyAuditChain(await store.listAudit({ limit: 1000 }))).toMatchObject({
      ok: true,
      checked: 150,
    });
  });
});
