/**
 * Commands across instances, end to end: two `gateway start` processes of one gateway on one real
 * PostgreSQL database (`gateway init --store` and `gateway join`, the real CLI), a node connected
 * to the first. Through the second, an operator runs commands on that node (relayed to the first),
 * sees where it is in `nodes list`, and meets the same limits as on one gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  cleanupAll,
  freePort,
  nodeRegisterArgs,
  probeHealth,
  registeredNode,
  runCli,
  spawnCli,
  startTestGateway,
  tempHome,
  type Running,
  type TestGateway,
} from "./harness.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import { httpsRequest } from "./lifecycle-fixtures.js";
import { createTestDatabase, postgresAvailable } from "../fixtures/postgres.js";

interface Instance {
  home: string;
  url: string;
  instanceId: string;
  caFingerprint: string;
  process: Running;
}
interface NodeJson {
  deviceId: string;
  name: string;
  instanceId?: string;
}

const env: NodeJS.ProcessEnv = {
  ...process.env,
  GATEHOUSE_KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
};
let database: { url: string; drop(): Promise<void> } | undefined;
let first: Instance;
let second: Instance;
let agent: Running | undefined;
let deviceId = "";

const cli = (args: string[], timeoutMs?: number) =>
  runCli(args, { env, ...(timeoutMs ? { timeoutMs } : {}) });
async function cliJson<T>(args: string[]): Promise<T> {
  const result = await cli([...args, "--json"]);
  if (result.code !== 0)
    throw new Error(`gatehouse ${args.join(" ")} exited ${result.code}: ${result.stdout} ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** `nodes exec` of `command` on the node, sent to `through` (its home's admin credential). */
const execThrough = (through: Instance, ...command: string[]) =>
  cli(["nodes", "exec", deviceId, "--home", through.home, "--", ...command]);

/** Small limits, so that crossing them across the two instances takes a few requests. */
function configure(home: string): void {
  const file = path.join(home, "gateway.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  config.enroll = { maxPending: 1, perAddressPerMinute: 4 };
  writeFileSync(file, JSON.stringify(config, null, 2));
}

async function start(home: string, url: string): Promise<Running> {
  const running = spawnCli(["gateway", "start", "--home", home], env);
  const deadline = Date.now() + 30_000;
  while (!(await probeHealth(url))) {
    if (Date.now() > deadline)
      throw new Error(`instance did not start\n${running.stdout}\n${running.stderr}`);
    await sleep(100);
  }
  return running;
}

async function makeInstance(command: "init" | "join"): Promise<Instance> {
  const home = tempHome(`cluster-${command}`);
  const port = await freePort();
  const made = await cliJson<{ url: string; instanceId: string; caFingerprint: string }>([
    "gateway",
    command,
    "--home",
    home,
    "--store",
    "env://GATEHOUSE_DATABASE_URL",
    "--listen",
    `127.0.0.1:${port}`,
  ]);
  configure(home);
  return { home, ...made, process: undefined as unknown as Running };
}

/** Waits until `home`'s `nodes list` shows the node held by `instanceId` (the shared table is written in batches). */
async function waitListed(home: string, instanceId: string): Promise<NodeJson[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const { nodes } = await cliJson<{ nodes: NodeJson[] }>(["nodes", "list", "--home", home]);
    if (nodes.some((n) => n.deviceId === deviceId && n.instanceId === instanceId)) return nodes;
    if (Date.now() > deadline) throw new Error(`node not listed at ${home}: ${JSON.stringify(nodes)}`);
    await sleep(200);
  }
}

const usable = postgresAvailable();

describe.skipIf(!usable)("commands across two instances on one PostgreSQL", () => {
  beforeAll(async () => {
    database = await createTestDatabase();
    env.GATEHOUSE_DATABASE_URL = database.url;
    first = await makeInstance("init");
    second = await makeInstance("join");
    [first.process, second.process] = await Promise.all([
      start(first.home, first.url),
      start(second.home, second.url),
    ]);
    // A node registers with, and connects to, the first instance.
    const nodeHome = tempHome("cluster-node");
    const register = spawnCli(nodeRegisterArgs(first, nodeHome, { name: "laptop" }), env);
    const deadline = Date.now() + 20_000;
    let code: string | undefined;
    while (!code) {
      if (Date.now() > deadline) throw new Error(`registration did not appear\n${register.stderr}`);
      const { devices } = await cliJson<{ devices: { userCode: string; deviceId: string }[] }>([
        "devices",
        "list",
        "--pending",
        "--home",
        first.home,
      ]);
      code = devices[0]?.userCode;
      deviceId = devices[0]?.deviceId ?? "";
      if (!code) await sleep(100);
    }
    expect((await cli(["devices", "approve", code, "--home", first.home])).code).toBe(0);
    expect(await register.exited).toBe(0);
    agent = await startAgentAllowing(nodeHome, ["echo", "uname"], env);
    // The session row reaches the shared table in the journal's next batch: once the second
    // instance lists the node, commands through it can find it (each test asserts what it needs).
    await waitListed(second.home, first.instanceId).catch(() => undefined);
  }, 120_000);

  afterAll(async () => {
    await stopAgent(agent);
    for (const instance of [first, second]) {
      instance?.process?.child.kill("SIGTERM");
      await instance?.process?.exited;
    }
    await database?.drop();
    cleanupAll();
  }, 60_000);

  it("runs a command through the other instance with the same output and exit code as directly", async () => {
    const direct = await execThrough(first, "echo", "hello", "fleet");
    const relayed = await execThrough(second, "echo", "hello", "fleet");
    expect(direct).toMatchObject({ code: 0, stdout: "hello fleet\n" });
    expect(relayed).toMatchObject({ code: 0, stdout: "hello fleet\n", stderr: "" });
    // By its name too: the other instance knows the device the first one approved.
    const byName = await cli(["nodes", "exec", "laptop", "--home", second.home, "--", "echo", "by", "name"]);
    expect(byName).toMatchObject({ code: 0, stdout: "by name\n" });
  });

  it("gives a command the node refuses the same error through either instance", async () => {
    const direct = await execThrough(first, "rm", "-rf", "/tmp/x");
    const relayed = await execThrough(second, "rm", "-rf", "/tmp/x");
    expect(relayed.code).toBe(125);
    expect(relayed.stderr).toContain("command_not_allowed");
    expect(relayed.stderr).toBe(direct.stderr);
  });

  it("audits a relayed command once, for the operator, naming the instance it came through", async () => {
    await execThrough(second, "uname");
    const { entries } = await cliJson<{
      entries: { type: string; actor: string; details: { via?: string; command?: string } }[];
    }>(["audit", "tail", "--home", first.home, "-n", "50"]);
    const relayed = entries.filter((e) => e.type.startsWith("exec.") && e.details.via === second.instanceId);
    expect(relayed.length).toBeGreaterThanOrEqual(2);
    // The operator is the second home's admin, not an instance.
    expect(new Set(relayed.map((e) => e.actor)).size).toBe(1);
    expect(relayed[0]!.actor).toMatch(/^device:/);
    expect((await cli(["audit", "verify", "--home", second.home])).code).toBe(0);
  });

  it("lists the node at both instances, saying which one holds it; the table gains an INSTANCE column", async () => {
    const atFirst = await waitListed(first.home, first.instanceId);
    const atSecond = await waitListed(second.home, first.instanceId);
    expect(atFirst.filter((n) => n.deviceId === deviceId)).toHaveLength(1);
    expect(atSecond.filter((n) => n.deviceId === deviceId)).toEqual([
      expect.objectContaining({ name: "laptop", instanceId: first.instanceId }),
    ]);
    const table = await cli(["nodes", "list", "--home", second.home]);
    expect(table.stdout.split("\n")[0]).toMatch(/LAST HEARTBEAT\s+INSTANCE$/);
    expect(table.stdout).toContain(first.instanceId);
  });

  it("refuses an admin's certificate at the relay route (401): only a relay token opens it", async () => {
    const admin = path.join(second.home, "admin");
    const tls = {
      ca: readFileSync(path.join(admin, "ca.pem"), "utf8"),
      key: readFileSync(path.join(admin, "admin.key"), "utf8"),
      cert: readFileSync(path.join(admin, "admin.pem"), "utf8"),
    };
    const body = { deviceId, command: "echo", args: ["not relayed"], timeoutMs: 5000 };
    const answer = await httpsRequest(`${first.url}/internal/v1/cluster/exec`, { body, tls });
    expect(answer.status).toBe(401);
    expect(answer.json()).toMatchObject({ error: "missing_credentials" });
  });

  it("holds the pending cap across instances", async () => {
    const one = spawnCli(nodeRegisterArgs(first, tempHome("cluster-pend1"), { name: "waiting-one" }), env);
    await one.waitFor(
      () => one.stdout.includes("Waiting for approval") || one.stderr.includes("Waiting"),
      "pending",
    );
    const two = await cli(nodeRegisterArgs(second, tempHome("cluster-pend2"), { name: "waiting-two" }));
    one.child.kill("SIGTERM");
    expect(two.code).toBe(1);
    expect(two.stderr + two.stdout).toContain("too many registrations are waiting for approval (at most 1)");
  });

  it("counts registrations per address across both instances", async () => {
    // Fixed one-minute windows: start the four requests well inside one.
    if (Date.now() % 60_000 > 45_000) await sleep(60_000 - (Date.now() % 60_000) + 500);
    const statuses: number[] = [];
    let limited: unknown;
    for (const instance of [first, second, first, second, first]) {
      const answer = await httpsRequest(`${instance.url}/api/v1/enroll`, {
        body: { csr: "not a CSR", name: "flood" },
        tls: { ca: readFileSync(path.join(instance.home, "pki", "ca.pem"), "utf8") },
      });
      statuses.push(answer.status);
      if (answer.status === 429) limited = answer.json();
    }
    // perAddressPerMinute 4 in all: at most four junk bodies (400), then limited, whichever instance
    // (registrations earlier in the same minute count too).
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1);
    // Alone, each instance's own bucket would let all five through (three and two).
    expect(statuses.at(-1)).toBe(429);
    expect(limited).toMatchObject({ error: "rate_limited" });
  });

  it("answers node_offline, naming the holder, once the instance holding the node is killed", async () => {
    first.process.child.kill("SIGKILL");
    await first.process.exited;
    const relayed = await execThrough(second, "echo", "hi");
    expect(relayed.code).toBe(125);
    expect(relayed.stderr).toMatch(/node_offline/);
    // Until its heartbeat goes stale the dead instance is still where the node was: named, with what to do.
    expect(relayed.stderr).toContain(first.instanceId);
    expect(relayed.stderr).toContain("reconnects to a live instance");
  });
});

describe("a gateway alone", () => {
  let gateway: TestGateway | undefined;
  let soloAgent: Running | undefined;
  afterAll(async () => {
    await stopAgent(soloAgent);
    await gateway?.stop();
    cleanupAll();
  }, 60_000);

  it("lists nodes as it always did (no instance anywhere) and has no relay route", async () => {
    gateway = await startTestGateway();
    const node = await registeredNode(gateway, "solo-node");
    soloAgent = await startAgentAllowing(node.home, ["echo"]);
    const listed = await runCli(["nodes", "list", "--home", gateway.home, "--json"]);
    const { nodes } = JSON.parse(listed.stdout) as { nodes: Record<string, unknown>[] };
    expect(nodes).toHaveLength(1);
    expect(Object.keys(nodes[0]!)).toEqual([
      "deviceId",
      "name",
      "platform",
      "version",
      "hostname",
      "address",
      "sessionId",
      "connectedAt",
      "lastHeartbeat",
      "uptimeSeconds",
      "online",
    ]);
    const table = await runCli(["nodes", "list", "--home", gateway.home]);
    expect(table.stdout.split("\n")[0]).toMatch(
      /^DEVICE ID\s+NAME\s+PLATFORM\s+VERSION\s+UPTIME\s+ADDRESS\s+CONNECTED\s+LAST HEARTBEAT$/,
    );
    const answer = await httpsRequest(`${gateway.url}/internal/v1/cluster/exec`, {
      body: { deviceId: node.deviceId, command: "echo", args: [], timeoutMs: 1000 },
      tls: { ca: readFileSync(path.join(gateway.home, "pki", "ca.pem"), "utf8") },
    });
    expect(answer.status).toBe(404);
    expect(answer.json()).toMatchObject({ error: "not_found" });
  }, 90_000);
});
