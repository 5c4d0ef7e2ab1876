import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

/** The real CLI, as built by `npm run build` (npm test builds first). */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dist/cli/main.js");

const cleanups: (() => void)[] = [];

export function tempHome(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `gh-${prefix}-`));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, "home");
}

export function cleanupAll(): void {
  for (const cleanup of cleanups.splice(0)) cleanup();
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`gatehouse ${args.join(" ")} timed out\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 30_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function runJson<T>(args: string[]): Promise<T> {
  const result = await runCli([...args, "--json"]);
  if (result.code !== 0)
    throw new Error(`gatehouse ${args.join(" ")} exited ${result.code}: ${result.stdout} ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** A long-running CLI process (gateway start, node start, node register) with its output kept. */
export class Running {
  stdout = "";
  stderr = "";
  readonly exited: Promise<number | null>;
  constructor(readonly child: ChildProcess) {
    child.stdout?.on("data", (chunk: Buffer) => (this.stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    cleanups.push(() => child.kill("SIGKILL"));
  }

  /** Log lines (pino JSON) printed so far. */
  logLines(): Record<string, unknown>[] {
    return this.stdout
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  async waitFor(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await sleep(50);
    }
  }
}

export function spawnCli(args: string[], env?: NodeJS.ProcessEnv): Running {
  return new Running(
    spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], ...(env ? { env } : {}) }),
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
    server.on("error", reject);
  });
}

/** GET /health without trusting anything: only to learn that the gateway is up. */
export function probeHealth(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = https.get(`${url}/health`, { rejectUnauthorized: false, timeout: 1000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on("error", () => resolve(false));
    request.on("timeout", () => request.destroy());
  });
}

export interface TestGateway {
  home: string;
  url: string;
  port: number;
  caFingerprint: string;
  process: Running;
  /** Stops the process (SIGTERM, or SIGKILL with hard: true) and waits for it. */
  stop(hard?: boolean): Promise<void>;
  /** Starts the gateway process again on the same home and port. */
  restart(): Promise<void>;
}

/** `gateway init` then `gateway start` in a child process; resolves once /health answers. */
export async function startTestGateway(
  options: { configure?: (config: Record<string, unknown>) => void } = {},
): Promise<TestGateway> {
  const home = tempHome("gateway");
  const port = await freePort();
  const init = await runJson<{ caFingerprint: string; url: string }>([
    "gateway",
    "init",
    "--home",
    home,
    "--listen",
    `127.0.0.1:${port}`,
  ]);
  if (options.configure) {
    const file = path.join(home, "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    options.configure(config);
    writeFileSync(file, JSON.stringify(config, null, 2));
  }
  const gateway: TestGateway = {
    home,
    url: init.url,
    port,
    caFingerprint: init.caFingerprint,
    process: undefined as unknown as Running,
    async stop(hard = false) {
      gateway.process.child.kill(hard ? "SIGKILL" : "SIGTERM");
      await gateway.process.exited;
    },
    async restart() {
      gateway.process = spawnCli(["gateway", "start", "--home", home]);
      const deadline = Date.now() + 20_000;
      while (!(await probeHealth(init.url))) {
        if (Date.now() > deadline)
          throw new Error(`gateway did not start\n${gateway.process.stdout}\n${gateway.process.stderr}`);
        await sleep(50);
      }
    },
  };
  await gateway.restart();
  return gateway;
}

export interface DeviceJson {
  deviceId: string;
  name: string;
  status: string;
  userCode: string | null;
  online: boolean;
  kind: string;
}

export async function listDevices(gateway: TestGateway, pending = false): Promise<DeviceJson[]> {
  const args = ["devices", "list", "--home", gateway.home];
  if (pending) args.push("--pending");
  return (await runJson<{ devices: DeviceJson[] }>(args)).devices;
}

/**
 * The arguments of `gatehouse node register` for a node home: `--home`, `--gateway` (the gateway's
 * URL unless `url` names another way to it), `--ca-fingerprint` (the gateway's CA unless
 * `fingerprint` pins another) and `--name` when one is given. Callers append further flags.
 */
export function nodeRegisterArgs(
  gateway: Pick<TestGateway, "url" | "caFingerprint">,
  home: string,
  options: { name?: string; url?: string; fingerprint?: string } = {},
): string[] {
  return [
    "node",
    "register",
    "--home",
    home,
    "--gateway",
    options.url ?? gateway.url,
    "--ca-fingerprint",
    options.fingerprint ?? gateway.caFingerprint,
    ...(options.name === undefined ? [] : ["--name", options.name]),
  ];
}

/** Starts `node register` and waits until the gateway lists the device as pending. */
export async function startRegistration(
  gateway: TestGateway,
  name: string,
  fingerprint = gateway.caFingerprint,
) {
  const home = tempHome("node");
  // Another request under the same name may already wait: this one is the device that was not there.
  const before = new Set(
    (await listDevices(gateway, true)).filter((d) => d.name === name).map((d) => d.deviceId),
  );
  const register = spawnCli(nodeRegisterArgs(gateway, home, { name, fingerprint }));
  let device: DeviceJson | undefined;
  const deadline = Date.now() + 20_000;
  while (!device) {
    if (Date.now() > deadline)
      throw new Error(`registration did not appear\n${register.stdout}\n${register.stderr}`);
    device = (await listDevices(gateway, true)).find((d) => d.name === name && !before.has(d.deviceId));
    if (!device) await sleep(100);
  }
  return { home, register, device };
}

/** A node that is registered and approved, ready to start. */
export async function registeredNode(gateway: TestGateway, name: string) {
  const { home, register, device } = await startRegistration(gateway, name);
  await runJson(["devices", "approve", device.userCode!, "--home", gateway.home]);
  const code = await register.exited;
  if (code !== 0) throw new Error(`node register exited ${code}\n${register.stdout}\n${register.stderr}`);
  return { home, deviceId: device.deviceId };
}
