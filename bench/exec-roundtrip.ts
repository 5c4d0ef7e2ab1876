/**
 * Exec round trips through gateway and node: POST /api/v1/nodes/:id/exec with the admin
 * certificate over keep-alive HTTPS, the gateway sends the command over the node's WSS session, a
 * real node agent (the CLI's `node start`, in its own process) answers it, the gateway records
 * history and audit and replies. The command is the built-in `status`, so the figure is the
 * product's own cost, not fork/exec. At concurrency 1 (latency) and 64 (throughput).
 * Baseline: the bare relay (relay-baseline.ts) — HTTPS POST with mTLS → WSS with mTLS → a minimal
 * agent in its own process → back — in this process, driven by the same load client with the
 * same request at the same concurrency. Goals (issue 13): rate ≥ 0.60 of the relay's at both
 * concurrencies, p99 ≤ 2× the relay's.
 */
import { fetchOnce, startBenchGateway, startBenchNode, type BenchNode } from "./gateway-fixture.js";
import { LoadClient, loadTarget, type LoadSpec } from "./load-client.js";
import { startRelay, type Relay } from "./relay-baseline.js";
import { clientNotes } from "./validate-rate.js";
import {
  cpuRatio,
  figureRatio,
  log,
  measureInterleaved,
  now,
  ratio,
  type BenchResult,
  type BenchSettings,
  type Measurement,
  type Ratio,
  type Sample,
} from "./lib.js";

const CONCURRENCIES = [1, 64];

export async function run(settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const gateway = await startBenchGateway();
  let client: LoadClient | undefined;
  let relay: Relay | undefined;
  let node: BenchNode | undefined;
  try {
    node = await startBenchNode(gateway, "bench-node");
    const { pem } = gateway;
    relay = await startRelay({
      ca: pem.ca,
      serverKey: pem.serverKey,
      serverCert: pem.serverCert,
      agentCert: pem.adminCert,
      agentKey: pem.adminKey,
    });
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
    const relaySpec = (concurrency: number): Omit<LoadSpec, "runInMs" | "durationMs"> => ({
      ...execSpec(concurrency),
      port: relay!.port,
      path: "/exec",
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
        `relay c=${c} (baseline)`,
        `bare relay: the same POST over mTLS, relayed over an mTLS WSS session to a minimal agent process and back, concurrency ${c}`,
        relaySpec(c),
      ),
    ]);
    const setupMs = now() - started;
    const measurements = await measureInterleaved(targets, settings, notes);
    notes.push(...clientNotes(measurements, client.inline));
    notes.push(
      "both paths are two hops (operator→server HTTPS, server→agent WSS and back); the gateway adds authentication, authorisation, the node's allow-list, a history row and two audit entries made durable (synchronous=FULL) before each answer; the relay stores nothing",
      "the node agent runs as its own process (the CLI's node start), as on another machine; all three processes share this machine's CPUs",
    );
    const ratios = CONCURRENCIES.flatMap((c, i) => {
      const execM = measurements[i * 2]!;
      const relayM = measurements[i * 2 + 1]!;
      return [
        ratio(
          `exec/relay c=${c}`,
          `exec round-trip rate through gateway and node ÷ the bare relay's, concurrency ${c}`,
          execM,
          relayM,
          { op: ">=", value: 0.6 },
        ),
        p99Ratio(
          `p99 exec/relay c=${c}`,
          `exec p99 latency ÷ the bare relay's p99, concurrency ${c}`,
          execM,
          relayM,
        ),
        cpuRatio(
          `cpu relay/exec c=${c}`,
          `server CPU per operation of the relay ÷ of the gateway's exec (1.0 = exec costs the gateway what a bare relay costs)`,
          execM,
          relayM,
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
    await relay?.close();
    await node?.close();
    await gateway.close();
    log("  servers closed");
  }
}

/** a's median p99 latency ÷ b's, held to the goal (at most twice the baseline's). */
function p99Ratio(label: string, description: string, a: Measurement, b: Measurement): Ratio {
  const p99 = { median: (m: Measurement) => m.medianP99Ms, sample: (s: Sample) => s.p99Ms };
  return figureRatio(label, description, a, b, p99, { op: "<=", value: 2 });
}
