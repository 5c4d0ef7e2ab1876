import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditLog } from "../src/audit/audit-log.js";
import { verifyAuditChain } from "../src/audit/chain.js";
import { openSqliteStore, type Store } from "../src/store/index.js";

let dir: string;
let store: Store;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-audit-"));
  store = await openSqliteStore(path.join(dir, "gatehouse.db"));
  await store.migrate();
});

afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("the audit log's group commit", () => {
  it("writes entries recorded together in one commit, in order, and resolves each once durable", async () => {
    let commits = 0;
    const counting: Store = Object.create(store) as Store;
    counting.appendAudit = (writes) => {
      commits += 1;
      return store.appendAudit(writes);
    };
    const audit = new AuditLog(counting, pino({ level: "silent" }), () => new Date("2025-01-01T00:00:00Z"));

    await Promise.all(
      Array.from({ length: 200 }, (_, n) => audit.record({ type: "t", outcome: "success", details: { n } })),
    );
    expect(commits).toBe(1);
    const entries = await store.listAudit({ limit: 1000 });
    expect(entries.map((e) => e.details.n)).toEqual(Array.from({ length: 200 }, (_, n) => n));
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true, checked: 200 });

    // Entries recorded while a commit runs go into the next one, after it.
    const first = audit.record({ type: "t", outcome: "success", details: { n: 200 } });
    await new Promise((resolve) => setImmediate(resolve));
    const second = audit.record({ type: "t", outcome: "success", details: { n: 201 } });
    await Promise.all([first, second]);
    const all = await store.listAudit({ limit: 1000 });
    expect(all.slice(-2).map((e) => e.details.n)).toEqual([200, 201]);
    expect(verifyAuditChain(all)).toMatchObject({ ok: true, checked: 202 });
  });

  it("rejects only the bad write of a failed commit, keeps the others, and keeps working", async () => {
    const audit = new AuditLog(store, pino({ level: "silent" }), () => new Date());
    const exec = {
      execId: "exe_dup",
      deviceId: "d1",
      requestedBy: "admin",
      command: "status",
      args: "[]",
      requestedAt: "2025-01-01T00:00:00.000Z",
      finishedAt: null,
      outcome: "completed",
      exitCode: 0,
      durationMs: 1,
      stdoutBytes: 0,
      stderrBytes: 0,
      code: null,
    };
    await audit.record({ type: "exec.result", outcome: "success" }, exec);
    const results = await Promise.allSettled([
      audit.record({ type: "a", outcome: "success" }),
      audit.record({ type: "exec.result", outcome: "success" }, exec),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected"]);
    await audit.record({ type: "after", outcome: "success" });
    const entries = await store.listAudit();
    expect(entries.map((e) => e.type)).toEqual(["exec.result", "a", "after"]);
    expect(verifyAuditChain(entries).ok).toBe(true);
  });
});
