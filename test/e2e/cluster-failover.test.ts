/**
 * Two instances of one gateway on one PostgreSQL behind HAProxy (cluster-harness.ts), the real CLI
 * and real processes: a node registers and connects through HAProxy; a command through either
 * instance reaches it; `kill -9` of the instance that holds it and the node comes back through
 * HAProxy to the other instance, still approved, and is served there.
 */
import { expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { probeHealth } from "./harness.js";
import { waitConnected, withState } from "./lifecycle-fixtures.js";
import { holderOf, nodesThrough, otherThan, type TestCluster } from "./cluster-harness.js";
import { clusterWithNodes, describeCluster, type ProxiedNode } from "./cluster-suite.js";

describeCluster("two instances behind HAProxy", () => {
  let cluster: TestCluster;
  let node: ProxiedNode;
  clusterWithNodes(["failover-node"], (started, [proxied]) => {
    cluster = started;
    node = proxied!;
  });

  it("each instance's /health lists both live instances and names itself", async () => {
    for (const instance of cluster.instances) {
      // At the instance's own address, with an admin's certificate: where the instances listen is
      // shown to a credential with node:status (anonymously only the answering instance is named).
      const body = await fetchHealth(instance.url, cluster);
      expect(body.instanceId).toBe(instance.instanceId);
      expect(body.instances.map((i) => i.instanceId).sort()).toEqual(
        cluster.instances.map((i) => i.instanceId).sort(),
      );
    }
  });

  it("a node registered and connected through HAProxy is online through either instance, with its holder", async () => {
    const holder = await holderOf(cluster, node.deviceId, cluster.instances[0]);
    expect(await holderOf(cluster, node.deviceId, cluster.instances[1])).toBe(holder);
    for (const through of cluster.instances) {
      const views = (await nodesThrough(cluster, through)).filter((n) => n.deviceId === node.deviceId);
      expect(views).toHaveLength(1);
    }
  });

  it("a command through either instance reaches the node and its output comes back", async () => {
    for (const through of cluster.instances) {
      const run = await cluster.cli([
        "nodes",
        "exec",
        node.deviceId,
        "--home",
        through.home,
        "--",
        "echo",
        `through-${through.name}`,
      ]);
      expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toMatchObject({
        code: 0,
        stdout: `through-${through.name}\n`,
      });
    }
  });

  it("kill -9 of the holding instance: the node reconnects through HAProxy to the other, stays approved, is served", async () => {
    const holder = await holderOf(cluster, node.deviceId);
    const survivor = otherThan(cluster, holder);
    await holder.stop(true);
    expect(await probeHealth(holder.url)).toBe(false);

    // The session broke without a close frame; the agent comes back through the same proxy URL.
    await waitConnected(node.agent, 2, 60_000);
    expect(node.agent.child.exitCode).toBeNull();
    expect(withState(node.agent, "stopped")).toEqual([]);

    // Listed once, on the survivor (the killed instance's row goes when its heartbeat is stale).
    expect(await holderOf(cluster, node.deviceId, survivor, survivor)).toBe(survivor);
    const { device } = await cluster.json<{ device: { status: string } }>([
      "devices",
      "show",
      node.deviceId,
      "--home",
      survivor.home,
    ]);
    expect(device.status).toBe("approved");

    const run = await cluster.cli([
      "nodes",
      "exec",
      node.deviceId,
      "--home",
      survivor.home,
      "--",
      "echo",
      "still-here",
    ]);
    expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toMatchObject({
      code: 0,
      stdout: "still-here\n",
    });

    // The killed instance comes back and serves again: a command through it reaches the node.
    await holder.start();
    const back = await cluster.cli([
      "nodes",
      "exec",
      node.deviceId,
      "--home",
      holder.home,
      "--",
      "echo",
      "back",
    ]);
    expect({ code: back.code, stdout: back.stdout, stderr: back.stderr }).toMatchObject({
      code: 0,
      stdout: "back\n",
    });
  });

  it("audit verify passes with entries written by both instances", async () => {
    const run = await cluster.cli(["audit", "verify", "--home", cluster.instances[1].home]);
    expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toMatchObject({ code: 0 });
  });
});

/** GET /health of one instance as instance a's admin, trusting only the gateway's CA (its admin/). */
function fetchHealth(
  url: string,
  cluster: TestCluster,
): Promise<{ instanceId: string; instances: { instanceId: string }[] }> {
  const admin = path.join(cluster.instances[0].home, "admin");
  const [ca, key, cert] = ["ca.pem", "admin.key", "admin.pem"].map((f) =>
    readFileSync(path.join(admin, f), "utf8"),
  );
  return new Promise((resolve, reject) => {
    https
      .get(`${url}/health`, { ca, key, cert }, (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () => {
          try {
            resolve(JSON.parse(text) as { instanceId: string; instances: { instanceId: string }[] });
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        });
      })
      .on("error", reject);
  });
}
