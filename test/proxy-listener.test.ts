/**
 * The PROXY protocol in front of a real TLS server on loopback: the header's source becomes the
 * caller's address, the bytes after it reach TLS untouched, a trusted peer without a valid header
 * is closed and counted, an untrusted peer's header is never believed, and the server goes on
 * serving after each refusal.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { createCertificateAuthority } from "../src/pki/authority.js";
import { acceptProxyProtocol, trustedPeers } from "../src/gateway/proxy-listener.js";
import { socketCallerAddress } from "../src/gateway/caller-address.js";

const BALANCER = "127.0.0.10";
const SIGNATURE = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

function v2Header(source: [number, number, number, number], port: number): Buffer {
  const fixed = Buffer.from([0x21, 0x11, 0x00, 0x0c]);
  const block = Buffer.alloc(12);
  Buffer.from(source).copy(block, 0);
  Buffer.from([127, 0, 0, 1]).copy(block, 4);
  block.writeUInt16BE(port, 8);
  block.writeUInt16BE(443, 10);
  return Buffer.concat([SIGNATURE, fixed, block]);
}

describe("PROXY protocol on a TLS listener", () => {
  let server: https.Server;
  let port: number;
  const refused: string[] = [];

  beforeAll(async () => {
    const ca = await createCertificateAuthority({
      commonName: "proxy test",
      now: new Date(),
      validityDays: 1,
    });
    server = https.createServer({ key: ca.keyPem, cert: ca.certPem }, (request, response) => {
      response.end(socketCallerAddress(request.socket));
    });
    acceptProxyProtocol(server, {
      trusted: [BALANCER, "10.0.0.0/8"],
      headerTimeoutMs: 300,
      refused: (code) => refused.push(code),
      logger: { warn: () => {} },
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** GET / over TLS on a socket from `from`, after writing `prefix`: the body, or "error …". */
  function askThrough(from: string, prefix: Buffer): Promise<string> {
    return new Promise((resolve) => {
      const raw = net.connect({ host: "127.0.0.1", port, localAddress: from }, () => {
        if (prefix.length) raw.write(prefix);
        const secure = tls.connect({ socket: raw, rejectUnauthorized: false }, () => {
          secure.end("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        });
        let answer = "";
        secure.on("data", (chunk: Buffer) => (answer += chunk.toString()));
        secure.on("end", () => resolve(answer.split("\r\n\r\n")[1] ?? `error no body: ${answer}`));
        secure.on("error", (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.message}`));
      });
      raw.on("error", (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.message}`));
    });
  }

  /** Opens a connection from `from`, writes `bytes`, and resolves once the server has closed it. */
  function closedAfter(from: string, bytes: Buffer): Promise<void> {
    return new Promise((resolve) => {
      const raw = net.connect({ host: "127.0.0.1", port, localAddress: from }, () => raw.write(bytes));
      raw.on("error", () => {});
      raw.on("close", () => resolve());
      raw.resume();
    });
  }

  it("takes the header's source as the caller's address, and TLS goes on after it", async () => {
    expect(await askThrough(BALANCER, v2Header([203, 0, 113, 7], 40000))).toBe("203.0.113.7");
    const v1 = Buffer.from("PROXY TCP4 198.51.100.2 127.0.0.1 5000 443\r\n");
    expect(await askThrough(BALANCER, v1)).toBe("198.51.100.2");
  });

  it("keeps the balancer's own address for a LOCAL header", async () => {
    const local = Buffer.concat([SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    expect(await askThrough(BALANCER, local)).toBe(BALANCER);
  });

  it("does not believe a header from an untrusted peer: to TLS it is garbage, and the connection closes", async () => {
    const answer = await askThrough("127.0.0.3", v2Header([203, 0, 113, 7], 40000));
    expect(answer).toMatch(/^error /);
    // Without a header the untrusted peer is served as itself.
    expect(await askThrough("127.0.0.3", Buffer.alloc(0))).toBe("127.0.0.3");
  });

  it("closes a trusted peer's connection without a header, with a malformed one, or a slow one, and counts each", async () => {
    refused.length = 0;
    expect(await askThrough(BALANCER, Buffer.alloc(0))).toMatch(/^error /);
    await closedAfter(BALANCER, Buffer.from("GET / HTTP/1.1\r\n\r\n"));
    await closedAfter(BALANCER, Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x41, 0x00, 0x0c])]));
    await closedAfter(BALANCER, Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]));
    // Half a header, then nothing: closed once the header timeout passes.
    await closedAfter(BALANCER, SIGNATURE.subarray(0, 6));
    expect(refused).toEqual(Array(5).fill("invalid_request"));
    // The server goes on serving.
    expect(await askThrough(BALANCER, v2Header([10, 1, 2, 3], 1))).toBe("10.1.2.3");
  });

  it("trusts addresses and CIDRs, IPv4 rules matching IPv4-mapped peers", () => {
    const trusted = trustedPeers(["127.0.0.10", "10.0.0.0/8", "fd00::/8"]);
    expect(trusted("10.200.0.1")).toBe(true);
    expect(trusted("::ffff:10.200.0.1")).toBe(true);
    expect(trusted("fd12::1")).toBe(true);
    expect(trusted("127.0.0.1")).toBe(false);
    expect(trusted(undefined)).toBe(false);
  });
});
