import Database from "better-sqlite3";
import { CamelCasePlugin, Kysely, SqliteDialect } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KyselyStore, sqliteDialect, type Database as Tables } from "../src/store/index.js";

/** Newest-first paging of the audit log: `order: "desc"` with `beforeId`, combined with the filters. */
let sqlite: Database.Database;
let store: KyselyStore;
/** Every statement the store ran, as compiled SQL and its parameters. */
let ran: { sql: string; parameters: readonly unknown[] }[];

beforeEach(async () => {
  sqlite = new Database(":memory:");
  ran = [];
  const db = new Kysely<Tables>({
    dialect: new SqliteDialect({ database: sqlite }),
    plugins: [new CamelCasePlugin()],
    log: (event) => {
      if (event.level === "query") ran.push({ sql: event.query.sql, parameters: event.query.parameters });
    },
  });
  store = new KyselyStore(db, sqliteDialect(db));
  await store.migrate();
  // Ten entries: odd ones on d1 by admin (device.approved), even ones on d2 by a node (node.connected).
  for (let n = 1; n <= 10; n++) {
    const odd = n % 2 === 1;
    await store.appendAudit([
      {
        event: {
          ts: `2026-01-01T00:00:${String(n).padStart(2, "0")}.000Z`,
          type: odd ? "device.approved" : "node.connected",
          outcome: "success",
          actor: odd ? "admin" : "device:d2",
          subject: odd ? "d1" : "d2",
          address: null,
          code: null,
          details: { n },
        },
      },
    ]);
  }
});

afterEach(async () => {
  await store.close();
});

const ids = async (query: Parameters<KyselyStore["listAudit"]>[0]) =>
  (await store.listAudit(query)).map((entry) => entry.id);

/** SQLite's plan for the last listAudit query the store ran. */
function planOfLastList(): string {
  const last = ran.filter((q) => q.sql.includes('from "audit_events"')).at(-1)!;
  const rows = sqlite.prepare(`EXPLAIN QUERY PLAN ${last.sql}`).all(...(last.parameters as unknown[])) as {
    detail: string;
  }[];
  return rows.map((row) => row.detail).join("\n");
}

describe("listAudit newest first", () => {
  it("gives the newest page first and pages back with beforeId", async () => {
    expect(await ids({ order: "desc", limit: 3 })).toEqual([10, 9, 8]);
    expect(await ids({ order: "desc", beforeId: 8, limit: 3 })).toEqual([7, 6, 5]);
    expect(await ids({ order: "desc", beforeId: 3, limit: 3 })).toEqual([2, 1]);
    expect(await ids({ order: "desc", beforeId: 1, limit: 3 })).toEqual([]);
    // A beforeId above the newest entry is the newest page.
    expect(await ids({ order: "desc", beforeId: 1000, limit: 2 })).toEqual([10, 9]);
  });

  it("combines with the subject, actor and type filters", async () => {
    expect(await ids({ order: "desc", subject: "d1", limit: 2 })).toEqual([9, 7]);
    expect(await ids({ order: "desc", subject: "d1", beforeId: 7, limit: 2 })).toEqual([5, 3]);
    expect(await ids({ order: "desc", actor: "device:d2", beforeId: 6 })).toEqual([4, 2]);
    expect(await ids({ order: "desc", type: "node.", beforeId: 9, limit: 10 })).toEqual([8, 6, 4, 2]);
    expect(
      await ids({ order: "desc", type: "device.approved", actor: "admin", subject: "d1", beforeId: 4 }),
    ).toEqual([3, 1]);
    expect(await ids({ order: "desc", subject: "d1", actor: "device:d2" })).toEqual([]);
  });

  it("keeps oldest-first paging as it was (the default order)", async () => {
    expect(await ids({ afterId: 2, limit: 3 })).toEqual([3, 4, 5]);
    expect(await ids({ order: "asc", afterId: 2, limit: 3 })).toEqual([3, 4, 5]);
    expect(await ids({ subject: "d2", afterId: 4 })).toEqual([6, 8, 10]);
  });

  it("walks an index or the rowid backwards instead of sorting the log", async () => {
    await ids({ order: "desc", beforeId: 8, limit: 3 });
    expect(planOfLastList()).not.toMatch(/TEMP B-TREE/);
    expect(planOfLastList()).toMatch(/SEARCH audit_events USING INTEGER PRIMARY KEY|SCAN audit_events/);
    await ids({ order: "desc", subject: "d1", beforeId: 8, limit: 3 });
    expect(planOfLastList()).not.toMatch(/TEMP B-TREE/);
    expect(planOfLastList()).toMatch(/audit_events_subject_idx/);
    await ids({ order: "desc", actor: "admin", type: "device.", limit: 3 });
    expect(planOfLastList()).not.toMatch(/TEMP B-TREE/);
  });
});
