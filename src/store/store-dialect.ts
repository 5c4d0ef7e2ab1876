/**
 * What differs between the store's two databases, as the few hooks KyselyStore calls: everything
 * else is one set of portable Kysely queries. An opener (sqlite-store.ts, postgres-store.ts) builds
 * the hooks once for its Kysely instance.
 */
import type { Transaction } from "kysely";
import type { Database as Tables } from "./migrations.js";
import type { AuditWrite, SessionChange, SessionRecord } from "./types.js";

/**
 * Work that must not interleave with the same work of another transaction, on any instance:
 * - `audit_head`: reading the audit chain's head and appending to it (two appends chaining to one
 *   head would fork the chain);
 * - `registrations`: counting pending requests (or finding a device's waiting one) and inserting a
 *   new one (two registrations must not both take the last place under the pending cap).
 */
export type SerialisedWork = "audit_head" | "registrations";

/**
 * One batch of Store.recordSessionChanges, sorted once for the dialects' statements: the sessions
 * opened, then the ends (a session may open and end in one batch; the first end of a session
 * wins), then the devices' sightings (the last sighting of a device wins). Each keeps the batch's
 * order.
 */
export interface SessionBatch {
  opened: SessionRecord[];
  closed: Extract<SessionChange, { kind: "close" }>[];
  seen: { deviceId: string; lastSeen: string; address: string | null }[];
}

/** Sorts Store.recordSessionChanges' `changes` into opens and ends, in their order, beside `seen`. */
export function sessionBatch(changes: SessionChange[], seen: SessionBatch["seen"]): SessionBatch {
  const batch: SessionBatch = { opened: [], closed: [], seen };
  for (const change of changes) {
    if (change.kind === "open") batch.opened.push(change.session);
    else batch.closed.push(change);
  }
  return batch;
}

export interface StoreDialect {
  readonly name: "sqlite" | "postgres";
  /**
   * Called first inside a transaction doing `work`: returns once no other transaction doing the
   * same work can run until this one ends. SQLite needs nothing (one writer at a time per file);
   * PostgreSQL takes a transaction-scoped advisory lock.
   */
  serialise(trx: Transaction<Tables>, work: SerialisedWork): Promise<void>;
  /** The body of Store.recordSessionChanges: the whole batch in one transaction, in order. */
  recordSessionChanges(batch: SessionBatch): Promise<void>;
  /** Store.notify: PostgreSQL NOTIFY, or nothing where no other instance listens. */
  notify(channel: string, payload: string): Promise<void>;
  /**
   * What a failed migration tells the user (which database, why, what to do), or undefined to
   * leave the error as it is.
   */
  migrationFailure?(error: unknown): Error | undefined;
  /** Makes the bytes of deleted and overwritten rows unreadable in the database's files. */
  scrubFreedPages(): Promise<void>;
  /**
   * Appends audit batches in place of `db` (a SQLite file's writer thread); without one, the store
   * appends through Kysely under `serialise(trx, "audit_head")`.
   */
  readonly auditWriter?: { append(writes: AuditWrite[]): Promise<number[]>; close(): Promise<void> };
}
