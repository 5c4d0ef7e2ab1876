/**
 * PostgreSQL goes away and comes back while both instances run (cluster-harness.ts: real
 * PostgreSQL, two `gateway start` processes, HAProxy, nodes through it). While it is down an admin
 * write is refused by name (`unavailable`, no stack trace) and changes nothing; once it is back both
 * instances serve again without a restart of their own, and a revocation made through the instance
 * that does not hold the node closes the node's session there: their change feed was cut by the
 * restart, so a missed notification must be caught up.
 */
import { expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import type { CliResult } from "./harness.js";
import { holderOf, otherThan, type ClusterInstance, type TestCluster } from "./cluster-harness.js";
import { clusterWithNodes, describeCluster, type ProxiedNode } from "./cluster-suite.js";

/** A stack frame as Node prints it: what a user must never see from the CLI. */
const STACK_FRAME = /\n\s+at .+\(.+:\d+:\d+\)/;

describeCluster("PostgreSQL restarts under two running instances", () => {
  let cluster: TestCluster;
  let kept: ProxiedNode;
  let revoked: ProxiedNode;
  /** The instance that holds `revoked`'s session. */
  let holder: ClusterInstance;
  clusterWithNodes(["pg-kept", "pg-revoked"], (started, nodes) => {
    cluster = started;
    [kept, revoked] = nodes as [ProxiedNode, ProxiedNode];
  });

  /** Runs an admin command through `through` until it is not refused as `unavailable` (max 60 s). */
  async function onceAvailable(args: string[], through: ClusterInstance): Promise<CliResult> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      // --home and --json before the command: after `--` they would be the node's arguments.
      const run = await cluster.cli(["--home", through.home, "--json", ...args]);
      const unavailable = run.code !== 0 && run.stdout.includes('"error":"unavailable"');
      if (!unavailable || Date.now() > deadline) return run;
      await sleep(250);
    }
  }

  it("while PostgreSQL is down, a revocation is refused as unavailable, by name, and changes nothing", async () => {
    holder = await holderOf(cluster, revoked.deviceId);
    const other = otherThan(cluster, holder);
    await cluster.postgres.stop();

    const run = await cluster.cli(["devices", "revoke", revoked.deviceId, "--home", other.home, "--json"]);
    expect(run.code).toBe(1);
    const body = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as Record<string, string>;
    expect(body.error).toBe("unavailable");
    expect(body.error_description).toBeTruthy();
    expect(body.hint).toBeTruthy();
    expect(run.stdout + run.stderr).not.toMatch(STACK_FRAME);

    // The nodes were not cut off by the database going away.
    expect(revoked.agent.child.exitCode).toBeNull();
    expect(kept.agent.child.exitCode).toBeNull();
  });

  it("PostgreSQL back: a revocation the holder's change feed missed still closes the node's session", async () => {
    const other = otherThan(cluster, holder);
    // The holder is frozen while PostgreSQL comes back and the revocation is made through the other
    // instance: its change feed cannot be listening when the notification goes out, so only the
    // catch-up read after it reconnects can close the session.
    holder.process.child.kill("SIGSTOP");
    try {
      await cluster.postgres.start();
      const refusedEarlier = await onceAvailable(["devices", "show", revoked.deviceId], other);
      expect(JSON.parse(refusedEarlier.stdout)).toMatchObject({ device: { status: "approved" } });
      const run = await onceAvailable(["devices", "revoke", revoked.deviceId], other);
      expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toMatchObject({ code: 0 });
      expect(revoked.agent.child.exitCode).toBeNull();
    } finally {
      holder.process.child.kill("SIGCONT");
    }

    // The holder closes the session 4403 device_revoked; the agent stops for good, saying why.
    const exit = await Promise.race([revoked.agent.exited, sleep(30_000).then(() => "still running")]);
    expect(exit).toBe(1);
    expect(revoked.agent.stdout + revoked.agent.stderr).toContain("device_revoked");
    const { device } = await cluster.json<{ device: { status: string } }>([
      "devices",
      "show",
      revoked.deviceId,
      "--home",
      holder.home,
    ]);
    expect(device.status).toBe("revoked");
  });

  it("both instances serve again: a command through either reaches the other node; audit verify passes", async () => {
    for (const through of cluster.instances) {
      const run = await onceAvailable(
        ["nodes", "exec", kept.deviceId, "--", "echo", `after-${through.name}`],
        through,
      );
      expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toMatchObject({ code: 0 });
      expect(JSON.parse(run.stdout)).toMatchObject({ stdout: `after-${through.name}\n` });
    }
    expect(kept.agent.child.exitCode).toBeNull();
    const verify = await cluster.cli(["audit", "verify", "--home", cluster.instances[0].home]);
    expect({ code: verify.code, stdout: verify.stdout, stderr: verify.stderr }).toMatchObject({ code: 0 });
  });
});
