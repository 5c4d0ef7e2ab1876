// What several gateway instances share through the store, on both databases: the instance
// registry, the sessions each instance holds, key material, rate windows and NOTIFY.
import pg from "pg";
import { describe, expect, it } from "vitest";
import type { InstanceRecord, SessionRecord, Store } from "../src/store/index.js";
import { deviceRecord, instanceRecord, sessionRecord } from "./fixtures/store.js";
import { DIALECTS, eachDialectStore, type Dialect, type DialectStore } from "./fixtures/store-dialects.js";

const T0 = "2026-01-01T00:00:00.000Z";

const instance = (id: string, over: Partial<InstanceRecord> = {}): InstanceRecord =>
  instanceRecord(id, { startedAt: T0, heartbeatAt: T0, ...over });

const session = (id: string, instanceId: string | null, over: Partial<SessionRecord> = {}): SessionRecord =>
  sessionRecord(id, "d1", { instanceId, connectedAt: T0, ...over });

for (const { dialect, skip } of DIALECTS)
  describe.skipIf(skip)(`${dialect} store shared by instances`, () => instancesSuite(dialect));

function instancesSuite(dialect: Dialect): void {
  let database: DialectStore;
  let store: Store;
  eachDialectStore(dialect, (opened) => {
    database = opened;
    store = opened.store;
  });

  it("says which dialect it is", () => {
    expect(store.dialect).toBe(dialect);
  });

  it("registers instances, their heartbeats and clean stops; a restart clears the stop", async () => {
    await store.upsertInstance(instance("gi_B", { startedAt: "2026-01-01T00:00:05.000Z" }));
    await store.upsertInstance(instance("gi_A"));
    await store.heartbeatInstance("gi_A", "2026-01-01T00:00:02.000Z");
    await store.markInstanceStopped("gi_B", "2026-01-01T00:00:09.000Z");
    expect(await store.listInstances()).toEqual([
      instance("gi_A", { heartbeatAt: "2026-01-01T00:00:02.000Z" }),
      instance("gi_B", { startedAt: "2026-01-01T00:00:05.000Z", stoppedAt: "2026-01-01T00:00:09.000Z" }),
    ]);

    // gi_B starts again elsewhere: a new address, a new start, and no longer stopped.
    const again = instance("gi_B", {
      url: "https://b2.example:18790",
      listen: "127.0.0.1:18790",
      startedAt: "2026-01-01T00:01:00.000Z",
      heartbeatAt: "2026-01-01T00:01:00.000Z",
    });
    await store.upsertInstance({ ...again, stoppedAt: "2026-01-01T00:00:09.000Z" });
    expect((await store.listInstances())[1]).toEqual(again);
  });

  it("lists open sessions with their instance, and a start closes only its own", async () => {
    await store.upsertDevice(deviceRecord("d1"));
    await store.openSession(session("s1", "gi_A"));
    await store.recordSessionChanges(
      [
        { kind: "open", session: session("s2", "gi_B", { connectedAt: "2026-01-01T00:00:01.000Z" }) },
        { kind: "open", session: session("s3", "gi_B", { connectedAt: "2026-01-01T00:00:02.000Z" }) },
      ],
      [],
    );
    expect((await store.listOpenSessions()).map((s) => [s.sessionId, s.instanceId])).toEqual([
      ["s1", "gi_A"],
      ["s2", "gi_B"],
      ["s3", "gi_B"],
    ]);

    expect(await store.closeAllOpenSessions("2026-01-01T00:05:00.000Z", "instance restarted", "gi_B")).toBe(
      2,
    );
    expect(await store.listOpenSessions()).toEqual([session("s1", "gi_A")]);
    expect(await store.closeAllOpenSessions("2026-01-01T00:06:00.000Z", "gateway restarted")).toBe(1);
    expect(await store.listOpenSessions()).toEqual([]);
    const rows = await database.rows("sessions", "session_id");
    expect(rows.map((r) => [r.session_id, r.close_reason])).toEqual([
      ["s1", "gateway restarted"],
      ["s2", "instance restarted"],
      ["s3", "instance restarted"],
    ]);
  });

  it("writes a batch of session changes in order: the first end wins, an unknown address keeps the last", async () => {
    await store.upsertDevice(deviceRecord("d1", { address: "10.0.0.1" }));
    await store.upsertDevice(deviceRecord("d2", { address: "10.0.0.2" }));
    await store.recordSessionChanges(
      [
        { kind: "open", session: session("s1", "gi_A") },
        {
          kind: "close",
          sessionId: "s1",
          at: "2026-01-01T00:00:03.000Z",
          closeCode: 1000,
          closeReason: "bye",
        },
        {
          kind: "close",
          sessionId: "s1",
          at: "2026-01-01T00:00:04.000Z",
          closeCode: 4403,
          closeReason: "late",
        },
        { kind: "open", session: session("s2", null, { deviceId: "d2" }) },
      ],
      [
        { deviceId: "d1", lastSeen: "2026-01-01T00:00:03.000Z", address: null },
        { deviceId: "d2", lastSeen: "2026-01-01T00:00:04.000Z", address: "10.9.9.9" },
      ],
    );
    const rows = await database.rows("sessions", "session_id");
    expect(rows).toEqual([
      {
        session_id: "s1",
        device_id: "d1",
        instance_id: "gi_A",
        address: "10.0.0.1",
        connected_at: T0,
        disconnected_at: "2026-01-01T00:00:03.000Z",
        close_code: 1000,
        close_reason: "bye",
      },
      {
        session_id: "s2",
        device_id: "d2",
        instance_id: null,
        address: "10.0.0.1",
        connected_at: T0,
        disconnected_at: null,
        close_code: null,
        close_reason: null,
      },
    ]);
    expect(await store.getDevice("d1")).toMatchObject({
      lastSeen: "2026-01-01T00:00:03.000Z",
      address: "10.0.0.1",
    });
    expect(await store.getDevice("d2")).toMatchObject({
      lastSeen: "2026-01-01T00:00:04.000Z",
      address: "10.9.9.9",
    });
  });

  it("keeps shared material: the first of two racing creators wins, an update replaces", async () => {
    const material = (value: string) => ({ name: "pki/ca.key", value, sealed: 1, updatedAt: T0 });
    expect(await store.getSharedMaterial("pki/ca.key")).toBeUndefined();
    const racing = await Promise.all(
      ["first", "second", "third"].map((v) => store.putSharedMaterial(material(v), { onlyIfAbsent: true })),
    );
    expect(racing.filter(Boolean)).toHaveLength(1);
    const kept = await store.getSharedMaterial("pki/ca.key");
    expect(["first", "second", "third"]).toContain(kept?.value);
    expect(await store.putSharedMaterial(material("fourth"), { onlyIfAbsent: true })).toBe(false);
    expect((await store.getSharedMaterial("pki/ca.key"))?.value).toBe(kept?.value);

    expect(
      await store.putSharedMaterial({
        ...material("rotated"),
        sealed: 0,
        updatedAt: "2026-02-01T00:00:00.000Z",
      }),
    ).toBe(true);
    expect(await store.getSharedMaterial("pki/ca.key")).toEqual({
      name: "pki/ca.key",
      value: "rotated",
      sealed: 0,
      updatedAt: "2026-02-01T00:00:00.000Z",
    });
  });

  it("counts every hit of a rate window, even at once, and prunes old windows", async () => {
    const counts = await Promise.all(
      Array.from({ length: 20 }, () => store.countRateHit("addr:10.0.0.1", T0)),
    );
    expect(counts.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await store.countRateHit("addr:10.0.0.2", T0)).toBe(1);
    expect(await store.countRateHit("addr:10.0.0.1", "2026-01-01T00:01:00.000Z")).toBe(1);

    expect(await store.pruneRateWindows("2026-01-01T00:01:00.000Z")).toBe(2);
    expect(await store.countRateHit("addr:10.0.0.1", "2026-01-01T00:01:00.000Z")).toBe(2);
    // The pruned window starts again from one.
    expect(await store.countRateHit("addr:10.0.0.1", T0)).toBe(1);
  });

  it.runIf(dialect === "sqlite")("tells no one on SQLite: notify resolves and does nothing", async () => {
    await expect(store.notify("gatehouse_changes", '{"kind":"signing_keys"}')).resolves.toBeUndefined();
  });

  it.runIf(dialect === "postgres")("tells every listener on PostgreSQL: NOTIFY on the channel", async () => {
    const listener = new pg.Client({ connectionString: database.url });
    await listener.connect();
    try {
      await listener.query("LISTEN gatehouse_changes");
      const received = new Promise<{ channel: string; payload?: string }>((resolve) =>
        listener.once("notification", resolve),
      );
      await store.notify("gatehouse_changes", '{"kind":"device","deviceId":"d1"}');
      expect(await received).toMatchObject({
        channel: "gatehouse_changes",
        payload: '{"kind":"device","deviceId":"d1"}',
      });
    } finally {
      await listener.end();
    }
  });
}
