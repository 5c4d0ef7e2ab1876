/**
 * The Store on SQLite: opens (creating, owner-only) a database file with the pragmas a gateway
 * needs, and the SQLite side of the StoreDialect hooks. The queries themselves are KyselyStore's.
 */
import fs from "node:fs";
import Database from "better-sqlite3";
import { CamelCasePlugin, CompiledQuery, Kysely, SqliteDialect, SqliteDriver, sql } from "kysely";
import type { DatabaseConnection, Driver, SqliteDialectConfig, Transaction } from "kysely";
import { GatehouseError } from "../protocol/errors.js";
import { KyselyStore } from "./kysely-store.js";
import type { Database as Tables } from "./migrations.js";
import { SqliteAuditWriter } from "./sqlite-audit-writer.js";
import type { SessionBatch, StoreDialect } from "./store-dialect.js";
import type { Store } from "./types.js";

/** Opens (creating, owner-only) a SQLite database file; call migrate() before use. */
export async function openSqliteStore(file: string): Promise<Store> {
  if (file !== ":memory:") createPrivateFile(file);
  const sqlite = new Database(file);
  try {
    sqlite.pragma("busy_timeout = 5000");
    sqlite.pragma("journal_mode = WAL");
    // FULL: fsync the WAL on every commit, so an approval acknowledged to an admin survives kill -9
    // and power loss (NORMAL, the usual WAL pairing, may lose the last commits on power loss).
    sqlite.pragma("synchronous = FULL");
    sqlite.pragma("foreign_keys = ON");
  } catch (error) {
    sqlite.close();
    throw error;
  }
  const db = new Kysely<Tables>({
    dialect: new ImmediateSqliteDialect({ database: sqlite }),
    plugins: [new CamelCasePlugin()],
  });
  // A file's audit appends go through a writer thread with its own connection; an in-memory
  // database (tests) is private to this connection, so it keeps the in-thread path.
  return new KyselyStore(
    db,
    sqliteDialect(db, file === ":memory:" ? undefined : new SqliteAuditWriter(file)),
  );
}

/**
 * The SQLite hooks for `db`. One gateway owns the file and its one connection runs one
 * transaction at a time, so nothing needs a lock; the audit writer thread, when given, appends
 * from a second connection (its BEGIN IMMEDIATE serialises it against this one).
 */
export function sqliteDialect(db: Kysely<Tables>, auditWriter?: SqliteAuditWriter): StoreDialect {
  return {
    name: "sqlite",
    serialise: () => Promise.resolve(),
    recordSessionChanges: async (batch) => {
      // Bookkeeping, not evidence (the audit log records every session durably by itself): the
      // batch commits without an fsync on the event loop. With WAL and synchronous=NORMAL it
      // survives the process crashing; a power cut may lose the last batch, and a start closes
      // whatever sessions were left open. One connection throughout, so no other commit runs
      // under NORMAL.
      await db.connection().execute(async (conn) => {
        await sql`PRAGMA synchronous = NORMAL`.execute(conn);
        try {
          await conn.transaction().execute((trx) => writeSessionChanges(trx, batch));
        } finally {
          await sql`PRAGMA synchronous = FULL`.execute(conn);
        }
      });
    },
    // No other instance shares a SQLite file: there is no one to tell.
    notify: () => Promise.resolve(),
    scrubFreedPages: () => scrubSqliteFile(db),
    ...(auditWriter ? { auditWriter } : {}),
  };
}

/**
 * Transactions that take the write lock at BEGIN (BEGIN IMMEDIATE). The audit writer commits from
 * another connection at any moment; a deferred transaction that read before that commit could not
 * upgrade to a write afterwards (SQLITE_BUSY_SNAPSHOT, no retry), so a registration would fail.
 * Taking the lock first makes such a transaction wait for the writer's commit (busy_timeout) instead.
 * That wait blocks the event loop for about one of the writer's commits at most (measured: p99
 * ~11 ms with the writer committing back to back): while the loop waits it posts no new batch.
 * (Retrying asynchronously instead was tried: the loop then keeps feeding the writer, and such a
 * write waited up to ~200 ms at p99.)
 */
class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly settings: SqliteDialectConfig) {
    super(settings);
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.settings);
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

/**
 * Erases what deleted and overwritten rows leave behind: VACUUM rewrites the database into fresh
 * pages (free pages and the slack in used ones go), and a TRUNCATE checkpoint moves the result
 * from the WAL into the file and empties the WAL. Neither may run inside a transaction.
 */
async function scrubSqliteFile(db: Kysely<Tables>): Promise<void> {
  await sql`VACUUM`.execute(db);
  const { rows } = await sql<{ busy: number }>`PRAGMA wal_checkpoint(TRUNCATE)`.execute(db);
  if (rows[0]?.busy)
    throw new GatehouseError(
      "unavailable",
      "the database is busy: its write-ahead log could not be folded into the file",
      "Stop other processes that hold gatehouse.db open and start the gateway again.",
    );
}

/**
 * The database holds CSRs, certificates and the audit trail: owner-only. SQLite gives its -wal and
 * -shm files the mode of the database file, so creating this one 0600 covers them too.
 */
function createPrivateFile(file: string): void {
  try {
    fs.writeFileSync(file, "", { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}

/**
 * The body of Store.recordSessionChanges, inside its transaction: the opens, then the ends (a
 * session may open and end in one batch), then the devices' last seen. Three statements whatever
 * the batch's size: each takes its rows as one JSON array (json_each), so nothing is built or
 * prepared per session.
 */
async function writeSessionChanges(
  trx: Transaction<Tables>,
  { opened, closed, seen }: SessionBatch,
): Promise<void> {
  if (opened.length)
    await sql`INSERT INTO sessions (session_id, device_id, instance_id, address, connected_at, disconnected_at, close_code, close_reason)
      SELECT value->>'sessionId', value->>'deviceId', value->>'instanceId', value->>'address', value->>'connectedAt',
             value->>'disconnectedAt', value->>'closeCode', value->>'closeReason'
      FROM json_each(${JSON.stringify(opened)})`.execute(trx);
  // The first end wins: a late duplicate must not rewrite when and why the session ended, even
  // within one batch (SQLite takes a bare column from the row min() picks: the earliest end).
  if (closed.length)
    await sql`UPDATE sessions SET disconnected_at = c.value->>'at', close_code = c.value->>'closeCode',
             close_reason = c.value->>'closeReason'
      FROM (SELECT value, min(key) FROM json_each(${JSON.stringify(closed)}) GROUP BY value->>'sessionId') AS c
      WHERE sessions.session_id = c.value->>'sessionId' AND sessions.disconnected_at IS NULL`.execute(trx);
  // The last sighting of a device wins; one without a known address does not erase the last one seen.
  if (seen.length)
    await sql`UPDATE devices SET last_seen = d.value->>'lastSeen',
             address = coalesce(d.value->>'address', devices.address)
      FROM (SELECT value, max(key) FROM json_each(${JSON.stringify(seen)}) GROUP BY value->>'deviceId') AS d
      WHERE devices.device_id = d.value->>'deviceId'`.execute(trx);
}
