/**
 * A node given several gateway URLs (`node register --gateway A --gateway B`), the real CLI against a
 * real gateway: A is a port nothing listens on (an instance that is down), B the gateway. The node
 * registers through B, node.json lists both in order, the agent connects through B, and
 * `node test-connection` walks each URL and names the dead one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  cleanupAll,
  freePort,
  listDevices,
  nodeRegisterArgs,
  runCli,
  runJson,
  spawnCli,
  startTestGateway,
  tempHome,
  type Running,
  type TestGateway,
} from "./harness.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import { setTimeout as sleep } from "node:timers/promises";

let gateway: TestGateway;
let agent: Running | undefined;
let dead: string;
const home = tempHome("node-urls");

beforeAll(async () => {
  gateway = await startTestGateway();
  dead = `https://127.0.0.1:${await freePort()}`;
});

afterAll(async () => {
  await stopAgent(agent);
  await gateway?.stop();
  cleanupAll();
});

describe("a node with several gateway URLs", () => {
  it("registers through the first URL that answers and keeps every URL, in order, in node.json", async () => {
    const register = spawnCli([
      ...nodeRegisterArgs(gateway, home, { name: "two-urls", url: dead }),
      "--gateway",
      gateway.url,
      "--json",
    ]);
    let userCode: string | null | undefined;
    const deadline = Date.now() + 30_000;
    while (!userCode) {
      if (Date.now() > deadline)
        throw new Error(`no pending request\n${register.stdout}\n${register.stderr}`);
      userCode = (await listDevices(gateway, true)).find((d) => d.name === "two-urls")?.userCode;
      if (!userCode) await sleep(100);
    }
    await runJson(["devices", "approve", userCode, "--home", gateway.home]);
    expect(await register.exited).toBe(0);
    const result = JSON.parse(register.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
    expect(result).toMatchObject({
      status: "approved",
      gatewayUrl: gateway.url,
      gatewayUrls: [dead, gateway.url],
    });
    const config = JSON.parse(readFileSync(path.join(home, "node.json"), "utf8")) as { gatewayUrl: unknown };
    expect(config.gatewayUrl).toEqual([dead, gateway.url]);
  });

  it("the agent passes over the dead URL and connects through the live one; node status names it", async () => {
    agent = await startAgentAllowing(home, []);
    const tried = agent
      .logLines()
      .filter((line) => line.state === "connecting")
      .map((line) => String(line.reason));
    expect(tried[0]).toContain(dead.replace("https:", "wss:"));
    expect(tried[1]).toContain(gateway.url.replace("https:", "wss:"));
    const status = await runJson<{ state: string; gatewayUrls: string[]; currentGatewayUrl: string }>([
      "node",
      "status",
      "--home",
      home,
    ]);
    expect(status).toMatchObject({
      state: "connected",
      gatewayUrls: [dead, gateway.url],
      currentGatewayUrl: gateway.url,
    });
    const human = await runCli(["node", "status", "--home", home]);
    expect(human.stdout).toContain(`gateway          ${dead}, ${gateway.url}`);
    expect(human.stdout).toContain(`using            ${gateway.url}`);
  });

  it("node test-connection walks each URL: the dead one fails at tcp, the live one passes, exit 1", async () => {
    const json = await runCli(["node", "test-connection", "--home", home, "--json"]);
    expect(json.code).toBe(1);
    const result = JSON.parse(json.stdout) as {
      ok: boolean;
      gateways: { ok: boolean; gatewayUrl: string; error: { layer: string; code: string } | null }[];
    };
    expect(result.ok).toBe(false);
    expect(result.gateways.map((walk) => [walk.gatewayUrl, walk.ok])).toEqual([
      [dead, false],
      [gateway.url, true],
    ]);
    expect(result.gateways[0]!.error).toMatchObject({ layer: "tcp", code: "connection_refused" });

    const human = await runCli(["node", "test-connection", "--home", home]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(`gateway ${dead} (1 of 2)`);
    expect(human.stdout).toContain(`gateway ${gateway.url} (2 of 2)`);
    expect(human.stdout).toContain(`✗ 1 of 2 gateway URLs failed: ${dead}`);

    // --gateway tests that one URL alone, as before.
    const one = await runCli(["node", "test-connection", "--home", home, "--gateway", gateway.url]);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain("✓ all layers fine");
  });
});
