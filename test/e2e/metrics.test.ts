/**
 * GET /metrics on a real gateway process, as Prometheus scrapes it: over TLS, parsed by a
 * Prometheus text parser. A node registers, is approved, connects and leaves, an admin command
 * with a wrong token is refused and the node is revoked, all with the real CLI; the counters move
 * by exactly what happened. A caller from another address needs `metrics:read`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { apiKeyToken } from "./api-keys.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import {
  cleanupAll,
  runCli,
  runJson,
  startRegistration,
  startTestGateway,
  type TestGateway,
} from "./harness.js";
import { parseScrape, seriesValues, value, type Scrape } from "../metrics-scrape.js";

/** This machine's first non-loopback IPv4 address, if it has one: a caller that is not local. */
const remoteAddress = Object.values(os.networkInterfaces())
  .flat()
  .find((entry) => entry?.family === "IPv4" && !entry.internal)?.address;

let gateway: TestGateway;
let ca: string;

beforeAll(async () => {
  gateway = await startTestGateway({
    configure: (config) => {
      // Every address, so that a scraper can come from another one; a role that may only scrape.
      config.listen = String(config.listen).replace("127.0.0.1:", "0.0.0.0:");
      if (remoteAddress) config.sans = [remoteAddress];
      config.roles = { scraper: ["metrics:read"] };
    },
  });
  ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
});
afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

interface MetricsReply {
  status: number;
  contentType: string;
  body: string;
}

/** GET /metrics at `host` (the loopback address unless named), trusting only the gateway's CA. */
function getMetrics(options: { host?: string; token?: string } = {}): Promise<MetricsReply> {
  const url = new URL("/metrics", gateway.url);
  if (options.host) url.hostname = options.host;
  return new Promise((resolve, reject) => {
    const request = https.get(
      url,
      { ca, headers: options.token ? { authorization: `Bearer ${options.token}` } : {} },
      (response) => {
        let body = "";
        response.on("data", (chunk: Buffer) => (body += chunk.toString()));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: String(response.headers["content-type"]),
            body,
          }),
        );
      },
    );
    request.on("error", reject);
  });
}

async function scrape(): Promise<Scrape> {
  const reply = await getMetrics();
  expect(reply.status).toBe(200);
  expect(reply.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseScrape(reply.body);
}

/** How much each gatehouse_ series moved between two scrapes (series that did not move are left out). */
function moved(before: Scrape, after: Scrape): Record<string, number> {
  const was = seriesValues(before, "gatehouse_");
  const changes: Record<string, number> = {};
  for (const [key, now] of seriesValues(after, "gatehouse_")) {
    const delta = now - (was.get(key) ?? 0);
    if (delta !== 0) changes[key] = delta;
  }
  return changes;
}

/** Scrapes until `ready` holds for a scrape (a session's end reaches the gateway a moment later). */
async function scrapeUntil(ready: (s: Scrape) => boolean, what: string): Promise<Scrape> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = await scrape();
    if (ready(s)) return s;
    if (Date.now() > deadline) throw new Error(`the scrape never showed ${what}`);
    await sleep(100);
  }
}

describe("GET /metrics on a running gateway", () => {
  it("counts a registration, its approval and certificate, a session, a refused token and a revocation", async () => {
    const before = await scrape();
    expect(value(before, "gatehouse_node_sessions_open")).toBe(0);
    expect(value(before, "process_open_fds")).toBeGreaterThan(0);

    const { home, register, device } = await startRegistration(gateway, "metrics-node");
    await runJson(["devices", "approve", device.userCode!, "--home", gateway.home]);
    expect(await register.exited).toBe(0);

    const agent = await startAgentAllowing(home, []);
    const online = await scrapeUntil(
      (s) => value(s, "gatehouse_node_sessions_open") === 1,
      "one session open",
    );
    await stopAgent(agent);
    const offline = await scrapeUntil(
      (s) => value(s, "gatehouse_node_sessions_open") === 0,
      "no session open",
    );

    const refused = await runCli(["devices", "list", "--home", gateway.home, "--token", "not-a-token"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toContain("invalid_token");
    await runJson(["devices", "revoke", device.deviceId, "--home", gateway.home]);
    const after = await scrape();

    expect(value(online, "gatehouse_node_sessions_open")).toBe(1);
    expect(value(offline, "gatehouse_node_sessions_open")).toBe(0);
    const changes = moved(before, after);
    // Exactly these business counters moved, by exactly these amounts.
    const business = Object.fromEntries(
      Object.entries(changes).filter(([key]) =>
        /^gatehouse_(registrations|certificates_issued|revocations|refusals|token_verifications)_total/.test(
          key,
        ),
      ),
    );
    expect(business).toEqual({
      'gatehouse_registrations_total{"outcome":"pending"}': 1,
      'gatehouse_registrations_total{"outcome":"approved"}': 1,
      'gatehouse_certificates_issued_total{"kind":"initial"}': 1,
      'gatehouse_refusals_total{"code":"invalid_token"}': 1,
      'gatehouse_token_verifications_total{"result":"refused"}': 1,
      'gatehouse_revocations_total{"kind":"device"}': 1,
    });
    // Each CLI process and the agent opened at least one TLS connection of its own.
    const handshakes =
      (changes['gatehouse_tls_handshakes_total{"resumed":"false"}'] ?? 0) +
      (changes['gatehouse_tls_handshakes_total{"resumed":"true"}'] ?? 0);
    expect(handshakes).toBeGreaterThanOrEqual(5);
  });

  it("refuses a caller from another address without metrics:read with the catalogue, and serves one with it", async (context) => {
    if (!remoteAddress) return context.skip("this machine has no address but loopback");
    const before = await scrape();

    const anonymous = await getMetrics({ host: remoteAddress });
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.body)).toMatchObject({ error: "missing_credentials" });

    const viewer = await apiKeyToken(gateway, "viewer", "metrics-viewer");
    const withoutScope = await getMetrics({ host: remoteAddress, token: viewer.token });
    expect(withoutScope.status).toBe(403);
    expect(JSON.parse(withoutScope.body)).toMatchObject({ error: "insufficient_scope" });

    const scraper = await apiKeyToken(gateway, "scraper", "metrics-scraper");
    const allowed = await getMetrics({ host: remoteAddress, token: scraper.token });
    expect(allowed.status).toBe(200);
    const remote = parseScrape(allowed.body);

    // Both refusals are counted by their codes (the scrape that serves the scraper saw them).
    const changes = moved(before, remote);
    expect(changes['gatehouse_refusals_total{"code":"missing_credentials"}']).toBe(1);
    expect(changes['gatehouse_refusals_total{"code":"insufficient_scope"}']).toBe(1);
  });
});
