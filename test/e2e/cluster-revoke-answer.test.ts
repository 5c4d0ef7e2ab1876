/**
 * What `devices revoke` says with several instances (cluster-harness.ts: real PostgreSQL, two
 * `gateway start` processes, HAProxy, nodes through it, the real CLI). Revoked through the
 * instance that does not hold the node, the answer no longer says "closed 0 live session(s)" as if
 * nothing were closed: it says none were closed here and that the other instances close their one
 * as they hear of it; through the holder it says it closed the one here and no other held one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupAll, type Running } from "./harness.js";
import { stopAgent } from "./agents.js";
import { postgresAvailable } from "../fixtures/postgres.js";
import {
  haproxyAvailable,
  holderOf,
  nodeThroughProxy,
  otherThan,
  startCluster,
  type TestCluster,
} from "./cluster-harness.js";

const canRun = postgresAvailable() && haproxyAvailable();

describe.skipIf(!canRun)("devices revoke with two instances behind HAProxy", () => {
  let cluster: TestCluster;
  const nodes: { home: string; deviceId: string; agent: Running }[] = [];

  beforeAll(async () => {
    cluster = await startCluster();
    for (const name of ["answer-text", "answer-json", "answer-holder"])
      nodes.push(await nodeThroughProxy(cluster, name));
  }, 300_000);

  afterAll(async () => {
    for (const node of nodes) await stopAgent(node.agent);
    await cluster?.close();
    cleanupAll();
  });

  it("through the other instance, says none closed here and the other instances close theirs", async () => {
    const node = nodes[0]!;
    const other = otherThan(cluster, await holderOf(cluster, node.deviceId));
    const run = await cluster.cli(["devices", "revoke", node.deviceId, "--home", other.home]);
    expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0, stderr: "" });
    expect(run.stdout).toBe(
      `✓ revoked ${node.deviceId} (answer-text); closed 0 live session(s) here; the other instances close their 1 as they hear of it (within about a second)\n`,
    );
  });

  it("--json counts the sessions the other live instances held", async () => {
    const node = nodes[1]!;
    const other = otherThan(cluster, await holderOf(cluster, node.deviceId));
    const answer = await cluster.json<Record<string, unknown>>([
      "devices",
      "revoke",
      node.deviceId,
      "--home",
      other.home,
    ]);
    expect(answer).toMatchObject({ sessionsClosed: 0, sessionsOnOtherInstances: 1 });
  });

  it("through the holder, says it closed the session here and no other instance held one", async () => {
    const node = nodes[2]!;
    const holder = await holderOf(cluster, node.deviceId);
    const run = await cluster.cli(["devices", "revoke", node.deviceId, "--home", holder.home]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      `✓ revoked ${node.deviceId} (answer-holder); closed 1 live session(s) here; no other instance held one\n`,
    );
  });
});
