/**
 * Exec round trips through gateway and node: POST /api/v1/nodes/:id/exec with the admin
 * certificate over keep-alive HTTPS, the gateway sends the command over the node's WSS session, a
 * real node agent (the CLI's `node start`, in its own process) answers it, the gateway records
 * history and audit and replies. The command is the built-in `status`, so the figure is the
 * product's own cost, not fork/exec. At concurrency 1 (latency) and 64 (throughput).
 * Baseline: a bare `ws` echo server over TLS with the gateway's certificate, in this process,
 * driven by the same load client with one connection per loop, at the same concurrency.
 */
import { spawn, type ChildProcess } from "node:child_process";
import https from "node:https";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import { registerNode } from "../src/node/register.js";
import { fetchOnce, startBenchGateway, type BenchGateway } from "./gateway-fixture.js";
import { LoadClient, loadTarget, type LoadSpec } from "./load-client.js";
import { clientNotes } from "./validate-rate.js";
import {
  cpuRatio,
  log,
  measureInterleaved,
  now,
  ratio,
  type BenchResult,
  type BenchSettings,
} from "./lib.js";

const CONCURRENCIES = [1, 64];
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/cli/main.js");

interface EchoServer {
  port: number;
  close(): Promise<void>;
}

async function startEcho(key: string, cert: string): Promise<EchoServer> {
  const server = https.createServer({ key, cert });
  const wss = new WebSocketServer({ server, maxPayload: 64 * 1024 });
  wss.on("connection", (socket) => socket.on("message", (data, binary) => socket.send(data, { binary })));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.close(() => resolve());
      }),
  };
}

/** A node registered with this gateway and approved, running as a real `node start` process. */
async function startNode(
  gateway: BenchGateway,
): Promise<{ deviceId: string; child: ChildProcess; dir: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-node-"));
  const home = path.join(dir, "home");
  const { ctx } = gateway.running;
  const registered = await registerNode(home, {
    gatewayUrl: gateway.running.url,
    caFingerprint: gateway.caFingerprint,
    name: "bench-node",
    onProgress: (event) => {
      if (event.state === "submitted")
        void ctx.registrations.approve(event.response.userCode, "node", "bench");
    },
  });
  const child = spawn(process.execPath, [CLI, "node", "start", "--home", home], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const deadline = now() + 20_000;
  while (!ctx.sessions.isOnline(registered.deviceId)) {
    if (now() > deadline || child.exitCode !== null) throw new Error("the bench node did not connect");
    await sleep(50);
  }
  return { deviceId: registered.deviceId, child, dir };
}

export async function run(settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const gateway = await startBenchGateway();
  let client: LoadClient | undefined;
  let echo: EchoServer | undefined;
  let node: Awaited<ReturnType<typeof startNode>> | undefined;
  try {
    node = await startNode(gateway);
    const { pem } = gateway;
    echo = await startEcho(pem.serverKey, pem.serverCert);
    // Sanity: one exec goes through the real path and comes back with the node's status.
    const sanity = await fetchOnce(`${gateway.running.url}/api/v1/nodes/${node.deviceId}/exec`, {
      ca: pem.adminCa,
      cert: pem.adminCert,
      key: pem.adminKey,
      method: "POST",
      body: { command: "status" },
    });
    const answer = JSON.parse(sanity.body) as { exitCode?: number; stdout?: string };
    if (sanity.status !== 200 || answer.exitCode !== 0 || !answer.stdout?.includes("platform"))
      throw new Error(`exec of status failed: ${sanity.status} ${sanity.body}`);

    client = await LoadClient.start(settings.client, settings.pin);
    const loader = client;
    const execSpec = (concurrency: number): Omit<LoadSpec, "runInMs" | "durationMs"> => ({
      kind: "http",
      method: "POST",
      host: gateway.host,
      port: gateway.port,
      path: `/api/v1/nodes/${node!.deviceId}/exec`,
      body: { command: "status", args: [], timeoutMs: 5000 },
      ca: pem.adminCa,
      cert: pem.adminCert,
      key: pem.adminKey,
      concurrency,
      timeoutMs: 15_000,
    });
    const echoSpec = (concurrency: number): Omit<LoadSpec, "runInMs" | "durationMs"> => ({
      kind: "ws-echo",
      host: gateway.host,
      port: echo!.port,
      path: "/",
      // About the size of an exec request on the session.
      body: { type: "exec", id: "exe_" + "0".repeat(24), command: "status", args: [], timeoutMs: 5000 },
      ca: pem.ca,
      concurrency,
    });
    const target = (label: string, description: string, base: Omit<LoadSpec, "runInMs" | "durationMs">) =>
      loadTarget(loader, settings, label, description, "ops/s", base);
    const targets = CONCURRENCIES.flatMap((c) => [
      target(
        `exec status c=${c}`,
        `POST exec of the built-in status through gateway and node, admin certificate, keep-alive, concurrency ${c}`,
        execSpec(c),
      ),
      target(
        `ws echo c=${c} (baseline)`,
        `bare ws echo over TLS with the gateway's certificate, ${c} connection(s), one message in flight each`,
        echoSpec(c),
      ),
    ]);
    const setupMs = now() - started;
    const measurements = await measureInterleaved(targets, settings, notes);
    notes.push(...clientNotes(measurements, client.inline));
    notes.push(
      "the exec path is two hops (operator→gateway HTTPS, gateway→node WSS and back) plus a history row and two audit entries on disk (synchronous=FULL) per command; the echo is one hop with nothing stored",
      "the node agent runs as its own process (the CLI's node start), as on another machine; all three processes share this machine's CPUs",
    );
    const ratios = CONCURRENCIES.flatMap((c, i) => {
      const execM = measurements[i * 2]!;
      const echoM = measurements[i * 2 + 1]!;
      return [
        ratio(`exec/echo c=${c}`, `exec round-trip rate vs bare ws echo at concurrency ${c}`, execM, echoM),
        cpuRatio(
          `cpu echo/exec c=${c}`,
          `server CPU per operation of the echo ÷ of the gateway's exec (1.0 = exec costs the gateway what an echo costs)`,
          execM,
          echoM,
        ),
      ];
    });
    return {
      name: "exec-roundtrip",
      title: "Exec round trips per second through gateway and node, with latency",
      measurements,
      ratios,
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    await client?.close();
    await echo?.close();
    if (node) {
      node.child.kill("SIGTERM");
      await new Promise((resolve) =>
        node!.child.exitCode !== null ? resolve(null) : node!.child.once("exit", resolve),
      );
      rmSync(node.dir, { recursive: true, force: true });
    }
    await gateway.close();
    log("  servers closed");
  }
}
