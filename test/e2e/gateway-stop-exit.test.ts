import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import tls from "node:tls";
import Database from "better-sqlite3";
import { cleanupAll, registeredNode, startTestGateway, type TestGateway } from "./harness.js";

const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop(true);
  cleanupAll();
});

/**
 * A node session over a raw TLS socket that never answers a close frame: it reads the gateway's
 * frames (unmasked, RFC 6455 §5.2) and remembers the first close frame's code and reason.
 */
async function silentSession(
  gateway: TestGateway,
  nodeHome: string,
): Promise<{ welcome: Promise<void>; closeFrame: Promise<{ code: number; reason: string }> }> {
  const read = (file: string) => readFileSync(path.join(nodeHome, file));
  const socket = tls.connect({
    host: "127.0.0.1",
    port: gateway.port,
    servername: "localhost",
    ca: read("ca.pem"),
    cert: read("device.pem"),
    key: read("device.key"),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => undefined);
  socket.write(
    "GET /api/v1/connect HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  let welcomed: () => void = () => undefined;
  let closed: (frame: { code: number; reason: string }) => void = () => undefined;
  const welcome = new Promise<void>((resolve) => (welcomed = resolve));
  const closeFrame = new Promise<{ code: number; reason: string }>((resolve) => (closed = resolve));
  socket.on("data", (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    if (!upgraded) {
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      expect(buffer.subarray(0, end).toString()).toMatch(/^HTTP\/1\.1 101/);
      buffer = buffer.subarray(end + 4);
      upgraded = true;
    }
    // Frames from the server: FIN+opcode, then a 7-bit length (or 126 + 16 bits); never masked.
    while (buffer.length >= 2) {
      const opcode = buffer[0]! & 0x0f;
      let length = buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      }
      if (buffer.length < offset + length) return;
      const payload = buffer.subarray(offset, offset + length);
      buffer = buffer.subarray(offset + length);
      if (opcode === 0x1 && payload.toString().includes('"welcome"')) welcomed();
      if (opcode === 0x8) closed({ code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() });
    }
  });
  return { welcome, closeFrame };
}

describe("a gateway stopping (SIGTERM) under a node that never answers its close frame", () => {
  it("the node gets 1012 `gateway restarting`, the gateway exits 0, and its session ends 1012 in the database", async () => {
    const gateway = await startTestGateway();
    gateways.push(gateway);
    const node = await registeredNode(gateway, "silent");
    const session = await silentSession(gateway, node.home);
    await session.welcome;

    await gateway.stop();
    expect(await gateway.process.exited).toBe(0);
    expect(await session.closeFrame).toEqual({ code: 1012, reason: "gateway restarting" });
    // One line for the stop says how many sessions it closed.
    expect(
      gateway.process.logLines().find((line) => line.msg === "node sessions closed: gateway restarting"),
    ).toMatchObject({ sessions: 1, code: 1012 });

    // The session is recorded as ended by the stop's close, not as a cut connection (1006).
    const db = new Database(path.join(gateway.home, "gatehouse.db"), { readonly: true });
    try {
      const rows = db
        .prepare("SELECT close_code, close_reason, disconnected_at FROM sessions WHERE device_id = ?")
        .all(node.deviceId) as { close_code: number; close_reason: string; disconnected_at: string }[];
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ close_code: 1012, close_reason: "gateway restarting" });
      expect(rows[0]!.disconnected_at).toBeTruthy();
    } finally {
      db.close();
    }
  });
});
