/**
 * Revocation latency: BENCH_REVOCATIONS (default 100) approved devices, each with one live
 * session in the fleet client; the client POSTs `/api/v1/devices/:id/revoke` (admin certificate,
 * keep-alive HTTPS) and times until that device's session sees its close (4403 device_revoked),
 * one revocation at a time. Baseline: the bare wss + mTLS server closing a session on request
 * (POST /close?id=N, the same client, connection and timing). Reported: p50 and p99 of each.
 */
import { prepareFleetHome, withFleetServer, type FleetHome } from "./session-fleet.js";
import {
  log,
  now,
  percentile,
  singleFigure,
  type BenchResult,
  type BenchSettings,
  type Measurement,
  type Ratio,
} from "./lib.js";

const REVOCATIONS = Math.max(10, Number(process.env.BENCH_REVOCATIONS ?? 100));

async function revokeAll(kind: "gateway" | "bare", fleet: FleetHome, notes: string[]): Promise<number[]> {
  return withFleetServer(kind, fleet, REVOCATIONS, async ({ server, client }) => {
    const opened = await client.open(REVOCATIONS, 16, false);
    if (opened.failed)
      throw new Error(`${kind}: ${opened.failed} sessions failed to open (${opened.firstError})`);
    const times: number[] = [];
    const codes = new Set<number>();
    for (let i = 0; i < REVOCATIONS; i++) {
      const url =
        kind === "gateway"
          ? `https://127.0.0.1:${server.port}/api/v1/devices/${fleet.devices[i]!.deviceId}/revoke`
          : `https://127.0.0.1:${server.port}/close?id=${i}`;
      const { ms, code } = await client.revoke(i, {
        url,
        cert: fleet.pem.adminCert,
        key: fleet.pem.adminKey,
      });
      times.push(ms);
      codes.add(code);
    }
    log(
      `  ${kind}: revoke → close p50 ${percentile(times, 0.5).toFixed(1)} ms, p99 ${percentile(times, 0.99).toFixed(1)} ms (close codes ${[...codes].join(", ")})`,
    );
    notes.push(`${kind}: close codes seen ${[...codes].join(", ")}`);
    return times;
  });
}

function one(label: string, description: string, value: number): Measurement {
  return singleFigure(label, description, "ms", value);
}

function quotient(label: string, description: string, a: Measurement, b: Measurement): Ratio {
  return { label, description, value: a.median / b.median };
}

export async function run(_settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const fleet = await prepareFleetHome(REVOCATIONS);
  try {
    const setupMs = now() - started;
    const gateway = await revokeAll("gateway", fleet, notes);
    const bare = await revokeAll("bare", fleet, notes);
    const what = `over ${REVOCATIONS}, one at a time: POST → the session's close seen by the node`;
    const a = one(
      "a gateway revoke → close p50",
      `POST /api/v1/devices/:id/revoke ${what}`,
      percentile(gateway, 0.5),
    );
    const b = one("b bare close-on-request p50", `POST /close?id=N ${what}`, percentile(bare, 0.5));
    const c = one(
      "c gateway revoke → close p99",
      `POST /api/v1/devices/:id/revoke ${what}`,
      percentile(gateway, 0.99),
    );
    const d = one("d bare close-on-request p99", `POST /close?id=N ${what}`, percentile(bare, 0.99));
    notes.push(
      "the gateway's revocation is durable before the close (the device row and its audit entry are committed), the bare server only closes",
    );
    return {
      name: "revoke",
      title: `Revocation → the node sees its close, over ${REVOCATIONS} revocations`,
      measurements: [a, b, c, d],
      ratios: [
        quotient("a/b", "revoke → close p50, gateway ÷ bare close-on-request", a, b),
        quotient("c/d", "revoke → close p99, gateway ÷ bare close-on-request", c, d),
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    fleet.close();
  }
}
