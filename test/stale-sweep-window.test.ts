/**
 * The sweep of an instance gone stale closes only the sessions it opened up to its last heartbeat:
 * when that instance restarts under the same id between another instance's read of the instances
 * table and its sweep, the nodes connected to the new run stay online. On both databases, with an
 * injected clock.
 */
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import type { Store } from "../src/store/types.js";
import {
  INSTANCE_STALE_AFTER_MS,
  InstanceRegistry,
  STALE_INSTANCE_CLOSE_REASON,
} from "../src/gateway/cluster/instance-registry.js";
import { deviceRecord, sessionRecord } from "./fixtures/store.js";
import { DIALECTS, eachDialectStore, type Dialect, type DialectStore } from "./fixtures/store-dialects.js";

const silent = pino({ level: "silent" });
const A = "gi_aaaaaaaaaaaaaaaa";
const B = "gi_bbbbbbbbbbbbbbbb";

for (const { dialect, skip } of DIALECTS)
  describe.skipIf(skip)(`${dialect}: the sweep of a stale instance`, () => sweepSuite(dialect));

function sweepSuite(dialect: Dialect): void {
  let database: DialectStore;
  eachDialectStore(dialect, (opened) => {
    database = opened;
  });

  it("leaves open the sessions that connected after the stale instance's last heartbeat", async () => {
    const store = database.store;
    let clock = Date.parse("2026-03-01T12:00:00.000Z");
    const now = () => new Date(clock);
    const registry = (id: string, port: number, on: Store) =>
      new InstanceRegistry(
        on,
        { instanceId: id, url: `https://127.0.0.1:${port}`, listen: `127.0.0.1:${port}` },
        now,
        silent,
      );
    // Instance A's view of the store: the restart of B lands right after A read the instances
    // table (B still stale in what it read) and before its sweep.
    let restartAfterRead: (() => Promise<void>) | undefined;
    const seenByA: Store = Object.create(store) as Store;
    seenByA.listInstances = async () => {
      const rows = await store.listInstances();
      const restart = restartAfterRead;
      restartAfterRead = undefined;
      await restart?.();
      return rows;
    };
    const first = registry(A, 1001, seenByA);
    const second = registry(B, 1002, store);
    await first.register();
    await second.register();
    for (const id of ["dev_old", "dev_new"])
      await store.upsertDevice(deviceRecord(id, { status: "approved" }));
    await store.openSession(
      sessionRecord("ses_old", "dev_old", { instanceId: B, address: null, connectedAt: now().toISOString() }),
    );

    // B is killed; A beats on. When A next reads the table B is stale, and B starts again.
    clock += INSTANCE_STALE_AFTER_MS + 5000;
    restartAfterRead = async () => {
      clock += 1000;
      await second.register();
      await store.openSession(
        sessionRecord("ses_new", "dev_new", {
          instanceId: B,
          address: null,
          connectedAt: now().toISOString(),
        }),
      );
    };
    await first.beat();

    expect((await store.listOpenSessions()).map((row) => row.sessionId)).toEqual(["ses_new"]);
    const rows = await database.rows("sessions", "session_id");
    expect(rows.map((row) => [row.session_id, row.close_reason])).toEqual([
      ["ses_new", null],
      ["ses_old", STALE_INSTANCE_CLOSE_REASON],
    ]);
  });
}
