/**
 * Two gateway instances on one PostgreSQL (test/e2e/cluster-harness.ts: a private PostgreSQL,
 * `gateway init --store` and `gateway join`, both `gateway start` processes as shipped in dist/,
 * HAProxy in TCP mode), each figure against its baseline measured in the same run:
 *
 * - Revocation propagation: BENCH_CLUSTER_REVOCATIONS (default 100) sessions on instance a revoked
 *   through instance b (POST → the node's 4403 close, via NOTIFY), against as many revoked through
 *   a itself, alternating one of each: p50 and p99 of each (the fleet client of session-fleet.ts).
 * - Exec relayed vs direct: POST exec of the built-in `status` to a real node agent held by a, sent
 *   to b (relayed to a) and to a (direct), concurrency 8, keep-alive, the admin certificate; the
 *   rates, the p99s and the cluster's CPU per exec (µs, all its processes) of both.
 * - Handshake rate through HAProxy vs direct: a new mTLS connection per request (GET
 *   /api/v1/auth/validate, Connection: close) to a through an HAProxy that forwards to a alone,
 *   and to a directly, concurrency 8.
 *
 * The instances, HAProxy and PostgreSQL are child processes: a window's "cluster cores" is their
 * CPU, and "other cores" what the rest of the machine used (above ~0.2 the figures are disturbed).
 * Windows are capped at 1 s (the run must stay within a minute).
 */
import { readFileSync, readdirSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { GATEWAY_FILES } from "../src/config/index.js";
import { postgresBinDir } from "../test/fixtures/postgres.js";
import {
  HAPROXY,
  startCluster,
  startHaproxy,
  type Haproxy,
  type TestCluster,
} from "../test/e2e/cluster-harness.js";
import { cleanupAll, spawnCli, type Running } from "../test/e2e/harness.js";
import { fetchOnce } from "./gateway-fixture.js";
import { LoadClient, loadTarget, type LoadSpec } from "./load-client.js";
import { FleetClient, registerDevices, type AdminPem } from "./session-fleet.js";
import {
  MACHINE_CPUS,
  cpuRatio,
  figureRatio,
  log,
  machineBusyCores,
  machineTicks,
  measureInterleaved,
  now,
  percentile,
  ratio,
  singleFigure,
  type BenchResult,
  type BenchSettings,
  type Measurement,
  type Sample,
  type Target,
} from "./lib.js";

const REVOCATIONS = Math.max(10, Number(process.env.BENCH_CLUSTER_REVOCATIONS ?? 100));
const EXEC_CONCURRENCY = 8;
const HANDSHAKE_CONCURRENCY = 8;
/** Timed windows are at most this long here, whatever BENCH_DURATION_MS says (the 60 s budget). */
const WINDOW_CAP_MS = 1000;
/** The bound: a revocation on one instance closes the session on another within a second. */
const PROPAGATION_P99_GOAL_MS = 1000;

// CPU of the cluster's processes ------------------------------------------------------------------

/** CPU ticks (user + system) of every process whose ancestry reaches one of `roots`. */
function treeTicks(roots: readonly number[]): number {
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "latin1");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parent.set(Number(entry), Number(fields[1]));
      ticks.set(Number(entry), Number(fields[11]) + Number(fields[12]));
    } catch {
      // gone meanwhile
    }
  }
  const wanted = new Set(roots);
  let total = 0;
  for (const [pid, t] of ticks) {
    let at: number | undefined = pid;
    for (let depth = 0; at !== undefined && at > 1 && depth < 8; depth++) {
      if (wanted.has(at)) {
        total += t;
        break;
      }
      at = parent.get(at);
    }
  }
  return total;
}

/**
 * A window over the cluster's processes (`roots` and their descendants): `end` gives their CPU
 * in cores, and what the rest of the machine used besides them, this process and `exclude` (the
 * bench's own clients).
 */
function clusterWindow(
  roots: () => number[],
  exclude: () => number[] = () => [],
): () => { clusterCores: number; otherCores: number } {
  const machine0 = machineTicks();
  const cluster0 = treeTicks(roots());
  const excluded0 = treeTicks(exclude());
  const self0 = process.cpuUsage();
  const t0 = now();
  return () => {
    const machine1 = machineTicks();
    const elapsedTicks = machine0 && machine1 ? (machine1.total - machine0.total) / MACHINE_CPUS : Number.NaN;
    const clusterCores = elapsedTicks > 0 ? (treeTicks(roots()) - cluster0) / elapsedTicks : Number.NaN;
    const self = process.cpuUsage(self0);
    const selfCores = (self.user + self.system) / 1000 / (now() - t0);
    const excludedCores = elapsedTicks > 0 ? (treeTicks(exclude()) - excluded0) / elapsedTicks : 0;
    const busy = machineBusyCores(machine0, machine1) ?? Number.NaN;
    return { clusterCores, otherCores: Math.max(0, busy - clusterCores - selfCores - excludedCores) };
  };
}

/** A load target whose samples report the cluster's CPU (cores) and the rest of the machine's. */
function clusterTarget(target: Target, roots: () => number[]): Target {
  return {
    ...target,
    async sample() {
      const end = clusterWindow(roots);
      const sample = await target.sample();
      const { clusterCores, otherCores } = end();
      // The load client's own CPU is not "other": it is the measurement.
      const other = Math.max(0, otherCores - (sample.clientCpuCores ?? 0));
      const { cpuUsPerOp: _thisProcess, ...rest } = sample;
      // The cluster's CPU per operation (all its processes): what a relay adds shows here even
      // when other processes squeeze the rates.
      const cpuUsPerOp = sample.ops > 0 ? (clusterCores * sample.elapsedMs * 1000) / sample.ops : Number.NaN;
      return { ...rest, cpuUsPerOp, cpuCores: clusterCores, otherCpuCores: other };
    },
  };
}

// Set-up ------------------------------------------------------------------------------------------

function adminPem(home: string): AdminPem {
  const read = (file: string) => readFileSync(path.join(home, file), "utf8");
  return {
    ca: read(GATEWAY_FILES.adminCa),
    cert: read(GATEWAY_FILES.adminCert),
    key: read(GATEWAY_FILES.adminKey),
  };
}

/** The PostgreSQL server's postmaster pid (first line of postmaster.pid in its data directory). */
function postmasterPid(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n", 1)[0]);
  } catch {
    return undefined;
  }
}

// Measurements ------------------------------------------------------------------------------------

/**
 * Revokes sessions held by instance a, alternating through b (across instances) and through a
 * (the baseline): returns the ms from each POST to its session's close, per path.
 */
async function revocations(
  cluster: TestCluster,
  admin: AdminPem,
  dir: string,
  roots: () => number[],
  notes: string[],
): Promise<{ cross: number[]; same: number[]; otherCores: number; clusterCores: number }> {
  const [a, b] = cluster.instances;
  const devices = await registerDevices(a.url, admin, REVOCATIONS * 2, dir, "bench-cluster-");
  const fleet = await FleetClient.start(devices.length);
  try {
    await fleet.configure(`wss://127.0.0.1:${a.port}/api/v1/connect`, admin.ca, devices);
    const opened = await fleet.open(devices.length, 16, false);
    if (opened.failed) throw new Error(`${opened.failed} sessions failed to open (${opened.firstError})`);
    const cross: number[] = [];
    const same: number[] = [];
    const codes = new Set<number>();
    const end = clusterWindow(roots, () => (fleet.pid === undefined ? [] : [fleet.pid]));
    for (let i = 0; i < REVOCATIONS; i++) {
      for (const [index, through, times] of [
        [2 * i, b, cross],
        [2 * i + 1, a, same],
      ] as const) {
        const { ms, code } = await fleet.revoke(index, {
          url: `${through.url}/api/v1/devices/${devices[index]!.deviceId}/revoke`,
          cert: admin.cert,
          key: admin.key,
        });
        times.push(ms);
        codes.add(code);
      }
    }
    const window = end();
    notes.push(`revocations: close codes seen ${[...codes].join(", ")}`);
    log(
      `  revoke through b → close at a: p50 ${percentile(cross, 0.5).toFixed(1)} ms, p99 ${percentile(cross, 0.99).toFixed(1)} ms; through a: p50 ${percentile(same, 0.5).toFixed(1)} ms, p99 ${percentile(same, 0.99).toFixed(1)} ms (other cores ${window.otherCores.toFixed(2)})`,
    );
    return { cross, same, ...window };
  } finally {
    await fleet.closeAll().catch(() => undefined);
    await fleet.stop();
  }
}

/** A real node agent (`node start`) registered at a and connected to a alone. */
async function startNodeAtA(
  cluster: TestCluster,
  admin: AdminPem,
  dir: string,
): Promise<{ deviceId: string; agent: Running }> {
  const a = cluster.instances[0];
  const [device] = await registerDevices(a.url, admin, 1, path.join(dir, "exec-node"), "bench-cluster-");
  const home = path.join(dir, "exec-node", "node-0");
  const agent = spawnCli(["node", "start", "--home", home], cluster.env);
  const deadline = now() + 30_000;
  for (;;) {
    const list = await fetchOnce(`${a.url}/api/v1/nodes`, admin);
    const nodes = (JSON.parse(list.body) as { nodes?: { deviceId: string; online: boolean }[] }).nodes ?? [];
    if (nodes.some((n) => n.deviceId === device!.deviceId && n.online)) break;
    if (now() > deadline || agent.child.exitCode !== null)
      throw new Error(`the exec node did not connect\n${agent.stdout}\n${agent.stderr}`);
    await sleep(100);
  }
  return { deviceId: device!.deviceId, agent };
}

function one(
  label: string,
  description: string,
  value: number,
  otherCores: number,
  clusterCores: number,
): Measurement {
  return singleFigure(label, description, "ms", value, { otherCpuCores: otherCores, cpuCores: clusterCores });
}

function p99Ratio(
  label: string,
  description: string,
  a: Measurement,
  b: Measurement,
  goal?: { op: "<="; value: number },
) {
  const p99 = { median: (m: Measurement) => m.medianP99Ms, sample: (s: Sample) => s.p99Ms };
  return figureRatio(label, description, a, b, p99, goal);
}

export async function run(settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const missing = [
    postgresBinDir() ? undefined : "PostgreSQL (apt-get install -y postgresql)",
    existsSync(HAPROXY) ? undefined : "HAProxy (apt-get install -y haproxy)",
  ].filter(Boolean);
  if (missing.length > 0)
    return {
      name: "cluster",
      title: "Two instances on one PostgreSQL behind HAProxy",
      measurements: [],
      ratios: [],
      notes: [`skipped: ${missing.join(" and ")} not installed`],
      setupMs: 0,
      totalMs: now() - started,
    };

  const windows: BenchSettings = {
    ...settings,
    durationMs: Math.min(settings.durationMs, WINDOW_CAP_MS),
    warmupMs: Math.min(settings.warmupMs, 500),
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-cluster-"));
  let cluster: TestCluster | undefined;
  let proxyToA: Haproxy | undefined;
  let node: { deviceId: string; agent: Running } | undefined;
  let client: LoadClient | undefined;
  try {
    cluster = await startCluster({
      configure: (config) => {
        // The fleet client sends no heartbeats; the registrations come from one address.
        config.sessions = { ...config.sessions, heartbeatTimeout: "10m" };
        config.enroll = { ...config.enroll, perAddressPerMinute: 100_000 };
      },
    });
    const c = cluster;
    const [a, b] = c.instances;
    const admin = adminPem(a.home);
    proxyToA = await startHaproxy(dir, [{ name: "a", port: a.port }]);
    const proxy = proxyToA;
    const roots = () =>
      [
        a.process.child.pid,
        b.process.child.pid,
        c.proxy.process.child.pid,
        proxy.process.child.pid,
        node?.agent.child.pid,
        postmasterPid(c.postgres.dataDir),
      ].filter((pid): pid is number => pid !== undefined);
    node = await startNodeAtA(c, admin, dir);
    const setupMs = now() - started;

    const revoked = await revocations(c, admin, dir, roots, notes);

    client = await LoadClient.start(settings.client, settings.pin);
    const loader = client;
    const exec = (port: number): Omit<LoadSpec, "runInMs" | "durationMs"> => ({
      kind: "http",
      method: "POST",
      host: "127.0.0.1",
      port,
      path: `/api/v1/nodes/${node!.deviceId}/exec`,
      body: { command: "status", args: [], timeoutMs: 5000 },
      ca: admin.ca,
      cert: admin.cert,
      key: admin.key,
      concurrency: EXEC_CONCURRENCY,
      timeoutMs: 15_000,
    });
    const handshake = (port: number): Omit<LoadSpec, "runInMs" | "durationMs"> => ({
      kind: "handshake",
      host: "127.0.0.1",
      port,
      path: "/api/v1/auth/validate",
      ca: admin.ca,
      cert: admin.cert,
      key: admin.key,
      concurrency: HANDSHAKE_CONCURRENCY,
    });
    const target = (
      label: string,
      description: string,
      unit: string,
      base: Omit<LoadSpec, "runInMs" | "durationMs">,
    ) => clusterTarget(loadTarget(loader, windows, label, description, unit, base), roots);
    const [relayed, direct, viaProxy, directHandshake] = await measureInterleaved(
      [
        target(
          `exec relayed b→a c=${EXEC_CONCURRENCY}`,
          `POST exec of status to instance b for a node held by a (relayed over HTTPS with a relay token), concurrency ${EXEC_CONCURRENCY}`,
          "ops/s",
          exec(b.port),
        ),
        target(
          `exec direct at a c=${EXEC_CONCURRENCY} (baseline)`,
          `the same POST to instance a, which holds the node, concurrency ${EXEC_CONCURRENCY}`,
          "ops/s",
          exec(a.port),
        ),
        target(
          "mTLS handshake via HAProxy",
          `new TLS connection with the admin certificate through HAProxy (TCP mode, to a alone), GET /api/v1/auth/validate, Connection: close, concurrency ${HANDSHAKE_CONCURRENCY}`,
          "conn/s",
          handshake(proxy.port),
        ),
        target(
          "mTLS handshake direct (baseline)",
          `the same connections straight to instance a, concurrency ${HANDSHAKE_CONCURRENCY}`,
          "conn/s",
          handshake(a.port),
        ),
      ],
      windows,
      notes,
    );
    const what = `over ${REVOCATIONS} each, one at a time, alternating: POST → the session's 4403 close seen by the node`;
    const crossP50 = one(
      "revoke via b → close at a p50",
      `sessions held by a, revoked through b ${what}`,
      percentile(revoked.cross, 0.5),
      revoked.otherCores,
      revoked.clusterCores,
    );
    const sameP50 = one(
      "revoke via a → close at a p50 (baseline)",
      `sessions held by a, revoked through a ${what}`,
      percentile(revoked.same, 0.5),
      revoked.otherCores,
      revoked.clusterCores,
    );
    const crossP99 = one(
      "revoke via b → close at a p99",
      `as above, p99`,
      percentile(revoked.cross, 0.99),
      revoked.otherCores,
      revoked.clusterCores,
    );
    const sameP99 = one(
      "revoke via a → close at a p99 (baseline)",
      `as above, p99`,
      percentile(revoked.same, 0.99),
      revoked.otherCores,
      revoked.clusterCores,
    );
    if (revoked.otherCores > 0.2)
      notes.push(
        `revocations: other processes used ${revoked.otherCores.toFixed(2)} cores; the figures are disturbed`,
      );
    notes.push(
      "a revocation through b is durable in PostgreSQL before b answers, then reaches a by NOTIFY; a re-reads the device and closes the session: the cross-instance figure is the same-instance one plus that hop",
      "exec relayed: b finds the holder (the open sessions in PostgreSQL, read at most once a second), signs a relay token (ES256, with jose) and posts to a over a keep-alive HTTPS connection (a's certificate checked against the shared CA); a verifies the token, runs and audits the exec and answers; b answers the operator",
      "measurement cpu cores = the cluster's processes (both instances, HAProxy, PostgreSQL, the node agent); windows capped at 1 s",
    );
    const all = [crossP50, sameP50, crossP99, sameP99, relayed!, direct!, viaProxy!, directHandshake!];
    return {
      name: "cluster",
      title:
        "Two instances on one PostgreSQL behind HAProxy: revocation across instances, relayed exec, handshakes through HAProxy",
      measurements: all,
      ratios: [
        {
          label: "revoke p50 across/same",
          description: "revocation → close p50 through the other instance ÷ through the holding instance",
          value: crossP50.median / sameP50.median,
          goal: { op: "<=", value: 3 },
        },
        {
          label: "revoke p99 across (ms)",
          description:
            "revocation → close p99 through the other instance, in ms (the issue: within a second)",
          value: crossP99.median,
          goal: { op: "<=", value: PROPAGATION_P99_GOAL_MS },
        },
        {
          label: "revoke p99 across/same",
          description: "revocation → close p99 through the other instance ÷ through the holding instance",
          value: crossP99.median / sameP99.median,
        },
        ratio(
          "exec relayed/direct",
          `exec rate sent to the other instance ÷ sent to the holding instance, concurrency ${EXEC_CONCURRENCY}`,
          relayed!,
          direct!,
          { op: ">=", value: 0.5 },
        ),
        p99Ratio("p99 exec relayed/direct", "exec p99 latency relayed ÷ direct", relayed!, direct!, {
          op: "<=",
          value: 3,
        }),
        cpuRatio(
          "exec cluster CPU/op relayed÷direct",
          "CPU of the cluster's processes per exec sent to the other instance ÷ per exec sent to the holding one (what the relay hop costs; less disturbed by other processes than the rates)",
          direct!,
          relayed!,
        ),
        ratio(
          "handshake via HAProxy/direct",
          "new mTLS connections per second through HAProxy (TCP mode) ÷ straight to the instance",
          viaProxy!,
          directHandshake!,
          { op: ">=", value: 0.8 },
        ),
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    await client?.close();
    if (node) {
      node.agent.child.kill("SIGTERM");
      await node.agent.exited;
    }
    await proxyToA?.stop().catch(() => undefined);
    await cluster?.close();
    cleanupAll();
    rmSync(dir, { recursive: true, force: true });
    log("  cluster closed");
  }
}
