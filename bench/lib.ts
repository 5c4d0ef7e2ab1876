/**
 * Shared helpers for the benchmarks: settings, bounded timing loops, medians and the result shape
 * that run.ts prints and writes to bench/results/latest.json.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";

export interface BenchSettings {
  /** Untimed warm-up of each measurement target before its first repetition. */
  warmupMs: number;
  /** Untimed run-in before every timed window (connections opened, JIT settled). */
  runInMs: number;
  /** Length of every timed window. */
  durationMs: number;
  /** Timed windows per measurement; the median is reported. */
  repetitions: number;
  /** "process": load clients run in a forked Node process; "inline": in the benchmark's own process. */
  client: "process" | "inline";
  /**
   * Pin this process (server side, in-process loops) to CPU 0 and the load client to CPU 1
   * (BENCH_PIN=1). Off by default: on a quiet machine it changes nothing measurable, and when
   * other processes run it stops ours from moving away from them.
   */
  pin: boolean;
}

export interface Sample {
  /** Operations completed per second of the timed window. */
  rate: number;
  ops: number;
  failed: number;
  elapsedMs: number;
  /** CPU time of the measured side (the server, or the single in-process loop) per operation, in µs. */
  cpuUsPerOp?: number;
  /** CPU of the measured side in cores (1.0 = one core busy all the window). */
  cpuCores?: number;
  /** CPU of the load-generating client in cores, when it runs in its own process. */
  clientCpuCores?: number;
  /** CPU used by everything else on the machine during the window (other processes), in cores. */
  otherCpuCores?: number;
  /** Latency percentiles of the operations in the window, when the load client measured them. */
  p50Ms?: number;
  p99Ms?: number;
}

export interface Measurement {
  label: string;
  description: string;
  unit: string;
  samples: Sample[];
  median: number;
  medianCpuUsPerOp?: number;
  medianCpuCores?: number;
  medianClientCpuCores?: number;
  medianOtherCpuCores?: number;
  medianP50Ms?: number;
  medianP99Ms?: number;
}

/**
 * What a ratio should reach: `value` is met when `op` holds (">=" for a rate or a share of a
 * baseline, "<=" for a cost, a latency or a time). The goals are the issue's, not measured.
 */
export interface Goal {
  op: ">=" | "<=";
  value: number;
}

export interface Ratio {
  label: string;
  /** Ratio of the two medians (or, for an absolute goal, the figure itself in the label's unit). */
  value: number;
  description: string;
  /** The same ratio within each round (the two windows measured back to back). */
  perRound?: number[];
  /** The goal this ratio is held to, when there is one; run.ts prints "met" or "MISSED". */
  goal?: Goal;
}

/** Whether `value` meets `goal`; a figure that is not a finite number never does. */
export function goalMet(value: number, goal: Goal): boolean {
  if (!Number.isFinite(value)) return false;
  return goal.op === ">=" ? value >= goal.value : value <= goal.value;
}

export interface BenchResult {
  name: string;
  title: string;
  measurements: Measurement[];
  ratios: Ratio[];
  notes: string[];
  setupMs: number;
  totalMs: number;
}

export const now = (): number => performance.now();

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function medianOf(samples: Sample[], pick: (s: Sample) => number | undefined): number | undefined {
  const values = samples.map(pick).filter((v): v is number => v !== undefined);
  return values.length ? median(values) : undefined;
}

export function summarize(label: string, description: string, unit: string, samples: Sample[]): Measurement {
  const m: Measurement = {
    label,
    description,
    unit,
    samples,
    median: median(samples.map((s) => s.rate)),
  };
  const cpu = medianOf(samples, (s) => s.cpuUsPerOp);
  const cores = medianOf(samples, (s) => s.cpuCores);
  const client = medianOf(samples, (s) => s.clientCpuCores);
  const other = medianOf(samples, (s) => s.otherCpuCores);
  if (cpu !== undefined) m.medianCpuUsPerOp = cpu;
  if (cores !== undefined) m.medianCpuCores = cores;
  if (client !== undefined) m.medianClientCpuCores = client;
  if (other !== undefined) m.medianOtherCpuCores = other;
  const p50 = medianOf(samples, (s) => s.p50Ms);
  const p99 = medianOf(samples, (s) => s.p99Ms);
  if (p50 !== undefined) m.medianP50Ms = p50;
  if (p99 !== undefined) m.medianP99Ms = p99;
  return m;
}

/**
 * A ratio of one figure of two measurements: the figure of `top`'s medians ÷ `bottom`'s, and the
 * same within each round (sample i of each), with an optional goal. A figure a measurement lacks
 * makes the ratio NaN (never "met").
 */
export function figureRatio(
  label: string,
  description: string,
  top: Measurement,
  bottom: Measurement,
  figure: { median: (m: Measurement) => number | undefined; sample: (s: Sample) => number | undefined },
  goal?: Goal,
): Ratio {
  const of = (value: number | undefined) => value ?? Number.NaN;
  const rounds = Math.min(top.samples.length, bottom.samples.length);
  const r: Ratio = {
    label,
    description,
    value: of(figure.median(top)) / of(figure.median(bottom)),
    perRound: Array.from(
      { length: rounds },
      (_, i) => of(figure.sample(top.samples[i]!)) / of(figure.sample(bottom.samples[i]!)),
    ),
  };
  if (goal) r.goal = goal;
  return r;
}

/**
 * A measurement of one figure taken once (a time, a percentile over a run): its median is the
 * figure itself; `extra` adds what was seen with it (CPU cores of the window).
 */
export function singleFigure(
  label: string,
  description: string,
  unit: string,
  value: number,
  extra: Partial<Sample> = {},
): Measurement {
  return summarize(label, description, unit, [{ rate: value, ops: 1, failed: 0, elapsedMs: 0, ...extra }]);
}

/** The value at 0-based rank ⌊q·n⌋ of the sorted values (the largest when that runs past the end); NaN for none. */
export function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** A ratio of the median rates of two measurements: a's rate ÷ b's rate, with an optional goal. */
export function ratio(
  label: string,
  description: string,
  a: Measurement,
  b: Measurement,
  goal?: Goal,
): Ratio {
  return figureRatio(label, description, a, b, { median: (m) => m.median, sample: (s) => s.rate }, goal);
}

/** A ratio of the median CPU per operation of two measurements: b's cost ÷ a's cost, with an optional goal. */
export function cpuRatio(
  label: string,
  description: string,
  a: Measurement,
  b: Measurement,
  goal?: Goal,
): Ratio {
  const cpu = { median: (m: Measurement) => m.medianCpuUsPerOp, sample: (s: Sample) => s.cpuUsPerOp };
  return figureRatio(label, description, b, a, cpu, goal);
}

/** CPU time of this whole process (all threads), in µs. */
export function processCpuUs(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Logical CPUs of the machine (not the affinity mask of this process, which pinning narrows). */
export const MACHINE_CPUS = os.cpus().length;

export interface MachineTicks {
  busy: number;
  total: number;
}

/** The machine-wide CPU counters of /proc/stat (Linux), or undefined elsewhere. */
export function machineTicks(): MachineTicks | undefined {
  try {
    const line = readFileSync("/proc/stat", "latin1").split("\n", 1)[0] ?? "";
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const busy = user! + nice! + system! + irq! + softirq! + steal!;
    return Number.isFinite(busy) ? { busy, total: busy + idle! + iowait! } : undefined;
  } catch {
    return undefined;
  }
}

/** Cores busy machine-wide between two snapshots. */
export function machineBusyCores(
  a: MachineTicks | undefined,
  b: MachineTicks | undefined,
): number | undefined {
  if (!a || !b || b.total <= a.total) return undefined;
  return ((b.busy - a.busy) / (b.total - a.total)) * MACHINE_CPUS;
}

/** Hard upper bound on the operations of one timed loop, whatever the machine's speed. */
export const MAX_OPS_PER_WINDOW = 20_000_000;

/**
 * Runs `op` back to back, one at a time, for `ms` (or until `maxOps`, or until `op` returns false),
 * and returns the rate and this process's CPU per operation.
 */
export async function timeSequential(
  op: (i: number) => unknown,
  ms: number,
  maxOps = MAX_OPS_PER_WINDOW,
): Promise<Sample> {
  const ticks0 = machineTicks();
  const cpu0 = processCpuUs();
  const start = now();
  const end = start + ms;
  let ops = 0;
  let t = start;
  for (; ops < maxOps; ops++) {
    let result = op(ops);
    if (result instanceof Promise) result = await result;
    if (result === false) break;
    // A clock read is ~30 ns; reading it every 16 ops keeps the cheapest op (a cache hit) honest.
    if ((ops & 15) === 15 && (t = now()) >= end) {
      ops++;
      break;
    }
  }
  t = now();
  const cpuUs = processCpuUs() - cpu0;
  const busy = machineBusyCores(ticks0, machineTicks());
  const elapsedMs = t - start;
  const sample: Sample = {
    rate: ops / (elapsedMs / 1000),
    ops,
    failed: 0,
    elapsedMs,
    cpuUsPerOp: ops ? cpuUs / ops : Number.NaN,
    cpuCores: cpuUs / 1000 / elapsedMs,
  };
  if (busy !== undefined) sample.otherCpuCores = Math.max(0, busy - sample.cpuCores!);
  return sample;
}

export function formatRate(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(2)}k`;
  return value.toFixed(0);
}

export function formatNumber(value: number | undefined, digits = 1): string {
  return value === undefined || !Number.isFinite(value) ? "" : value.toFixed(digits);
}

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export interface Target {
  label: string;
  description: string;
  unit: string;
  /** Untimed warm-up, run once before the first repetition. */
  warm(): Promise<void>;
  /** One timed window. */
  sample(): Promise<Sample & { firstError?: string }>;
}

/**
 * Measures the targets in rounds (A B C, A B C, A B C) rather than one after the other, so a
 * slow or fast stretch of the machine touches every target alike; reports each target's median.
 */
export async function measureInterleaved(
  targets: Target[],
  settings: BenchSettings,
  notes: string[],
): Promise<Measurement[]> {
  for (const target of targets) await target.warm();
  const samples = new Map<string, Sample[]>(targets.map((t) => [t.label, []]));
  for (let round = 0; round < settings.repetitions; round++) {
    for (const target of targets) {
      const { firstError, ...sample } = await target.sample();
      samples.get(target.label)!.push(sample);
      log(
        `  ${target.label} #${round + 1}: ${formatRate(sample.rate)} ${target.unit}` +
          (sample.failed ? ` (${sample.failed} failed: ${firstError ?? "?"})` : ""),
      );
      if (sample.failed && firstError !== undefined)
        notes.push(`${target.label} round ${round + 1}: ${sample.failed} operations failed (${firstError})`);
      if (sample.ops === 0) throw new Error(`${target.label}: no operation completed (${firstError ?? "?"})`);
    }
  }
  const measurements = targets.map((t) => summarize(t.label, t.description, t.unit, samples.get(t.label)!));
  for (const m of measurements) {
    const worst = Math.max(...m.samples.map((s) => s.otherCpuCores ?? 0));
    if (worst > 0.2)
      notes.push(
        `${m.label}: other processes used up to ${worst.toFixed(2)} cores of ${MACHINE_CPUS} during its windows ` +
          `(median ${(m.medianOtherCpuCores ?? 0).toFixed(2)}); its figures are disturbed`,
      );
  }
  return measurements;
}

/** CPU the server side is pinned to, and the one the load client is pinned to. */
export const SERVER_CPU = 0;
export const CLIENT_CPU = 1;

/** Whether pinning is possible here: two CPUs or more and util-linux's taskset. */
export function canPin(): boolean {
  if (os.platform() !== "linux" || MACHINE_CPUS < 2) return false;
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore", timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/** Pins every thread of a process to one CPU (threads it starts later inherit the mask). */
export function pinProcess(pid: number, cpu: number): void {
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore", timeout: 5000 });
}
