/**
 * The PROXY protocol on the gateway's listener (config `proxyProtocol.trusted`): a connection from
 * a trusted balancer must begin with a PROXY header (v1 or v2), read here before TLS; its source
 * address becomes the caller's address (caller-address.ts) and the bytes after it reach the TLS
 * server untouched, so mutual TLS still ends at the gateway. A connection from anyone else is
 * handed over as it is: a header from an untrusted peer is never believed (to TLS it is garbage).
 * This is how HAProxy's `send-proxy-v2` works: the server must not accept a trusted peer's
 * connection without a header, or a client could reach it through another path and be taken for
 * the balancer.
 */
import { BlockList, isIPv4, isIPv6, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import { GatehouseError, type ErrorCode } from "../protocol/errors.js";
import { noteProxiedAddress } from "./caller-address.js";
import { INCOMPLETE, parseProxyHeader, type ProxyHeader } from "./proxy-header.js";

export interface ProxyProtocolOptions {
  /** Addresses or CIDRs (`10.0.0.0/8`, `fd00::/8`) of the balancers whose headers are believed. */
  trusted: readonly string[];
  /** How long a trusted connection may take to send its whole header, in ms; then it is closed. */
  headerTimeoutMs: number;
  /** Counts a refused connection by catalogue code (the metrics' `refused`). */
  refused: (code: ErrorCode) => void;
  logger: Pick<Logger, "warn">;
}

/**
 * The trusted list as a matcher. IPv4 rules also match IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`,
 * as a dual-stack listener reports them).
 * @throws Error naming an entry that is neither an address nor a CIDR (the config schema checks first).
 */
export function trustedPeers(trusted: readonly string[]): (address: string | undefined) => boolean {
  const list = new BlockList();
  for (const entry of trusted) {
    const [address = "", prefix] = entry.split("/");
    const type = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
    if (!type) throw new Error(`${entry} is not an address or CIDR`);
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return (address) => {
    if (!address) return false;
    return list.check(address, isIPv4(address) ? "ipv4" : "ipv6");
  };
}

/**
 * Puts PROXY header reading in front of `server`'s own connection handling (for a TLS server:
 * the handshake). Call once, before the server listens. Connections the server already took are
 * not affected.
 */
export function acceptProxyProtocol(server: Server, options: ProxyProtocolOptions): void {
  const isTrusted = trustedPeers(options.trusted);
  // The server's own listeners (Node's TLS server: the one that starts the handshake), now run
  // only once a trusted connection's header is read.
  const handlers = server.listeners("connection") as ((socket: Socket) => void)[];
  server.removeAllListeners("connection");
  const handOver = (socket: Socket): void => {
    for (const handler of handlers) handler.call(server, socket);
  };
  server.on("connection", (socket: Socket) => {
    if (!isTrusted(socket.remoteAddress)) return handOver(socket);
    readProxyHeader(socket, options.headerTimeoutMs).then(
      (header) => {
        if (header.source) noteProxiedAddress(socket, header.source.address);
        handOver(socket);
      },
      (error: unknown) => {
        if (error instanceof GatehouseError) {
          options.refused(error.code);
          options.logger.warn(
            { address: socket.remoteAddress, code: error.code, reason: error.message },
            "refused",
          );
        }
        socket.destroy();
      },
    );
  });
}

/** The peer closed before sending a byte (a balancer's plain TCP check): closed, not a refusal. */
class ClosedBeforeHeader extends Error {}

/**
 * Reads a PROXY header from the start of `socket` (paused mode), puts back whatever followed it
 * and leaves the socket paused, as the server found it.
 * @throws GatehouseError `invalid_request` for a malformed, oversized, truncated or slow header;
 *   ClosedBeforeHeader when the peer left without sending anything.
 */
function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    const finish = (): void => {
      clearTimeout(timer);
      socket.off("readable", onReadable);
      socket.off("end", onEnd);
      socket.off("error", onError);
    };
    const fail = (error: Error): void => {
      finish();
      reject(error);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        received = received.length ? Buffer.concat([received, chunk]) : chunk;
        let header: ProxyHeader | typeof INCOMPLETE;
        try {
          header = parseProxyHeader(received);
        } catch (error) {
          return fail(error as Error);
        }
        if (header === INCOMPLETE) continue;
        finish();
        // The client's first bytes (its ClientHello) go back for the TLS socket to read.
        if (received.length > header.length) socket.unshift(received.subarray(header.length));
        return resolve(header);
      }
    };
    const onEnd = (): void =>
      fail(
        received.length === 0
          ? new ClosedBeforeHeader()
          : new GatehouseError(
              "invalid_request",
              "not a valid PROXY protocol header: the connection ended inside it",
            ),
      );
    const onError = (error: Error): void => fail(error);
    // eslint-disable-next-line no-restricted-syntax -- tls.handshakeTimeout, at most 10 minutes (config schema)
    const timer = setTimeout(
      () =>
        fail(
          new GatehouseError(
            "invalid_request",
            `not a valid PROXY protocol header: it did not arrive within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    timer.unref();
    socket.on("readable", onReadable);
    socket.on("end", onEnd);
    socket.on("error", onError);
  });
}
