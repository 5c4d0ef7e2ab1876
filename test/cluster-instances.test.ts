/**
 * Which gateway instances are alive, on a real PostgreSQL database with an injected clock: a
 * heartbeat keeps an instance live, a silent or stopped one drops out, and the open session rows
 * of an instance gone silent are closed by a live one (a killed instance cannot close its own, and
 * `nodes list` must not show sessions nobody holds). A change notice that this version does not
 * understand is ignored. Alone (SQLite), `/health` is what it always was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import { openPostgresStore } from "../src/store/index.js";
import type { Store } from "../src/store/types.js";
import {
  INSTANCE_STALE_AFTER_MS,
  InstanceRegistry,
  STALE_INSTANCE_CLOSE_REASON,
} from "../src/gateway/cluster/instance-registry.js";
import { decodeChange, encodeChange } from "../src/gateway/cluster/change-feed.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway } from "../src/gateway/start.js";
import { createTestDatabase, postgresAvailable, startPostgresServer } from "./fixtures/postgres.js";
import { deviceRecord, sessionRecord } from "./fixtures/store.js";

const silent = pino({ level: "silent" });

describe("a change notice between instances", () => {
  it("carries the sender and the change, and anything else is ignored", () => {
    const payload = encodeChange("gi_aaaaaaaaaaaaaaaa", { kind: "device", deviceId: "dev_1" });
    expect(decodeChange(payload)).toEqual({
      from: "gi_aaaaaaaaaaaaaaaa",
      change: { kind: "device", deviceId: "dev_1" },
    });
    expect(Buffer.byteLength(payload)).toBeLessThan(8000);
    for (const junk of [
      undefined,
      "",
      "not json",
      "{}",
      JSON.stringify({ v: 2, from: "x", change: { kind: "device", deviceId: "d" } }),
      JSON.stringify({ v: 1, from: "x", change: { kind: "everything" } }),
      JSON.stringify({ v: 1, from: "x", change: { kind: "device" } }),
    ])
      expect(decodeChange(junk)).toBeUndefined();
  });
});

const describePostgres = postgresAvailable() ? describe : describe.skip;

/** The registries of two instances, gi_aaaa… at https://127.0.0.1:1001 and gi_bbbb… at :1002. */
function twoRegistries(store: Store, now: () => Date): [InstanceRegistry, InstanceRegistry] {
  const registry = (letter: string, port: number) =>
    new InstanceRegistry(
      store,
      {
        instanceId: `gi_${letter.repeat(16)}`,
        url: `https://127.0.0.1:${port}`,
        listen: `127.0.0.1:${port}`,
      },
      now,
      silent,
    );
  return [registry("a", 1001), registry("b", 1002)];
}

describePostgres("gateway instances on one PostgreSQL database", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let store: Store;
  let clock = Date.parse("2026-03-01T12:00:00.000Z");
  const now = () => new Date(clock);

  beforeAll(async () => {
    database = await createTestDatabase();
    store = await openPostgresStore(database.url);
    await store.migrate();
  });

  afterAll(async () => {
    await store?.close();
    await database?.drop();
  });

  const session = (sessionId: string, deviceId: string, instanceId: string) =>
    sessionRecord(sessionId, deviceId, {
      instanceId,
      address: "127.0.0.1",
      connectedAt: now().toISOString(),
    });

  /** The session's end as the sessions table holds it. */
  async function sessionEnd(sessionId: string) {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        "SELECT disconnected_at, close_reason FROM sessions WHERE session_id = $1",
        [sessionId],
      );
      return rows[0] as unknown;
    } finally {
      await client.end();
    }
  }

  it("a silent instance drops out and a live one closes its sessions; a stopped one drops out at once", async () => {
    const [first, second] = twoRegistries(store, now);
    await first.register();
    clock += 1000;
    await second.register();
    await first.beat();
    expect(first.live().map((instance) => instance.instanceId)).toEqual([
      "gi_aaaaaaaaaaaaaaaa",
      "gi_bbbbbbbbbbbbbbbb",
    ]);
    expect(first.live()[1]).toMatchObject({ url: "https://127.0.0.1:1002", listen: "127.0.0.1:1002" });

    for (const id of ["dev_a", "dev_b"]) await store.upsertDevice(deviceRecord(id, { status: "approved" }));
    await store.openSession(session("ses_a", "dev_a", "gi_aaaaaaaaaaaaaaaa"));
    await store.openSession(session("ses_b", "dev_b", "gi_bbbbbbbbbbbbbbbb"));

    // Within the stale delay the second is live, and its session stays open.
    clock += INSTANCE_STALE_AFTER_MS - 1000;
    await first.beat();
    expect(first.live()).toHaveLength(2);
    expect((await store.listOpenSessions()).map((row) => row.sessionId).sort()).toEqual(["ses_a", "ses_b"]);

    // The second instance was killed: no beat for longer than the stale delay.
    clock += 2000;
    await first.beat();
    expect(first.live().map((instance) => instance.instanceId)).toEqual(["gi_aaaaaaaaaaaaaaaa"]);
    const open = await store.listOpenSessions();
    expect(open.map((row) => [row.sessionId, row.instanceId])).toEqual([["ses_a", "gi_aaaaaaaaaaaaaaaa"]]);
    expect(await sessionEnd("ses_b")).toEqual({
      disconnected_at: now().toISOString(),
      close_reason: STALE_INSTANCE_CLOSE_REASON,
    });

    // It comes back under the same id: live again.
    await second.register();
    await first.beat();
    expect(first.live()).toHaveLength(2);
    // A clean stop: gone for the others at their next beat, without waiting for the stale delay.
    await second.stopped();
    await first.beat();
    expect(first.live().map((instance) => instance.instanceId)).toEqual(["gi_aaaaaaaaaaaaaaaa"]);
  });
});

describePostgres("gateway instances when their database goes away and comes back", () => {
  it("an instance does not take the others for dead because nobody could beat while the database was away", async () => {
    const server = await startPostgresServer();
    let clock = Date.parse("2026-03-01T12:00:00.000Z");
    const now = () => new Date(clock);
    const store = await openPostgresStore(server.url);
    try {
      await store.migrate();
      const [first, second] = twoRegistries(store, now);
      await first.register();
      await second.register();
      await store.upsertDevice(deviceRecord("dev_b", { status: "approved" }));
      await store.openSession(
        sessionRecord("ses_b", "dev_b", {
          instanceId: "gi_bbbbbbbbbbbbbbbb",
          address: null,
          connectedAt: now().toISOString(),
        }),
      );
      clock += INSTANCE_STALE_AFTER_MS + 5000;
      await second.beat();
      await first.beat();
      expect((await store.listOpenSessions()).map((row) => row.sessionId)).toEqual(["ses_b"]);

      // Away for a minute: no heartbeat is written; this instance still counts itself.
      await server.stop();
      clock += 60_000;
      await expect(first.beat()).rejects.toThrow();
      expect(first.live().map((instance) => instance.instanceId)).toEqual(["gi_aaaaaaaaaaaaaaaa"]);

      // Back: the second's last heartbeat is a minute old, but it has not had a chance to beat.
      await server.start();
      await eventuallyBeats(first);
      expect((await store.listOpenSessions()).map((row) => row.sessionId)).toEqual(["ses_b"]);
      clock += 2000;
      await second.beat();
      clock += INSTANCE_STALE_AFTER_MS;
      await second.beat();
      await first.beat();
      expect(first.live()).toHaveLength(2);
      expect((await store.listOpenSessions()).map((row) => row.sessionId)).toEqual(["ses_b"]);
    } finally {
      await store.close();
      await server.close();
    }
  });
});

/** Beats until the database answers again (a pool's first connections after a restart may fail). */
async function eventuallyBeats(registry: InstanceRegistry): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await registry.beat();
    } catch (error) {
      if (attempt > 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe("a gateway alone (SQLite)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "gh-cluster-solo-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is no cluster: /health has no instance fields, and publishing tells no one", async () => {
    const home = path.join(dir, "home");
    await initGatewayHome(home, { listen: "127.0.0.1:0" });
    const gateway = await startGateway(home, { logger: silent });
    try {
      expect(gateway.ctx.cluster).toMatchObject({ enabled: false, instanceId: null });
      expect(gateway.ctx.cluster.liveInstances()).toEqual([]);
      gateway.ctx.cluster.publish({ kind: "signing_keys" });
      const health = (await gateway.app.inject({ method: "GET", url: "/health" })).json<
        Record<string, unknown>
      >();
      expect(Object.keys(health).sort()).toEqual(
        ["caFingerprints", "gatewayId", "service", "status", "time", "version"].sort(),
      );
    } finally {
      await gateway.close();
    }
  });
});
