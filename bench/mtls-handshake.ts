/**
 * Mutual-TLS handshakes: every request is a new TLS connection presenting the admin client
 * certificate, sending GET /api/v1/auth/validate with `Connection: close` (authenticated by the
 * certificate alone), at concurrency 8 — once with full handshakes, once resuming the previous
 * connection's session (TLS 1.3 ticket).
 * Baseline: a bare tls.createServer with the gateway's own key, chain and client CA, answering the
 * same request with fixed bytes, driven by the same client code and certificates, in the same run.
 * The load client saturates before either server does, so the figure that counts is the server's
 * CPU per connection (bare ÷ gateway; goal ≥ 0.85), not the connection rate.
 */
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { fetchOnce, startBenchGateway } from "./gateway-fixture.js";
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

const CONCURRENCY = 8;
/** The goal: the gateway spends at most 1/0.85 of a bare TLS server's CPU per connection. */
const CPU_GOAL = { op: ">=", value: 0.85 } as const;
const PATH = "/api/v1/auth/validate";
/** The baseline reads at most this much of a request before it answers anyway. */
const MAX_REQUEST_BYTES = 16 * 1024;

interface Baseline {
  port: number;
  close(): Promise<void>;
}

/** A bare TLS server with the gateway's TLS settings that answers every request with `response`. */
async function startBaseline(options: tls.TlsOptions, response: Buffer): Promise<Baseline> {
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer(options, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.setTimeout(10_000, () => socket.destroy());
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      if (!socket.writable) return;
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n") || head.length > MAX_REQUEST_BYTES) socket.end(response);
    });
  });
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export async function run(settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const gateway = await startBenchGateway();
  let client: LoadClient | undefined;
  let baseline: Baseline | undefined;
  try {
    const { pem } = gateway;
    // Sanity: the admin certificate alone authenticates the validate route.
    const validate = await fetchOnce(`${gateway.running.url}${PATH}`, {
      ca: pem.adminCa,
      cert: pem.adminCert,
      key: pem.adminKey,
    });
    const body = JSON.parse(validate.body) as { valid?: boolean; credential?: string };
    if (validate.status !== 200 || body.valid !== true)
      throw new Error(`validate refused the admin certificate: ${validate.status} ${validate.body}`);
    log(`  gateway accepts the admin certificate as ${body.credential ?? "?"}`);

    // The baseline answers with a response of the same size as the gateway's (same body bytes).
    const responseBody = Buffer.from(validate.body, "utf8");
    const response = Buffer.concat([
      Buffer.from(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n" +
          `content-length: ${responseBody.length}\r\nconnection: close\r\n\r\n`,
        "latin1",
      ),
      responseBody,
    ]);
    baseline = await startBaseline(
      {
        key: pem.serverKey,
        cert: pem.serverCert.trimEnd() + "\n" + pem.ca, // the chain the gateway serves
        ca: [pem.ca],
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: "TLSv1.2",
      },
      response,
    );

    client = await LoadClient.start(settings.client, settings.pin);
    const loader = client;
    const spec = (port: number, resume: boolean): Omit<LoadSpec, "runInMs" | "durationMs"> => ({
      kind: "handshake",
      resume,
      host: gateway.host,
      port,
      path: PATH,
      ca: pem.adminCa,
      cert: pem.adminCert,
      key: pem.adminKey,
      concurrency: CONCURRENCY,
    });
    const target = (label: string, description: string, base: Omit<LoadSpec, "runInMs" | "durationMs">) =>
      loadTarget(loader, settings, label, description, "conn/s", base);
    const targets = [
      target(
        "gateway mTLS + validate",
        `new TLS connection with the admin client certificate, GET ${PATH}, Connection: close, concurrency ${CONCURRENCY}`,
        spec(gateway.port, false),
      ),
      target(
        "bare tls.createServer (baseline)",
        "same client and certificates against a bare tls.createServer (gateway key, chain and client CA, requestCert) answering fixed bytes",
        spec(baseline.port, false),
      ),
      target(
        "gateway resumed",
        `as "gateway mTLS + validate", each connection resuming its loop's previous session (TLS 1.3 ticket)`,
        spec(gateway.port, true),
      ),
      target(
        "bare resumed (baseline)",
        `as the bare baseline, each connection resuming its loop's previous session (TLS 1.3 ticket)`,
        spec(baseline.port, true),
      ),
    ];
    const setupMs = now() - started;
    const [gatewayM, baselineM, gatewayResumedM, baselineResumedM] = await measureInterleaved(
      targets,
      settings,
      notes,
    );
    const all = [gatewayM!, baselineM!, gatewayResumedM!, baselineResumedM!];
    notes.push(...clientNotes(all, client.inline));
    notes.push(
      "full: no session passed, fresh socket; resumed: the previous connection's ticket (a connection the server did not resume counts as failed); the client verifies the server chain and, when full, signs with its P-256 key",
    );
    return {
      name: "mtls-handshake",
      title:
        "Mutual-TLS handshakes, full and resumed (one request per connection): server CPU per connection",
      measurements: all,
      ratios: [
        cpuRatio(
          "full: cpu baseline/gateway",
          "server CPU per full handshake+request of the bare TLS server ÷ of the gateway (1.0 = HTTP and auth cost nothing)",
          gatewayM!,
          baselineM!,
          CPU_GOAL,
        ),
        cpuRatio(
          "resumed: cpu baseline/gateway",
          "server CPU per resumed handshake+request of the bare TLS server ÷ of the gateway",
          gatewayResumedM!,
          baselineResumedM!,
          CPU_GOAL,
        ),
        ratio(
          "full: rate gateway/baseline",
          "handshake+request rate of the gateway vs a bare TLS server (the load client saturates first: for information)",
          gatewayM!,
          baselineM!,
        ),
        ratio(
          "resumed: rate gateway/baseline",
          "resumed handshake+request rate of the gateway vs a bare TLS server (for information)",
          gatewayResumedM!,
          baselineResumedM!,
        ),
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    await client?.close();
    await baseline?.close();
    await gateway.close();
    log("  servers closed");
  }
}
