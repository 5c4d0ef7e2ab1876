/**
 * A registration flood against a working gateway: 10,000 POST /api/v1/enroll attempts (distinct
 * device keys, no credential) from one address, then 10,000 from many loopback source addresses
 * (127.0.1.1 …), each sent by a forked flood process at concurrency 32 over keep-alive HTTPS,
 * while an operator keeps running execs of the built-in `status` on a connected node (a real
 * `node start` process) through the load client.
 *
 * Baseline: the same exec load in a window without the flood, interleaved (quiet, one address,
 * quiet, many addresses). What must hold: the node's exec rate and p99 barely move, the pending
 * cap holds (pending registrations at the end ≤ enroll.maxPending), and every refused attempt is
 * answered with the catalogue's `rate_limited` (429), never a 5xx or a reset.
 */
import { fork } from "node:child_process";
import https from "node:https";
import { fileURLToPath } from "node:url";
import { createCsr, generateKeyPair } from "../src/pki/index.js";
import { fetchOnce, startBenchGateway, startBenchNode, type BenchNode } from "./gateway-fixture.js";
import { LoadClient, type LoadSpec } from "./load-client.js";
import {
  log,
  now,
  summarize,
  type BenchResult,
  type BenchSettings,
  type Measurement,
  type Ratio,
  type Sample,
} from "./lib.js";

const ATTEMPTS = 10_000;
const MANY_ADDRESSES = 200;
const FLOOD_CONCURRENCY = 32;
const EXEC_CONCURRENCY = 4;
/** Distinct CSRs (device keys) the flood cycles through; a key sent again reuses its pending request. */
const CSR_POOL = 300;
const SELF = fileURLToPath(import.meta.url);

interface FloodSpec {
  host: string;
  port: number;
  ca: string;
  csrs: string[];
  /** Source addresses to spread the attempts over, round robin. */
  addresses: string[];
  attempts: number;
}

interface FloodResult {
  sent: number;
  elapsedMs: number;
  /** Answers by `status code` (and `status error` for refusals), e.g. "202", "429 rate_limited". */
  answers: Record<string, number>;
}

/** Runs one flood in a forked process (its CPU is not the gateway's) and returns what it was told. */
function floodFromChild(spec: FloodSpec): Promise<FloodResult> {
  const child = fork(SELF, ["--bench-flood-child"], {
    execArgv: process.execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("the flood did not finish within 120 s"));
    }, 120_000);
    child.once("message", (message: { result?: FloodResult; error?: string }) => {
      clearTimeout(timer);
      child.disconnect();
      if (message.result) resolve(message.result);
      else reject(new Error(`flood: ${message.error}`));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the flood process exited (${code})`));
    });
    child.send(spec);
  });
}

/** The flood itself (child side): `attempts` enrolls, `FLOOD_CONCURRENCY` in flight. */
async function flood(spec: FloodSpec): Promise<FloodResult> {
  const agents = spec.addresses.map(
    (localAddress) => new https.Agent({ keepAlive: true, maxSockets: 4, ca: spec.ca, localAddress }),
  );
  const answers: Record<string, number> = {};
  const count = (key: string) => (answers[key] = (answers[key] ?? 0) + 1);
  let next = 0;
  const started = now();
  const attempt = (i: number) =>
    new Promise<void>((resolve) => {
      const body = Buffer.from(JSON.stringify({ csr: spec.csrs[i % spec.csrs.length], name: `flood-${i}` }));
      const request = https.request(
        {
          host: spec.host,
          port: spec.port,
          path: "/api/v1/enroll",
          method: "POST",
          agent: agents[i % agents.length],
          headers: { "content-type": "application/json", "content-length": body.length },
        },
        (response) => {
          let text = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (text += chunk.length < 4096 ? chunk : ""));
          response.on("end", () => {
            const status = response.statusCode ?? 0;
            let code = "";
            if (status >= 400) {
              try {
                code = String((JSON.parse(text) as { error?: string }).error ?? "no code");
              } catch {
                code = "not JSON";
              }
            }
            count(code ? `${status} ${code}` : String(status));
            resolve();
          });
          response.on("error", (error) => (count(`error ${error.message}`), resolve()));
        },
      );
      request.setTimeout(15_000, () => request.destroy(new Error("timeout")));
      request.on("error", (error) => (count(`error ${error.message}`), resolve()));
      request.end(body);
    });
  await Promise.all(
    Array.from({ length: FLOOD_CONCURRENCY }, async () => {
      while (next < spec.attempts) await attempt(next++);
    }),
  );
  for (const agent of agents) agent.destroy();
  return { sent: spec.attempts, elapsedMs: now() - started, answers };
}

export async function run(settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const gateway = await startBenchGateway();
  let client: LoadClient | undefined;
  let node: BenchNode | undefined;
  try {
    node = await startBenchNode(gateway, "flood-bench-node");
    const { pem, running } = gateway;
    const execUrl = `${running.url}/api/v1/nodes/${node.deviceId}/exec`;
    const sanity = await fetchOnce(execUrl, {
      ca: pem.adminCa,
      cert: pem.adminCert,
      key: pem.adminKey,
      method: "POST",
      body: { command: "status" },
    });
    if (sanity.status !== 200) throw new Error(`exec of status failed: ${sanity.status} ${sanity.body}`);

    const csrs: string[] = [];
    for (let i = 0; i < CSR_POOL; i++) csrs.push(await createCsr(await generateKeyPair(), `flood-${i}`));
    log(`  ${CSR_POOL} CSRs made; node ${node.deviceId} connected`);

    client = await LoadClient.start(settings.client, settings.pin);
    const execSpec: Omit<LoadSpec, "runInMs" | "durationMs"> = {
      kind: "http",
      method: "POST",
      host: gateway.host,
      port: gateway.port,
      path: `/api/v1/nodes/${node.deviceId}/exec`,
      body: { command: "status", args: [], timeoutMs: 5000 },
      ca: pem.adminCa,
      cert: pem.adminCert,
      key: pem.adminKey,
      concurrency: EXEC_CONCURRENCY,
      timeoutMs: 15_000,
    };
    // The exec window spans the flood: at least the configured window, longer if the flood is.
    const windowMs = Math.max(2 * settings.durationMs, 3000);
    const loader = client;
    await loader.run({ ...execSpec, runInMs: 0, durationMs: settings.warmupMs });
    const execWindow = () => loader.run({ ...execSpec, runInMs: settings.runInMs, durationMs: windowMs });
    const floodSpec = (addresses: string[]): FloodSpec => ({
      host: gateway.host,
      port: gateway.port,
      ca: pem.ca,
      csrs,
      addresses,
      attempts: ATTEMPTS,
    });
    const many = Array.from({ length: MANY_ADDRESSES }, (_, i) => `127.0.1.${i + 1}`);
    const setupMs = now() - started;

    const quiet: Sample[] = [];
    const flooded: Sample[] = [];
    const floods: { label: string; result: FloodResult }[] = [];
    const floodWindow = async (label: string, addresses: string[]) => {
      const [sample, result] = await Promise.all([execWindow(), floodFromChild(floodSpec(addresses))]);
      const { firstError, ...rest } = sample;
      flooded.push(rest);
      floods.push({ label, result });
      const rate = (result.sent / (result.elapsedMs / 1000)).toFixed(0);
      log(
        `  flood from ${label}: ${result.sent} attempts in ${(result.elapsedMs / 1000).toFixed(1)} s (${rate}/s): ` +
          JSON.stringify(result.answers) +
          `; exec ${sample.rate.toFixed(0)}/s p99 ${sample.p99Ms?.toFixed(1)} ms` +
          (sample.failed ? `, ${sample.failed} failed (${firstError})` : ""),
      );
      if (result.elapsedMs > windowMs + settings.runInMs)
        notes.push(
          `the flood from ${label} outlasted its exec window (${(result.elapsedMs / 1000).toFixed(1)} s)`,
        );
    };
    const quietWindow = async () => {
      const { firstError, ...sample } = await execWindow();
      quiet.push(sample);
      log(
        `  quiet: exec ${sample.rate.toFixed(0)}/s p99 ${sample.p99Ms?.toFixed(1)} ms` +
          (sample.failed ? `, ${sample.failed} failed (${firstError})` : ""),
      );
    };
    await quietWindow();
    await floodWindow("one address (127.0.0.1)", ["127.0.0.1"]);
    await quietWindow();
    await floodWindow(`${MANY_ADDRESSES} addresses (127.0.1.1–127.0.1.${MANY_ADDRESSES})`, many);
    await quietWindow();

    const { ctx } = running;
    const pending = await ctx.store.countPendingRegistrations(ctx.now().toISOString());
    const cap = ctx.config.enroll.maxPending;
    const refusals = floods.flatMap((f) => Object.entries(f.result.answers)).filter(([k]) => k !== "202");
    const refused = refusals.reduce((sum, [, n]) => sum + n, 0);
    const rateLimited = refusals.filter(([k]) => k === "429 rate_limited").reduce((sum, [, n]) => sum + n, 0);
    const limiterKeys = ctx.enrollLimiter.size;

    const quietM = summarize(
      "exec, no flood (baseline)",
      "POST exec of status on the connected node, no registration flood",
      "ops/s",
      quiet,
    );
    const floodM = summarize(
      "exec during the flood",
      `the same exec load while ${ATTEMPTS} enroll attempts arrive (one address, then ${MANY_ADDRESSES})`,
      "ops/s",
      flooded,
    );
    const ratios: Ratio[] = [
      {
        label: "exec rate flood/quiet",
        description: "exec rate of the connected node during the flood ÷ without it (median windows)",
        value: floodM.median / quietM.median,
        goal: { op: ">=", value: 0.75 },
      },
      {
        label: "exec p99 flood/quiet",
        description: "exec p99 latency during the flood ÷ without it",
        value: (floodM.medianP99Ms ?? Number.NaN) / (quietM.medianP99Ms ?? Number.NaN),
        goal: { op: "<=", value: 2 },
      },
      {
        label: "pending/cap",
        description: `registrations pending at the end (${pending}) ÷ enroll.maxPending (${cap})`,
        value: pending / cap,
        goal: { op: "<=", value: 1 },
      },
      {
        label: "refusals rate_limited",
        description: `share of the ${refused} refused attempts answered 429 rate_limited (anything else: a 5xx, a reset, another code)`,
        value: refused ? rateLimited / refused : Number.NaN,
        goal: { op: ">=", value: 1 },
      },
    ];
    notes.push(
      ...floods.map(
        (f) =>
          `flood from ${f.label}: ${f.result.sent} attempts in ${(f.result.elapsedMs / 1000).toFixed(1)} s, answers ${JSON.stringify(f.result.answers)}`,
      ),
      `rate limiter remembers ${limiterKeys} addresses after the floods (bounded at 10,000, least recently used first out)`,
      "the node agent, the load client and the flood each run in their own process; all share this machine's CPUs, so part of any slowdown is the flood's own client",
    );
    const measurements: Measurement[] = [quietM, floodM];
    return {
      name: "flood",
      title: `Registration flood (${ATTEMPTS} attempts from one address, then from ${MANY_ADDRESSES}) against a connected node's execs`,
      measurements,
      ratios,
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    await client?.close();
    await node?.close();
    await gateway.close();
    log("  gateway and node closed");
  }
}

// The flood process -------------------------------------------------------------------------

if (process.argv.includes("--bench-flood-child") && process.send) {
  process.on("disconnect", () => process.exit(0));
  process.once("message", (spec: FloodSpec) => {
    flood(spec).then(
      (result) => process.send!({ result }),
      (error: unknown) => process.send!({ error: String(error) }),
    );
  });
}
