/**
 * A revocation reaches every instance (cluster-harness.ts: real PostgreSQL, two `gateway start`
 * processes made by `gateway init --store` and `gateway join`, HAProxy, nodes through it, the real
 * CLI). Revoked through the instance that does not hold the node, the holder closes the node's
 * session 4403 `device_revoked` on the other's notification; and a revocation whose notification
 * the holder never got (its LISTEN connection was cut, and it could not dial again until the
 * revocation was done) takes effect when it reconnects, by its catch-up read.
 */
import { expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Running } from "./harness.js";
import { withMsg } from "./lifecycle-fixtures.js";
import { otherThan, type ClusterInstance, type TestCluster } from "./cluster-harness.js";
import { clusterWithNodes, describeCluster, type ProxiedNode } from "./cluster-suite.js";

/** What the holder logs when it closes sessions for a change made on another instance. */
const CLOSED_FOR_OTHER = "device no longer approved (changed on another instance): sessions closed";

/** The instance whose log says it holds the node's session (HAProxy chose it). */
async function holderOf(cluster: TestCluster, deviceId: string): Promise<ClusterInstance> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(100)) {
    const holders = cluster.instances.filter((instance) =>
      withMsg(instance.process, "node connected").some((line) => line.deviceId === deviceId),
    );
    if (holders.length === 1) return holders[0]!;
  }
  throw new Error(`no single instance logged the session of ${deviceId}`);
}

/** Resolves with the agent's exit code, or "still running" after `ms` (generous: a shared machine). */
function exitWithin(agent: Running, ms: number): Promise<number | null | "still running"> {
  return Promise.race([agent.exited, sleep(ms).then(() => "still running" as const)]);
}

describeCluster("a revocation across two instances behind HAProxy", () => {
  let cluster: TestCluster;
  let live: ProxiedNode;
  let missed: ProxiedNode;
  clusterWithNodes(["revoke-live", "revoke-missed"], (started, nodes) => {
    cluster = started;
    [live, missed] = nodes as [ProxiedNode, ProxiedNode];
  });

  it("revoked through the other instance, the holder closes the node's session 4403 device_revoked", async () => {
    const holder = await holderOf(cluster, live.deviceId);
    const other = otherThan(cluster, holder);
    const started = Date.now();
    const run = await cluster.cli(["devices", "revoke", live.deviceId, "--home", other.home, "--json"]);
    expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
    // The other instance held no session of it: the close is the holder's.
    expect(JSON.parse(run.stdout)).toMatchObject({ sessionsClosed: 0 });

    expect(await exitWithin(live.agent, 30_000)).toBe(1);
    expect(live.agent.stdout + live.agent.stderr).toContain("device_revoked");
    const closed = withMsg(holder.process, CLOSED_FOR_OTHER).find((line) => line.deviceId === live.deviceId);
    expect(closed).toMatchObject({ sessionsClosed: 1, status: "revoked" });
    // At most this long from the command's start (its process start included) to the holder's close.
    console.log(
      `the holder closed the session ${Number(closed?.time) - started} ms after \`devices revoke\` started`,
    );
  });

  it("a revocation the holder never heard of takes effect once its change feed reconnects", async () => {
    const holder = await holderOf(cluster, missed.deviceId);
    const other = otherThan(cluster, holder);
    const admin = new pg.Client({ connectionString: cluster.postgres.url });
    await admin.connect();
    // The holder is frozen, and the database cuts its LISTEN connection: it can neither hear the
    // notification nor dial again until the revocation is done.
    holder.process.child.kill("SIGSTOP");
    try {
      const cut = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        [`gatehouse-changes ${holder.instanceId}`],
      );
      expect(cut.rowCount).toBe(1);
      const run = await cluster.cli(["devices", "revoke", missed.deviceId, "--home", other.home, "--json"]);
      expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
    } finally {
      holder.process.child.kill("SIGCONT");
      await admin.end();
    }
    expect(await exitWithin(missed.agent, 30_000)).toBe(1);
    expect(missed.agent.stdout + missed.agent.stderr).toContain("device_revoked");
    // Closed by the catch-up read after the reconnect, not by a notification.
    await holder.process.waitFor(
      () =>
        withMsg(holder.process, "caches re-read from the shared database").some(
          (l) => Number(l.sessionsClosed) >= 1,
        ),
      "the holder's catch-up read to close the session",
    );
    expect(withMsg(holder.process, "change feed connection lost; reconnecting")).not.toHaveLength(0);
  });
});
