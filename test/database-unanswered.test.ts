/**
 * A PostgreSQL database that stops answering without closing anything (its host gone behind a
 * black hole: no reset, no FIN) does not hang the gateway: a query ends `unavailable` naming the
 * database after the query timeout, and the connection it was stuck on is not handed out again.
 * The database is the tests' real server, reached through a TCP relay that can start swallowing
 * every byte in both directions.
 */
import { afterEach, describe, expect, it } from "vitest";
import { openPostgresStore } from "../src/store/index.js";
import type { Store } from "../src/store/types.js";
import { createTestDatabase, postgresAvailable } from "./fixtures/postgres.js";
import { refusal } from "./fixtures/refusal.js";
import { startBlackHoleRelay, type BlackHoleRelay } from "./fixtures/black-hole-relay.js";
import { instanceRecord } from "./fixtures/store.js";

describe.skipIf(!postgresAvailable())("a PostgreSQL database that stops answering", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  async function storeThroughRelay(): Promise<{
    store: Store;
    relay: BlackHoleRelay;
    where: string;
  }> {
    const database = await createTestDatabase();
    cleanups.push(() => database.drop());
    const direct = new URL(database.url);
    const relay = await startBlackHoleRelay(Number(direct.port));
    cleanups.push(() => relay.close());
    const viaRelay = new URL(database.url);
    viaRelay.port = String(relay.port);
    // One connection, so the query after the outage runs on the pool's only slot.
    const store = await openPostgresStore(viaRelay.toString(), { poolSize: 1, queryTimeoutMs: 1000 });
    cleanups.push(() => store.close());
    await store.migrate();
    const where = `postgres://${direct.username}@127.0.0.1:${relay.port}${direct.pathname}`;
    return { store, relay, where };
  }

  it("a query ends unavailable naming the database instead of hanging", async () => {
    const { store, relay, where } = await storeThroughRelay();
    relay.swallow(true);
    const failure = await refusal(store.listInstances());
    expect(failure.code).toBe("unavailable");
    expect(failure.message).toContain(`PostgreSQL at ${where}`);
    expect(failure.message).toContain("no answer");
  });

  it("a write ends unavailable too, and the next one is answered once the database is reachable again", async () => {
    const { store, relay } = await storeThroughRelay();
    relay.swallow(true);
    expect((await refusal(store.upsertInstance(instanceRecord("gi_aaaaaaaaaaaaaaaa")))).code).toBe(
      "unavailable",
    );
    relay.swallow(false);
    // The connection stuck on the unanswered query was closed, not handed out again.
    await store.upsertInstance(instanceRecord("gi_aaaaaaaaaaaaaaaa"));
    expect((await store.listInstances()).map((row) => row.instanceId)).toEqual(["gi_aaaaaaaaaaaaaaaa"]);
  });
});
