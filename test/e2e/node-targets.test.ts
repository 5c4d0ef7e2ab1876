import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cleanupAll,
  freePort,
  registeredNode,
  runCli,
  runJson,
  startTestGateway,
  type Running,
  type TestGateway,
} from "./harness.js";
import { apiKeyNodeHome } from "./api-keys.js";
import { startAgentAllowing, stopAgent } from "./agents.js";

/**
 * Every command that takes a node reads it the same way (device id, name, or an API-key node's
 * subject), an unknown node is `node_not_found`, and `nodes exec` keeps the remote command's
 * exit status apart from its own failures (125, as `docker run` does).
 */

interface HistoryRow {
  deviceId: string;
  command: string;
  args: string[];
  exitCode: number | null;
}

let gateway: TestGateway;
let laptopId: string;
const nodes: Running[] = [];

/** Allows these commands on a node home, then starts its agent and waits for its session. */
async function startNode(home: string, allow: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  nodes.push(await startAgentAllowing(home, allow, env));
}

/** `gatehouse nodes SUB --home GW ARGS…`: --home before any `--`, so a remote argv stays as given. */
function nodesCli([sub, ...args]: string[]) {
  return runCli(["nodes", sub!, "--home", gateway.home, ...args]);
}

beforeAll(async () => {
  gateway = await startTestGateway();
  const laptop = await registeredNode(gateway, "laptop");
  laptopId = laptop.deviceId;
  await startNode(laptop.home, ["uname", "sh"]);
}, 120_000);

afterAll(async () => {
  for (const node of nodes) await stopAgent(node);
  await gateway.stop();
  cleanupAll();
});

describe("one resolver for every command that takes a node", () => {
  it("shows by name what `nodes exec laptop` ran (the README's example), in any case of the name", async () => {
    for (const argv of [["uname"], ["sh", "-c", "exit 3"]]) {
      const ran = await nodesCli(["exec", "laptop", "--", ...argv]);
      expect([ran.code, ran.stderr]).toEqual([argv[0] === "sh" ? 3 : 0, ""]);
    }
    const text = await nodesCli(["history", "laptop"]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).not.toContain("no commands run");
    expect(text.stdout).toContain("sh -c exit 3");

    for (const target of ["laptop", "LAPTOP", laptopId]) {
      const { history } = await runJson<{ history: HistoryRow[] }>([
        "nodes",
        "history",
        target,
        "--home",
        gateway.home,
      ]);
      expect(history.map((h) => [h.deviceId, h.command, h.exitCode])).toEqual([
        [laptopId, "sh", 3],
        [laptopId, "uname", 0],
      ]);
    }
  });

  it("names an unknown node node_not_found and exits 1 in history, as exec does", async () => {
    const text = await nodesCli(["history", "no-such-node"]);
    expect(text.code).toBe(1);
    expect(text.stdout).toBe("");
    expect(text.stderr).toContain("✗ node_not_found");
    expect(text.stderr).toContain('"no-such-node"');

    const json = await nodesCli(["history", "no-such-node", "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: "node_not_found" });

    const exec = await nodesCli(["exec", "no-such-node", "--json", "--", "uname"]);
    expect(JSON.parse(exec.stdout)).toMatchObject({ error: "node_not_found" });
  });

  it("is not fooled by the admin's own device id: it is no node", async () => {
    const { devices } = await runJson<{ devices: { deviceId: string; kind: string }[] }>([
      "devices",
      "list",
      "--home",
      gateway.home,
    ]);
    const admin = devices.find((d) => d.kind === "operator")!;
    const history = await nodesCli(["history", admin.deviceId, "--json"]);
    expect(history.code).toBe(1);
    expect(JSON.parse(history.stdout)).toMatchObject({ error: "node_not_found" });
  });

  it("refuses a name two approved nodes share, in exec and history alike, and says it is ambiguous", async () => {
    const first = await registeredNode(gateway, "twin");
    const second = await registeredNode(gateway, "twin");
    for (const args of [
      ["exec", "twin", "--json", "--", "uname"],
      ["history", "twin", "--json"],
    ]) {
      const result = await nodesCli(args);
      const body = JSON.parse(result.stdout) as { error: string; error_description: string; hint: string };
      expect(body.error).toBe("invalid_request");
      expect(body.error_description).toContain('"twin" is ambiguous');
      expect(body.error_description).toContain(first.deviceId);
      expect(body.error_description).toContain(second.deviceId);
    }
    // By id each one is still reachable (history of a registered node that ran nothing is empty).
    const byId = await nodesCli(["history", first.deviceId]);
    expect([byId.code, byId.stdout]).toEqual([0, "no commands run on this node\n"]);
  });

  it("reads a node on an API key by the subject `nodes list` shows, in exec and history", async () => {
    const { home, subject, env } = await apiKeyNodeHome(gateway, {
      keyName: "ci-runner",
      homePrefix: "api-node",
      variable: "GH_KEY",
    });
    await startNode(home, ["uname"], env);
    expect((await nodesCli(["exec", subject, "--", "uname"])).code).toBe(0);
    const { history } = await runJson<{ history: HistoryRow[] }>([
      "nodes",
      "history",
      subject,
      "--home",
      gateway.home,
    ]);
    expect(history.map((h) => [h.deviceId, h.command])).toEqual([[subject, "uname"]]);
  });
});

describe("nodes exec: the remote command's status, or 125 for the CLI's own failure", () => {
  it("passes the remote command's exit status through, 2 included", async () => {
    for (const status of [0, 1, 2, 124, 126, 255]) {
      const ran = await nodesCli(["exec", laptopId, "--", "sh", "-c", `exit ${status}`]);
      expect(ran.code).toBe(status);
    }
  });

  it("exits 125 for wrong usage, in the action and in the parser, with and without --json", async () => {
    const noCommand = await nodesCli(["exec", "laptop"]);
    expect(noCommand.code).toBe(125);
    const badTimeout = await nodesCli(["exec", "laptop", "--timeout", "soon", "--", "uname"]);
    expect(badTimeout.code).toBe(125);
    const unknownOption = await nodesCli(["exec", "laptop", "--timout", "5", "--", "uname"]);
    expect(unknownOption.code).toBe(125);
    expect(unknownOption.stderr).toContain("--timout");
    const noArguments = await runCli(["nodes", "exec", "--home", gateway.home, "--json"]);
    expect(noArguments.code).toBe(125);
    expect(JSON.parse(noArguments.stdout)).toMatchObject({ error: "invalid_request" });
    // Other commands keep the contract's 2 for wrong usage.
    expect((await runCli(["nodes", "history", "--home", gateway.home])).code).toBe(2);
  });

  it("exits 125 when the CLI cannot reach the gateway or its credential is refused", async () => {
    const port = await freePort();
    const unreachable = await nodesCli([
      "exec",
      "laptop",
      "--gateway",
      `https://127.0.0.1:${port}`,
      "--",
      "uname",
    ]);
    expect(unreachable.code).toBe(125);
    expect(unreachable.stderr).toContain("connection_refused");

    const refused = await nodesCli(["exec", "laptop", "--token", "not-a-token", "--", "uname"]);
    expect(refused.code).toBe(125);
    expect(refused.stderr).toContain("invalid_token");
  });

  it("exits 125 when the gateway or the node refuses the command, naming the code", async () => {
    const unknown = await nodesCli(["exec", "no-such-node", "--", "uname"]);
    expect(unknown.code).toBe(125);
    expect(unknown.stderr).toContain("node_not_found");
    const notAllowed = await nodesCli(["exec", laptopId, "--json", "--", "id"]);
    expect(notAllowed.code).toBe(125);
    expect(JSON.parse(notAllowed.stdout)).toMatchObject({ error: "command_not_allowed" });
  });
});
