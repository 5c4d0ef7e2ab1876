/**
 * The PROXY protocol header (HAProxy, "The PROXY protocol", versions 1 and 2:
 * haproxy.org/download/2.6/doc/proxy-protocol.txt), which a TCP balancer writes at the start of
 * each connection it opens to a server, before any byte of the client's own: the client's address
 * as the balancer saw it. Pure: bytes in, a header (or "not all here yet") out.
 */
import { isIPv4, isIPv6 } from "node:net";
import { GatehouseError } from "../protocol/errors.js";

/** Version 2's fixed signature (spec §2.2): 12 bytes no text protocol begins with. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
/** A version 1 line is at most 107 bytes with its CRLF (spec §2.1). */
const V1_MAX_BYTES = 107;
/** Version 2's fixed part: signature, version/command, family/transport, length (spec §2.2). */
const V2_FIXED_BYTES = 16;
/**
 * The most a version 2 header may take, TLVs included. Addresses take at most 216 bytes (AF_UNIX);
 * HAProxy's TLVs (ALPN, authority, unique id, SSL details) fit well within; more is refused so a
 * peer cannot make the gateway buffer 64 KiB per connection before TLS begins.
 */
export const PROXY_HEADER_MAX_BYTES = 4096;

/** Where a proxied connection came from, as the balancer says. */
export interface ProxiedEndpoint {
  address: string;
  port: number;
}

/**
 * A whole header. `source` is the client's address, present for a PROXY command over TCP/UDP on
 * IPv4 or IPv6; absent for a LOCAL command (the balancer's own connection, e.g. a health check),
 * `UNKNOWN` (v1) or an AF_UNSPEC/AF_UNIX address (v2): the connection's own address then stands.
 */
export interface ProxyHeader {
  version: 1 | 2;
  source?: ProxiedEndpoint;
  destination?: ProxiedEndpoint;
  /** How many bytes the header took: what follows is the client's own stream (here: TLS). */
  length: number;
}

/** The bytes read so far are a valid beginning of a header, but not all of it. */
export const INCOMPLETE = "incomplete" as const;

function refuse(description: string): GatehouseError {
  return new GatehouseError(
    "invalid_request",
    `not a valid PROXY protocol header: ${description}`,
    "Connections from a trusted balancer (proxyProtocol.trusted) must begin with a PROXY header: set `send-proxy-v2` on HAProxy's server lines, or remove the balancer's address from the list.",
  );
}

/** Whether `bytes` could still become `prefix` (they agree on the bytes both have). */
function agreesWith(bytes: Buffer, prefix: Buffer): boolean {
  const n = Math.min(bytes.length, prefix.length);
  return bytes.subarray(0, n).equals(prefix.subarray(0, n));
}

/**
 * Reads a PROXY header (v1 or v2) at the start of `bytes`.
 *
 * @returns the header with its length in bytes, or {@link INCOMPLETE} when `bytes` is a valid
 *   beginning that needs more.
 * @throws GatehouseError `invalid_request` when the bytes cannot begin a header, or it is
 *   malformed or larger than {@link PROXY_HEADER_MAX_BYTES} (v2) / 107 bytes (v1) — as soon as
 *   that is known, without waiting for more.
 */
export function parseProxyHeader(bytes: Buffer): ProxyHeader | typeof INCOMPLETE {
  if (bytes.length === 0) return INCOMPLETE;
  if (agreesWith(bytes, V2_SIGNATURE)) return parseV2(bytes);
  if (agreesWith(bytes, V1_PREFIX)) return parseV1(bytes);
  throw refuse("the connection does not begin with one");
}

function parseV1(bytes: Buffer): ProxyHeader | typeof INCOMPLETE {
  const end = bytes.subarray(0, V1_MAX_BYTES).indexOf("\r\n", 0, "latin1");
  if (end < 0) {
    if (bytes.length >= V1_MAX_BYTES) throw refuse("a version 1 line is longer than 107 bytes");
    return INCOMPLETE;
  }
  const fields = bytes.subarray(0, end).toString("latin1").split(" ");
  const length = end + 2;
  // "PROXY UNKNOWN" may carry anything after it up to the CRLF (spec §2.1): the real address stands.
  if (fields[1] === "UNKNOWN") return { version: 1, length };
  if (fields.length !== 6) throw refuse("a version 1 line has six fields");
  const [, family, src, dst, srcPort, dstPort] = fields as [string, string, string, string, string, string];
  const isFamily = family === "TCP4" ? isIPv4 : family === "TCP6" ? isIPv6 : undefined;
  if (!isFamily) throw refuse(`unknown protocol family ${JSON.stringify(family.slice(0, 16))}`);
  if (!isFamily(src) || !isFamily(dst)) throw refuse(`an address is not ${family}`);
  return {
    version: 1,
    source: { address: src, port: v1Port(srcPort) },
    destination: { address: dst, port: v1Port(dstPort) },
    length,
  };
}

/** A port in a v1 line: decimal, 0–65535, no leading zero (spec §2.1). */
function v1Port(text: string): number {
  if (!/^(0|[1-9]\d{0,4})$/.test(text) || Number(text) > 65535) throw refuse("a port is not 0–65535");
  return Number(text);
}

function parseV2(bytes: Buffer): ProxyHeader | typeof INCOMPLETE {
  if (bytes.length < V2_FIXED_BYTES) {
    // Refuse a wrong version/command byte as soon as it arrives.
    if (bytes.length > 12) versionAndCommand(bytes[12]!);
    return INCOMPLETE;
  }
  const command = versionAndCommand(bytes[12]!);
  const familyAndTransport = bytes[13]!;
  const length = V2_FIXED_BYTES + bytes.readUInt16BE(14);
  if (length > PROXY_HEADER_MAX_BYTES) {
    throw refuse(`a version 2 header of ${length} bytes is larger than ${PROXY_HEADER_MAX_BYTES}`);
  }
  const addressSize = ADDRESS_SIZES.get(familyAndTransport);
  if (addressSize === undefined) {
    throw refuse(`unknown address family/transport 0x${familyAndTransport.toString(16).padStart(2, "0")}`);
  }
  if (length - V2_FIXED_BYTES < addressSize) throw refuse("the address block is shorter than its family's");
  if (bytes.length < length) return INCOMPLETE;
  // LOCAL (the balancer's own connection) and AF_UNSPEC/AF_UNIX: the connection's address stands.
  // Whatever follows the addresses are TLVs (spec §2.2.7): none is needed here, so all are skipped.
  if (command === "local" || familyAndTransport >> 4 === 0 || familyAndTransport >> 4 === 3) {
    return { version: 2, length };
  }
  const block = bytes.subarray(V2_FIXED_BYTES, V2_FIXED_BYTES + addressSize);
  const ipv4 = familyAndTransport >> 4 === 1;
  const half = ipv4 ? 4 : 16;
  const format = ipv4 ? formatIPv4 : formatIPv6;
  return {
    version: 2,
    source: { address: format(block.subarray(0, half)), port: block.readUInt16BE(2 * half) },
    destination: { address: format(block.subarray(half, 2 * half)), port: block.readUInt16BE(2 * half + 2) },
    length,
  };
}

/** The 13th byte: version 2 in the high nibble, LOCAL (0) or PROXY (1) in the low (spec §2.2). */
function versionAndCommand(byte: number): "local" | "proxy" {
  if (byte === 0x20) return "local";
  if (byte === 0x21) return "proxy";
  throw refuse(`unknown version/command byte 0x${byte.toString(16).padStart(2, "0")}`);
}

/** Address block sizes by the 14th byte (spec §2.2): the only values a receiver may accept. */
const ADDRESS_SIZES = new Map<number, number>([
  [0x00, 0], // AF_UNSPEC
  [0x11, 12], // TCP over IPv4
  [0x12, 12], // UDP over IPv4
  [0x21, 36], // TCP over IPv6
  [0x22, 36], // UDP over IPv6
  [0x31, 216], // AF_UNIX stream
  [0x32, 216], // AF_UNIX datagram
]);

function formatIPv4(bytes: Buffer): string {
  return Array.from(bytes).join(".");
}

/** RFC 5952 text (lowercase, the longest run of two or more zero groups as `::`), as Node writes it. */
function formatIPv6(bytes: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  if (groups.slice(0, 6).join() === "0,0,0,0,0,65535") {
    return `::ffff:${formatIPv4(bytes.subarray(12))}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}
