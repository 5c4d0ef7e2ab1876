// PostgreSQL as several instances see it: two stores on one database (two gateways) keep one audit
// chain and one pending cap; migrations run once when instances start together; a database out of
// reach is named without its password; a server restart is survived.
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { verifyAuditChain } from "../src/audit/chain.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { openPostgresStore, type AuditWrite, type Store } from "../src/store/index.js";
import {
  createTestDatabase,
  postgresAvailable,
  startPostgresServer,
  withDatabase,
} from "./fixtures/postgres.js";
import type { PostgresServer } from "./fixtures/postgres.js";
import { deviceRecord, registrationRecord } from "./fixtures/store.js";

const available = postgresAvailable();

function auditWrite(instance: string, n: number): AuditWrite {
  return {
    event: {
      ts: `2026-01-01T00:00:00.${String(n).padStart(3, "0")}Z`,
      type: "device.approved",
      outcome: "success",
      actor: instance,
      subject: `d${n}`,
      address: null,
      code: null,
      details: { instance, n },
    },
  };
}

describe.skipIf(!available)("two instances on one PostgreSQL database", () => {
  let database: { url: string; drop(): Promise<void> };
  let a: Store;
  let b: Store;

  beforeEach(async () => {
    database = await createTestDatabase();
    // Both instances migrate at once, as two gateways started together do: the migrations run once.
    [a, b] = await Promise.all([openPostgresStore(database.url), openPostgresStore(database.url)]);
    await Promise.all([a.migrate(), b.migrate()]);
  });

  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
    await database.drop();
  });

  it("appends from both at once to one chain that verifies", async () => {
    // Each instance appends single entries and batches concurrently, as its audit log does.
    const appends: Promise<number[]>[] = [];
    for (let n = 0; n < 40; n++) {
      const store = n % 2 === 0 ? a : b;
      const name = n % 2 === 0 ? "gi_A" : "gi_B";
      appends.push(
        n % 5 === 0
          ? store.appendAudit([auditWrite(name, n), auditWrite(name, 100 + n)])
          : store.appendAudit([auditWrite(name, n)]),
      );
    }
    const ids = (await Promise.all(appends)).flat();
    expect(new Set(ids).size).toBe(48);

    const entries = await a.listAudit({ limit: 1000 });
    expect(entries).toHaveLength(48);
    expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 48 }, (_, i) => i + 1));
    expect(verifyAuditChain(entries)).toMatchObject({ ok: true, checked: 48 });
    expect(new Set(entries.map((e) => e.actor))).toEqual(new Set(["gi_A", "gi_B"]));
  });

  it("lets exactly one of two instances take the last pending place", async () => {
    const now = "2025-01-01T00:00:00.000Z";
    for (const id of ["p1", "p2"])
      await a.recordRegistration({
        device: deviceRecord(id),
        registration: registrationRecord(`r-${id}`, id),
        maxPending: 3,
      });
    // Many rounds make an interleaving that would break the cap likely, if there were one.
    const outcomes = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        (i % 2 === 0 ? a : b).recordRegistration({
          device: deviceRecord(`n${i}`),
          registration: registrationRecord(`r-n${i}`, `n${i}`),
          maxPending: 3,
        }),
      ),
    );
    expect(outcomes.filter((o) => o.outcome === "pending")).toHaveLength(1);
    expect(outcomes.filter((o) => o.outcome === "queue_full")).toHaveLength(11);
    expect(await b.countPendingRegistrations(now)).toBe(3);
  });

  it("answers one device asking through both instances at once with its one waiting request", async () => {
    const outcomes = await Promise.all(
      ["r1", "r2", "r3", "r4", "r5", "r6"].map((requestId, i) =>
        (i % 2 === 0 ? a : b).recordRegistration({
          device: deviceRecord("d1"),
          registration: registrationRecord(requestId, "d1"),
          maxPending: 5,
          reusePending: true,
        }),
      ),
    );
    expect(outcomes.filter((o) => o.outcome === "pending")).toHaveLength(1);
    expect(outcomes.filter((o) => o.outcome === "waiting")).toHaveLength(5);
    expect(await a.countPendingRegistrations("2025-01-01T00:00:00.000Z")).toBe(1);
  });
});

describe.skipIf(!available)("a PostgreSQL database out of reach", () => {
  const refusal = async (url: string): Promise<GatehouseError> => {
    const error: unknown = await openPostgresStore(url).then(
      (store) => store.close().then(() => new Error("opened")),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatehouseError);
    return error as GatehouseError;
  };

  it("names the database and the driver's reason, never the password", async () => {
    const shared = process.env.GATEHOUSE_TEST_POSTGRES_URL!;
    const { port } = new URL(shared);
    const cases = [
      // Nothing listens on port 1.
      {
        url: "postgres://gh:Sup3rSecretPw@127.0.0.1:1/gatehouse",
        where: "postgres://gh@127.0.0.1:1/gatehouse",
        reason: /ECONNREFUSED/,
      },
      {
        url: withDatabase(shared.replace("postgres@", "postgres:Sup3rSecretPw@"), "no_such_db"),
        where: `postgres://postgres@127.0.0.1:${port}/no_such_db`,
        reason: /"no_such_db" does not exist/,
      },
      {
        url: shared.replace("postgres@", "nobody:Sup3rSecretPw@"),
        where: `postgres://nobody@127.0.0.1:${port}/postgres`,
        reason: /role "nobody" does not exist/,
      },
      {
        url: "postgres://gh:Sup3rSecretPw@no-such-host.invalid/gatehouse",
        where: "postgres://gh@no-such-host.invalid:5432/gatehouse",
        reason: /ENOTFOUND|EAI_AGAIN/,
      },
    ];
    for (const { url, where, reason } of cases) {
      const error = await refusal(url);
      expect(error.code).toBe("unavailable");
      expect(error.message).toContain(where);
      expect(error.message).toMatch(reason);
      expect(error.hint.length).toBeGreaterThan(10);
      expect(`${error.message} ${error.hint}`).not.toContain("Sup3rSecretPw");
    }
  });

  it("names a database whose user may not create the tables, and what to grant", async () => {
    const database = await createTestDatabase();
    // Roles belong to the server: the admin connects to its default database, not the test one.
    const admin = new pg.Client({ connectionString: process.env.GATEHOUSE_TEST_POSTGRES_URL });
    await admin.connect();
    const role = `gh_limited_${Math.random().toString(36).slice(2, 8)}`;
    // Since PostgreSQL 15 only the database's owner may create tables in schema public.
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'Sup3rSecretPw'`);
    const url = database.url.replace("postgres@", `${role}:Sup3rSecretPw@`);
    const store = await openPostgresStore(url);
    try {
      const error = (await store.migrate().then(
        () => new Error("migrated"),
        (e: unknown) => e,
      )) as GatehouseError;
      expect(error).toBeInstanceOf(GatehouseError);
      expect(error.code).toBe("unavailable");
      expect(error.message).toContain(`postgres://${role}@127.0.0.1:`);
      expect(error.message).toMatch(/store migration .* failed: permission denied for schema public/);
      expect(error.hint).toMatch(/OWNER TO/);
      expect(`${error.message} ${error.hint}`).not.toContain("Sup3rSecretPw");
    } finally {
      await store.close();
      await database.drop();
      await admin.query(`DROP ROLE ${role}`);
      await admin.end();
    }
  });

  it("calls a URL that is not a postgres URL a config error, without echoing it", async () => {
    for (const url of ["mysql://gh:Sup3rSecretPw@db/gatehouse", "Sup3rSecretPw"]) {
      const error = await refusal(url);
      expect(error.code).toBe("config_invalid");
      expect(error.message).toMatch(/store\.url/);
      expect(error.message).not.toContain("Sup3rSecretPw");
    }
  });
});

describe.skipIf(!available)("a PostgreSQL server that restarts under a store", () => {
  let server: PostgresServer;
  let store: Store;
  const warnings: { details: object; message: string }[] = [];

  beforeAll(async () => {
    server = await startPostgresServer();
  });

  afterAll(async () => {
    await store?.close();
    await server?.close();
  });

  it("answers 'unavailable' while the server is down and serves again once it is back", async () => {
    store = await openPostgresStore(server.url, {
      poolSize: 3,
      logger: { warn: (details, message) => warnings.push({ details, message }) },
    });
    await store.migrate();
    await store.upsertDevice(deviceRecord("d1"));
    // Warm connections, left idle in the pool: the stop cuts them under it.
    await Promise.all([store.getDevice("d1"), store.getDevice("d1"), store.getDevice("d1")]);

    await server.stop();
    const down = await store.getDevice("d1").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(down).toBeInstanceOf(GatehouseError);
    expect((down as GatehouseError).code).toBe("unavailable");
    expect((down as GatehouseError).message).toContain(
      `postgres://postgres@127.0.0.1:${server.port}/postgres`,
    );

    await server.start();
    // The first query after the start may still meet a connection the stop cut: it fails as
    // `unavailable` too, and the pool replaces it. Within a few tries the store serves again.
    let device;
    for (let attempt = 0; attempt < 5 && device === undefined; attempt++)
      device = await store.getDevice("d1").catch((e: unknown) => {
        expect((e as GatehouseError).code).toBe("unavailable");
        return undefined;
      });
    expect(device?.deviceId).toBe("d1");
    // The idle connections the stop cut were reported, naming the database and not crashing the process.
    for (const { details } of warnings)
      expect(JSON.stringify(details)).toContain(`postgres://postgres@127.0.0.1:${server.port}/postgres`);
  });
});

describe.skipIf(!available)("the PostgreSQL schema", () => {
  it("is the same tables and columns as SQLite's", async () => {
    const database = await createTestDatabase();
    const store = await openPostgresStore(database.url);
    try {
      await store.migrate();
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      const { rows } = await client.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
      );
      await client.end();
      expect(rows.map((r) => r.table_name)).toEqual(
        expect.arrayContaining([
          "audit_events",
          "devices",
          "gateway_instances",
          "rate_windows",
          "sessions",
          "shared_material",
        ]),
      );
    } finally {
      await store.close();
      await database.drop();
    }
  });
});
