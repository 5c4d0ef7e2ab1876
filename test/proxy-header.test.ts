import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { SocketAddress } from "node:net";
import { GatehouseError } from "../src/protocol/errors.js";
import { INCOMPLETE, PROXY_HEADER_MAX_BYTES, parseProxyHeader } from "../src/gateway/proxy-header.js";

const SIGNATURE = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

/** A v2 header: version/command byte, family/transport byte, then the address block and TLVs. */
function v2(command: number, family: number, block: Buffer, declaredLength = block.length): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = command;
  fixed[1] = family;
  fixed.writeUInt16BE(declaredLength, 2);
  return Buffer.concat([SIGNATURE, fixed, block]);
}

function ipv4Block(src: number[], dst: number[], srcPort: number, dstPort: number): Buffer {
  const block = Buffer.alloc(12);
  Buffer.from(src).copy(block, 0);
  Buffer.from(dst).copy(block, 4);
  block.writeUInt16BE(srcPort, 8);
  block.writeUInt16BE(dstPort, 10);
  return block;
}

function refusal(bytes: Buffer): string {
  try {
    parseProxyHeader(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(GatehouseError);
    expect((error as GatehouseError).code).toBe("invalid_request");
    return (error as GatehouseError).message;
  }
  throw new Error("the header was accepted");
}

describe("PROXY protocol header", () => {
  it("reads a v1 TCP4 line and says where the client's own bytes begin", () => {
    const line = "PROXY TCP4 192.0.2.7 10.0.0.1 51234 18789\r\n";
    const header = parseProxyHeader(Buffer.concat([Buffer.from(line), Buffer.from([0x16, 0x03, 0x01])]));
    expect(header).toEqual({
      version: 1,
      source: { address: "192.0.2.7", port: 51234 },
      destination: { address: "10.0.0.1", port: 18789 },
      length: line.length,
    });
  });

  it("reads a v1 TCP6 line, and UNKNOWN as the connection's own address", () => {
    const header = parseProxyHeader(Buffer.from("PROXY TCP6 2001:db8::7 ::1 443 18789\r\n"));
    expect(header).toMatchObject({ source: { address: "2001:db8::7", port: 443 } });
    expect(parseProxyHeader(Buffer.from("PROXY UNKNOWN\r\n"))).toEqual({ version: 1, length: 15 });
    expect(parseProxyHeader(Buffer.from("PROXY UNKNOWN ffff::1 ::1 1 2\r\n"))).not.toHaveProperty("source");
  });

  it("reads a v2 PROXY header over IPv4 and IPv6 in Node's address text", () => {
    const header = parseProxyHeader(v2(0x21, 0x11, ipv4Block([127, 0, 0, 2], [127, 0, 0, 1], 40000, 18789)));
    expect(header).toEqual({
      version: 2,
      source: { address: "127.0.0.2", port: 40000 },
      destination: { address: "127.0.0.1", port: 18789 },
      length: 28,
    });
    const six = Buffer.alloc(36);
    Buffer.from("20010db8000000000000000000000007", "hex").copy(six, 0);
    Buffer.from("00000000000000000000ffffc0000202", "hex").copy(six, 16);
    six.writeUInt16BE(1, 32);
    expect(parseProxyHeader(v2(0x21, 0x21, six))).toMatchObject({
      source: { address: "2001:db8::7", port: 1 },
      destination: { address: "::ffff:192.0.2.2" },
    });
  });

  it("takes a v2 LOCAL command (a balancer's health check) without an address", () => {
    expect(parseProxyHeader(v2(0x20, 0x00, Buffer.alloc(0)))).toEqual({ version: 2, length: 16 });
    // LOCAL may still carry an address block: it is ignored.
    const local = parseProxyHeader(v2(0x20, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)));
    expect(local).toEqual({ version: 2, length: 28 });
  });

  it("skips TLVs after the addresses", () => {
    const tlvs = Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32, 0x05, 0x00, 0x03, 0x61, 0x62, 0x63]);
    const block = Buffer.concat([ipv4Block([203, 0, 113, 9], [10, 0, 0, 1], 5, 6), tlvs]);
    const bytes = Buffer.concat([v2(0x21, 0x11, block), Buffer.from("after")]);
    const header = parseProxyHeader(bytes);
    expect(header).toMatchObject({ source: { address: "203.0.113.9" }, length: 16 + 12 + tlvs.length });
    expect(bytes.subarray((header as { length: number }).length).toString()).toBe("after");
  });

  it("waits for a truncated header and refuses a wrong byte as soon as it arrives", () => {
    const whole = v2(0x21, 0x11, ipv4Block([127, 0, 0, 2], [127, 0, 0, 1], 1, 2));
    for (let n = 0; n < whole.length; n++) expect(parseProxyHeader(whole.subarray(0, n))).toBe(INCOMPLETE);
    expect(parseProxyHeader(Buffer.from("PROXY TCP4 1.2.3.4"))).toBe(INCOMPLETE);
    expect(refusal(Buffer.from([0x16, 0x03, 0x01]))).toMatch(/does not begin with one/);
    expect(refusal(Buffer.concat([SIGNATURE, Buffer.from([0x22])]))).toMatch(/version\/command byte 0x22/);
  });

  it("refuses oversized headers before they are all read", () => {
    expect(refusal(Buffer.from(`PROXY TCP4 ${"1".repeat(120)}`))).toMatch(/longer than 107 bytes/);
    const huge = v2(0x21, 0x11, Buffer.alloc(0), PROXY_HEADER_MAX_BYTES);
    expect(refusal(huge)).toMatch(/larger than 4096/);
  });

  it("refuses unknown families and malformed lines", () => {
    expect(refusal(v2(0x21, 0x41, Buffer.alloc(12)))).toMatch(/unknown address family\/transport 0x41/);
    expect(refusal(v2(0x21, 0x13, Buffer.alloc(12)))).toMatch(/0x13/);
    expect(refusal(v2(0x21, 0x21, Buffer.alloc(12)))).toMatch(/shorter than its family/);
    expect(refusal(Buffer.from("PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n"))).toMatch(/unknown protocol family/);
    expect(refusal(Buffer.from("PROXY TCP4 ::1 1.2.3.5 1 2\r\n"))).toMatch(/not TCP4/);
    expect(refusal(Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n"))).toMatch(/port/);
    expect(refusal(Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 1 65536\r\n"))).toMatch(/port/);
    expect(refusal(Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n"))).toMatch(/six fields/);
  });

  it("never throws anything but a refusal, and a header it takes fits the bytes it was given (fuzz)", () => {
    const prefix = fc.constantFrom(Buffer.alloc(0), SIGNATURE, Buffer.from("PROXY "));
    fc.assert(
      fc.property(prefix, fc.uint8Array({ maxLength: 300 }), (start, rest) => {
        const bytes = Buffer.concat([start, Buffer.from(rest)]);
        try {
          const header = parseProxyHeader(bytes);
          if (header !== INCOMPLETE) expect(header.length).toBeLessThanOrEqual(bytes.length);
        } catch (error) {
          expect(error).toBeInstanceOf(GatehouseError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("reads back any v2 IPv4 or IPv6 source it is given (fuzz)", () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat(65535),
        (ipv4, raw, port) => {
          const size = ipv4 ? 4 : 16;
          const block = Buffer.alloc(ipv4 ? 12 : 36);
          Buffer.from(raw).copy(block, 0, 0, 2 * size);
          block.writeUInt16BE(port, 2 * size);
          const header = parseProxyHeader(v2(0x21, ipv4 ? 0x11 : 0x21, block));
          if (header === INCOMPLETE) throw new Error("incomplete");
          const { address } = header.source!;
          // Node's own address text of the same bytes (net.SocketAddress canonicalises).
          const family = ipv4 ? "ipv4" : "ipv6";
          expect(address).toBe(new SocketAddress({ address, family }).address);
          expect(header.source!.port).toBe(port);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
