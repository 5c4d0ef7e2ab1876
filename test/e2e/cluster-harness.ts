/**
 * Two gateway instances on one PostgreSQL behind HAProxy, all real: a private PostgreSQL server
 * (test/fixtures/postgres.ts), `gateway init --store` and `gateway join` homes made by the CLI, two
 * `gateway start` child processes, and HAProxy in TCP mode in front of them (mTLS passes through to
 * the instances). Nodes register and connect through HAProxy as they would in production.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startPostgresServer, type PostgresServer } from "../fixtures/postgres.js";
import {
  Running,
  freePort,
  nodeRegisterArgs,
  probeHealth,
  runCli,
  spawnCli,
  tempHome,
  type CliResult,
} from "./harness.js";
import { waitConnected } from "./lifecycle-fixtures.js";

/** Where Debian's haproxy package puts the program (`apt-get install -y haproxy`). */
export const HAPROXY = process.env.GATEHOUSE_HAPROXY ?? "/usr/sbin/haproxy";

let haproxyReported = false;

/**
 * Whether the HAProxy tests can run. Without HAProxy they are skipped and the reason printed once;
 * with GATEHOUSE_REQUIRE_HAPROXY=1 (CI) a missing HAProxy is an error, so CI cannot pass by skipping.
 */
export function haproxyAvailable(): boolean {
  if (existsSync(HAPROXY)) return true;
  const reason = `HAProxy is not installed (no ${HAPROXY}): apt-get install -y haproxy`;
  if (process.env.GATEHOUSE_REQUIRE_HAPROXY === "1")
    throw new Error(`${reason}. GATEHOUSE_REQUIRE_HAPROXY=1 requires the HAProxy tests to run.`);
  if (!haproxyReported) {
    haproxyReported = true;
    console.warn(`HAProxy tests skipped: ${reason}`);
  }
  return false;
}

/**
 * The address HAProxy's connections to the instances come from (`source` on its server lines), the
 * one the instances trust for PROXY headers (`proxyProtocol.trusted`): a connection from anywhere
 * else, such as the CLI or another instance dialling an instance directly, needs no header.
 */
export const BALANCER_SOURCE = "127.0.0.10";

/**
 * The HAProxy configuration the README shows: TCP mode (TLS and the client certificate go through
 * untouched), the client's address passed on in a PROXY v2 header (`send-proxy-v2`), round robin, a dead instance taken out after two failed checks 500 ms apart, and a
 * connection that finds a dead instance sent to the other (`option redispatch`). The client and
 * server timeouts outlast a node's heartbeat pace many times over: an idle session is not cut.
 */
export function haproxyConfig(
  listen: { host: string; port: number },
  servers: { name: string; port: number }[],
) {
  return [
    "global",
    "  maxconn 8000",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 1h",
    "  timeout server 1h",
    "  retries 3",
    "  option redispatch",
    "frontend gatehouse",
    `  bind ${listen.host}:${listen.port}`,
    "  default_backend gatehouse_instances",
    "backend gatehouse_instances",
    "  balance roundrobin",
    ...servers.map(
      (s) =>
        `  server ${s.name} 127.0.0.1:${s.port} send-proxy-v2 source ${BALANCER_SOURCE} check inter 500ms fall 2 rise 1`,
    ),
    "",
  ].join("\n");
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port (or rejects after timeoutMs). */
async function waitForPort(port: number, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on 127.0.0.1:${port}`);
    await sleep(50);
  }
}

export interface Haproxy {
  /** https://127.0.0.1:PORT: the address nodes and operators are given. */
  url: string;
  port: number;
  process: Running;
  stop(): Promise<void>;
}

/** HAProxy in the foreground (`-db`) with a generated config in `dir`; resolves once it listens. */
export async function startHaproxy(dir: string, servers: { name: string; port: number }[]): Promise<Haproxy> {
  const port = await freePort();
  const file = path.join(dir, "haproxy.cfg");
  writeFileSync(file, haproxyConfig({ host: "127.0.0.1", port }, servers));
  const running = new Running(spawn(HAPROXY, ["-f", file, "-db"], { stdio: ["ignore", "pipe", "pipe"] }));
  await Promise.race([
    waitForPort(port, "HAProxy"),
    running.exited.then((code) => {
      throw new Error(`haproxy exited ${code}\n${running.stdout}\n${running.stderr}`);
    }),
  ]);
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    process: running,
    async stop() {
      running.child.kill("SIGTERM");
      await running.exited;
    },
  };
}

/** One `gateway start` process of the cluster, on its own home and port. */
export interface ClusterInstance {
  /** "a" (made by `gateway init --store`) or "b" (made by `gateway join`). */
  name: string;
  home: string;
  port: number;
  /** Its own address (https://127.0.0.1:PORT), not through HAProxy. */
  url: string;
  instanceId: string;
  process: Running;
  /** SIGTERM (a clean stop) or, with hard, SIGKILL (`kill -9`); waits for the exit. */
  stop(hard?: boolean): Promise<void>;
  /** `gateway start` again on the same home; resolves once /health answers. */
  start(): Promise<void>;
}

export interface TestCluster {
  postgres: PostgresServer;
  gatewayId: string;
  caFingerprint: string;
  /** The environment every gatehouse process of this cluster runs with (database URL, KEK). */
  env: NodeJS.ProcessEnv;
  instances: [ClusterInstance, ClusterInstance];
  proxy: Haproxy;
  /** Runs the CLI with the cluster's environment. */
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  /** Runs the CLI with `--json`; throws with the output on a non-zero exit. */
  json<T>(args: string[]): Promise<T>;
  /** The instance with this id. */
  instance(instanceId: string): ClusterInstance;
  close(): Promise<void>;
}

interface InitJson {
  gatewayId: string;
  caFingerprint: string;
  url: string;
  instanceId: string;
}

/**
 * A private PostgreSQL, instance a (`gateway init --store env://GATEHOUSE_DATABASE_URL`), instance b
 * (`gateway join`), both started, and HAProxy in front. The key-encryption key is made here as an
 * operator would (`openssl rand -hex 32`) and reaches the instances through the environment.
 * `configure` may change each instance's gateway.json before it starts.
 */
export async function startCluster(
  options: { configure?: (config: Record<string, Record<string, unknown>>) => void } = {},
): Promise<TestCluster> {
  const postgres = await startPostgresServer();
  const dir = path.dirname(tempHome("cluster"));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GATEHOUSE_DATABASE_URL: postgres.url,
    GATEHOUSE_KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
  };
  const cli = (args: string[], timeoutMs = 60_000) => runCli(args, { env, timeoutMs });
  const json = async <T>(args: string[]): Promise<T> => {
    const result = await cli([...args, "--json"]);
    if (result.code !== 0)
      throw new Error(`gatehouse ${args.join(" ")} exited ${result.code}: ${result.stdout} ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  };
  const store = ["--store", "env://GATEHOUSE_DATABASE_URL"];
  const homeA = path.join(dir, "instance-a");
  const homeB = path.join(dir, "instance-b");
  const [portA, portB] = [await freePort(), await freePort()];
  const a = await json<InitJson>([
    "gateway",
    "init",
    "--home",
    homeA,
    ...store,
    "--listen",
    `127.0.0.1:${portA}`,
  ]);
  const b = await json<InitJson>([
    "gateway",
    "join",
    "--home",
    homeB,
    ...store,
    "--listen",
    `127.0.0.1:${portB}`,
  ]);

  const instance = (name: string, home: string, port: number, made: InitJson): ClusterInstance => {
    const self: ClusterInstance = {
      name,
      home,
      port,
      url: `https://127.0.0.1:${port}`,
      instanceId: made.instanceId,
      process: undefined as unknown as Running,
      async stop(hard = false) {
        self.process.child.kill(hard ? "SIGKILL" : "SIGTERM");
        await self.process.exited;
      },
      async start() {
        self.process = spawnCli(["gateway", "start", "--home", home], env);
        const deadline = Date.now() + 30_000;
        while (!(await probeHealth(self.url))) {
          if (self.process.child.exitCode !== null || Date.now() > deadline)
            throw new Error(`instance ${name} did not start\n${self.process.stdout}\n${self.process.stderr}`);
          await sleep(100);
        }
      },
    };
    return self;
  };
  // Both instances believe HAProxy's PROXY headers, and only HAProxy's.
  for (const home of [homeA, homeB]) {
    const file = path.join(home, "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, Record<string, unknown>>;
    config.proxyProtocol = { trusted: [BALANCER_SOURCE] };
    options.configure?.(config);
    writeFileSync(file, JSON.stringify(config, null, 2));
  }
  const instances: [ClusterInstance, ClusterInstance] = [
    instance("a", homeA, portA, a),
    instance("b", homeB, portB, b),
  ];
  await Promise.all(instances.map((i) => i.start()));
  const proxy = await startHaproxy(dir, [
    { name: "a", port: portA },
    { name: "b", port: portB },
  ]);
  return {
    postgres,
    gatewayId: a.gatewayId,
    caFingerprint: a.caFingerprint,
    env,
    instances,
    proxy,
    cli,
    json,
    instance(instanceId) {
      const found = instances.find((i) => i.instanceId === instanceId);
      if (!found) throw new Error(`no instance ${instanceId} in this cluster`);
      return found;
    },
    async close() {
      await proxy.stop().catch(() => {});
      for (const i of instances) if (i.process.child.exitCode === null) await i.stop().catch(() => {});
      await postgres.close();
    },
  };
}

/** A node's view in `nodes list --json` (the fields these tests read). */
export interface ClusterNodeView {
  deviceId: string;
  name: string;
  online: boolean;
  instanceId?: string | null;
}

/** `nodes list` through one instance (its admin credential and its own address). */
export async function nodesThrough(
  cluster: TestCluster,
  through: ClusterInstance,
): Promise<ClusterNodeView[]> {
  return (await cluster.json<{ nodes: ClusterNodeView[] }>(["nodes", "list", "--home", through.home])).nodes;
}

/**
 * Registers a node through HAProxy (`node register --gateway PROXY`), approves it through instance
 * a, and starts its agent (allowing `allow`) with its gateway URL the proxy; resolves once connected.
 */
export async function nodeThroughProxy(
  cluster: TestCluster,
  name: string,
  allow: string[] = ["echo"],
): Promise<{ home: string; deviceId: string; agent: Running }> {
  const home = tempHome(`cluster-node-${name}`);
  const register = spawnCli(
    nodeRegisterArgs({ url: cluster.proxy.url, caFingerprint: cluster.caFingerprint }, home, { name }),
    cluster.env,
  );
  const admin = cluster.instances[0];
  let pending: { deviceId: string; userCode: string } | undefined;
  const deadline = Date.now() + 30_000;
  while (!pending) {
    if (Date.now() > deadline || register.child.exitCode !== null)
      throw new Error(`registration of ${name} did not appear\n${register.stdout}\n${register.stderr}`);
    const { devices } = await cluster.json<{
      devices: { deviceId: string; name: string; userCode: string }[];
    }>(["devices", "list", "--pending", "--home", admin.home]);
    pending = devices.find((d) => d.name === name);
    if (!pending) await sleep(200);
  }
  await cluster.json(["devices", "approve", pending.userCode, "--home", admin.home]);
  const code = await register.exited;
  if (code !== 0) throw new Error(`node register exited ${code}\n${register.stdout}\n${register.stderr}`);
  const file = path.join(home, "node.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  config.exec = { allow };
  writeFileSync(file, JSON.stringify(config, null, 2));
  const agent = spawnCli(["node", "start", "--home", home], cluster.env);
  await waitConnected(agent, 1, 30_000);
  return { home, deviceId: pending.deviceId, agent };
}

/**
 * The instance that holds a node's session, as `nodes list` through `through` says (each node view
 * names its instance). Waits until the node is listed exactly once, online, with an instance (and,
 * with `expected`, that instance): a killed instance's session stays listed until the instance is
 * no longer live (its heartbeat is 10 s old), so right after a failover the list may still show it.
 */
export async function holderOf(
  cluster: TestCluster,
  deviceId: string,
  through: ClusterInstance = cluster.instances[0],
  expected?: ClusterInstance,
  timeoutMs = 30_000,
): Promise<ClusterInstance> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = (await nodesThrough(cluster, through)).filter((n) => n.deviceId === deviceId);
    const view = views.length === 1 ? views[0] : undefined;
    if (view?.online && view.instanceId && (!expected || view.instanceId === expected.instanceId))
      return cluster.instance(view.instanceId);
    if (Date.now() > deadline)
      throw new Error(
        `node ${deviceId} is not listed once, online${expected ? ` on instance ${expected.name}` : ""}, through instance ${through.name}: ${JSON.stringify(views)}`,
      );
    await sleep(200);
  }
}

/** The other instance of the two. */
export function otherThan(cluster: TestCluster, instance: ClusterInstance): ClusterInstance {
  return cluster.instances[0] === instance ? cluster.instances[1] : cluster.instances[0];
}
