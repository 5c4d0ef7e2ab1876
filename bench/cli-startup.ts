/**
 * Start-up of the CLI, as a person at a terminal waits for it: the wall time of whole processes,
 * from spawn to exit, medians of rounds in which every target runs once (interleaved).
 *
 *   gatehouse --help                 vs  `node -e 0` (an empty Node process): goal ≤ 3×
 *   gatehouse --version              vs  the same
 *   gatehouse node test-connection   on a healthy node of a real gateway (in this process):
 *                                    goal ≤ 250 ms, and vs a bare `node` script that makes one
 *                                    mTLS connection to the same gateway and reads GET /health
 *
 * Runs the built CLI (dist/cli/main.js; `npm run bench` builds first). BENCH_CLI_RUNS sets the
 * rounds (default 15). Besides wall time, each run's CPU (user + system, from the kernel's
 * account of waited-for children) is reported: it is less disturbed by other processes. Children
 * get a clean environment (no NODE_OPTIONS, no NODE_EXTRA_CA_CERTS): see the note in the result.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { NODE_FILES } from "../src/config/paths.js";
import { startBenchGateway } from "./gateway-fixture.js";
import {
  log,
  machineBusyCores,
  machineTicks,
  median,
  now,
  processCpuUs,
  type BenchResult,
  type BenchSettings,
  type Measurement,
  type Ratio,
  type Sample,
} from "./lib.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLI = path.join(ROOT, "dist", "cli", "main.js");
const RECORDER = path.join(ROOT, "test", "fixtures", "record-modules.mjs");

/** The goals. */
const HELP_GOAL = 3;
const TEST_CONNECTION_GOAL_MS = 250;

/** A bare mTLS client: one connection to the gateway, GET /health, exit 0 on a 200. */
const BARE_TLS_SCRIPT = `
const tls = require("node:tls");
const fs = require("node:fs");
const e = process.env;
const socket = tls.connect({
  host: "127.0.0.1",
  port: Number(e.BARE_PORT),
  ca: fs.readFileSync(e.BARE_CA),
  cert: fs.readFileSync(e.BARE_CERT),
  key: fs.readFileSync(e.BARE_KEY),
}, () => socket.end("GET /health HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n"));
let text = "";
socket.setEncoding("utf8");
socket.on("data", (chunk) => (text += chunk));
socket.on("end", () => process.exit(text.startsWith("HTTP/1.1 200") ? 0 : 1));
socket.on("error", () => process.exit(1));
`;

interface ProcessRun {
  code: number | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  /** CPU of the child (user + system), in µs; at the kernel's tick (10 ms) per run. */
  cpuUs: number | undefined;
  /** CPU used by the rest of the machine during the run (not the child, not this process), in cores. */
  otherCores: number | undefined;
}

/** Clock ticks per second of /proc (USER_HZ): 100 on Linux. */
const USER_HZ = 100;

/** CPU of this process's waited-for children so far (cutime + cstime of /proc/self/stat), in µs. */
function childrenCpuUs(): number | undefined {
  try {
    const stat = readFileSync("/proc/self/stat", "latin1");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 16 and 17 of proc(5), counted from 1; the slice starts at field 3.
    const ticks = Number(fields[13]) + Number(fields[14]);
    return Number.isFinite(ticks) ? (ticks * 1e6) / USER_HZ : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `node ...argv` once and times it from spawn to exit (async: the in-process gateway serves it). */
function runProcess(argv: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<ProcessRun> {
  const ticks0 = machineTicks();
  const own0 = processCpuUs();
  const children0 = childrenCpuUs();
  const start = now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const wallMs = now() - start;
      const children1 = childrenCpuUs();
      const cpuUs = children0 !== undefined && children1 !== undefined ? children1 - children0 : undefined;
      const busy = machineBusyCores(ticks0, machineTicks());
      const ownCores = (processCpuUs() - own0) / 1000 / wallMs;
      const otherCores =
        busy !== undefined && cpuUs !== undefined
          ? Math.max(0, busy - ownCores - cpuUs / 1000 / wallMs)
          : undefined;
      resolve({ code, stdout, stderr, wallMs, cpuUs, otherCores });
    });
  });
}

interface Target {
  label: string;
  description: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
}

function sampleOf(run: ProcessRun): Sample {
  const sample: Sample = {
    rate: 1000 / run.wallMs,
    ops: 1,
    failed: run.code === 0 ? 0 : 1,
    elapsedMs: run.wallMs,
    p50Ms: run.wallMs,
  };
  if (run.cpuUs !== undefined) {
    sample.cpuUsPerOp = run.cpuUs;
    sample.cpuCores = run.cpuUs / 1000 / run.wallMs;
  }
  if (run.otherCores !== undefined) sample.otherCpuCores = run.otherCores;
  return sample;
}

/** A measurement whose figure is the median wall time (p50 ms); rate is runs per second. */
function summarizeRuns(target: Target, samples: Sample[]): Measurement {
  const m: Measurement = {
    label: target.label,
    description: target.description,
    unit: "runs/s",
    samples,
    median: median(samples.map((s) => s.rate)),
    medianP50Ms: median(samples.map((s) => s.elapsedMs)),
  };
  const cpu = samples.map((s) => s.cpuUsPerOp).filter((v): v is number => v !== undefined);
  if (cpu.length) m.medianCpuUsPerOp = median(cpu);
  const cores = samples.map((s) => s.cpuCores).filter((v): v is number => v !== undefined);
  if (cores.length) m.medianCpuCores = median(cores);
  const other = samples.map((s) => s.otherCpuCores).filter((v): v is number => v !== undefined);
  if (other.length) m.medianOtherCpuCores = median(other);
  return m;
}

/** a's median wall time ÷ b's (how many times longer a takes), with the ratio of each round. */
function timeRatio(
  label: string,
  description: string,
  a: Measurement,
  b: Measurement,
  goal?: Ratio["goal"],
): Ratio {
  const rounds = Math.min(a.samples.length, b.samples.length);
  const r: Ratio = {
    label,
    description,
    value: a.medianP50Ms! / b.medianP50Ms!,
    perRound: Array.from({ length: rounds }, (_, i) => a.samples[i]!.elapsedMs / b.samples[i]!.elapsedMs),
  };
  if (goal) r.goal = goal;
  return r;
}

function runsFromEnv(): number {
  const raw = process.env.BENCH_CLI_RUNS;
  if (raw === undefined || raw === "") return 15;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 200)
    throw new Error("BENCH_CLI_RUNS must be 1 to 200");
  return value;
}

/** How many modules a run of the CLI loads (the loader hook of the tests), for the notes. */
async function modulesLoaded(
  args: string[],
  env: NodeJS.ProcessEnv,
  dir: string,
): Promise<number | undefined> {
  if (!existsSync(RECORDER)) return undefined;
  const file = path.join(dir, `modules-${args.join("-").replace(/[^a-z-]/gi, "")}.txt`);
  const run = await runProcess(["--import", RECORDER, CLI, ...args], {
    ...env,
    GATEHOUSE_RECORD_MODULES: file,
  });
  if (run.code !== 0 || !existsSync(file)) return undefined;
  return new Set(readFileSync(file, "utf8").split("\n").filter(Boolean)).size;
}

export async function run(_settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  if (!existsSync(CLI)) throw new Error(`${CLI} does not exist: build first (npm run build)`);
  const rounds = runsFromEnv();
  const notes: string[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-cli-"));
  const gateway = await startBenchGateway();
  try {
    // Children see a home of their own and no token from this shell.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, NO_COLOR: "1" };
    const url = `https://${gateway.host}:${gateway.port}`;
    const cli = async (args: string[], extra: NodeJS.ProcessEnv = {}) => {
      const result = await runProcess([CLI, ...args], { ...env, ...extra });
      if (result.code !== 0)
        throw new Error(
          `gatehouse ${args.join(" ")} exited ${result.code}: ${result.stdout} ${result.stderr}`,
        );
      return result.stdout;
    };

    // A healthy node: registered with an enroll token, approved at once.
    const { token } = JSON.parse(
      await cli(["enroll", "create", "--home", gateway.home, "--gateway", url, "--json"]),
    ) as { token: string };
    const nodeHome = path.join(dir, "node");
    await cli(
      ["node", "register", "--home", nodeHome, "--gateway", url, "--ca-fingerprint", gateway.caFingerprint],
      { GATEHOUSE_ENROLL_TOKEN: token },
    );
    const check = JSON.parse(await cli(["node", "test-connection", "--home", nodeHome, "--json"])) as {
      ok: boolean;
      layers: { layer: string }[];
    };
    if (!check.ok)
      throw new Error(`node test-connection failed on the healthy node: ${JSON.stringify(check)}`);

    const targets: Target[] = [
      { label: "empty node", description: "node -e 0: an empty Node process", argv: ["-e", "0"], env },
      { label: "gatehouse --help", description: "gatehouse --help", argv: [CLI, "--help"], env },
      { label: "gatehouse --version", description: "gatehouse --version", argv: [CLI, "--version"], env },
      {
        label: "node test-connection",
        description: `gatehouse node test-connection on a healthy node (${check.layers.length} layers), gateway in the bench process`,
        argv: [CLI, "node", "test-connection", "--home", nodeHome],
        env,
      },
      {
        label: "bare mTLS + /health",
        description: "node -e: one mTLS connection with the node's certificate, GET /health, exit",
        argv: ["-e", BARE_TLS_SCRIPT],
        env: {
          ...env,
          BARE_PORT: String(gateway.port),
          BARE_CA: path.join(nodeHome, NODE_FILES.caCert),
          BARE_CERT: path.join(nodeHome, NODE_FILES.deviceCert),
          BARE_KEY: path.join(nodeHome, NODE_FILES.deviceKey),
        },
      },
    ];
    for (const file of [NODE_FILES.caCert, NODE_FILES.deviceCert, NODE_FILES.deviceKey])
      if (!existsSync(path.join(nodeHome, file))) throw new Error(`the node home has no ${file}`);

    const helpModules = await modulesLoaded(["--help"], env, dir);
    const testModules = await modulesLoaded(["node", "test-connection", "--home", nodeHome], env, dir);
    if (helpModules !== undefined && testModules !== undefined)
      notes.push(`modules loaded: gatehouse --help ${helpModules}, node test-connection ${testModules}`);

    // One untimed round: the file cache and the gateway's first handshakes.
    for (const target of targets) await runProcess(target.argv, target.env);
    const setupMs = now() - started;

    const samples = new Map<string, Sample[]>(targets.map((t) => [t.label, []]));
    for (let round = 0; round < rounds; round++) {
      for (const target of targets) {
        const result = await runProcess(target.argv, target.env);
        if (result.code !== 0)
          notes.push(
            `${target.label} round ${round + 1}: exit ${result.code} ${result.stderr.split("\n")[0] ?? ""}`,
          );
        samples.get(target.label)!.push(sampleOf(result));
      }
      log(
        `  round ${round + 1}/${rounds}: ` +
          targets
            .map((t) => `${t.label} ${samples.get(t.label)!.at(-1)!.elapsedMs.toFixed(0)} ms`)
            .join(", "),
      );
    }
    const [empty, help, version, testConnection, bare] = targets.map((t) =>
      summarizeRuns(t, samples.get(t.label)!),
    ) as [Measurement, Measurement, Measurement, Measurement, Measurement];

    for (const m of [empty, help, version, testConnection, bare]) {
      const worst = Math.max(...m.samples.map((s) => s.otherCpuCores ?? 0));
      if ((m.medianOtherCpuCores ?? 0) > 0.2)
        notes.push(
          `${m.label}: other processes used ${(m.medianOtherCpuCores ?? 0).toFixed(2)} cores (median; up to ${worst.toFixed(2)}) during its runs; its times are disturbed`,
        );
    }
    notes.push(
      "every process runs with only PATH, HOME and NO_COLOR in its environment: NODE_OPTIONS or " +
        "NODE_EXTRA_CA_CERTS (which makes Node read a CA bundle at start, ~40 ms on this machine class) " +
        "would add the same time to both sides of each ratio and make it look better than it is",
    );
    notes.push(
      `wall times are medians of ${rounds} interleaved runs each (the p50 ms column); cpu µs/op is the process's own user + system CPU, ` +
        `counted by the kernel in 10 ms ticks (a median of few runs is coarse)`,
    );

    const ms: Ratio = {
      label: "test-connection ms",
      description: "median wall time of node test-connection on a healthy node, in ms (an absolute goal)",
      value: testConnection.medianP50Ms!,
      perRound: testConnection.samples.map((s) => s.elapsedMs),
      goal: { op: "<=", value: TEST_CONNECTION_GOAL_MS },
    };
    return {
      name: "cli-startup",
      title: "CLI start-up: whole processes, spawn to exit",
      measurements: [empty, help, version, testConnection, bare],
      ratios: [
        timeRatio("help/empty", "gatehouse --help wall time ÷ node -e 0", help, empty, {
          op: "<=",
          value: HELP_GOAL,
        }),
        timeRatio("version/empty", "gatehouse --version wall time ÷ node -e 0", version, empty),
        ms,
        timeRatio(
          "test-connection/bare",
          "node test-connection wall time ÷ a bare mTLS connect + GET /health to the same gateway",
          testConnection,
          bare,
        ),
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
    log("  gateway closed");
  }
}
