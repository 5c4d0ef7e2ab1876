/**
 * The load generator for the network benchmarks. It runs either inline (in the benchmark's process)
 * or, by default, in a forked Node process (this file with `--bench-load-child`), so that the
 * client's own TLS and HTTP work does not share an event loop with the server it measures.
 *
 * Every loop is bounded by time and by count, and every operation by a timeout.
 */
import { fork, type ChildProcess } from "node:child_process";
import https from "node:https";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import {
  type BenchSettings,
  type Target,
  machineBusyCores,
  machineTicks,
  now,
  pinProcess,
  processCpuUs,
  CLIENT_CPU,
  MAX_OPS_PER_WINDOW,
  type MachineTicks,
  type Sample,
} from "./lib.js";

export interface LoadSpec {
  /**
   * "http": keep-alive HTTPS requests; "handshake": a new TLS connection per request;
   * "ws-echo": one WSS connection per loop, each operation a message and its echo.
   */
  kind: "http" | "handshake" | "ws-echo";
  host: string;
  port: number;
  path: string;
  /** GET unless given; a body is sent as JSON. */
  method?: "GET" | "POST";
  body?: unknown;
  headers?: Record<string, string>;
  /** PEM of the CA that signed the server certificate. */
  ca: string;
  /** Client certificate and key (PEM), presented in every handshake. */
  cert?: string;
  key?: string;
  concurrency: number;
  /**
   * "handshake" only: each loop offers the TLS session of its previous connection (session
   * resumption with a ticket, RFC 8446 §2.2); a connection whose offer the server did not take
   * counts as failed. Without it every handshake is a full one.
   */
  resume?: boolean;
  /** Untimed run-in before the timed window. */
  runInMs: number;
  durationMs: number;
  /** Per-operation timeout. */
  timeoutMs?: number;
}

export interface LoadResult {
  completed: number;
  failed: number;
  elapsedMs: number;
  /** CPU of the client process during the timed window, in cores. */
  clientCpuCores: number;
  /** Latency of the operations completed in the timed window. */
  p50Ms: number;
  p99Ms: number;
  firstError?: string;
}

type Op = () => Promise<string | undefined>; // undefined: success; otherwise why it failed

function httpOp(spec: LoadSpec, agent: https.Agent): Op {
  const timeout = spec.timeoutMs ?? 5000;
  const body = spec.body === undefined ? undefined : Buffer.from(JSON.stringify(spec.body));
  const headers = body ? { ...spec.headers, "content-type": "application/json" } : spec.headers;
  return () =>
    new Promise((resolve) => {
      const request = https.request(
        { host: spec.host, port: spec.port, path: spec.path, method: spec.method ?? "GET", headers, agent },
        (response) => {
          const status = response.statusCode;
          response.resume();
          response.on("end", () => resolve(status === 200 ? undefined : `HTTP ${status}`));
          response.on("error", (error) => resolve(error.message));
        },
      );
      request.setTimeout(timeout, () => request.destroy(new Error("timeout")));
      request.on("error", (error) => resolve(error.message));
      request.end(body);
    });
}

/** Opens one WSS connection; each operation sends a message and waits for its echo. */
async function wsEchoOp(spec: LoadSpec): Promise<{ op: Op; close: () => void }> {
  const timeout = spec.timeoutMs ?? 5000;
  const payload = JSON.stringify(spec.body ?? { type: "echo" });
  const socket = new WebSocket(`wss://${spec.host}:${spec.port}${spec.path}`, {
    ca: spec.ca,
    ...(spec.cert ? { cert: spec.cert, key: spec.key } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  let waiting: ((outcome: string | undefined) => void) | undefined;
  socket.on("message", () => {
    const settle = waiting;
    waiting = undefined;
    settle?.(undefined);
  });
  socket.on("close", () => waiting?.("connection closed"));
  const op: Op = () =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), timeout);
      waiting = (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      };
      socket.send(payload);
    });
  return { op, close: () => socket.terminate() };
}

/** The value below which a share `q` of the sorted values lie (nearest rank). */
function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** One loop's operation: a new TLS connection per request (its own session when `spec.resume`). */
function handshakeOp(spec: LoadSpec, context: tls.SecureContext): Op {
  const timeout = spec.timeoutMs ?? 5000;
  const request = Buffer.from(
    `GET ${spec.path} HTTP/1.1\r\nHost: ${spec.host}:${spec.port}\r\nConnection: close\r\n\r\n`,
    "latin1",
  );
  let session: Buffer | undefined;
  return () =>
    new Promise((resolve) => {
      let head = "";
      let error: string | undefined;
      let notResumed = false;
      // A fresh connection every time; a session only when resuming, else a full handshake.
      const offered = spec.resume ? session : undefined;
      const socket = tls.connect({
        host: spec.host,
        port: spec.port,
        secureContext: context,
        session: offered,
      });
      if (spec.resume) socket.on("session", (ticket: Buffer) => (session = ticket));
      socket.setTimeout(timeout, () => socket.destroy(new Error("timeout")));
      socket.once("secureConnect", () => {
        notResumed = offered !== undefined && !socket.isSessionReused();
        socket.write(request);
      });
      socket.on("data", (chunk: Buffer) => {
        if (head.length < 16) head += chunk.toString("latin1");
      });
      socket.on("error", (e) => (error ??= e.message));
      socket.on("close", () => {
        if (notResumed) resolve("the server did not resume the session");
        else if (head.startsWith("HTTP/1.1 200")) resolve(undefined);
        else resolve(error ?? `unexpected response ${JSON.stringify(head.slice(0, 16))}`);
      });
    });
}

/**
 * Runs `spec.concurrency` loops of back-to-back operations. Completions that land inside the timed
 * window count; `onMark` is called when the window starts and ends (the caller samples the
 * server's CPU there).
 */
export async function runLoad(spec: LoadSpec, onMark: (phase: "start" | "end") => void): Promise<LoadResult> {
  let agent: https.Agent | undefined;
  let ops: Op[];
  const closers: (() => void)[] = [];
  if (spec.kind === "http") {
    const identity = spec.cert ? { cert: spec.cert, key: spec.key } : {};
    agent = new https.Agent({ keepAlive: true, maxSockets: spec.concurrency, ca: spec.ca, ...identity });
    ops = Array<Op>(spec.concurrency).fill(httpOp(spec, agent));
  } else if (spec.kind === "ws-echo") {
    const sockets = await Promise.all(Array.from({ length: spec.concurrency }, () => wsEchoOp(spec)));
    ops = sockets.map((s) => s.op);
    closers.push(...sockets.map((s) => s.close));
  } else {
    const context = tls.createSecureContext({ ca: spec.ca, key: spec.key, cert: spec.cert });
    ops = Array.from({ length: spec.concurrency }, () => handshakeOp(spec, context));
  }
  const latencies: number[] = [];

  const start = now();
  const t0 = start + spec.runInMs;
  const t1 = t0 + spec.durationMs;
  let completed = 0;
  let failed = 0;
  let issued = 0;
  let firstError: string | undefined;
  let cpu0 = 0;
  let cpu1 = 0;
  let marked0 = false;
  let marked1 = false;
  const markStart = () => {
    if (marked0) return;
    marked0 = true;
    cpu0 = processCpuUs();
    onMark("start");
  };
  const markEnd = () => {
    if (marked1) return;
    marked1 = true;
    cpu1 = processCpuUs();
    onMark("end");
  };
  const startTimer = setTimeout(markStart, spec.runInMs);
  const endTimer = setTimeout(markEnd, spec.runInMs + spec.durationMs);

  const loop = async (op: Op) => {
    while (issued < MAX_OPS_PER_WINDOW && now() < t1) {
      issued++;
      const began = now();
      const outcome = await op();
      const t = now();
      if (t < t0 || t >= t1) continue;
      if (outcome === undefined) {
        completed++;
        latencies.push(t - began);
      } else {
        failed++;
        firstError ??= outcome;
      }
    }
  };
  try {
    await Promise.all(ops.map(loop));
  } finally {
    clearTimeout(startTimer);
    clearTimeout(endTimer);
    agent?.destroy();
    for (const close of closers) close();
  }
  latencies.sort((a, b) => a - b);
  // Timers fire late on a busy loop: make sure both marks happened, in order.
  markStart();
  markEnd();
  const result: LoadResult = {
    completed,
    failed,
    elapsedMs: spec.durationMs,
    clientCpuCores: (cpu1 - cpu0) / 1000 / spec.durationMs,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
  if (firstError !== undefined) result.firstError = firstError;
  return result;
}

// The parent side ------------------------------------------------------------------------------

type ChildMessage =
  | { type: "mark"; phase: "start" | "end" }
  | { type: "result"; result: LoadResult }
  | { type: "error"; message: string };

/**
 * Drives load either from a forked process or inline, and samples the CPU of *this* process
 * (the server's) over the client's timed window.
 */
export class LoadClient {
  private constructor(private readonly child: ChildProcess | undefined) {}

  static async start(mode: "process" | "inline", pin: boolean): Promise<LoadClient> {
    if (mode === "inline") return new LoadClient(undefined);
    const child = fork(fileURLToPath(import.meta.url), ["--bench-load-child"], {
      execArgv: process.execArgv, // carries `--import tsx`
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the load client did not start within 20 s")), 20_000);
      child.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the load client exited (${code}) before it was ready`));
      });
    });
    if (pin && child.pid !== undefined) pinProcess(child.pid, CLIENT_CPU);
    return new LoadClient(child);
  }

  get inline(): boolean {
    return this.child === undefined;
  }

  /** One timed window. The sample's CPU fields describe this process (the server side). */
  async run(spec: LoadSpec): Promise<Sample & { firstError?: string }> {
    let cpu0 = 0;
    let cpu1 = 0;
    let wall0 = 0;
    let wall1 = 0;
    let ticks0: MachineTicks | undefined;
    let ticks1: MachineTicks | undefined;
    const onMark = (phase: "start" | "end") => {
      if (phase === "start") {
        cpu0 = processCpuUs();
        wall0 = now();
        ticks0 = machineTicks();
      } else {
        cpu1 = processCpuUs();
        wall1 = now();
        ticks1 = machineTicks();
      }
    };
    const result = this.child ? await this.runInChild(this.child, spec, onMark) : await runLoad(spec, onMark);
    const cpuUs = cpu1 - cpu0;
    const wallMs = wall1 - wall0;
    const sample: Sample & { firstError?: string } = {
      rate: result.completed / (result.elapsedMs / 1000),
      ops: result.completed,
      failed: result.failed,
      elapsedMs: result.elapsedMs,
      cpuUsPerOp: result.completed ? cpuUs / result.completed : Number.NaN,
      cpuCores: wallMs > 0 ? cpuUs / 1000 / wallMs : Number.NaN,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
    };
    if (this.child) sample.clientCpuCores = result.clientCpuCores;
    const busy = machineBusyCores(ticks0, ticks1);
    if (busy !== undefined)
      sample.otherCpuCores = Math.max(0, busy - sample.cpuCores! - (sample.clientCpuCores ?? 0));
    if (result.firstError !== undefined) sample.firstError = result.firstError;
    return sample;
  }

  private runInChild(
    child: ChildProcess,
    spec: LoadSpec,
    onMark: (phase: "start" | "end") => void,
  ): Promise<LoadResult> {
    return new Promise((resolve, reject) => {
      const limit = spec.runInMs + spec.durationMs + 30_000;
      const timer = setTimeout(
        () => finish(new Error(`the load client gave no result in ${limit} ms`)),
        limit,
      );
      const onMessage = (message: ChildMessage) => {
        if (message.type === "mark") onMark(message.phase);
        else if (message.type === "result") finish(undefined, message.result);
        else finish(new Error(`load client: ${message.message}`));
      };
      const onExit = (code: number | null) => finish(new Error(`the load client exited (${code})`));
      const finish = (error: Error | undefined, result?: LoadResult) => {
        clearTimeout(timer);
        child.off("message", onMessage);
        child.off("exit", onExit);
        if (error) reject(error);
        else resolve(result!);
      };
      child.on("message", onMessage);
      child.once("exit", onExit);
      child.send({ type: "run", spec });
    });
  }

  async close(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve();
      }, 5000);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      child.disconnect(); // the child exits when its IPC channel closes
    });
  }
}

/** A measurement target that drives `base` through the load client with the run's timings. */
export function loadTarget(
  loader: LoadClient,
  settings: BenchSettings,
  label: string,
  description: string,
  unit: string,
  base: Omit<LoadSpec, "runInMs" | "durationMs">,
): Target {
  return {
    label,
    description,
    unit,
    warm: async () => void (await loader.run({ ...base, runInMs: 0, durationMs: settings.warmupMs })),
    sample: () => loader.run({ ...base, runInMs: settings.runInMs, durationMs: settings.durationMs }),
  };
}

// The child side -------------------------------------------------------------------------------

if (process.argv.includes("--bench-load-child") && process.send) {
  const send = (message: ChildMessage | { type: "ready" }) => {
    if (process.connected) process.send!(message);
  };
  process.on("disconnect", () => process.exit(0));
  process.on("message", (message: { type: string; spec?: LoadSpec }) => {
    if (message.type !== "run" || !message.spec) return;
    runLoad(message.spec, (phase) => send({ type: "mark", phase })).then(
      (result) => send({ type: "result", result }),
      (error: unknown) => send({ type: "error", message: String(error) }),
    );
  });
  send({ type: "ready" });
}
