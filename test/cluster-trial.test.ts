/**
 * What a stranger learns from two gateway instances on one PostgreSQL database, in this process,
 * over real TLS on loopback. `/health` answers anyone (a node measures its clock skew there before
 * it holds a certificate), so it says which instance answered and nothing of where the others
 * listen: the live instances' addresses are shown to a credential that may see the fleet
 * (`node:status`), never to an anonymous caller or a node. A copy of an instance's home (a cloned
 * machine, a home copied instead of joined) started while that instance runs is refused before it
 * writes anything: two processes under one instance id would take each other's sessions and relays.
 * An instance bound to every address (0.0.0.0) with no `cluster.advertiseUrl` would be dialled by the
 * others at 127.0.0.1 — their own machine: doctor says so.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { checkGatewayHome } from "../src/doctor/home-checks.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import { approvedNode, createTestCluster, silent, type TestCluster } from "./fixtures/cluster.js";

interface Health {
  instanceId?: string;
  instances?: { instanceId: string; url: string; listen: string }[];
}

/** GET /health of `gateway` over real TLS, with a client certificate when `tls` gives one. */
function health(
  gateway: RunningGateway,
  tls: { key?: string; cert?: string } = {},
): Promise<{ text: string; body: Health }> {
  const ca = readFileSync(path.join(path.dirname(gateway.loaded.file), "pki", "ca.pem"), "utf8");
  return new Promise((resolve, reject) => {
    https
      .get(`${gateway.url}/health`, { ca, ...tls, agent: false }, (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () => resolve({ text, body: JSON.parse(text) as Health }));
      })
      .on("error", reject);
  });
}

/** The admin credential `gateway init --store` / `join` wrote into `home` (role admin). */
function adminTls(home: string) {
  return {
    key: readFileSync(path.join(home, "admin", "admin.key"), "utf8"),
    cert: readFileSync(path.join(home, "admin", "admin.pem"), "utf8"),
  };
}

const describePostgres = postgresAvailable() ? describe : describe.skip;

describePostgres("what /health tells about the instances of one gateway", () => {
  let cluster: TestCluster;
  let a: RunningGateway;
  let b: RunningGateway;

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-trial-", { a: "127.0.0.1:0", b: "127.0.0.1:0" });
    a = await cluster.start("a");
    b = await cluster.start("b");
  }, 120_000);

  afterAll(() => cluster?.close());

  it("an anonymous caller learns which instance answered, but no instance's address", async () => {
    const { text, body } = await health(b);
    expect(body.instanceId).toBe(b.ctx.cluster.instanceId);
    expect(body.instances).toBeUndefined();
    // Neither instance's internal URL nor listen address appears anywhere in the answer.
    for (const gateway of [a, b]) expect(text).not.toContain(new URL(gateway.url).host);
  });

  it("a node's certificate does not see the instances either (it has no node:status)", async () => {
    const { tls } = await approvedNode(a, "trial-node");
    const { body } = await health(a, { key: tls.key, cert: tls.cert });
    expect(body.instanceId).toBe(a.ctx.cluster.instanceId);
    expect(body.instances).toBeUndefined();
  });

  it("an admin's credential sees every live instance with its address", async () => {
    const { body } = await health(b, adminTls(cluster.home("b")));
    expect(body.instanceId).toBe(b.ctx.cluster.instanceId);
    expect(body.instances?.map((instance) => [instance.instanceId, instance.url]).sort()).toEqual(
      [
        [a.ctx.cluster.instanceId, a.url],
        [b.ctx.cluster.instanceId, b.url],
      ].sort(),
    );
  });
});

describePostgres("a copy of a running instance's home", () => {
  let cluster: TestCluster;
  let a: RunningGateway;

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-twin-", { a: "127.0.0.1:0" });
    a = await cluster.start("a");
  }, 120_000);

  afterAll(() => cluster?.close());

  it("is refused already_running, naming the instance, and takes nothing from the running one", async () => {
    // A node connected to a: its session row is open under a's instance id.
    const { deviceId, tls } = await approvedNode(a, "held");
    const { default: WebSocket } = await import("ws");
    const socket = new WebSocket(`${a.url.replace(/^https/, "wss")}/api/v1/connect`, tls);
    await new Promise((resolve, reject) => socket.once("message", resolve).once("error", reject));
    const openRows = async () =>
      (await a.ctx.store.listOpenSessions()).filter((row) => row.deviceId === deviceId).length;
    // The session's row is written by the journal's next batch, not before the welcome.
    for (let tries = 0; (await openRows()) === 0 && tries < 500; tries++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await openRows()).toBe(1);

    // The copy listens elsewhere (another machine, or another port here) under a's instance id.
    const copy = cluster.home("copy");
    cpSync(cluster.home("a"), copy, { recursive: true });
    rmSync(path.join(copy, "gateway.lock"), { force: true });
    rmSync(path.join(copy, "gateway.pid"), { force: true });
    const file = path.join(copy, "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as { listen: string };
    config.listen = "127.0.0.2:0";
    writeFileSync(file, JSON.stringify(config, null, 2));

    const refused = await startGateway(copy, { logger: silent }).then(
      async (started) => {
        await started.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(GatehouseError);
    expect(refused).toMatchObject({ code: "already_running" });
    expect((refused as Error).message).toContain(a.ctx.cluster.instanceId!);
    // Nothing changed: a's row still says where a is, and the node's session row is still open.
    const row = (await a.ctx.store.listInstances()).find((r) => r.instanceId === a.ctx.cluster.instanceId);
    expect(row).toMatchObject({ url: a.url, listen: "127.0.0.1:0", stoppedAt: null });
    expect(await openRows()).toBe(1);
    socket.close();
  });
});

describePostgres("an instance listening on every address", () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-advertise-", { a: "127.0.0.1:18789", b: "0.0.0.0:18789" });
  }, 120_000);

  afterAll(() => cluster?.close());

  const advertise = async (home: string) =>
    (await checkGatewayHome(home, new Date(), process.env)).filter((f) => f.check === "advertise-url");

  it("doctor warns that the others would dial it at 127.0.0.1, and names cluster.advertiseUrl", async () => {
    const [finding] = await advertise(cluster.home("b"));
    expect(finding).toMatchObject({ severity: "warning" });
    expect(finding?.message).toContain("https://127.0.0.1:18789");
    expect(finding?.fix).toContain("cluster.advertiseUrl");
  });

  it("says nothing once cluster.advertiseUrl is set, nor for an instance bound to one address", async () => {
    const file = path.join(cluster.home("b"), "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as { cluster: Record<string, string> };
    config.cluster.advertiseUrl = "https://10.0.0.12:18789";
    writeFileSync(file, JSON.stringify(config, null, 2));
    expect(await advertise(cluster.home("b"))).toEqual([]);
    expect(await advertise(cluster.home("a"))).toEqual([]);
  });
});
