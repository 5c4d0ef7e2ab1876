import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import tls from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { health, openDescriptors, waitUntil } from "./descriptors.js";
import { cleanupAll, startTestGateway, type TestGateway } from "./harness.js";

/**
 * A client that sends its headers and then trickles (or never sends) its body holds a connection,
 * and so one of the gateway's file descriptors, until http.requestTimeout: then it gets the
 * catalogue's answer and its connection is destroyed. Without a request timeout a few hundred such
 * clients reset every new one.
 */

const CLIENTS = 30;

let gateway: TestGateway;
let ca: string;

/** A TLS client that sends a POST's headers and one byte of its 100-byte body, then nothing. */
function slowBody(): Promise<{ socket: tls.TLSSocket; answer: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: gateway.port, ca, servername: "localhost" }, () => {
      socket.write(
        "POST /api/v1/auth/token HTTP/1.1\r\nHost: localhost\r\n" +
          "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n{",
      );
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      const answer = new Promise<string>((done) =>
        socket.on("close", () => done(Buffer.concat(chunks).toString())),
      );
      resolve({ socket, answer });
    });
    socket.on("error", () => undefined);
    socket.once("error", reject);
  });
}

beforeAll(async () => {
  gateway = await startTestGateway({
    configure: (config) => {
      config.http = { requestTimeout: "2s" };
    },
  });
  ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
});

afterAll(async () => {
  await gateway?.stop();
  cleanupAll();
});

describe("requests that never finish arriving", () => {
  it("are answered invalid_request after http.requestTimeout and their connections freed", async () => {
    for (let i = 0; i < 3; i++) expect(await health(gateway, ca)).toBe(200);
    await sleep(500);
    const before = openDescriptors(gateway);
    const clients = await Promise.all(Array.from({ length: CLIENTS }, slowBody));
    // The clients never send the rest; the gateway answers and hangs up on each by itself.
    const answers = await Promise.all(clients.map((client) => client.answer));
    for (const answer of answers) {
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { error: string };
      expect(body.error).toBe("invalid_request");
    }
    await waitUntil(() => openDescriptors(gateway) <= before, `descriptors return to ${before}`);
    expect(await health(gateway, ca)).toBe(200);
  });
});
