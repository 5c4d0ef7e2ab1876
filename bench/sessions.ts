/**
 * Idle node sessions at scale: BENCH_SESSIONS (default 10,000) WSS + mTLS sessions opened from one
 * fleet client process over several loopback source addresses, first to a bare `ws` + mTLS server
 * (bench/bare-wss-server.mjs), then to the gateway (`gatehouse gateway start`), each in a fresh
 * process of its own. Reported: server RSS per idle session (VmRSS after all are open and a
 * 2 s settle, minus VmRSS before, ÷ sessions) and the time to open them all (64 handshakes in
 * flight). One round each: 2 × 10,000 full mTLS handshakes take most of the 90 s budget.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  SOURCE_ADDRESSES,
  cpuWindow,
  prepareFleetHome,
  withFleetServer,
  type FleetHome,
} from "./session-fleet.js";
import { log, now, ratio, summarize, type BenchResult, type BenchSettings, type Measurement } from "./lib.js";

const SESSIONS = Math.max(100, Number(process.env.BENCH_SESSIONS ?? 10_000));
const DEVICES = 10;
const CONCURRENCY = 64;
const SETTLE_MS = 2000;

async function measure(
  kind: "gateway" | "bare",
  fleet: FleetHome,
  notes: string[],
): Promise<{ rss: Measurement; open: Measurement }> {
  return withFleetServer(kind, fleet, SESSIONS, async ({ server, client }) => {
    // A few sessions first, so that lazily loaded code and first-use caches are not counted.
    await client.open(20, 4, false);
    await client.closeAll();
    await sleep(500);
    const before = server.rssKiB();
    const cpu = cpuWindow(server.child.pid, client.pid);
    const opened = await client.open(SESSIONS, CONCURRENCY, false);
    const { serverCores, clientCores, otherCores } = cpu();
    if (opened.failed)
      notes.push(`${kind}: ${opened.failed} of ${SESSIONS} sessions failed to open (${opened.firstError})`);
    await sleep(SETTLE_MS);
    const after = server.rssKiB();
    const perSession = (after - before) / Math.max(1, opened.opened);
    log(
      `  ${kind}: ${opened.opened} sessions open in ${(opened.ms / 1000).toFixed(1)} s; RSS ${Math.round(before / 1024)} → ${Math.round(after / 1024)} MiB, ${perSession.toFixed(1)} KiB/session`,
    );
    notes.push(
      `${kind}: RSS ${Math.round(before / 1024)} MiB before, ${Math.round(after / 1024)} MiB with ${opened.opened} sessions; server start ${Math.round(server.startMs)} ms`,
    );
    const sample = (rate: number) => ({
      rate,
      ops: opened.opened,
      failed: opened.failed,
      elapsedMs: opened.ms,
      cpuCores: serverCores,
      clientCpuCores: clientCores,
      otherCpuCores: otherCores,
    });
    return {
      rss: summarize(
        `${kind === "gateway" ? "a" : "b"} ${kind} RSS per idle session`,
        `(VmRSS with ${SESSIONS} idle sessions − VmRSS before) ÷ sessions`,
        "KiB",
        [sample(perSession)],
      ),
      open: summarize(
        `${kind === "gateway" ? "c" : "d"} ${kind} time to open ${SESSIONS}`,
        `${SESSIONS} WSS + mTLS sessions, ${CONCURRENCY} handshakes in flight, from ${SOURCE_ADDRESSES.length} source addresses`,
        "s",
        [sample(opened.ms / 1000)],
      ),
    };
  });
}

export async function run(_settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const fleet = await prepareFleetHome(DEVICES);
  try {
    const setupMs = now() - started;
    const bare = await measure("bare", fleet, notes);
    const gateway = await measure("gateway", fleet, notes);
    notes.push(
      `sessions use ${DEVICES} approved devices' certificates in turn; the gateway's heartbeat timeout is 10 min for the run (idle clients send no heartbeats)`,
    );
    return {
      name: "sessions",
      title: `${SESSIONS} idle node sessions: memory and time to open, gateway vs bare wss + mTLS`,
      measurements: [gateway.rss, bare.rss, gateway.open, bare.open],
      ratios: [
        ratio("a/b", "RSS per idle session, gateway ÷ bare wss + mTLS", gateway.rss, bare.rss, {
          op: "<=",
          value: 1.15,
        }),
        ratio("c/d", "time to open all sessions, gateway ÷ bare", gateway.open, bare.open, {
          op: "<=",
          value: 1.1,
        }),
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    fleet.close();
  }
}
