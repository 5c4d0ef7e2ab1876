/**
 * `npm run bench`: runs each benchmark in turn, prints a summary table (every ratio with its goal,
 * "met" or "MISSED") and writes bench/results/latest.json (date, machine, Node and OpenSSL
 * versions, settings, every measurement and ratio with its goal, failures). Every figure is a ratio
 * against a baseline measured in the same run. A run of named benchmarks writes
 * bench/results/NAME.json for each instead (not committed); latest.json is the whole run's.
 *
 *   npm run bench                      all benchmarks
 *   npm run bench -- token-verify      only the named ones (bench/results/token-verify.json)
 *   BENCH_RESULTS_DIR=DIR              write the results there instead of bench/results
 *   BENCH_DURATION_MS=1000 BENCH_REPS=3 BENCH_WARMUP_MS=500 BENCH_RUNIN_MS=250 npm run bench
 *   BENCH_CLIENT=inline   load clients in this process instead of a forked one
 *   BENCH_PIN=1           pin this process and the load client to different CPUs (taskset)
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  canPin,
  MACHINE_CPUS,
  pinProcess,
  SERVER_CPU,
  formatNumber,
  formatRate,
  log,
  now,
  goalMet,
  type BenchResult,
  type BenchSettings,
  type Measurement,
  type Ratio,
} from "./lib.js";
import * as tokenVerify from "./token-verify.js";
import * as validateRate from "./validate-rate.js";
import * as mtlsHandshake from "./mtls-handshake.js";
import * as execRoundTrip from "./exec-roundtrip.js";

const BENCHMARKS: { name: string; run: (settings: BenchSettings) => Promise<BenchResult> }[] = [
  { name: "token-verify", run: tokenVerify.run },
  { name: "validate-rate", run: validateRate.run },
  { name: "mtls-handshake", run: mtlsHandshake.run },
  { name: "exec-roundtrip", run: execRoundTrip.run },
  { name: "sessions", run: async (settings) => (await import("./sessions.js")).run(settings) },
  { name: "cli-startup", run: async (settings) => (await import("./cli-startup.js")).run(settings) },
  { name: "storm", run: async (settings) => (await import("./storm.js")).run(settings) },
  { name: "flood", run: async (settings) => (await import("./flood.js")).run(settings) },
  { name: "revoke", run: async (settings) => (await import("./revoke.js")).run(settings) },
  { name: "cluster", run: async (settings) => (await import("./cluster.js")).run(settings) },
];

/** The whole run is cut off after this, whatever hangs (the whole bench is meant to take < 10 min). */
const WATCHDOG_MS = 12 * 60_000;

function envNumber(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max)
    throw new Error(`${name} must be a number from ${min} to ${max}`);
  return value;
}

function settingsFromEnv(): BenchSettings {
  const client = process.env.BENCH_CLIENT ?? "process";
  if (client !== "process" && client !== "inline") throw new Error("BENCH_CLIENT must be process or inline");
  return {
    warmupMs: envNumber("BENCH_WARMUP_MS", 500, 0, 10_000),
    runInMs: envNumber("BENCH_RUNIN_MS", 250, 0, 10_000),
    durationMs: envNumber("BENCH_DURATION_MS", 2000, 100, 30_000),
    repetitions: Math.round(envNumber("BENCH_REPS", 3, 1, 15)),
    client,
    pin: process.env.BENCH_PIN === "1" && canPin(),
  };
}

/** Where results are written: BENCH_RESULTS_DIR, or bench/results beside this file. */
function resultsDir(): string {
  const configured = process.env.BENCH_RESULTS_DIR;
  return configured
    ? path.resolve(configured)
    : path.resolve(path.dirname(fileURLToPath(import.meta.url)), "results");
}

function formatRatio(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

/** "≥ 0.60 met" / "≤ 3.00 MISSED", or "" for a ratio without a goal. */
function formatGoal(r: Ratio): string {
  if (!r.goal) return "";
  return `goal ${r.goal.op === ">=" ? "≥" : "≤"} ${formatRatio(r.goal.value)} ${goalMet(r.value, r.goal) ? "met" : "MISSED"}`;
}

function ratioLine(r: Ratio): string {
  const rounds =
    r.perRound && r.perRound.length > 1 ? ` (rounds ${r.perRound.map(formatRatio).join(" ")})` : "";
  const goal = formatGoal(r);
  return `${r.label} = ${formatRatio(r.value)}${rounds}${goal ? `  ${goal}` : ""}  — ${r.description}`;
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

function measurementRow(m: Measurement): string[] {
  const rates = m.samples.map((s) => s.rate);
  return [
    m.label,
    `${formatRate(m.median)} ${m.unit}`,
    `${formatRate(Math.min(...rates))}–${formatRate(Math.max(...rates))}`,
    formatNumber(m.medianCpuUsPerOp, 1),
    formatNumber(m.medianCpuCores, 2),
    formatNumber(m.medianClientCpuCores, 2),
    formatNumber(m.medianOtherCpuCores, 2),
    formatNumber(m.medianP50Ms, 2),
    formatNumber(m.medianP99Ms, 2),
  ];
}

function renderTable(rows: string[][], header: string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => "  " + cells.map((c, i) => pad(c, widths[i]!, i > 0)).join("  ");
  return [line(header), "  " + widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function renderSummary(
  results: BenchResult[],
  settings: BenchSettings,
  machine: Record<string, unknown>,
): string {
  const out: string[] = [];
  out.push("");
  out.push(
    `Gatehouse benchmarks — ${machine.cpus} vCPU ${machine.cpuModel}, Node ${machine.node}, OpenSSL ${machine.openssl}`,
  );
  out.push(
    `each rate: median of ${settings.repetitions} × ${(settings.durationMs / 1000).toFixed(1)} s windows ` +
      `(rounds interleaved, after ${settings.warmupMs} ms warm-up); load client: ${settings.client}` +
      (settings.pin ? "; server side pinned to one CPU, client to another" : "; not pinned"),
  );
  for (const result of results) {
    out.push("");
    out.push(`${result.name} — ${result.title}  (${(result.totalMs / 1000).toFixed(1)} s)`);
    out.push(
      renderTable(result.measurements.map(measurementRow), [
        "measurement",
        "median",
        "min–max",
        "cpu µs/op",
        "cores",
        "client cores",
        "other cores",
        "p50 ms",
        "p99 ms",
      ]),
    );
    out.push("  ratios:");
    for (const r of result.ratios) out.push(`    ${ratioLine(r)}`);
    for (const note of result.notes) out.push(`  note: ${note}`);
  }
  const goals = results.flatMap((result) =>
    result.ratios.filter((r) => r.goal).map((r) => ({ name: result.name, r })),
  );
  if (goals.length) {
    const missed = goals.filter(({ r }) => !goalMet(r.value, r.goal!));
    out.push("");
    out.push(`goals: ${goals.length - missed.length} of ${goals.length} met`);
    for (const { name, r } of missed)
      out.push(
        `  MISSED ${name} ${r.label} = ${formatRatio(r.value)} (${formatGoal(r).replace(/ MISSED$/, "")})`,
      );
  }
  out.push("");
  out.push(
    "cpu µs/op, cores: CPU of the measured process (the server, or the in-process loop); " +
      "client cores: the load-client process; other cores: the rest of the machine (other processes) " +
      "in the same windows — above ~0.2 the figures are disturbed. p50/p99 ms: latency of one " +
      "operation as the load client saw it (median over the windows), where it was measured.",
  );
  return out.join("\n");
}

async function main(): Promise<number> {
  const watchdog = setTimeout(() => {
    log(`watchdog: the run took longer than ${WATCHDOG_MS / 1000} s; exiting`);
    process.exit(2);
  }, WATCHDOG_MS);
  watchdog.unref();

  const settings = settingsFromEnv();
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
  const unknown = wanted.filter((w) => !BENCHMARKS.some((b) => b.name === w));
  if (unknown.length) {
    log(`unknown benchmark(s): ${unknown.join(", ")}; known: ${BENCHMARKS.map((b) => b.name).join(", ")}`);
    return 64;
  }
  const selected = BENCHMARKS.filter((b) => wanted.length === 0 || wanted.includes(b.name));
  const machine = {
    cpus: MACHINE_CPUS,
    cpuModel: os.cpus()[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    memoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    openssl: process.versions.openssl,
  };

  if (settings.pin) pinProcess(process.pid, SERVER_CPU);
  log(
    settings.pin
      ? `pinned: this process (servers, in-process loops) to CPU ${SERVER_CPU}, load clients to another CPU`
      : "not pinned to CPUs (BENCH_PIN=1 pins the server side and the load client apart)",
  );

  const started = now();
  const results: BenchResult[] = [];
  const failures: { name: string; error: string }[] = [];
  for (const bench of selected) {
    log(`${bench.name}…`);
    try {
      results.push(await bench.run(settings));
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      log(`${bench.name} FAILED: ${message}`);
      failures.push({ name: bench.name, error: message });
    }
  }
  const totalMs = now() - started;

  console.log(renderSummary(results, settings, machine));
  for (const failure of failures) console.log(`\n${failure.name} FAILED: ${failure.error.split("\n")[0]}`);
  console.log(`\ntotal ${(totalMs / 1000).toFixed(1)} s`);

  // Each ratio with a goal also says whether it was met, so the file reads without run.ts.
  const written = results.map((result) => ({
    ...result,
    ratios: result.ratios.map((r) => (r.goal ? { ...r, met: goalMet(r.value, r.goal) } : r)),
  }));
  const header = { date: new Date().toISOString(), machine, settings };
  // latest.json (committed) holds a whole run only: a run of named benchmarks writes NAME.json for
  // each (not committed, see .gitignore), so trying one benchmark never replaces the whole run.
  const files =
    wanted.length === 0
      ? [{ name: "latest", names: selected.map((b) => b.name), totalMs }]
      : selected.map((b) => ({
          name: b.name,
          names: [b.name],
          totalMs: results.find((r) => r.name === b.name)?.totalMs ?? totalMs,
        }));
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  for (const { name, names, totalMs: ms } of files) {
    const file = path.join(dir, `${name}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        {
          ...header,
          benchmarks: names,
          totalMs: ms,
          results: written.filter((result) => names.includes(result.name)),
          failures: failures.filter((failure) => names.includes(failure.name)),
        },
        (_key, value: unknown) => (typeof value === "number" && !Number.isFinite(value) ? null : value),
        2,
      ) + "\n",
    );
    console.log(`results written to ${path.relative(process.cwd(), file) || file}`);
  }
  clearTimeout(watchdog);
  return failures.length ? 1 : 0;
}

const exitCode = await main().catch((error: unknown) => {
  log(`fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return 1;
});
process.exitCode = exitCode;
// Everything was closed; if some handle still keeps the loop alive, do not hang the terminal.
setTimeout(() => {
  log("a handle was still open 3 s after the run; exiting");
  process.exit(exitCode);
}, 3000).unref();
