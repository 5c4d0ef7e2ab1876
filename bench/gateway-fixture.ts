/**
 * A real gateway for the network benchmarks: a fresh home in a temp directory (`gateway init` with
 * listen 127.0.0.1:0), started in this process with a silent logger.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { GATEWAY_FILES } from "../src/config/index.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { registerNode, type RegisterResult } from "../src/node/register.js";
import { now } from "./lib.js";

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/cli/main.js");

export interface BenchGateway {
  running: RunningGateway;
  home: string;
  host: string;
  port: number;
  caFingerprint: string;
  /** PEMs from the home. */
  pem: {
    ca: string;
    serverKey: string;
    serverCert: string;
    adminCert: string;
    adminKey: string;
    adminCa: string;
  };
  close(): Promise<void>;
}

export async function startBenchGateway(): Promise<BenchGateway> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-"));
  const home = path.join(dir, "home");
  let running: RunningGateway | undefined;
  try {
    const { caFingerprint } = await initGatewayHome(home, { listen: "127.0.0.1:0" });
    running = await startGateway(home, { logger: pino({ level: "silent" }) });
    const url = new URL(running.url);
    const read = (file: string) => readFileSync(path.join(home, file), "utf8");
    const gateway = running;
    return {
      running,
      home,
      host: url.hostname,
      port: Number(url.port),
      caFingerprint,
      pem: {
        ca: read(GATEWAY_FILES.caCert),
        serverKey: read(GATEWAY_FILES.serverKey),
        serverCert: read(GATEWAY_FILES.serverCert),
        adminCert: read(GATEWAY_FILES.adminCert),
        adminKey: read(GATEWAY_FILES.adminKey),
        adminCa: read(GATEWAY_FILES.adminCa),
      },
      async close() {
        try {
          await gateway.close();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (error) {
    await running?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Registers a node home at `home` with this gateway under `name` and approves it as soon as its
 * request is submitted (in this process, as an operator would with `devices approve`): the home
 * then holds the device key and certificate. Throws what registration throws.
 */
export async function registerApprovedNode(
  gateway: BenchGateway,
  home: string,
  name: string,
): Promise<RegisterResult> {
  const { ctx } = gateway.running;
  return registerNode(home, {
    gatewayUrl: gateway.running.url,
    caFingerprint: gateway.caFingerprint,
    name,
    onProgress: (event) => {
      if (event.state === "submitted")
        void ctx.registrations.approve(event.response.userCode, "node", "bench");
    },
  });
}

/** A node agent of a bench gateway, running as a real `node start` process (dist/cli/main.js). */
export interface BenchNode {
  deviceId: string;
  child: ChildProcess;
  /** The temp directory that holds the node's home. */
  dir: string;
  /** Stops the agent (SIGTERM), waits for it to exit and removes its directory. */
  close(): Promise<void>;
}

/**
 * A node registered with `gateway` as `name` and approved, started as its own process (as on
 * another machine), resolved once the gateway counts it online. Throws if it has not connected
 * within 20 s or its process exits first.
 */
export async function startBenchNode(gateway: BenchGateway, name: string): Promise<BenchNode> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `gh-${name}-`));
  const home = path.join(dir, "home");
  const registered = await registerApprovedNode(gateway, home, name);
  const child = spawn(process.execPath, [CLI, "node", "start", "--home", home], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const node: BenchNode = {
    deviceId: registered.deviceId,
    child,
    dir,
    async close() {
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = now() + 20_000;
  while (!gateway.running.ctx.sessions.isOnline(registered.deviceId)) {
    if (now() > deadline || child.exitCode !== null) {
      await node.close();
      throw new Error("the bench node did not connect");
    }
    await sleep(50);
  }
  return node;
}

/** One HTTPS request (GET unless told; a body goes as JSON) with a timeout, for sanity checks. */
export async function fetchOnce(
  url: string,
  options: {
    ca: string;
    cert?: string;
    key?: string;
    headers?: Record<string, string>;
    method?: "GET" | "POST";
    body?: unknown;
  },
): Promise<{ status: number; body: string }> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {
        method: options.method ?? "GET",
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        headers: body ? { ...options.headers, "content-type": "application/json" } : options.headers,
        agent: false,
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
        response.on("error", reject);
      },
    );
    request.setTimeout(10_000, () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on("error", reject);
    request.end(body);
  });
}
