import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { health, openDescriptors, waitUntil } from "./descriptors.js";
import { cleanupAll, registeredNode, startTestGateway, type TestGateway } from "./harness.js";

/**
 * Connections the gateway stops wanting are destroyed whatever state they are in: a socket that
 * never starts its TLS handshake, one that speaks something other than TLS, and one that speaks
 * TLS but not HTTP. The measure is what an attacker exhausts: the gateway's file descriptors.
 */

const SOCKETS = 50;

let gateway: TestGateway;
let ca: string;

/** The descriptor count when nothing is connected, after a few requests have warmed everything up. */
async function baseline(): Promise<number> {
  for (let i = 0; i < 3; i++) expect(await health(gateway, ca)).toBe(200);
  // The server closes its side of those requests a moment after the client reads the answer.
  let previous = -1;
  for (let count = openDescriptors(gateway); count !== previous; count = openDescriptors(gateway)) {
    previous = count;
    await sleep(300);
  }
  return previous;
}

/** Resolves when the server has hung up on every socket (an end or a reset reaches the client). */
async function hungUp(sockets: net.Socket[]): Promise<void> {
  const closed = new Set<net.Socket>();
  for (const socket of sockets) {
    const mark = () => closed.add(socket);
    if (socket.destroyed) mark();
    socket.once("end", mark);
    socket.once("close", mark);
    socket.on("error", mark);
  }
  await waitUntil(() => closed.size === sockets.length, "the gateway hangs up on every socket");
}

function connectRaw(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(gateway.port, "127.0.0.1", () => resolve(socket));
    socket.on("error", reject);
  });
}

beforeAll(async () => {
  gateway = await startTestGateway({
    // Short, so silent sockets are dropped within the test, yet long enough that a loaded machine
    // still sees the gateway hold all of them before the first is dropped.
    configure: (config) => {
      config.tls = { handshakeTimeout: "3s" };
    },
  });
  ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
});

afterAll(async () => {
  await gateway?.stop();
  cleanupAll();
});

describe("connections the gateway gives up on", () => {
  it("destroys silent connections once the handshake timeout passes", async () => {
    const before = await baseline();
    const sockets = await Promise.all(Array.from({ length: SOCKETS }, connectRaw));
    await waitUntil(() => openDescriptors(gateway) >= before + SOCKETS, "the gateway holds every socket");
    // The clients say nothing; the gateway hangs up on each of them by itself.
    await hungUp(sockets);
    for (const socket of sockets) socket.destroy();
    await waitUntil(() => openDescriptors(gateway) <= before, `descriptors return to ${before}`);
    expect(await health(gateway, ca)).toBe(200);
  });

  it("frees silent connections whose clients leave after the handshake timeout", async () => {
    const before = await baseline();
    const sockets = await Promise.all(Array.from({ length: SOCKETS }, connectRaw));
    await waitUntil(() => openDescriptors(gateway) >= before + SOCKETS, "the gateway holds every socket");
    await hungUp(sockets);
    // The clients leave (FIN, as a crashed or impatient client would): nothing may stay in CLOSE-WAIT.
    await Promise.all(sockets.map((socket) => new Promise<void>((resolve) => socket.end(resolve))));
    await waitUntil(() => openDescriptors(gateway) <= before, `descriptors return to ${before}`);
    expect(await health(gateway, ca)).toBe(200);
  });

  it("destroys connections that send bytes that are not TLS", async () => {
    const before = await baseline();
    const sockets = await Promise.all(Array.from({ length: 20 }, connectRaw));
    for (const socket of sockets) socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    await hungUp(sockets);
    for (const socket of sockets) socket.destroy();
    await waitUntil(() => openDescriptors(gateway) <= before, `descriptors return to ${before}`);
    expect(await health(gateway, ca)).toBe(200);
  });

  it("answers headers over 16 KiB with 431 and the catalogue body while the client goes on sending", async () => {
    // The gateway answers after 16 KiB; closing at once with 4 MiB unread would reset the
    // connection and the client would never read the answer.
    for (const size of [17 * 1024, 4 * 1024 * 1024]) {
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = https.get(
          `${gateway.url}/health`,
          { ca, agent: false, headers: { "x-padding": "a".repeat(size) } },
          (response) => {
            let body = "";
            response.on("data", (chunk: Buffer) => (body += chunk.toString()));
            response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
          },
        );
        request.on("error", reject);
      });
      expect(reply.status, `${size} bytes of headers`).toBe(431);
      const body = JSON.parse(reply.body) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(["error", "error_description", "hint"]);
      expect(body.error).toBe("headers_too_large");
    }
  });

  it("refuses a malformed WebSocket upgrade from an approved node with the catalogue, not a text page", async () => {
    const node = await registeredNode(gateway, "edge-node");
    const credential = {
      key: readFileSync(path.join(node.home, "device.key"), "utf8"),
      cert: readFileSync(path.join(node.home, "device.pem"), "utf8"),
    };
    const upgrade = (headers: string[]) =>
      [
        "GET /api/v1/connect HTTP/1.1",
        "Host: localhost",
        "Connection: Upgrade",
        "Upgrade: websocket",
        ...headers,
      ]
        .concat("", "")
        .join("\r\n");
    for (const [what, request] of [
      ["a malformed key", upgrade(["Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: short"])],
      [
        "an unknown version",
        upgrade(["Sec-WebSocket-Version: 99", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]),
      ],
    ] as const) {
      const text = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect(
          { host: "127.0.0.1", port: gateway.port, ca, servername: "localhost", ...credential },
          () => socket.write(request),
        );
        let received = "";
        socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
        socket.on("close", () => resolve(received));
        socket.on("error", reject);
      });
      expect(text, what).toMatch(/^HTTP\/1\.1 400 /);
      const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4)) as Record<string, unknown>;
      expect(Object.keys(body).sort(), what).toEqual(["error", "error_description", "hint"]);
      expect(body.error, what).toBe("invalid_request");
    }
  });

  it("answers garbage HTTP over TLS with a catalogue error, then closes even if the client stays", async () => {
    const before = await baseline();
    const answers = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<{ text: string; socket: tls.TLSSocket }>((resolve, reject) => {
            // allowHalfOpen: the client never closes its side; the gateway must close the whole socket.
            const tcp = new net.Socket({ allowHalfOpen: true });
            tcp.connect(gateway.port, "127.0.0.1");
            const socket = tls.connect({ socket: tcp, ca, servername: "localhost" }, () =>
              socket.write("\x16\x03garbage that is not HTTP\r\n\r\n"),
            );
            let text = "";
            socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
            socket.on("end", () => resolve({ text, socket }));
            socket.on("error", reject);
          }),
      ),
    );
    for (const { text } of answers) {
      expect(text).toMatch(/^HTTP\/1\.1 400 /);
      const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4)) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(["error", "error_description", "hint"]);
      expect(body.error).toBe("invalid_request");
    }
    // The clients still hold their sockets open; the gateway's side must be gone all the same.
    await waitUntil(() => openDescriptors(gateway) <= before, `descriptors return to ${before}`);
    for (const { socket } of answers) socket.destroy();
    expect(await health(gateway, ca)).toBe(200);
  });
});
