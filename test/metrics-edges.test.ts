/**
 * What the gateway counts before any route runs, on a real gateway over real TLS on loopback:
 * full and resumed handshakes, failed ones, and the answers Node's HTTP layer and the WebSocket
 * library would give by themselves (each a refusal by its catalogue code), read from a scrape.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { GATEWAY_FILES } from "../src/config/index.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { parseScrape, value, type Scrape } from "./metrics-scrape.js";

let dir: string;
let gateway: RunningGateway;
let ca: string;
let port: number;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-metrics-edges-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  gateway = await startGateway(home, { logger: pino({ level: "silent" }) });
  ca = readFileSync(path.join(home, GATEWAY_FILES.caCert), "utf8");
  port = Number(new URL(gateway.url).port);
});

afterAll(async () => {
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function scrape(): Promise<Scrape> {
  return parseScrape(await gateway.ctx.metrics.render());
}

/**
 * Opens a TLS connection (resuming `session` when given), sends `request` if any, and resolves
 * with the session ticket the gateway sent and whether this connection was resumed, once the
 * gateway has closed it.
 */
function connect(
  request: string | undefined,
  session?: Buffer,
): Promise<{ session: Buffer | undefined; resumed: boolean }> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    let resumed = false;
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      ca,
      servername: "localhost",
      ...(session ? { session } : {}),
    });
    socket.on("session", (s: Buffer) => (ticket = s));
    socket.on("secureConnect", () => {
      resumed = socket.isSessionReused();
      if (request === undefined) {
        // Wait for the ticket (TLS 1.3 sends it after the handshake), then leave.
        setImmediate(() => socket.end());
      } else socket.write(request);
    });
    socket.on("data", () => undefined);
    socket.on("error", reject);
    socket.on("close", () => resolve({ session: ticket, resumed }));
  });
}

/** Sends bytes that are not a TLS handshake and waits until the gateway drops the connection. */
function notTls(): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve());
  });
}

describe("metrics before any route", () => {
  it("counts full and resumed TLS handshakes, and a failed one", async () => {
    const before = await scrape();
    const first = await connect(undefined);
    expect(first.resumed).toBe(false);
    expect(first.session).toBeDefined();
    const second = await connect(undefined, first.session);
    expect(second.resumed).toBe(true);
    await notTls();
    const after = await scrape();
    const full = (s: Scrape) => value(s, "gatehouse_tls_handshakes_total", { resumed: "false" });
    const resumed = (s: Scrape) => value(s, "gatehouse_tls_handshakes_total", { resumed: "true" });
    expect(full(after) - full(before)).toBe(1);
    expect(resumed(after) - resumed(before)).toBe(1);
    expect(
      value(after, "gatehouse_tls_handshake_failures_total") -
        value(before, "gatehouse_tls_handshake_failures_total"),
    ).toBe(1);
  });

  it("counts each answer Node's HTTP layer would give, and a refused session upgrade, by its catalogue code", async () => {
    const refusals = (s: Scrape, code: string) => value(s, "gatehouse_refusals_total", { code });
    const before = await scrape();
    const requests = [
      "hello\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nConnection: close\r\n\r\n",
      "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
      "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ];
    for (const request of requests) await connect(request);
    await connect(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`);
    // A node session asked for without a credential is refused before the upgrade.
    await connect(
      "GET /api/v1/connect HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    const after = await scrape();
    expect(refusals(after, "invalid_request") - refusals(before, "invalid_request")).toBe(requests.length);
    expect(refusals(after, "headers_too_large") - refusals(before, "headers_too_large")).toBe(1);
    expect(refusals(after, "missing_credentials") - refusals(before, "missing_credentials")).toBe(1);
  });
});
