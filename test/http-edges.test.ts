import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { GATEWAY_FILES } from "../src/config/index.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { isLoopbackAddress } from "../src/gateway/routes/metrics.js";

/**
 * The answers fastify, Node's HTTP layer and the WebSocket library would give by themselves: each
 * must be the catalogue's {error, error_description, hint}, sent over real TLS on loopback.
 */

let dir: string;
let gateway: RunningGateway;
let ca: string;

interface RawReply {
  status: number;
  headers: string;
  body: string;
}

/** Sends `request` as raw bytes over TLS and reads until the gateway closes the connection. */
function raw(request: string | Buffer, credential: { key?: string; cert?: string } = {}): Promise<RawReply> {
  const { port } = new URL(gateway.url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: "127.0.0.1", port: Number(port), ca, servername: "localhost", ...credential },
      () => socket.write(request),
    );
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const split = text.indexOf("\r\n\r\n");
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        headers: text.slice(0, split),
        body: text.slice(split + 4),
      });
    });
  });
}

function get(route: string, headers: string[] = []): Promise<RawReply> {
  return raw(
    [`GET ${route} HTTP/1.1`, "Host: localhost", "Connection: close", ...headers, "", ""].join("\r\n"),
  );
}

/** A catalogue body with this code. */
function expectCatalogue(reply: RawReply, code: string): void {
  const body = JSON.parse(reply.body) as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(["error", "error_description", "hint"]);
  expect(body.error).toBe(code);
  expect(reply.headers).toMatch(/content-type: application\/json/i);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-edges-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  gateway = await startGateway(home, { logger: pino({ level: "silent" }) });
  ca = readFileSync(path.join(home, GATEWAY_FILES.caCert), "utf8");
});

afterAll(async () => {
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("answers outside the routes", () => {
  it("refuses a path parameter over 100 characters with invalid_request", async () => {
    for (const route of [`/api/v1/enroll/${"a".repeat(101)}`, `/api/v1/devices/${"d".repeat(300)}/approve`]) {
      const reply = await get(route);
      expect(reply.status, route).toBe(400);
      expectCatalogue(reply, "invalid_request");
    }
  });

  it("refuses a path that is not valid percent-encoding with invalid_request", async () => {
    const reply = await get("/api/v1/enroll/%zz");
    expect(reply.status).toBe(400);
    expectCatalogue(reply, "invalid_request");
  });

  it("answers an unknown route and an unknown method on a known route with not_found", async () => {
    expectCatalogue(await get("/nowhere"), "not_found");
    const reply = await raw("PATCH /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    expect(reply.status).toBe(404);
    expectCatalogue(reply, "not_found");
  });

  it("answers what Node's HTTP layer would answer by itself with the catalogue", async () => {
    const cases: [string, string][] = [
      ["HTTP/1.1 without Host", "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"],
      ["two Host headers", "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"],
      [
        "an unknown expectation",
        "GET /health HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nConnection: close\r\n\r\n",
      ],
      ["CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"],
      ["an unknown method", "BREW /health HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["not HTTP at all", "hello\r\n\r\n"],
    ];
    for (const [what, request] of cases) {
      const reply = await raw(request);
      expect(reply.status, what).toBe(400);
      expectCatalogue(reply, "invalid_request");
    }
  });

  it("refuses malformed WebSocket upgrades with the catalogue, not a text/html page", async () => {
    const upgrade = (route: string, headers: string[]) =>
      [`GET ${route} HTTP/1.1`, "Host: x", "Connection: Upgrade", ...headers, "", ""].join("\r\n");
    const good = [
      "Upgrade: websocket",
      "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    const cases: [string, string][] = [
      ["an upgrade to a plain route", upgrade("/health", good)],
      ["an upgrade to something else", upgrade("/health", ["Upgrade: h2c"])],
      ["an upgrade to something else on the session route", upgrade("/api/v1/connect", ["Upgrade: h2c"])],
    ];
    for (const [what, request] of cases) {
      const reply = await raw(request);
      expect(reply.status, what).toBe(400);
      expectCatalogue(reply, "invalid_request");
    }
  });
});

describe("GET /metrics", () => {
  it("serves Prometheus text to a caller on the gateway's machine", async () => {
    const reply = await get("/metrics");
    expect(reply.status).toBe(200);
    expect(reply.headers).toMatch(/content-type: text\/plain; version=0\.0\.4/i);
    expect(reply.body).toMatch(/^gatehouse_node_sessions_open 0$/m);
    expect(reply.body).toMatch(/^process_open_fds \d+$/m);
  });

  it("refuses a remote caller without metrics:read with the catalogue", async () => {
    const reply = await gateway.app.inject({ method: "GET", url: "/metrics", remoteAddress: "203.0.113.7" });
    expect(reply.statusCode).toBe(401);
    expect(reply.json()).toMatchObject({ error: "missing_credentials" });
  });

  it("counts only this machine's addresses as loopback", () => {
    for (const address of ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"])
      expect(isLoopbackAddress(address), address).toBe(true);
    for (const address of ["10.0.0.1", "::ffff:10.0.0.1", "128.0.0.1", "::2", "fe80::1", "", undefined])
      expect(isLoopbackAddress(address), String(address)).toBe(false);
  });
});

describe("text an admin sends that others will read", () => {
  it("refuses a revoke or deny reason with terminal escapes or bidi overrides, and changes nothing", async () => {
    const credential = {
      cert: readFileSync(path.join(gateway.ctx.home, GATEWAY_FILES.adminCert), "utf8"),
      key: readFileSync(path.join(gateway.ctx.home, GATEWAY_FILES.adminKey), "utf8"),
    };
    for (const reason of ["lost\u001b[2J\u001b[31m", "stolen \u202egnp.exe", "a\u0085b"]) {
      for (const action of ["revoke", "deny"]) {
        const body = JSON.stringify({ reason });
        const reply = await raw(
          [
            `POST /api/v1/devices/${"a".repeat(26)}/${action} HTTP/1.1`,
            "Host: localhost",
            "Connection: close",
            "Content-Type: application/json",
            `Content-Length: ${Buffer.byteLength(body)}`,
            "",
            body,
          ].join("\r\n"),
          credential,
        );
        expect(reply.status, `${action} ${JSON.stringify(reason)}`).toBe(400);
        expectCatalogue(reply, "invalid_request");
        expect(JSON.parse(reply.body).error_description).toMatch(/reason contains control characters/);
      }
    }
  });
});
