/**
 * What the views say with several instances on one PostgreSQL database: a device is online on
 * every instance while any live instance holds its session (`devices list`, `devices show`, the
 * dashboard's devices), and when a live instance closes the sessions of an instance gone stale the
 * dashboards are told (its own event hub, and a `nodes` notice to the others).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import WebSocket from "ws";
import type { RunningGateway } from "../src/gateway/start.js";
import type { FleetCluster } from "../src/gateway/cluster/cluster.js";
import { CHANGE_CHANNEL, decodeChange } from "../src/gateway/cluster/change-feed.js";
import { INSTANCE_STALE_AFTER_MS } from "../src/gateway/cluster/instance-registry.js";
import type { DeviceView } from "../src/protocol/messages.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import { instanceRecord, sessionRecord } from "./fixtures/store.js";
import {
  approvedNode,
  changeFeedsListening,
  createTestCluster,
  eventually,
  type TestCluster,
} from "./fixtures/cluster.js";

/** An admin's bearer token on `gateway` (an API key exchanged, as `gatehouse token` does). */
async function adminBearer(gateway: RunningGateway): Promise<string> {
  const { secret } = await gateway.ctx.tokens.createApiKey({ name: `viewer-${Date.now()}`, role: "admin" });
  return `Bearer ${(await gateway.ctx.tokens.exchangeApiKey(secret, undefined)).access_token}`;
}

const describePostgres = postgresAvailable() ? describe : describe.skip;

describePostgres("devices online across instances (one PostgreSQL database)", () => {
  let cluster: TestCluster;
  let a: RunningGateway;
  let b: RunningGateway;

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-views-", { a: "127.0.0.1:0", b: "127.0.0.1:0" });
    a = await cluster.start("a");
    b = await cluster.start("b");
    await changeFeedsListening(a, b);
  }, 120_000);

  afterAll(() => cluster?.close());

  it("devices list and devices show say a node held by one instance is online on both, and offline on both once it leaves", async () => {
    const node = await approvedNode(a, "held-by-a");
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const bearer = { a: await adminBearer(a), b: await adminBearer(b) };
    const views = async (gateway: RunningGateway, authorization: string) => {
      const list = await gateway.app.inject({
        method: "GET",
        url: "/api/v1/devices",
        headers: { authorization },
      });
      const show = await gateway.app.inject({
        method: "GET",
        url: `/api/v1/devices/${node.deviceId}`,
        headers: { authorization },
      });
      expect(list.statusCode, list.body).toBe(200);
      expect(show.statusCode, show.body).toBe(200);
      const listed = list.json<{ devices: DeviceView[] }>().devices.find((d) => d.deviceId === node.deviceId);
      return { list: listed?.online, show: show.json<{ device: DeviceView }>().device.online };
    };
    expect(await views(b, bearer.b)).toEqual({ list: false, show: false });

    const socket = new WebSocket(`${a.url.replace(/^https/, "wss")}/api/v1/connect`, node.tls);
    try {
      await eventually(() => a.ctx.sessions.isOnline(node.deviceId), "the node to connect to a");
      // Once a's session is in the shared sessions table (written in batches).
      await eventually(
        async () => (await b.ctx.store.listOpenSessions()).some((row) => row.deviceId === node.deviceId),
        "a's session row",
      );
      expect(await views(a, bearer.a)).toEqual({ list: true, show: true });
      expect(await views(b, bearer.b)).toEqual({ list: true, show: true });
    } finally {
      socket.close();
    }
    await eventually(
      async () => (await b.ctx.store.listOpenSessions()).every((row) => row.deviceId !== node.deviceId),
      "the session's end to be written",
    );
    expect(await views(b, bearer.b)).toEqual({ list: false, show: false });
  });
});

describePostgres("the sessions of an instance gone stale (one PostgreSQL database)", () => {
  let cluster: TestCluster;
  let gateway: RunningGateway;
  /** How far the gateway's clock is ahead of the wall clock, in milliseconds. */
  let ahead = 0;

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-stale-", { a: "127.0.0.1:0" });
    gateway = await cluster.start("a", { now: () => new Date(Date.now() + ahead) });
    await changeFeedsListening(gateway);
  }, 120_000);

  afterAll(() => cluster?.close());

  it("tells this instance's dashboards and the other instances that the dead instance's nodes left", async () => {
    const node = await approvedNode(gateway, "held-by-the-dead");
    const dead = "gi_deaddeaddeaddead";
    const killedAt = new Date(Date.now() - 1000).toISOString();
    // An instance killed with kill -9 while it held the node: its row and its session stay open.
    await gateway.ctx.store.upsertInstance(
      instanceRecord(dead, {
        url: "https://127.0.0.1:9",
        listen: "127.0.0.1:9",
        startedAt: killedAt,
        heartbeatAt: killedAt,
      }),
    );
    await gateway.ctx.store.openSession(
      sessionRecord("ses_dead", node.deviceId, {
        instanceId: dead,
        address: "127.0.0.1",
        connectedAt: killedAt,
      }),
    );

    const topics: string[] = [];
    const unsubscribe = gateway.ctx.events.subscribe((topic) => topics.push(topic));
    // Another instance's change feed, as the dashboards there hear of it.
    const listener = new pg.Client({ connectionString: cluster.databaseUrl });
    const notices: unknown[] = [];
    await listener.connect();
    listener.on("notification", (message) => notices.push(decodeChange(message.payload)));
    await listener.query(`LISTEN ${CHANGE_CHANNEL}`);
    try {
      // Past the stale delay (this instance reachable all along): the next beat sweeps.
      ahead = INSTANCE_STALE_AFTER_MS + 5000;
      await (gateway.ctx.cluster as FleetCluster).beat();
      expect((await gateway.ctx.store.listOpenSessions()).map((row) => row.sessionId)).not.toContain(
        "ses_dead",
      );
      expect(topics).toContain("nodes");
      const instanceId = (gateway.ctx.cluster as FleetCluster).instanceId;
      await eventually(
        () =>
          notices.some(
            (n) => JSON.stringify(n) === JSON.stringify({ from: instanceId, change: { kind: "nodes" } }),
          ),
        "a nodes notice from the sweeping instance",
      );
    } finally {
      unsubscribe();
      await listener.end();
    }
  });
});
