/**
 * A real gateway for the network benchmarks: a fresh home in a temp directory (`gateway init` with
 * listen 127.0.0.1:0), started in this process with a silent logger.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { GATEWAY_FILES } from "../src/config/index.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";

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
