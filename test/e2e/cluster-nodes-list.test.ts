/**
 * `nodes list` with two instances of one gateway on one PostgreSQL behind HAProxy (cluster-harness.ts,
 * the real CLI and real processes), right after an instance dies and while the database is away:
 * a device is listed once (its newest session), and an instance whose database is out of reach
 * still lists the nodes it holds itself and says what it could not read.
 */
import { expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { waitConnected } from "./lifecycle-fixtures.js";
import {
  holderOf,
  otherThan,
  type ClusterInstance,
  type ClusterNodeView,
  type TestCluster,
} from "./cluster-harness.js";
import { clusterWithNodes, describeCluster, type ProxiedNode } from "./cluster-suite.js";

interface NodeListJson {
  nodes: ClusterNodeView[];
  incomplete?: { error: string; error_description: string; hint: string };
}

/**
 * Keeps writing a killed instance's heartbeat, as it stands in the shared table for up to 10 s
 * after `kill -9` (INSTANCE_STALE_AFTER_MS): the others still count it live and its session rows
 * open. Held for as long as the test needs, so what is asserted does not depend on how fast the
 * node reconnects on a loaded machine.
 */
function keepHeartbeatFresh(url: string, instanceId: string): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      while (running) {
        await client.query("UPDATE gateway_instances SET heartbeat_at = $1 WHERE instance_id = $2", [
          new Date().toISOString(),
          instanceId,
        ]);
        await sleep(500);
      }
    } finally {
      await client.end();
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}

describeCluster("nodes list across instances, after one dies", () => {
  let cluster: TestCluster;
  let node: ProxiedNode;
  let survivor: ClusterInstance;
  clusterWithNodes(["listed-once"], (started, [proxied]) => {
    cluster = started;
    node = proxied!;
  });

  it("lists a device once, on its new instance, while the killed instance still looks live", async () => {
    const holder = await holderOf(cluster, node.deviceId);
    survivor = otherThan(cluster, holder);
    await holder.stop(true);
    const heartbeat = keepHeartbeatFresh(cluster.postgres.url, holder.instanceId);
    try {
      // The agent comes back through HAProxy to the survivor; the killed instance's row is still open.
      await waitConnected(node.agent, 2, 60_000);
      const listed = await cluster.json<NodeListJson>(["nodes", "list", "--home", survivor.home]);
      const views = listed.nodes.filter((n) => n.deviceId === node.deviceId);
      expect(views).toEqual([expect.objectContaining({ instanceId: survivor.instanceId, online: true })]);
      expect(listed.incomplete).toBeUndefined();

      const printed = await cluster.cli(["nodes", "list", "--home", survivor.home]);
      expect(printed.code, printed.stderr).toBe(0);
      expect(printed.stdout.split("\n").filter((line) => line.includes(node.deviceId))).toEqual([
        expect.stringContaining(survivor.instanceId),
      ]);
    } finally {
      await heartbeat.stop();
    }
  });

  it("with the database away, lists the nodes this instance holds and says the others could not be read", async () => {
    await cluster.postgres.stop();
    try {
      const listed = await cluster.cli(["nodes", "list", "--home", survivor.home, "--json"]);
      expect(listed.code, listed.stdout + listed.stderr).toBe(0);
      const body = JSON.parse(listed.stdout) as NodeListJson;
      expect(body.nodes.map((n) => [n.deviceId, n.instanceId])).toEqual([
        [node.deviceId, survivor.instanceId],
      ]);
      expect(body.incomplete).toMatchObject({ error: "unavailable" });
      expect(body.incomplete?.error_description).toContain(survivor.instanceId);
      expect(body.incomplete?.hint).toMatch(/\S/);

      const printed = await cluster.cli(["nodes", "list", "--home", survivor.home]);
      expect(printed.code, printed.stdout + printed.stderr).toBe(0);
      expect(printed.stdout).toContain(node.deviceId);
      expect(printed.stderr).toMatch(/^warning: .*unavailable/m);
      expect(printed.stdout + printed.stderr).not.toMatch(/internal_error|\n\s+at /);
    } finally {
      await cluster.postgres.start();
    }
  });
});
