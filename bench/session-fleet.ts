/**
 * What the session benchmarks (sessions, storm, revoke) share: a gateway home with registered
 * devices, the gateway and the bare baseline each in a process of its own, and a fleet client — a
 * forked process holding thousands of WSS + mTLS node sessions over several loopback source
 * addresses (127.0.0.2 …), with one TLS secure context per device built once (field notes), and
 * the agent's own reconnect policy (src/node/backoff.ts).
 *
 * Each of the three processes stays under the open-file limit by itself (10,000 sessions are
 * 10,000 descriptors on each side); where the soft limit is lower than the hard one, processes are
 * started through `prlimit` with the soft limit raised to the hard one.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { GATEWAY_FILES, NODE_FILES } from "../src/config/index.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { registerNode } from "../src/node/register.js";
import { FRESH_RECONNECT, nextReconnect, type ReconnectState } from "../src/node/backoff.js";
import type { ErrorCode } from "../src/protocol/errors.js";
import { fetchOnce } from "./gateway-fixture.js";
import { MACHINE_CPUS, machineBusyCores, machineTicks, now } from "./lib.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(HERE, "../dist/cli/main.js");
const BARE_SERVER = path.join(HERE, "bare-wss-server.mjs");

/** The loopback source addresses the fleet spreads its sessions over. */
export const SOURCE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

// Open-file limits ------------------------------------------------------------------------------

function openFileLimits(): { soft: number; hard: number } {
  try {
    const out = execFileSync("sh", ["-c", "ulimit -Sn; ulimit -Hn"], { encoding: "utf8" }).trim().split("\n");
    const parse = (v: string | undefined) => (v === "unlimited" ? 1_048_576 : Number(v));
    return { soft: parse(out[0]), hard: parse(out[1]) };
  } catch {
    return { soft: 1024, hard: 1024 };
  }
}

const hasPrlimit = (() => {
  try {
    execFileSync("prlimit", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/**
 * The command that runs `args` (a Node process) with at least `needed` descriptors: as is when
 * the soft limit allows it, through `prlimit --nofile=HARD:HARD` when only the hard one does.
 * @throws when even the hard limit is too low (fewer sessions: BENCH_SESSIONS)
 */
function withOpenFiles(needed: number, args: string[]): [string, string[]] {
  const { soft, hard } = openFileLimits();
  if (soft >= needed) return [process.execPath, args];
  if (hard < needed)
    throw new Error(
      `${needed} open files are needed but the hard limit is ${hard}; set BENCH_SESSIONS lower`,
    );
  if (!hasPrlimit)
    throw new Error(`the soft open-file limit is ${soft} (< ${needed}) and prlimit is missing`);
  return ["prlimit", [`--nofile=${hard}:${hard}`, "--", process.execPath, ...args]];
}

// CPU of the processes in a window ---------------------------------------------------------------

/** CPU ticks (user + system, /proc/PID/stat) a process has used, or undefined once it is gone. */
function processTicks(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/**
 * Starts a CPU window over the server and fleet client processes; `end` gives each one's CPU in
 * cores and the rest of the machine's ("other cores": above ~0.2 the figures are disturbed).
 */
export function cpuWindow(
  server: number | undefined,
  client: number | undefined,
): () => {
  serverCores: number;
  clientCores: number;
  otherCores: number;
} {
  const machine0 = machineTicks();
  const server0 = processTicks(server);
  const client0 = processTicks(client);
  return () => {
    const machine1 = machineTicks();
    const elapsed = machine0 && machine1 ? (machine1.total - machine0.total) / MACHINE_CPUS : Number.NaN;
    const cores = (a: number | undefined, b: number | undefined) =>
      a !== undefined && b !== undefined && elapsed > 0 ? (b - a) / elapsed : 0;
    const serverCores = cores(server0, processTicks(server));
    const clientCores = cores(client0, processTicks(client));
    const busy = machineBusyCores(machine0, machine1) ?? Number.NaN;
    return { serverCores, clientCores, otherCores: Math.max(0, busy - serverCores - clientCores) };
  };
}

// Server processes ------------------------------------------------------------------------------

export interface ServerProcess {
  kind: "gateway" | "bare";
  child: ChildProcess;
  port: number;
  /** From spawn to the first answered GET /health, in ms. */
  startMs: number;
  exited: Promise<void>;
  /** Resident set size of the process now, in KiB (/proc/PID/status VmRSS). */
  rssKiB(): number;
  /** SIGTERM, then waits for the exit; resolves with the time it took, in ms. */
  stop(): Promise<number>;
}

async function healthy(port: number, ca: string): Promise<boolean> {
  try {
    return (await fetchOnce(`https://127.0.0.1:${port}/health`, { ca })).status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts the gateway (`gatehouse gateway start`, the product as shipped in dist/) or the bare
 * baseline, and resolves once /health answers.
 */
export async function startServer(
  kind: "gateway" | "bare",
  fleet: FleetHome,
  sessions: number,
): Promise<ServerProcess> {
  const port = kind === "gateway" ? fleet.port : fleet.barePort;
  // BENCH_SERVER_PROF=DIR writes a CPU profile of each server process there (node --cpu-prof).
  const prof = process.env.BENCH_SERVER_PROF
    ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_SERVER_PROF}`]
    : [];
  const args =
    kind === "gateway"
      ? [...prof, CLI, "gateway", "start", "--home", fleet.home]
      : [...prof, BARE_SERVER, String(port), path.join(fleet.home, GATEWAY_FILES.pkiDir)];
  const [command, argv] = withOpenFiles(sessions + 1000, args);
  const started = now();
  const child = spawn(command, argv, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  while (!(await healthy(port, fleet.pem.ca))) {
    if (gone) throw new Error(`the ${kind} server exited before it answered /health:\n${stderr}`);
    if (now() - started > 30_000) {
      child.kill("SIGKILL");
      throw new Error(`the ${kind} server did not answer /health within 30 s:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const startMs = now() - started;
  return {
    kind,
    child,
    port,
    startMs,
    exited,
    rssKiB() {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
    },
    async stop() {
      if (gone) return 0;
      const t0 = now();
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
      return now() - t0;
    },
  };
}

// The gateway home ------------------------------------------------------------------------------

export interface DevicePem {
  deviceId: string;
  key: string;
  cert: string;
}

/** An admin's credential at a gateway (PEM): the CA to trust, its certificate and its key. */
export interface AdminPem {
  ca: string;
  cert: string;
  key: string;
}

/**
 * `count` devices registered at `url` (https://HOST:PORT) with one enroll token the admin makes
 * (so approved at once), 8 at a time: device i lives in `dir`/node-i and is named `prefix`i. Throws
 * when the token cannot be made or a registration fails.
 */
export async function registerDevices(
  url: string,
  admin: AdminPem,
  count: number,
  dir: string,
  prefix: string,
): Promise<DevicePem[]> {
  const created = await fetchOnce(`${url}/api/v1/enroll-tokens`, {
    ...admin,
    method: "POST",
    body: { name: "bench", uses: count, expires: "1h" },
  });
  const token = (JSON.parse(created.body) as { token?: string }).token;
  if (!token) throw new Error(`could not create an enroll token: ${created.status} ${created.body}`);
  const caFingerprint = `sha256:${new X509Certificate(admin.ca).fingerprint256.replaceAll(":", "").toLowerCase()}`;
  const devices: DevicePem[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const home = path.join(dir, `node-${i}`);
      const registered = await registerNode(home, {
        gatewayUrl: url,
        caFingerprint,
        name: `${prefix}${i}`,
        enrollToken: token,
      });
      devices[i] = {
        deviceId: registered.deviceId,
        key: readFileSync(path.join(home, NODE_FILES.deviceKey), "utf8"),
        cert: readFileSync(path.join(home, NODE_FILES.deviceCert), "utf8"),
      };
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, count) }, worker));
  return devices;
}

export interface FleetHome {
  dir: string;
  home: string;
  port: number;
  barePort: number;
  pem: { ca: string; adminCert: string; adminKey: string };
  devices: DevicePem[];
  close(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/**
 * A gateway home in a temp directory with `devices` nodes registered (with one enroll token) and
 * approved. Idle sessions are not timed out during the run (heartbeatTimeout 10m: the fleet sends
 * no heartbeats) and registrations are not rate-limited. The gateway is stopped again at the end.
 */
export async function prepareFleetHome(devices: number): Promise<FleetHome> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-fleet-"));
  const home = path.join(dir, "home");
  try {
    const port = await freePort();
    const barePort = await freePort();
    await initGatewayHome(home, { listen: `127.0.0.1:${port}` });
    const configFile = path.join(home, GATEWAY_FILES.config);
    const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, Record<string, unknown>>;
    config.sessions = { ...config.sessions, heartbeatTimeout: "10m" };
    config.enroll = { ...config.enroll, perAddressPerMinute: 100_000 };
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    const read = (file: string) => readFileSync(path.join(home, file), "utf8");
    const fleet: FleetHome = {
      dir,
      home,
      port,
      barePort,
      pem: {
        ca: read(GATEWAY_FILES.caCert),
        adminCert: read(GATEWAY_FILES.adminCert),
        adminKey: read(GATEWAY_FILES.adminKey),
      },
      devices: [],
      close: () => rmSync(dir, { recursive: true, force: true }),
    };
    const gateway = await startServer("gateway", fleet, 100);
    try {
      const admin = { ca: fleet.pem.ca, cert: fleet.pem.adminCert, key: fleet.pem.adminKey };
      fleet.devices.push(
        ...(await registerDevices(`https://127.0.0.1:${port}`, admin, devices, dir, "bench-")),
      );
    } finally {
      await gateway.stop();
    }
    return fleet;
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

// The fleet client (parent side) ----------------------------------------------------------------

type ToChild =
  | { type: "config"; url: string; ca: string; devices: { key: string; cert: string }[]; sources: string[] }
  | { type: "open"; count: number; concurrency: number; reconnect: boolean }
  | { type: "watch-back"; timeoutMs: number }
  | {
      type: "revoke";
      index: number;
      request: { url: string; cert: string; key: string };
    }
  | { type: "close-all" };

type FromChild =
  { type: "ready" } | { type: "done"; result: Record<string, unknown> } | { type: "error"; message: string };

export interface OpenResult {
  opened: number;
  failed: number;
  ms: number;
  firstError?: string;
}

export interface BackResult {
  /** From the watch's start to the moment every session was open again, in ms (NaN: timed out). */
  ms: number;
  open: number;
  reconnects: number;
  closeCodes: Record<string, number>;
  refused: number;
}

/** The fleet client process: thousands of sessions, driven over IPC. */
export class FleetClient {
  private constructor(private readonly child: ChildProcess) {}

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(sessions: number): Promise<FleetClient> {
    const [command, argv] = withOpenFiles(sessions + 1000, [
      ...process.execArgv, // carries `--import tsx`
      fileURLToPath(import.meta.url),
      "--bench-fleet-child",
    ]);
    const child = spawn(command, argv, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the fleet client did not start within 20 s")), 20_000);
      child.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the fleet client exited (${code}) before it was ready`));
      });
    });
    return new FleetClient(child);
  }

  private ask(message: ToChild, limitMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => finish(new Error(`the fleet client gave no answer in ${limitMs} ms`)),
        limitMs,
      );
      const onMessage = (reply: FromChild) => {
        if (reply.type === "done") finish(undefined, reply.result);
        else if (reply.type === "error") finish(new Error(`fleet client: ${reply.message}`));
      };
      const onExit = (code: number | null) => finish(new Error(`the fleet client exited (${code})`));
      const finish = (error: Error | undefined, result?: Record<string, unknown>) => {
        clearTimeout(timer);
        this.child.off("message", onMessage);
        this.child.off("exit", onExit);
        if (error) reject(error);
        else resolve(result!);
      };
      this.child.on("message", onMessage);
      this.child.once("exit", onExit);
      this.child.send(message);
    });
  }

  async configure(url: string, ca: string, devices: DevicePem[]): Promise<void> {
    await this.ask(
      {
        type: "config",
        url,
        ca,
        devices: devices.map(({ key, cert }) => ({ key, cert })),
        sources: SOURCE_ADDRESSES,
      },
      30_000,
    );
  }

  /** Opens `count` sessions (session i uses device i mod devices), `concurrency` handshakes at a time. */
  async open(count: number, concurrency: number, reconnect: boolean): Promise<OpenResult> {
    return (await this.ask(
      { type: "open", count, concurrency, reconnect },
      180_000,
    )) as unknown as OpenResult;
  }

  /** Starts watching for every session to be open again; the promise resolves when they are. */
  watchBack(timeoutMs: number): Promise<BackResult> {
    return this.ask({ type: "watch-back", timeoutMs }, timeoutMs + 10_000) as unknown as Promise<BackResult>;
  }

  /** POSTs `request.url` (a revoke) and resolves with the ms until session `index` saw its close. */
  async revoke(
    index: number,
    request: { url: string; cert: string; key: string },
  ): Promise<{ ms: number; code: number }> {
    return (await this.ask({ type: "revoke", index, request }, 30_000)) as unknown as {
      ms: number;
      code: number;
    };
  }

  async closeAll(): Promise<void> {
    await this.ask({ type: "close-all" }, 60_000);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    this.child.disconnect();
    await exited;
    clearTimeout(timer);
  }
}

/** The server a fleet benchmark measures and the fleet client pointed at it. */
export interface FleetRun {
  /** A benchmark that restarts the server puts the new process here, so that it is the one stopped. */
  server: ServerProcess;
  client: FleetClient;
}

/**
 * Starts the `kind` server (open-file room for `sessions`) and a fleet client for as many
 * sessions, configured to wss://127.0.0.1:PORT/api/v1/connect with the fleet's devices in turn,
 * and runs `body` with them. Afterwards, whatever `body` did, every session is closed and the
 * client and `run.server` are stopped. Resolves or throws what `body` does.
 */
export async function withFleetServer<T>(
  kind: "gateway" | "bare",
  fleet: FleetHome,
  sessions: number,
  body: (run: FleetRun) => Promise<T>,
): Promise<T> {
  const server = await startServer(kind, fleet, sessions);
  let client: FleetClient | undefined;
  const run = { server } as FleetRun;
  try {
    client = run.client = await FleetClient.start(sessions);
    await client.configure(`wss://127.0.0.1:${server.port}/api/v1/connect`, fleet.pem.ca, fleet.devices);
    return await body(run);
  } finally {
    if (client) {
      await client.closeAll().catch(() => undefined);
      await client.stop();
    }
    await run.server.stop();
  }
}

// The fleet client (child side) -----------------------------------------------------------------

interface Slot {
  index: number;
  socket: WebSocket | undefined;
  open: boolean;
  state: ReconnectState;
  timer: NodeJS.Timeout | undefined;
  onClose?: (code: number) => void;
}

function childMain(): void {
  let config: Extract<ToChild, { type: "config" }> | undefined;
  let contexts: tls.SecureContext[] = [];
  const slots: Slot[] = [];
  let reconnect = false;
  let closingAll = false;
  let openCount = 0;
  let reconnects = 0;
  let refused = 0;
  const closeCodes: Record<string, number> = {};
  let onOpenChange: (() => void) | undefined;
  let firstError: string | undefined;

  const send = (message: FromChild) => process.send?.(message);

  const connect = (slot: Slot, done?: (ok: boolean) => void) => {
    const { url, sources } = config!;
    const socket = new WebSocket(`${url}?id=${slot.index}`, {
      secureContext: contexts[slot.index % contexts.length],
      localAddress: sources[slot.index % sources.length],
      perMessageDeflate: false,
      handshakeTimeout: 30_000,
    } as WebSocket.ClientOptions);
    slot.socket = socket;
    let settled = false;
    socket.on("open", () => {
      slot.open = true;
      slot.state = FRESH_RECONNECT;
      openCount++;
      settled = true;
      done?.(true);
      onOpenChange?.();
    });
    socket.on("message", () => undefined);
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (!settled && error.code === "ECONNREFUSED") refused++;
      firstError ??= error.message;
      if (!slot.open) retry(error.code === "ECONNREFUSED" ? "connection_refused" : "connection_failed");
    });
    socket.on("unexpected-response", (_request, response) => {
      firstError ??= `HTTP ${response.statusCode}`;
      socket.terminate();
    });
    socket.on("close", (code) => {
      const wasOpen = slot.open;
      slot.open = false;
      slot.socket = undefined;
      if (wasOpen) {
        openCount--;
        closeCodes[code] = (closeCodes[code] ?? 0) + 1;
        slot.onClose?.(code);
        if (reconnect && !closingAll) schedule(slot, { closeCode: code, code: "unavailable" });
      } else {
        retry("connection_failed");
      }
    });
    let retried = false;
    function retry(code: ErrorCode) {
      if (retried || settled) return;
      retried = true;
      settled = true;
      if (done) {
        done(false);
        return;
      }
      if (reconnect && !closingAll) schedule(slot, { code });
    }
  };

  const schedule = (slot: Slot, failure: { closeCode?: number; code: ErrorCode }) => {
    // The agent's own policy: 1012 gives a flat jittered window, refused soon after keeps it.
    const next = nextReconnect(slot.state, failure, Date.now(), { initialMs: 1000, maxMs: 60_000 });
    slot.state = next.state;
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => {
      reconnects++;
      connect(slot);
    }, next.delayMs);
  };

  const handlers: Record<ToChild["type"], (message: never) => Promise<Record<string, unknown>>> = {
    config: async (message: Extract<ToChild, { type: "config" }>) => {
      config = message;
      contexts = message.devices.map(({ key, cert }) =>
        tls.createSecureContext({ key, cert, ca: message.ca }),
      );
      return {};
    },
    open: async (message: Extract<ToChild, { type: "open" }>) => {
      reconnect = message.reconnect;
      closingAll = false;
      firstError = undefined;
      const started = now();
      let next = 0;
      let opened = 0;
      let failed = 0;
      await Promise.all(
        Array.from({ length: message.concurrency }, async () => {
          while (next < message.count) {
            const slot: Slot = {
              index: next++,
              socket: undefined,
              open: false,
              state: FRESH_RECONNECT,
              timer: undefined,
            };
            slots[slot.index] = slot;
            const ok = await new Promise<boolean>((resolve) => connect(slot, resolve));
            if (ok) opened++;
            else failed++;
          }
        }),
      );
      return { opened, failed, ms: now() - started, ...(firstError ? { firstError } : {}) };
    },
    "watch-back": async (message: Extract<ToChild, { type: "watch-back" }>) => {
      const target = slots.filter(Boolean).length;
      const started = now();
      reconnects = 0;
      refused = 0;
      for (const key of Object.keys(closeCodes)) delete closeCodes[key];
      // The watch starts with every session open; "back" is once they all closed and reopened.
      let sawDrop = false;
      const ms = await new Promise<number>((resolve) => {
        const timer = setTimeout(() => {
          onOpenChange = undefined;
          resolve(Number.NaN);
        }, message.timeoutMs);
        onOpenChange = () => {
          if (openCount < target) sawDrop = true;
          if (sawDrop && openCount >= target) {
            clearTimeout(timer);
            onOpenChange = undefined;
            resolve(now() - started);
          }
        };
        // Closes count as changes too.
        for (const slot of slots) if (slot) slot.onClose = () => onOpenChange?.();
      });
      for (const slot of slots) if (slot) delete slot.onClose;
      return { ms, open: openCount, reconnects, closeCodes: { ...closeCodes }, refused };
    },
    revoke: async (message: Extract<ToChild, { type: "revoke" }>) => {
      const slot = slots[message.index];
      if (!slot?.open) throw new Error(`session ${message.index} is not open`);
      const started = now();
      const closed = new Promise<number>((resolve) => (slot.onClose = resolve));
      const url = new URL(message.request.url);
      const request = https.request({
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method: "POST",
        headers: { "content-type": "application/json" },
        ca: config!.ca,
        cert: message.request.cert,
        key: message.request.key,
        agent: revokeAgent,
      });
      request.on("response", (response) => response.resume());
      request.on("error", (error) => (firstError ??= error.message));
      request.end(JSON.stringify({ reason: "bench" }));
      const code = await closed;
      delete slot.onClose;
      return { ms: now() - started, code };
    },
    "close-all": async () => {
      closingAll = true;
      for (const slot of slots) {
        if (!slot) continue;
        clearTimeout(slot.timer);
        slot.socket?.terminate();
      }
      slots.length = 0;
      openCount = 0;
      return {};
    },
  };
  const revokeAgent = new https.Agent({ keepAlive: true, maxSockets: 1 });

  process.on("message", (message: ToChild) => {
    const handler = handlers[message.type] as (m: ToChild) => Promise<Record<string, unknown>>;
    handler(message).then(
      (result) => send({ type: "done", result }),
      (error: unknown) =>
        send({ type: "error", message: error instanceof Error ? error.message : String(error) }),
    );
  });
  process.on("disconnect", () => process.exit(0));
  send({ type: "ready" });
}

if (process.argv.includes("--bench-fleet-child")) childMain();
