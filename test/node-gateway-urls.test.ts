/**
 * A node with several gateway URLs (instances of one gateway): node.json lists them, the agent
 * tries them in order within a round, and waits the usual backoff between rounds. The live gateway
 * here is a small real one (real TLS from the node's pinned CA, a real WebSocket) that welcomes the
 * node; a dead URL is a loopback port nothing listens on.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { WebSocketServer, type WebSocket } from "ws";
import { fakeGatewayTls } from "./fixtures/fake-gateway.js";
import { loadNodeConfig, NODE_FILES, nodeConfigSchema, writeJsonAtomic } from "../src/config/index.js";
import { explainConfig } from "../src/config/explain.js";
import { NODE_SECRET_SETTINGS } from "../src/config/schema.js";
import { NodeAgent } from "../src/node/agent.js";
import { nextGateway } from "../src/node/gateway-order.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { freePort } from "./e2e/harness.js";

const homes: string[] = [];
function nodeHome(config: Record<string, unknown>): string {
  const home = mkdtempSync(path.join(os.tmpdir(), "gh-node-urls-"));
  homes.push(home);
  writeFileSync(path.join(home, NODE_FILES.config), JSON.stringify(config));
  return home;
}
afterAll(() => {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

const PIN = `sha256:${"ab".repeat(32)}`;

function loadError(gatewayUrl: unknown): GatehouseError {
  try {
    loadNodeConfig(nodeHome({ gatewayUrl, caFingerprint: PIN }));
  } catch (error) {
    if (error instanceof GatehouseError) return error;
    throw error;
  }
  throw new Error("node.json was accepted");
}

describe("node.json gatewayUrl", () => {
  it("takes one URL, as before: gatewayUrls holds just it", () => {
    const { config } = loadNodeConfig(nodeHome({ gatewayUrl: "https://gw.lan:18789", caFingerprint: PIN }));
    expect(config.gatewayUrl).toBe("https://gw.lan:18789");
    expect(config.gatewayUrls).toEqual(["https://gw.lan:18789"]);
  });

  it("takes a list of instances, in order: gatewayUrl is the first", () => {
    const urls = ["https://gw-b.lan:18789", "https://gw-a.lan:18789", "https://10.0.0.7:18789"];
    const loaded = loadNodeConfig(nodeHome({ gatewayUrl: urls, caFingerprint: PIN }));
    expect(loaded.config.gatewayUrls).toEqual(urls);
    expect(loaded.config.gatewayUrl).toBe("https://gw-b.lan:18789");
    // config explain says where the list came from (the file), not "default".
    const explained = explainConfig(loaded, nodeConfigSchema, NODE_SECRET_SETTINGS);
    expect(explained.find((s) => s.key === "gatewayUrls")).toMatchObject({ value: urls, source: "file" });
  });

  it("a --gateway flag over a list replaces the whole list", () => {
    const home = nodeHome({ gatewayUrl: ["https://a.lan:1", "https://b.lan:2"], caFingerprint: PIN });
    const { config } = loadNodeConfig(home, { gatewayUrl: "https://c.lan:3" });
    expect(config.gatewayUrls).toEqual(["https://c.lan:3"]);
  });

  it("refuses an empty list, a URL listed twice, or a list entry that is not https, naming it", () => {
    expect(loadError([])).toMatchObject({ code: "config_invalid" });
    expect(loadError([]).message).toMatch(
      /^gatewayUrl in .*node\.json: must list at least one https:\/\/ URL/,
    );
    const twice = loadError(["https://a.lan:1", "https://b.lan:2", "https://a.lan:1/"]);
    expect(twice.message).toMatch(/^gatewayUrl\.2 in .*: https:\/\/a\.lan:1\/ is listed twice/);
    expect(loadError(["https://a.lan:1", "http://b.lan:2"]).message).toMatch(/^gatewayUrl\.1 in /);
    expect(loadError("http://a.lan:1").message).toMatch(/^gatewayUrl in /);
    expect(loadError(7).message).toMatch(/gatewayUrl in .*: must be an https:\/\/ URL or a list of them/);
  });
});

describe("nextGateway (the order of attempts)", () => {
  const refused = { code: "connection_refused" as const, sessionClosed: false };
  it("moves on to the next URL at once after a connection failure, within the round", () => {
    expect(nextGateway(3, 0, refused)).toEqual({ index: 1, now: true });
    expect(nextGateway(3, 1, { code: "unavailable", sessionClosed: false })).toEqual({ index: 2, now: true });
    expect(nextGateway(3, 1, { code: "ca_mismatch", sessionClosed: false })).toEqual({ index: 2, now: true });
  });
  it("after the last URL, waits the backoff and starts again from the first", () => {
    expect(nextGateway(3, 2, refused)).toEqual({ index: 0, now: false });
    expect(nextGateway(1, 0, refused)).toEqual({ index: 0, now: false });
  });
  it("a refusal of the node itself or a session that closed does not skip ahead", () => {
    expect(nextGateway(3, 0, { code: "invalid_token", sessionClosed: false })).toEqual({
      index: 0,
      now: false,
    });
    expect(nextGateway(3, 0, { code: "clock_skew", sessionClosed: false })).toEqual({ index: 0, now: false });
    expect(nextGateway(3, 1, { code: "connection_failed", sessionClosed: true })).toEqual({
      index: 0,
      now: false,
    });
  });
});

describe("the agent with several gateway URLs", () => {
  let server: https.Server;
  let wss: WebSocketServer;
  let liveUrl: string;
  let credentials: { caPem: string; keyPem: string; certPem: string };
  let fingerprint: string;
  let deviceId: string;
  const sockets: WebSocket[] = [];
  let agent: NodeAgent | undefined;

  beforeAll(async () => {
    const tls = await fakeGatewayTls("Test gateway CA");
    deviceId = tls.deviceId;
    credentials = { caPem: tls.caPem, keyPem: tls.keyPem, certPem: tls.certPem };
    fingerprint = tls.caFingerprint;
    server = https.createServer(tls.serverOptions);
    wss = new WebSocketServer({ server, path: "/api/v1/connect" });
    wss.on("connection", (socket) => {
      sockets.push(socket);
      socket.on("error", () => {});
      socket.send(
        JSON.stringify({
          type: "welcome",
          sessionId: `ses_${sockets.length}`,
          deviceId,
          heartbeatIntervalMs: 15_000,
          serverTime: new Date().toISOString(),
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    liveUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.terminate();
    wss.close();
    await new Promise((resolve) => server.close(resolve));
  });

  /** An agent over `urls`; its states as "connecting URL" / "backoff" / "connected" in order. */
  function startAgent(urls: string[]): { states: string[]; until: (done: () => boolean) => Promise<void> } {
    const home = nodeHome({});
    writeJsonAtomic(path.join(home, NODE_FILES.config), {
      gatewayUrl: urls,
      caFingerprint: fingerprint,
      deviceId,
      logLevel: "silent",
      // A short ladder keeps the test quick; the order, not the delay, is what is checked.
      reconnect: { initialDelay: "20ms", maxDelay: "40ms" },
    });
    const { config } = loadNodeConfig(home);
    const states: string[] = [];
    let check = () => {};
    agent = new NodeAgent(home, config, credentials, pino({ level: "silent" }));
    agent.on("state", (state: string, reason: string) => {
      const url = /connecting to wss:\/\/([^/]+)/.exec(reason)?.[1];
      states.push(state === "connecting" ? `connecting ${url}` : state);
      check();
    });
    agent.start();
    return {
      states,
      until: (done) =>
        new Promise<void>((resolve) => {
          check = () => done() && resolve();
          check();
        }),
    };
  }

  it("skips a dead first URL at once and connects through the second; the status names it", async () => {
    const dead = `https://127.0.0.1:${await freePort()}`;
    const run = startAgent([dead, liveUrl]);
    await run.until(() => run.states.includes("connected"));
    const host = (url: string) => new URL(url).host;
    expect(run.states).toEqual([`connecting ${host(dead)}`, `connecting ${host(liveUrl)}`, "connected"]);
    expect(agent!.status.gatewayUrl).toBe(liveUrl);
    expect(agent!.status.lastError).toBeNull();
  });

  it("when every URL fails, waits one backoff per round and starts each round at the first URL", async () => {
    const [a, b] = [`127.0.0.1:${await freePort()}`, `127.0.0.1:${await freePort()}`];
    const run = startAgent([`https://${a}`, `https://${b}`]);
    await run.until(() => run.states.filter((s) => s === "backoff").length >= 3);
    expect(run.states.slice(0, 9)).toEqual([
      `connecting ${a}`,
      `connecting ${b}`,
      "backoff",
      `connecting ${a}`,
      `connecting ${b}`,
      "backoff",
      `connecting ${a}`,
      `connecting ${b}`,
      "backoff",
    ]);
    expect(agent!.status.lastError?.code).toBe("connection_refused");
  });

  it("a session that drops comes back after the backoff, trying the URLs from the first again", async () => {
    const dead = `https://127.0.0.1:${await freePort()}`;
    const run = startAgent([dead, liveUrl]);
    await run.until(() => run.states.includes("connected"));
    sockets.at(-1)!.terminate();
    await run.until(() => run.states.filter((s) => s === "connected").length >= 2);
    const host = (url: string) => new URL(url).host;
    expect(run.states.slice(3)).toEqual([
      "backoff",
      `connecting ${host(dead)}`,
      `connecting ${host(liveUrl)}`,
      "connected",
    ]);
  });
});
