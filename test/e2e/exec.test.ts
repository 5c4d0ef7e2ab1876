import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import path from "node:path";
import Database from "better-sqlite3";
import {
  cleanupAll,
  registeredNode,
  runCli,
  runJson,
  spawnCli,
  startTestGateway,
  type Running,
  type TestGateway,
} from "./harness.js";
import { apiKeyToken, type ApiKeyToken } from "./api-keys.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import { waitConnected, waitForMsg } from "./lifecycle-fixtures.js";

interface ErrorBody {
  error: string;
  error_description: string;
}
interface ExecJson {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
  code?: string;
}
interface HistoryRow {
  requestedBy: string;
  command: string;
  args: string[];
  outcome: string;
  exitCode: number | null;
  stdoutBytes: number;
  code: string | null;
}

let gateway: TestGateway;
let nodeHome: string;
let deviceId: string;
let node: Running;

/** An access token for a fresh API key with this role, as a script would get one. */
function tokenFor(role: string): Promise<ApiKeyToken> {
  return apiKeyToken(gateway, role, `${role}-script`);
}

/** `gatehouse nodes exec` as an operator types it; --json goes before `--` so the command keeps its argv. */
function exec(token: string, target: string, argv: string[], extra: string[] = []) {
  return runCli([
    "nodes",
    "exec",
    target,
    "--home",
    gateway.home,
    "--token",
    token,
    "--json",
    ...extra,
    "--",
    ...argv,
  ]);
}

beforeAll(async () => {
  gateway = await startTestGateway();
  ({ home: nodeHome, deviceId } = await registeredNode(gateway, "worker"));
  // The node owner's allow-list: what this node will run for operators.
  node = await startAgentAllowing(nodeHome, ["uname", "sh", "sleep", "yes"]);
});

afterAll(async () => {
  await stopAgent(node);
  await gateway.stop();
  cleanupAll();
});

describe("commands on nodes, by role, with history and audit", () => {
  it("lets a viewer list nodes but not run a command", async () => {
    const viewer = await tokenFor("viewer");
    const list = await runJson<{ nodes: { deviceId: string; platform: string; uptimeSeconds: number }[] }>([
      "nodes",
      "list",
      "--home",
      gateway.home,
      "--token",
      viewer.token,
    ]);
    expect(list.nodes.map((n) => n.deviceId)).toEqual([deviceId]);
    expect(list.nodes[0]!.platform).toBe(`${process.platform}-${process.arch}`);
    expect(list.nodes[0]!.uptimeSeconds).toBeGreaterThan(0);

    const refused = await exec(viewer.token, deviceId, ["uname", "-a"]);
    // 125: `nodes exec`'s own failure, apart from any status the remote command could give.
    expect(refused.code).toBe(125);
    const body = JSON.parse(refused.stdout) as ErrorBody;
    expect(body.error).toBe("insufficient_scope");
    expect(body.error_description).toContain("node:execute");
  });

  it("runs an allowed command for an operator, refuses the rest, and keeps the history", async () => {
    const operator = await tokenFor("operator");

    const uname = await exec(operator.token, deviceId, ["uname", "-a"]);
    expect(uname.code, uname.stderr).toBe(0);
    const ran = JSON.parse(uname.stdout) as ExecJson;
    expect(ran.exitCode).toBe(0);
    expect(ran.stdout).toBe(execFileSync("uname", ["-a"], { encoding: "utf8" }));

    // Plain output, stderr and the command's own exit code, as an operator sees them.
    const failing = await runCli([
      "nodes",
      "exec",
      "worker",
      "--home",
      gateway.home,
      "--token",
      operator.token,
      "--",
      "sh",
      "-c",
      "echo out; echo err >&2; exit 3",
    ]);
    expect(failing).toMatchObject({ code: 3, stdout: "out\n", stderr: "err\n" });

    const refused = await exec(operator.token, deviceId, ["cat", "/etc/hostname"]);
    expect(refused.code).toBe(125);
    expect(JSON.parse(refused.stdout)).toMatchObject({ error: "command_not_allowed" });
    await waitForMsg(node, "refused to run cat");

    const history = await runJson<{ history: HistoryRow[] }>([
      "nodes",
      "history",
      deviceId,
      "--home",
      gateway.home,
      "--token",
      operator.token,
    ]);
    const [last, second, first] = history.history;
    expect(first).toMatchObject({
      requestedBy: operator.subject,
      command: "uname",
      args: ["-a"],
      outcome: "completed",
      exitCode: 0,
    });
    expect(first!.stdoutBytes).toBe(Buffer.byteLength(ran.stdout));
    expect(second).toMatchObject({ command: "sh", exitCode: 3, outcome: "completed" });
    expect(last).toMatchObject({
      requestedBy: operator.subject,
      command: "cat",
      outcome: "refused",
      code: "command_not_allowed",
      exitCode: null,
    });
  });

  it("names each way a command can fail: unknown node, timeout, output cap, offline", async () => {
    const operator = await tokenFor("operator");
    const codeOf = async (target: string, argv: string[], extra: string[] = []) => {
      const result = await exec(operator.token, target, argv, extra);
      return { exit: result.code, body: JSON.parse(result.stdout) as ExecJson & Partial<ErrorBody> };
    };

    expect(await codeOf("no-such-node", ["uname"])).toMatchObject({
      exit: 125,
      body: { error: "node_not_found" },
    });
    expect(await codeOf(deviceId, ["sleep", "10"], ["--timeout", "300"])).toMatchObject({
      exit: 125,
      body: { error: "exec_timeout" },
    });
    const capped = await codeOf(deviceId, ["yes"]);
    expect(capped.body).toMatchObject({ truncated: true, code: "payload_too_large" });
    expect(capped.exit).toBe(125);
    expect(capped.body.stdout.length).toBe(16 * 1024);

    // The node dies in the middle of a command: the operator hears it at once, not after the timeout.
    const pending = exec(operator.token, deviceId, ["sleep", "60"], ["--timeout", "120000"]);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    node.child.kill("SIGKILL");
    const gone = await pending;
    expect(gone.code).toBe(125);
    expect(JSON.parse(gone.stdout)).toMatchObject({ error: "node_offline" });

    // Offline from the start is the same code, named by device.
    expect(await codeOf(deviceId, ["uname"])).toMatchObject({ exit: 125, body: { error: "node_offline" } });

    node = spawnCli(["node", "start", "--home", nodeHome]);
    await waitConnected(node);
  });

  it("audits every request and result, and audit verify finds a row altered in the database", async () => {
    const audit = await runJson<{ entries: { seq: number; type: string; code: string | null }[] }>([
      "audit",
      "tail",
      "-n",
      "1000",
      "--home",
      gateway.home,
    ]);
    const types = audit.entries.map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(["exec.request", "exec.result", "auth.refused"]));
    expect(audit.entries.find((e) => e.code === "command_not_allowed")?.type).toBe("exec.result");
    expect(audit.entries.find((e) => e.code === "insufficient_scope")?.type).toBe("auth.refused");

    const intact = await runCli(["audit", "verify", "--home", gateway.home]);
    expect(intact.code).toBe(0);
    expect(intact.stdout).toMatch(/✓ audit log intact: \d+ entries/);

    // Someone hides the refused command by editing its audit row directly in SQLite.
    const target = audit.entries.find((e) => e.code === "command_not_allowed")!;
    const db = new Database(path.join(gateway.home, "gatehouse.db"));
    db.prepare("UPDATE audit_events SET outcome = 'success', code = NULL WHERE seq = ?").run(target.seq);
    db.close();

    const broken = await runCli(["audit", "verify", "--home", gateway.home, "--json"]);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout)).toMatchObject({
      ok: false,
      checked: target.seq - 1,
      firstBroken: { seq: target.seq },
    });
  });

  it("never sends a command meant for one node to another of the same name", async () => {
    const operator = await tokenFor("operator");
    // A second node calls itself "worker" too (it is registered, not even online).
    await registeredNode(gateway, "worker");
    const result = await exec(operator.token, "worker", ["uname"]);
    expect(result.code).toBe(125);
    expect(JSON.parse(result.stdout)).toMatchObject({
      error: "invalid_request",
      error_description: expect.stringContaining('2 nodes are named "worker"'),
    });
    // By device id it still reaches the right one.
    expect((await exec(operator.token, deviceId, ["uname"])).code).toBe(0);
  });
});
