// The preamble of every end-to-end test of two instances behind HAProxy (cluster-harness.ts): when
// such a block runs at all, and what stands ready before its first test and is taken down after
// its last. One place, so that a new step (a setting, a check, a cleanup) reaches every block.
import { afterAll, beforeAll, describe } from "vitest";
import { cleanupAll } from "./harness.js";
import { stopAgent } from "./agents.js";
import { postgresAvailable } from "../fixtures/postgres.js";
import { haproxyAvailable, nodeThroughProxy, startCluster, type TestCluster } from "./cluster-harness.js";

/** A node registered and connected through HAProxy: its home, device id and agent process. */
export type ProxiedNode = Awaited<ReturnType<typeof nodeThroughProxy>>;

/**
 * `describe` where PostgreSQL and HAProxy are installed, `describe.skip` elsewhere (each check says
 * why it skips once, or throws when GATEHOUSE_REQUIRE_POSTGRES / _HAPROXY asks for the tests).
 */
export const describeCluster = describe.skipIf(!(postgresAvailable() && haproxyAvailable()));

/**
 * Before the enclosing block's first test: a cluster behind HAProxy (startCluster with `options`) and, in order,
 * one node through it per name in `nodes` (nodeThroughProxy), handed to `ready`. After its last
 * test: every node's agent stopped (the one it has then: a test may start it again), the cluster
 * closed and the temp homes removed. Four minutes to start: several processes on a shared machine.
 */
export function clusterWithNodes(
  nodes: string[],
  ready: (cluster: TestCluster, nodes: ProxiedNode[]) => void,
  options: Parameters<typeof startCluster>[0] = {},
): void {
  let cluster: TestCluster | undefined;
  const started: ProxiedNode[] = [];
  beforeAll(async () => {
    cluster = await startCluster(options);
    for (const name of nodes) started.push(await nodeThroughProxy(cluster, name));
    ready(cluster, started);
  }, 240_000);
  afterAll(async () => {
    for (const node of started) await stopAgent(node.agent);
    await cluster?.close();
    cleanupAll();
  });
}
