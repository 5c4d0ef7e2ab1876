/**
 * The Store on PostgreSQL, for several gateway instances sharing one database: a `pg` pool under
 * Kysely's PostgresDialect and the PostgreSQL side of the StoreDialect hooks. The queries are
 * KyselyStore's, the same as on SQLite.
 */
import { CamelCasePlugin, Kysely, PostgresDialect, PostgresDriver, sql } from "kysely";
import type {
  DatabaseConnection,
  Driver,
  PostgresDialectConfig,
  PostgresPool,
  PostgresPoolClient,
  Transaction,
} from "kysely";
import pg from "pg";
import { KyselyStore } from "./kysely-store.js";
import type { Database as Tables } from "./migrations.js";
import {
  databaseUnavailable,
  describePostgresUrl,
  isConnectionError,
  isQueryTimeout,
  migrationRefused,
  passwordOf,
} from "./postgres-errors.js";
import type { SerialisedWork, SessionBatch, StoreDialect } from "./store-dialect.js";
import type { Store } from "./types.js";
import { driverConnectionString } from "./postgres-url.js";

/** Connections the pool keeps at most, unless store.poolSize says otherwise. */
export const DEFAULT_POOL_SIZE = 10;
/** How long a new connection may take before the database counts as unreachable (pg waits forever). */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * How long a query may wait for its answer (ms) before it fails `unavailable`: a database host
 * gone without a reset (a black hole) would otherwise hold a request, the heartbeat and a stop
 * until the kernel gives up on the connection (~15 min). Longer than any query Gatehouse makes.
 */
export const QUERY_TIMEOUT_MS = 10_000;
/** Idle time (ms) before TCP keepalive probes a pooled connection (pg's default is the kernel's 2 h). */
export const KEEPALIVE_DELAY_MS = 10_000;

/**
 * Advisory lock keys (the two-int form: a class for Gatehouse, one object per kind of work), held
 * by pg_advisory_xact_lock until the transaction ends. "gate" in ASCII is the class.
 */
const LOCK_CLASS = 0x67617465;
const LOCK_OBJECT: Record<SerialisedWork, number> = { audit_head: 1, registrations: 2 };

/** What the opener logs: the pool's background errors (an idle connection cut by a restart). */
export interface PostgresStoreLogger {
  warn(details: object, message: string): void;
}

/**
 * Opens a pool on the PostgreSQL database at `url` and checks that one connection can be made;
 * call migrate() before use.
 * @param url postgres://USER:PASSWORD@HOST:PORT/DATABASE (query parameters as `pg` takes them;
 *   `sslmode` as Gatehouse reads it: every mode but disable is verify-full, postgres-url.ts).
 * @param options.poolSize connections at most (default DEFAULT_POOL_SIZE).
 * @param options.queryTimeoutMs how long a query waits for its answer (ms, default
 *   QUERY_TIMEOUT_MS); then it fails GatehouseError `unavailable` naming the database, and its
 *   connection is closed instead of going back to the pool.
 * @param options.logger gets the pool's background errors; messages name the database as
 *   `postgres://user@host:port/db`, never with the password.
 * @throws GatehouseError `config_invalid` when `url` is not a postgres URL or its sslmode is no
 *   libpq mode; `unavailable` when no
 *   connection can be made (which database, the driver's reason, a hint for the cause).
 */
export async function openPostgresStore(
  url: string,
  options: { poolSize?: number; logger?: PostgresStoreLogger; queryTimeoutMs?: number } = {},
): Promise<Store> {
  const where = describePostgresUrl(url);
  const password = passwordOf(url);
  const pool = new pg.Pool({
    connectionString: driverConnectionString(url),
    max: options.poolSize ?? DEFAULT_POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: options.queryTimeoutMs ?? QUERY_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    application_name: "gatehouse",
  });
  // Without a listener, an idle connection that the server cuts (a restart) is an uncaught
  // 'error' event and ends the process. The pool drops that connection and makes a new one later.
  pool.on("error", (error) => {
    options.logger?.warn(
      { database: where, reason: databaseUnavailable(error, where, password).message },
      "a pooled PostgreSQL connection failed; it is replaced on next use",
    );
  });
  try {
    const client = await pool.connect();
    client.release();
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw databaseUnavailable(error, where, password);
  }
  const db = new Kysely<Tables>({
    dialect: new ReachablePostgresDialect({ pool: discardingUnanswered(pool) }, where, password),
    plugins: [new CamelCasePlugin()],
  });
  return new KyselyStore(db, {
    ...postgresDialect(db),
    migrationFailure: (error) => migrationRefused(error, where, password),
  });
}

/**
 * The PostgreSQL hooks for `db`. Every instance appends to the one audit chain and counts the one
 * pending queue, so those transactions take advisory locks; session batches are written with JSON
 * set functions; NOTIFY tells the other instances.
 */
export function postgresDialect(db: Kysely<Tables>): StoreDialect {
  return {
    name: "postgres",
    serialise: async (trx, work) => {
      await sql`SELECT pg_advisory_xact_lock(${LOCK_CLASS}::int4, ${LOCK_OBJECT[work]}::int4)`.execute(trx);
    },
    recordSessionChanges: (batch) =>
      db.transaction().execute(async (trx) => {
        // Bookkeeping, not evidence (as on SQLite, which commits these batches without an fsync):
        // the commit does not wait for the WAL flush. A server crash may lose the last batch, and
        // each instance closes the sessions it left open when it starts.
        await sql`SET LOCAL synchronous_commit TO OFF`.execute(trx);
        await writeSessionChanges(trx, batch);
      }),
    notify: async (channel, payload) => {
      await sql`SELECT pg_notify(${channel}, ${payload})`.execute(db);
    },
    // VACUUM FULL writes the table into new files and drops the old ones, so dead row versions (a
    // key before it was sealed) leave the table's files; the WAL keeps them until it is recycled.
    scrubFreedPages: async () => {
      await sql`VACUUM FULL signing_keys`.execute(db);
    },
  };
}

/**
 * Session opens, ends and the devices' last seen in three statements, each taking its rows as one
 * JSON array. The first end of a session in a batch wins (WITH ORDINALITY keeps the batch's order)
 * and the last sighting of a device does; the device rows are locked in id order first, so two
 * instances writing sightings of the same devices wait for each other instead of deadlocking.
 */
async function writeSessionChanges(
  trx: Transaction<Tables>,
  { opened, closed, seen }: SessionBatch,
): Promise<void> {
  if (opened.length)
    await sql`INSERT INTO sessions (session_id, device_id, instance_id, address, connected_at, disconnected_at, close_code, close_reason)
      SELECT s."sessionId", s."deviceId", s."instanceId", s.address, s."connectedAt", s."disconnectedAt",
             s."closeCode", s."closeReason"
      FROM jsonb_to_recordset(${JSON.stringify(opened)}::jsonb) AS s("sessionId" text, "deviceId" text,
        "instanceId" text, address text, "connectedAt" text, "disconnectedAt" text, "closeCode" integer,
        "closeReason" text)`.execute(trx);
  if (closed.length)
    await sql`UPDATE sessions SET disconnected_at = c.at, close_code = c.close_code, close_reason = c.close_reason
      FROM (SELECT DISTINCT ON (e.value->>'sessionId') e.value->>'sessionId' AS session_id,
                   e.value->>'at' AS at, (e.value->>'closeCode')::integer AS close_code,
                   e.value->>'closeReason' AS close_reason
            FROM jsonb_array_elements(${JSON.stringify(closed)}::jsonb) WITH ORDINALITY AS e(value, n)
            ORDER BY e.value->>'sessionId', e.n) AS c
      WHERE sessions.session_id = c.session_id AND sessions.disconnected_at IS NULL`.execute(trx);
  if (seen.length) {
    const ids = [...new Set(seen.map((s) => s.deviceId))].sort();
    await sql`SELECT 1 FROM devices WHERE device_id = ANY(${ids}::text[]) ORDER BY device_id FOR UPDATE`.execute(
      trx,
    );
    // A session without a known address does not erase the last one seen.
    await sql`UPDATE devices SET last_seen = d.last_seen, address = coalesce(d.address, devices.address)
      FROM (SELECT DISTINCT ON (e.value->>'deviceId') e.value->>'deviceId' AS device_id,
                   e.value->>'lastSeen' AS last_seen, e.value->>'address' AS address
            FROM jsonb_array_elements(${JSON.stringify(seen)}::jsonb) WITH ORDINALITY AS e(value, n)
            ORDER BY e.value->>'deviceId', e.n DESC) AS d
      WHERE devices.device_id = d.device_id`.execute(trx);
  }
}

/**
 * `pool` as Kysely takes it, except that a client whose query went unanswered (pg's query_timeout)
 * is closed on release instead of going back to the pool: pg leaves that query in front of the
 * client's next ones, and the server may still hold its transaction (and an advisory lock).
 */
function discardingUnanswered(pool: pg.Pool): PostgresPool {
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  return {
    connect: async () => {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        let unanswered: Error | undefined;
        const query = (...args: unknown[]): unknown => {
          const result = (client.query as (...a: unknown[]) => unknown)(...args);
          // A cursor (Kysely's streaming) is returned as is; a promise is watched for the timeout.
          if (!(result instanceof Promise)) return result;
          return result.catch((error: unknown) => {
            if (isQueryTimeout(error)) unanswered = error as Error;
            throw error;
          });
        };
        wrapper = {
          query: query as PostgresPoolClient["query"],
          release: (destroy) => client.release(unanswered ?? destroy),
        };
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}

/**
 * PostgresDialect whose failures to reach the database are GatehouseError `unavailable` naming it
 * (a 503 with a hint at the edge, not a 500 with the driver's text); other errors, such as a
 * constraint the database enforced, stay the driver's for the caller to handle.
 */
class ReachablePostgresDialect extends PostgresDialect {
  constructor(
    private readonly settings: PostgresDialectConfig,
    private readonly where: string,
    private readonly password: string,
  ) {
    super(settings);
  }

  override createDriver(): Driver {
    return new ReachablePostgresDriver(this.settings, this.where, this.password);
  }
}

class ReachablePostgresDriver extends PostgresDriver {
  private readonly wrapped = new WeakSet<DatabaseConnection>();

  constructor(
    settings: PostgresDialectConfig,
    private readonly where: string,
    private readonly password: string,
  ) {
    super(settings);
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    let connection: DatabaseConnection;
    try {
      connection = await super.acquireConnection();
    } catch (error) {
      throw this.mapped(error);
    }
    // Kysely keeps one connection object per pooled client: wrap its executeQuery once. (A proxy
    // would not do: the object's private fields refuse a proxy as `this`.)
    if (!this.wrapped.has(connection)) {
      this.wrapped.add(connection);
      const execute = connection.executeQuery.bind(connection);
      connection.executeQuery = async (query) => {
        try {
          return await execute(query);
        } catch (error) {
          throw this.mapped(error);
        }
      };
    }
    return connection;
  }

  private mapped(error: unknown): unknown {
    return isConnectionError(error) ? databaseUnavailable(error, this.where, this.password) : error;
  }
}
