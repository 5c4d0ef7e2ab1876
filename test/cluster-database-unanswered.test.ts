/**
 * A gateway instance whose PostgreSQL host vanishes without a reset (a black hole: no RST, no FIN)
 * does not hang: its heartbeat ends, the change feed's lost connection is dialled again as soon as
 * the ping notices it (not when a FIN that never comes arrives), and a stop returns. A real
 * PostgreSQL server reached through a relay that can swallow every byte and every close.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { FleetCluster } from "../src/gateway/cluster/cluster.js";
import { openPostgresStore } from "../src/store/index.js";
import { startBlackHoleRelay } from "./fixtures/black-hole-relay.js";
import { createTestDatabase, postgresAvailable } from "./fixtures/postgres.js";

const silent = pino({ level: "silent" });

describe.skipIf(!postgresAvailable())("a gateway instance whose database host vanishes", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  it("keeps beating, listens again once the host is back, and stops while it is gone", async () => {
    const database = await createTestDatabase();
    cleanups.push(() => database.drop());
    const direct = new URL(database.url);
    const relay = await startBlackHoleRelay(Number(direct.port));
    cleanups.push(() => relay.close());
    const viaRelay = new URL(database.url);
    viaRelay.port = String(relay.port);
    const store = await openPostgresStore(viaRelay.toString(), { poolSize: 2, queryTimeoutMs: 1000 });
    cleanups.push(() => store.close());
    await store.migrate();

    let listened = 0;
    const cluster = new FleetCluster({
      store,
      databaseUrl: viaRelay.toString(),
      instanceId: "gi_aaaaaaaaaaaaaaaa",
      address: () => ({ url: "https://127.0.0.1:1001", listen: "127.0.0.1:1001" }),
      logger: silent,
      now: () => new Date(),
      // Dial again at once: the test waits for the dial, not for a backoff.
      sleep: () => Promise.resolve(),
    });
    cluster.receive({ change: async () => undefined, listening: async () => void listened++ });
    await cluster.start();
    await vi.waitFor(() => expect(listened).toBe(1), { timeout: 30_000, interval: 50 });

    // Gone: the beat ends (the heartbeat fails, the ping finds the feed's connection dead).
    relay.swallow(true);
    await cluster.beat();
    expect(cluster.listening).toBe(false);

    // Back: the feed listens again (and re-reads), though its old connection never saw a close.
    relay.swallow(false);
    await vi.waitFor(() => expect(listened).toBe(2), { timeout: 30_000, interval: 50 });
    expect(cluster.listening).toBe(true);

    // Gone again: a stop still returns.
    relay.swallow(true);
    await cluster.stop();
  }, 60_000);
});
