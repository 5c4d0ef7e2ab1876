/**
 * HTTP request rate of GET /api/v1/auth/validate with a bearer token against a real gateway
 * started in this process, over keep-alive HTTPS connections at concurrency 16.
 * Baseline: GET /health on the same gateway (no credential).
 */
import { fetchOnce, startBenchGateway } from "./gateway-fixture.js";
import { LoadClient, loadTarget, type LoadSpec } from "./load-client.js";
import {
  cpuRatio,
  MACHINE_CPUS,
  log,
  measureInterleaved,
  now,
  ratio,
  type BenchResult,
  type BenchSettings,
  type Measurement,
} from "./lib.js";

const CONCURRENCY = 16;

export async function run(settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const gateway = await startBenchGateway();
  let client: LoadClient | undefined;
  try {
    const { tokens } = gateway.running.ctx;
    const { secret } = await tokens.createApiKey({ name: "bench", role: "viewer" });
    const token = (await tokens.exchangeApiKey(secret, undefined)).access_token;
    const auth = { authorization: `Bearer ${token}` };

    // Sanity: both routes answer 200 the way we think before anything is timed.
    const validate = await fetchOnce(`${gateway.running.url}/api/v1/auth/validate`, {
      ca: gateway.pem.ca,
      headers: auth,
    });
    const validBody = JSON.parse(validate.body) as { valid?: boolean; credential?: string };
    if (validate.status !== 200 || validBody.valid !== true || validBody.credential !== "access_token")
      throw new Error(`validate did not accept the token: ${validate.status} ${validate.body}`);
    const health = await fetchOnce(`${gateway.running.url}/health`, { ca: gateway.pem.ca });
    if (health.status !== 200) throw new Error(`/health answered ${health.status}: ${health.body}`);

    client = await LoadClient.start(settings.client, settings.pin);
    const loader = client;
    const spec = (
      path: string,
      headers?: Record<string, string>,
    ): Omit<LoadSpec, "runInMs" | "durationMs"> => ({
      kind: "http",
      host: gateway.host,
      port: gateway.port,
      path,
      ...(headers ? { headers } : {}),
      ca: gateway.pem.ca,
      concurrency: CONCURRENCY,
    });
    const target = (label: string, description: string, base: Omit<LoadSpec, "runInMs" | "durationMs">) =>
      loadTarget(loader, settings, label, description, "req/s", base);
    const targets = [
      target(
        "validate (bearer token)",
        `GET /api/v1/auth/validate with Authorization: Bearer, keep-alive, concurrency ${CONCURRENCY}`,
        spec("/api/v1/auth/validate", auth),
      ),
      target(
        "health (baseline)",
        `GET /health without a credential, same gateway, keep-alive, concurrency ${CONCURRENCY}`,
        spec("/health"),
      ),
    ];
    const setupMs = now() - started;
    const [validateM, healthM] = await measureInterleaved(targets, settings, notes);
    notes.push(...clientNotes([validateM!, healthM!], client.inline));
    return {
      name: "validate-rate",
      title: "GET /api/v1/auth/validate request rate on a real in-process gateway",
      measurements: [validateM!, healthM!],
      ratios: [
        ratio("validate/health", "request rate of validate vs /health", validateM!, healthM!),
        cpuRatio(
          "cpu health/validate",
          "server CPU per request of /health ÷ of validate (1.0 = validate costs the server nothing extra)",
          validateM!,
          healthM!,
        ),
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    await client?.close();
    await gateway.close();
    log("  gateway closed");
  }
}

/** Says which side limits the rate, from the CPU each side used during the windows. */
export function clientNotes(measurements: Measurement[], inline: boolean): string[] {
  const cores = MACHINE_CPUS;
  if (inline)
    return [
      `client ran inline (BENCH_CLIENT=inline): client and server share one event loop, ` +
        `so the CPU figures include the client and the rates are lower bounds of the server's capacity`,
    ];
  const notes = [
    `client ran in a separate Node process on the same ${cores}-vCPU machine; ` +
      `"cores" (the server) and "client cores" are the CPU each process used during the timed windows`,
  ];
  for (const m of measurements) {
    const server = m.medianCpuCores ?? Number.NaN;
    const client = m.medianClientCpuCores ?? Number.NaN;
    const which = `(client ${client.toFixed(2)} cores, server ${server.toFixed(2)})`;
    if (client >= 0.85 && client >= server)
      notes.push(
        `${m.label}: CLIENT-BOUND ${which}: the rate is a lower bound of the server's; ` +
          `compare the server CPU per operation (cpu µs/op) instead`,
      );
    else if (server >= 0.85) notes.push(`${m.label}: server-bound ${which}`);
    else if (client + server >= cores * 0.85)
      notes.push(`${m.label}: machine-bound ${which}: client and server compete for ${cores} CPUs`);
    else notes.push(`${m.label}: neither side saturated ${which}: latency-bound or disturbed`);
  }
  return notes;
}
