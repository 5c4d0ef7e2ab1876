/**
 * The registration limit per address with several instances (SharedRateLimiter in
 * src/gateway/rate-limit.ts): two instances' limiters over one real database count one address
 * together, in fixed one-minute windows. Clocks are injected; nothing sleeps.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { openPostgresStore, type Store } from "../src/store/index.js";
import { RateLimiter, SharedRateLimiter } from "../src/gateway/rate-limit.js";
import { closeTempStore, openTempStore } from "./fixtures/store.js";
import { createTestDatabase, postgresAvailable } from "./fixtures/postgres.js";

const logger = pino({ level: "silent" });
/** 12:00:10 UTC: 50 s before the next window. */
const START = Date.parse("2026-03-01T12:00:10Z");

interface TwoInstances {
  a: Store;
  b: Store;
  close(): Promise<void>;
}

async function onSqlite(): Promise<TwoInstances> {
  // One SQLite file stands for the shared database here: SQLite has no second instance.
  const { dir, store } = await openTempStore("gh-rate-");
  return { a: store, b: store, close: () => closeTempStore(dir, store) };
}

async function onPostgres(): Promise<TwoInstances> {
  const database = await createTestDatabase();
  const a = await openPostgresStore(database.url);
  await a.migrate();
  const b = await openPostgresStore(database.url);
  return {
    a,
    b,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
      await database.drop();
    },
  };
}

const dialects: [string, () => Promise<TwoInstances>, boolean][] = [
  ["sqlite", onSqlite, true],
  ["postgres", onPostgres, postgresAvailable()],
];

describe.each(dialects)("the shared registration limit on %s", (_name, open, usable) => {
  let stores: TwoInstances;
  beforeAll(async () => {
    if (usable) stores = await open();
  });
  afterAll(async () => {
    await stores?.close();
  });

  it.skipIf(!usable)(
    "counts one address across instances and names the wait until the next window",
    async () => {
      let now = START;
      const clock = () => now;
      const first = new SharedRateLimiter(stores.a, 3, "enroll", logger, clock);
      const second = new SharedRateLimiter(stores.b, 3, "enroll", logger, clock);
      const address = "198.51.100.7";
      // Three in all, alternating instances: allowed. Alone, each would allow three of its own.
      expect(await first.take(address)).toBe(0);
      expect(await second.take(address)).toBe(0);
      expect(await first.take(address)).toBe(0);
      // The fourth, on either instance: refused until 12:01:00, 50 s away.
      expect(await second.take(address)).toBe(50);
      now += 20_000;
      expect(await first.take(address)).toBe(30);
      // Another address has its own count.
      expect(await second.take("198.51.100.8")).toBe(0);
      // The next window starts afresh.
      now = Date.parse("2026-03-01T12:01:00Z");
      expect(await second.take(address)).toBe(0);
    },
  );

  it.skipIf(!usable)("prunes windows older than the previous one", async () => {
    let now = Date.parse("2026-03-01T13:00:05Z");
    const limiter = new SharedRateLimiter(stores.a, 3, "prune", logger, () => now);
    await limiter.take("203.0.113.1");
    now = Date.parse("2026-03-01T13:05:05Z");
    await limiter.take("203.0.113.1");
    await limiter.settled();
    // The 13:00 window went with the first take in 13:05; the 13:05 one stays.
    expect(await stores.a.pruneRateWindows("2026-03-01T13:04:00.000Z")).toBe(0);
    expect(await stores.a.countRateHit("prune:203.0.113.1", "2026-03-01T13:05:00.000Z")).toBe(2);
  });
});

describe("a gateway alone", () => {
  it("keeps the token bucket in memory, refilled continuously", () => {
    let now = START;
    const bucket = new RateLimiter(2, () => now);
    expect([bucket.take("a"), bucket.take("a"), bucket.take("a")]).toEqual([0, 0, 30]);
    now += 30_000;
    expect(bucket.take("a")).toBe(0);
  });
});
