/**
 * Two gateway instances on one real PostgreSQL database, in this process, over real TLS on
 * loopback: what one instance changes, the other hears of through LISTEN/NOTIFY and applies to
 * its caches — a revoked node's session on the other instance closes 4403 `device_revoked`, API
 * keys and signing keys follow — and a change made while an instance's LISTEN connection is down
 * takes effect once it reconnects (the catch-up read), not never.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import WebSocket from "ws";
import type { RunningGateway } from "../src/gateway/start.js";
import type { FleetCluster } from "../src/gateway/cluster/cluster.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import {
  approvedNode,
  connectNode as connect,
  changeFeedsListening,
  createTestCluster,
  eventually,
  type TestCluster,
} from "./fixtures/cluster.js";

/** A reconnect wait the test releases: the LISTEN connection stays down until then. */
class HeldReconnect {
  private held = false;
  private waiting: (() => void)[] = [];
  hold(): void {
    this.held = true;
  }
  release(): void {
    this.held = false;
    for (const resume of this.waiting.splice(0)) resume();
  }
  wait = (ms: number): Promise<void> =>
    this.held
      ? new Promise((resolve) => this.waiting.push(resolve))
      : new Promise((resolve) => setTimeout(resolve, Math.min(ms, 200)));
}

const describePostgres = postgresAvailable() ? describe : describe.skip;

describePostgres("two gateway instances on one PostgreSQL database", () => {
  let cluster: TestCluster;
  let a: RunningGateway;
  let b: RunningGateway;
  const reconnect = new HeldReconnect();

  beforeAll(async () => {
    cluster = await createTestCluster("gh-cluster-fanout-", { a: "127.0.0.1:0", b: "127.0.0.1:0" });
    a = await cluster.start("a");
    b = await cluster.start("b", { reconnectWait: reconnect.wait });
    await changeFeedsListening(b);
  }, 120_000);

  afterAll(async () => {
    reconnect.release();
    await cluster?.close();
  });

  it("a revocation on one instance closes the node's session on the other, 4403 device_revoked", async () => {
    const node = await approvedNode(a, "fanout-node");
    // The approval on a reached b's cache: b accepts the node's session.
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const session = await connect(b, node);
    const crlBefore = b.ctx.tls.secureContextOptions().crl;
    const started = Date.now();
    const revoked = await a.ctx.registrations.revoke(node.deviceId, "lost laptop", "admin");
    // a holds no session of it: the close on b is the other instance's doing.
    expect(revoked.sessionsClosed).toBe(0);
    expect(await session.closed).toEqual({ code: 4403, reason: "device_revoked" });
    console.log(`revocation on a closed the session on b after ${Date.now() - started} ms`);
    expect(b.ctx.devices.get(node.deviceId)?.status).toBe("revoked");
    // b's live TLS context has a new CRL (the certificate fails b's handshakes too)…
    await eventually(
      () => b.ctx.tls.secureContextOptions().crl[0] !== crlBefore[0],
      "b's CRL to be re-issued",
    );
    // …and a new session on b is refused, before any upgrade.
    const again = new WebSocket(`${b.url.replace(/^https/, "wss")}/api/v1/connect`, node.tls);
    const refused = await new Promise<string>((resolve) => {
      again.once("unexpected-response", (_request, response) => {
        let body = "";
        response.on("data", (chunk: Buffer) => (body += chunk.toString()));
        response.on("end", () => resolve(`${response.statusCode} ${body}`));
      });
      again.once("open", () => resolve("open"));
      again.once("error", (error) => resolve(error.message));
    });
    again.terminate();
    expect(refused).toMatch(/^403 .*revoked/);
    expect(b.ctx.sessions.isOnline(node.deviceId)).toBe(false);
  });

  it("an API key made, used and revoked on one instance is honoured and refused on the other", async () => {
    const { record, secret } = await a.ctx.tokens.createApiKey({ name: "ci", role: "operator" });
    await eventually(
      () => b.ctx.tokens.listApiKeys().some((key) => key.keyId === record.keyId),
      "b to see the key",
    );
    const grant = await b.ctx.tokens.exchangeApiKey(secret, undefined);
    await expect(b.ctx.tokens.authenticateBearer(grant.access_token, undefined)).resolves.toMatchObject({
      apiKeyId: record.keyId,
    });
    await a.ctx.tokens.revokeApiKey(record.keyId, "leaked");
    await eventually(
      () => b.ctx.tokens.listApiKeys().find((key) => key.keyId === record.keyId)?.revokedAt !== null,
      "b to see the revocation",
    );
    // The token b verified (and cached) before the revocation is refused now.
    await expect(b.ctx.tokens.authenticateBearer(grant.access_token, undefined)).rejects.toMatchObject({
      code: "invalid_token",
    });
    await expect(b.ctx.tokens.exchangeApiKey(secret, undefined)).rejects.toMatchObject({
      code: "invalid_token",
    });
  });

  it("a token signed after a signing-key rotation on one instance verifies on the other", async () => {
    await a.ctx.signingKeys.rotate(60_000);
    const kid = a.ctx.signingKeys.signer().kid;
    await eventually(() => b.ctx.signingKeys.signer().kid === kid, "b to use the new signing key");
    const { secret } = await b.ctx.tokens.createApiKey({ name: "rotated", role: "operator" });
    await eventually(
      () => a.ctx.tokens.listApiKeys().some((key) => key.name === "rotated"),
      "a to see the key",
    );
    const grant = await a.ctx.tokens.exchangeApiKey(secret, undefined);
    await expect(b.ctx.tokens.authenticateBearer(grant.access_token, undefined)).resolves.toMatchObject({
      role: "operator",
    });
  });

  it("a revocation made while an instance's LISTEN connection is down takes effect when it reconnects", async () => {
    const node = await approvedNode(a, "catch-up-node");
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const session = await connect(b, node);
    const feed = b.ctx.cluster as FleetCluster;

    // The database drops b's LISTEN connection, and b cannot dial again yet.
    reconnect.hold();
    const admin = new pg.Client({ connectionString: cluster.databaseUrl });
    await admin.connect();
    try {
      const { rowCount } = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        [`gatehouse-changes ${b.ctx.cluster.instanceId}`],
      );
      expect(rowCount).toBe(1);
    } finally {
      await admin.end();
    }
    await eventually(() => !feed.listening, "b's change feed to notice the lost connection");

    // Revoked on a while b hears nothing: the notification is lost for b.
    await a.ctx.registrations.revoke(node.deviceId, "stolen", "admin");
    expect(b.ctx.devices.get(node.deviceId)?.status).toBe("approved");
    expect(b.ctx.sessions.isOnline(node.deviceId)).toBe(true);

    // b dials again; its catch-up read finds the revocation and closes the session.
    reconnect.release();
    expect(await session.closed).toEqual({ code: 4403, reason: "device_revoked" });
    expect(feed.listening).toBe(true);
    expect(b.ctx.devices.get(node.deviceId)?.status).toBe("revoked");
  });

  it("session rows name their instance, and a restart of one instance leaves the other's sessions open", async () => {
    const node = await approvedNode(a, "restart-node");
    await eventually(() => b.ctx.devices.get(node.deviceId)?.status === "approved", "b to see the approval");
    const session = await connect(b, node);
    const held = async () =>
      (await a.ctx.store.listOpenSessions()).filter((row) => row.deviceId === node.deviceId);
    await eventually(async () => (await held()).length === 1, "b's session row to be written");
    expect((await held())[0]?.instanceId).toBe(b.ctx.cluster.instanceId);

    // a stops and starts again: it closes the sessions it held, not b's.
    await a.close();
    a = await cluster.start("a");
    expect((await held()).map((row) => row.instanceId)).toEqual([b.ctx.cluster.instanceId]);
    expect(b.ctx.sessions.isOnline(node.deviceId)).toBe(true);
    session.socket.close();
    await session.closed;
  });

  it("/health lists both live instances (to a viewer) and names the one that answered", async () => {
    type Health = { instanceId: string; instances: { instanceId: string; url: string; listen: string }[] };
    // Where the instances listen is shown to a credential with node:status, not to anyone.
    const { secret } = await b.ctx.tokens.createApiKey({ name: "health", role: "viewer" });
    const { access_token } = await b.ctx.tokens.exchangeApiKey(secret, undefined);
    const health = async () =>
      (
        await b.app.inject({
          method: "GET",
          url: "/health",
          headers: { authorization: `Bearer ${access_token}` },
        })
      ).json<Health>();
    expect((await health()).instanceId).toBe(b.ctx.cluster.instanceId);
    expect((await health()).instances.map((instance) => instance.instanceId).sort()).toEqual(
      [a.ctx.cluster.instanceId, b.ctx.cluster.instanceId].sort(),
    );
    // a started again on a new port: b learns its new address at its next heartbeat (2 s).
    await eventually(
      async () =>
        (await health()).instances.find((instance) => instance.instanceId === a.ctx.cluster.instanceId)
          ?.url === a.url,
      "b to list a's new address",
    );
  });
});
