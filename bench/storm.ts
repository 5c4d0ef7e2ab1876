/**
 * A restart under load: BENCH_STORM_SESSIONS (default 2,000) node sessions from the fleet client,
 * then the server is stopped (SIGTERM) and started again as a new process, and the fleet comes
 * back by the agent's own reconnect policy (src/node/backoff.ts: a 1012 close gives a flat
 * jittered window, connection refused soon after keeps it). Measured for the gateway (`gatehouse
 * gateway start`) and for the bare wss + mTLS server (which also closes with 1012 on SIGTERM):
 * the time from the stop signal until every session is open again, the stop itself (SIGTERM →
 * exit), the start (spawn → /health answers), and `GET /health` latency (keep-alive HTTPS, one
 * probe every 20 ms from this process) while the fleet reconnects.
 */
import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import {
  cpuWindow,
  prepareFleetHome,
  startServer,
  withFleetServer,
  type FleetHome,
} from "./session-fleet.js";
import {
  log,
  now,
  percentile,
  ratio,
  singleFigure,
  type BenchResult,
  type BenchSettings,
  type Measurement,
} from "./lib.js";

const SESSIONS = Math.max(100, Number(process.env.BENCH_STORM_SESSIONS ?? 2000));
const DEVICES = 10;
const CONCURRENCY = 64;
const PROBE_EVERY_MS = 20;

/** GET /health once a PROBE_EVERY_MS on one keep-alive connection; latencies with their time. */
function startProber(port: number, ca: string): { stop(): { at: number; ms: number }[] } {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const results: { at: number; ms: number }[] = [];
  let running = true;
  const probe = () =>
    new Promise<void>((resolve) => {
      const started = now();
      const request = https.get(
        { host: "127.0.0.1", port, path: "/health", ca, agent, timeout: 5000 },
        (response) => {
          response.resume();
          response.on("end", () => {
            if (response.statusCode === 200) results.push({ at: started, ms: now() - started });
            resolve();
          });
        },
      );
      request.on("timeout", () => request.destroy());
      request.on("error", () => resolve());
    });
  void (async () => {
    while (running) {
      await probe();
      await sleep(PROBE_EVERY_MS);
    }
    agent.destroy();
  })();
  return {
    stop() {
      running = false;
      return results;
    },
  };
}

interface StormFigures {
  backMs: number;
  stopMs: number;
  startMs: number;
  healthP50: number;
  healthP99: number;
  probes: number;
  cores: ReturnType<ReturnType<typeof cpuWindow>>;
}

async function storm(kind: "gateway" | "bare", fleet: FleetHome, notes: string[]): Promise<StormFigures> {
  return withFleetServer(kind, fleet, SESSIONS, async (run) => {
    const { client } = run;
    const opened = await client.open(SESSIONS, CONCURRENCY, true);
    if (opened.failed)
      throw new Error(`${kind}: ${opened.failed} sessions failed to open (${opened.firstError})`);
    await sleep(500);
    const back = client.watchBack(60_000);
    // The watch must be armed before the stop: give the IPC message a moment.
    await sleep(50);
    const stopMs = await run.server.stop();
    const server = (run.server = await startServer(kind, fleet, SESSIONS));
    const readyAt = now();
    const cpu = cpuWindow(server.child.pid, client.pid);
    const prober = startProber(server.port, fleet.pem.ca);
    const result = await back;
    const cores = cpu();
    const probes = prober.stop().filter((p) => p.at >= readyAt);
    const figures: StormFigures = {
      backMs: result.ms,
      stopMs,
      startMs: server.startMs,
      healthP50: percentile(
        probes.map((p) => p.ms),
        0.5,
      ),
      healthP99: percentile(
        probes.map((p) => p.ms),
        0.99,
      ),
      probes: probes.length,
      cores,
    };
    log(
      `  ${kind}: ${SESSIONS} back in ${(result.ms / 1000).toFixed(2)} s (stop ${Math.round(stopMs)} ms, start ${Math.round(server.startMs)} ms, ` +
        `${result.reconnects} reconnect attempts, ${result.refused} refused, closes ${JSON.stringify(result.closeCodes)}); ` +
        `/health p50 ${figures.healthP50.toFixed(1)} ms p99 ${figures.healthP99.toFixed(1)} ms over ${probes.length} probes`,
    );
    notes.push(
      `${kind}: stop ${Math.round(stopMs)} ms, start ${Math.round(server.startMs)} ms, ${result.reconnects} reconnect attempts (${result.refused} refused), close codes ${JSON.stringify(result.closeCodes)}`,
    );
    if (!Number.isFinite(result.ms))
      notes.push(`${kind}: only ${result.open} of ${SESSIONS} came back within 60 s`);
    return figures;
  });
}

function one(
  label: string,
  description: string,
  unit: string,
  value: number,
  cores?: StormFigures["cores"],
): Measurement {
  return singleFigure(
    label,
    description,
    unit,
    value,
    cores
      ? { cpuCores: cores.serverCores, clientCpuCores: cores.clientCores, otherCpuCores: cores.otherCores }
      : {},
  );
}

export async function run(_settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const fleet = await prepareFleetHome(DEVICES);
  try {
    const setupMs = now() - started;
    const bare = await storm("bare", fleet, notes);
    const gateway = await storm("gateway", fleet, notes);
    const a = one(
      "a gateway: all back after a restart",
      `SIGTERM → all ${SESSIONS} sessions open again`,
      "s",
      gateway.backMs / 1000,
      gateway.cores,
    );
    const b = one(
      "b bare: all back after a restart",
      `SIGTERM → all ${SESSIONS} sessions open again`,
      "s",
      bare.backMs / 1000,
      bare.cores,
    );
    const c = one(
      "c gateway /health p99 during the storm",
      "GET /health, keep-alive, from ready until all back",
      "ms",
      gateway.healthP99,
      gateway.cores,
    );
    const d = one(
      "d bare /health p99 during the storm",
      "GET /health, keep-alive, from ready until all back",
      "ms",
      bare.healthP99,
      bare.cores,
    );
    const e = one("e gateway stop", "SIGTERM → process exit, with all sessions open", "ms", gateway.stopMs);
    const f = one("f bare stop", "SIGTERM → process exit, with all sessions open", "ms", bare.stopMs);
    const g = one("g gateway start", "spawn → GET /health answers", "ms", gateway.startMs);
    const h = one("h bare start", "spawn → GET /health answers", "ms", bare.startMs);
    notes.push(
      `reconnects follow the agent's policy: a 1012 close waits a uniform 0.25–3 s, connection refused within 30 s of it keeps that window; ${CONCURRENCY} handshakes in flight for the first open`,
    );
    return {
      name: "storm",
      title: `A restart under ${SESSIONS} node sessions: back in, /health during the storm, stop`,
      measurements: [a, b, c, d, e, f, g, h],
      ratios: [
        ratio("a/b", "time until all sessions are back, gateway ÷ bare", a, b, { op: "<=", value: 1.25 }),
        {
          ...ratio("c", "gateway /health p99 during the storm, in ms", c, one("", "", "", 1)),
          perRound: [],
          goal: { op: "<=", value: 100 },
        },
        {
          ...ratio("e", "gateway stop (SIGTERM → exit), in ms", e, one("", "", "", 1)),
          perRound: [],
          goal: { op: "<=", value: 200 },
        },
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    fleet.close();
  }
}
