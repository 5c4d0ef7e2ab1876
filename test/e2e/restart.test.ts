import { afterAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import path from "node:path";
import {
  cleanupAll,
  registeredNode,
  runCli,
  runJson,
  startTestGateway,
  type TestGateway,
} from "./harness.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import { waitConnected, withState } from "./lifecycle-fixtures.js";
import { RESTART_WINDOW_MS } from "../../src/node/backoff.js";

const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  cleanupAll();
});

interface NodeStatusReport {
  state: string;
  running: boolean;
  lastError: { code: string; message: string } | null;
}

describe("a gateway restart under a connected node", () => {
  it("the node sees 1012 `gateway restarting`, says so in its status, waits a flat few seconds (also when refused) and is back after the start", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    const node = await registeredNode(gateway, "returner");
    const agent = await startAgentAllowing(node.home, []);

    await gateway.stop();
    // The gateway's own log says it told its nodes.
    expect(gateway.process.stdout).toContain("gateway restarting");
    const isRestartClose = (line: Record<string, unknown>) =>
      typeof line.reason === "string" &&
      line.reason.includes("session closed by the gateway (1012 gateway restarting)");
    await agent.waitFor(
      () => withState(agent, "backoff").some(isRestartClose),
      "the node to see the 1012 close",
    );

    const status = await runJson<NodeStatusReport>(["node", "status", "--home", node.home]);
    expect(status.running).toBe(true);
    // The close itself, or a refused attempt since, which says the gateway is restarting.
    expect(["unavailable", "connection_refused"]).toContain(status.lastError?.code);
    expect(status.lastError?.message).toContain("1012 gateway restarting");

    // Nothing listens for now: the node is refused at least once, and stays in the flat window.
    await agent.waitFor(
      () => withState(agent, "backoff").some((line) => line.code === "connection_refused"),
      "the node to meet connection refused",
    );
    await gateway.restart();
    await waitConnected(agent, 2, 30_000);

    const backoffs = withState(agent, "backoff").filter(
      (line) => isRestartClose(line) || line.code === "connection_refused",
    );
    expect(backoffs.find(isRestartClose)?.hint).toContain("reconnects by itself");
    for (const line of backoffs) {
      expect(line.delayMs).toBeGreaterThanOrEqual(RESTART_WINDOW_MS.min);
      expect(line.delayMs).toBeLessThanOrEqual(RESTART_WINDOW_MS.max);
    }
    const back = await runJson<NodeStatusReport>(["node", "status", "--home", node.home]);
    expect(back).toMatchObject({ state: "connected", lastError: null });
    const nodes = await runJson<{ nodes: { name: string; online: boolean }[] }>([
      "nodes",
      "list",
      "--home",
      gateway.home,
    ]);
    expect(nodes.nodes.find((n) => n.name === "returner")?.online).toBe(true);

    await stopAgent(agent);
  });

  it("a command running during the stop gets node_offline for a gateway stop (1012), not 'start the node'", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    const node = await registeredNode(gateway, "busy");
    const agent = await startAgentAllowing(node.home, ["sh"]);
    const marker = path.join(path.dirname(node.home), "busy-running");
    const running = runCli([
      "nodes",
      "exec",
      "busy",
      "--home",
      gateway.home,
      "--",
      "sh",
      "-c",
      `touch '${marker}'; sleep 60`,
    ]);
    await agent.waitFor(() => existsSync(marker), "the command to run on the node");
    await gateway.stop();
    const result = await running;
    expect(result.code).toBe(125);
    expect(result.stderr).toContain("node_offline: the gateway stopped while the node ran the command");
    expect(result.stderr).toMatch(/session closed 1012 \W?gateway restarting/);
    expect(result.stderr).toContain("Start the gateway again");
    expect(result.stderr).not.toContain("Start the node");
    await stopAgent(agent);
  });
});
