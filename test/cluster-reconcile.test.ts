/**
 * A revocation is never lost for good between instances on one PostgreSQL database: each instance
 * re-reads what it caches every RECONCILE_EVERY_MS whatever it heard, and soon again after a
 * re-read or a change handler failed. Here the other instance's NOTIFY is suppressed (it failed
 * after the commit), or b's reads fail once, and b's re-read timer is fired by the test (no
 * waiting, no timing thresholds): the revoked node's session on b closes 4403 all the same. And
 * `gateway join`'s new admin is accepted by a running instance without it reconnecting.
 */
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { RunningGateway } from "../src/gateway/start.js";
import { RECONCILE_EVERY_MS, type FeedTimer } from "../src/gateway/cluster/change-feed.js";
import { joinClusterGatewayHome } from "../src/gateway/cluster/join.js";
import { GATEWAY_FILES } from "../src/config/index.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import {
  approvedNode,
  connectNode as connect,
  changeFeedsListening,
  createTestCluster,
  eventually,
  type TestCluster,
} from "./fixtures/cluster.js";

/** A FeedTimer the test fires: it records what is scheduled and runs it only when told. */
class ManualTimer {
  private pending: { run: () => void; ms: number }[] = [];
  schedule: FeedTimer = (run, ms) => {
    const entry = { run, ms };
    this.pending.push(entry);
    return () => (this.pending = this.pending.filter((other) => other !== entry));
  };
  /** The delays (ms) scheduled and not yet fired or cancelled. */
  delays(): number[] {
    return this.pending.map((entry) => entry.ms);
  }
  /** Runs every scheduled callback now, as if their time had come. */
  fireAll(): void {
    for (const entry of this.pending.splice(0)) entry.run();
  }
}

const describePostgres = postgresAvailable() ? describe : describe.skip;

describePostgres("a change another instance was not told of, made good by the periodic re-read", () => {
  let cluster: TestCluster;
  let a: RunningGateway;
  let b: RunningGateway;
  const timer = new ManualTimer();

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-reconcile-", { a: "127.0.0.1:0", b: "127.0.0.1:0" });
    a = await cluster.start("a");
    b = await cluster.start("b", { rereadTimer: timer.schedule });
    await changeFeedsListening(a, b);
    // b's first catch-up is done once the next re-read is scheduled for a whole period.
    await eventually(
      () => timer.delays().includes(RECONCILE_EVERY_MS),
      "b's periodic re-read to be scheduled",
    );
  }, 120_000);

  afterEach(() => vi.restoreAllMocks());
  afterAll(async () => cluster?.close());

  /** An approved node with a session on b, and a's notices from now on lost (NOTIFY fails). */
  async function nodeOnBWithNoticesLost(name: string) {
    const node = await approvedNode(a, name);
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const session = await connect(b, node);
    vi.spyOn(a.ctx.store, "notify").mockRejectedValue(new Error("connection terminated"));
    return { node, session };
  }

  it("closes the session on b of a device revoked on a whose NOTIFY failed, at b's next periodic re-read", async () => {
    const { node, session } = await nodeOnBWithNoticesLost("reconcile-node");
    await a.ctx.registrations.revoke(node.deviceId, "lost laptop", "admin");
    // Nothing told b: its cache still says approved and the session is open.
    expect(b.ctx.devices.get(node.deviceId)?.status).toBe("approved");
    expect(b.ctx.sessions.isOnline(node.deviceId)).toBe(true);
    timer.fireAll();
    expect(await session.closed).toEqual({ code: 4403, reason: "device_revoked" });
    expect(b.ctx.devices.get(node.deviceId)?.status).toBe("revoked");
    await eventually(() => timer.delays().includes(RECONCILE_EVERY_MS), "the next period to be scheduled");
  });

  it("a re-read that fails once (a dead pooled connection) is tried again soon, and then closes the session", async () => {
    const { node, session } = await nodeOnBWithNoticesLost("retry-node");
    await a.ctx.registrations.revoke(node.deviceId, "lost laptop", "admin");
    vi.spyOn(b.ctx.store, "listDevices").mockRejectedValueOnce(
      new Error("Connection terminated unexpectedly"),
    );
    timer.fireAll();
    // The failed re-read schedules a retry sooner than the period.
    await eventually(
      () => timer.delays().some((ms) => ms < RECONCILE_EVERY_MS),
      "a retry sooner than the period",
    );
    expect(b.ctx.sessions.isOnline(node.deviceId)).toBe(true);
    timer.fireAll();
    expect(await session.closed).toEqual({ code: 4403, reason: "device_revoked" });
  });

  it("a change handler that fails (its re-read of the device) is made good by a re-read soon after", async () => {
    const node = await approvedNode(a, "handler-node");
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const session = await connect(b, node);
    const read = vi
      .spyOn(b.ctx.store, "getDevice")
      .mockRejectedValueOnce(new Error("Connection terminated unexpectedly"));
    await a.ctx.registrations.revoke(node.deviceId, "lost laptop", "admin");
    await eventually(() => read.mock.calls.length > 0, "b to hear of the revocation");
    await eventually(
      () => timer.delays().some((ms) => ms < RECONCILE_EVERY_MS),
      "a retry sooner than the period",
    );
    expect(b.ctx.sessions.isOnline(node.deviceId)).toBe(true);
    timer.fireAll();
    expect(await session.closed).toEqual({ code: 4403, reason: "device_revoked" });
  });

  it("the admin `gateway join` makes is accepted by a running instance at once, without a reconnect", async () => {
    const home = path.join(cluster.dir, "c");
    const joined = await joinClusterGatewayHome(home, { store: cluster.databaseUrl, listen: "127.0.0.1:0" });
    // b's periodic re-read is never fired here: only join's notice can tell b.
    await eventually(
      () => b.ctx.devices.get(joined.adminDeviceId)?.status === "approved",
      "b to know the new admin",
    );
    const status = await new Promise<number>((resolve, reject) => {
      const request = https.get(
        `${b.url}/api/v1/devices`,
        {
          key: readFileSync(path.join(home, GATEWAY_FILES.adminKey)),
          cert: readFileSync(path.join(home, GATEWAY_FILES.adminCert)),
          ca: readFileSync(path.join(home, GATEWAY_FILES.adminCa)),
        },
        (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        },
      );
      request.on("error", reject);
    });
    expect(status).toBe(200);
  });
});
