/**
 * The answers Node's HTTP and TLS layers, and the WebSocket library, would otherwise give on their
 * own, before any route runs: malformed HTTP, oversized headers, slow requests, TLS failures,
 * handshake timeouts, `Expect`, `CONNECT`, a request without `Host`, a malformed WebSocket upgrade.
 * Each one gets the catalogue's body or, when nothing can be said (no TLS session yet), none; and
 * every connection the gateway gives up on is destroyed, whatever state it is in, so no socket is
 * left holding a file descriptor (a socket whose TLS handshake never started is not freed by
 * `end()`: it stays in CLOSE-WAIT for the life of the process once the peer leaves).
 */
import { rawHeaderValues } from "./raw-headers.js";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { GatehouseError } from "../protocol/errors.js";
import type { GatewayMetrics } from "./metrics.js";

/** Where the refusals answered here are counted, by catalogue code. */
type RefusalCounter = Pick<GatewayMetrics, "refused">;

/**
 * How long an answered connection may go on sending before it is destroyed. Reading (and
 * discarding) what still arrives lets the answer reach the client: closing a socket with unread
 * input makes the kernel send a reset that can overtake the answer (RFC 9112 §9.6, "tear-down").
 */
const LINGER_MS = 2000;

/** Connections already answered or destroyed: Node reports each later parse error again. */
const givenUp = new WeakSet<Duplex>();

/**
 * A whole HTTP/1.1 response carrying a catalogue body and the code's catalogue status, for
 * sockets no fastify reply owns.
 */
export function rawAnswer(error: GatehouseError): string {
  const { status } = error;
  const body = JSON.stringify(error.toBody());
  return (
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
    `content-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
};

/** Destroys a connection at once: for sockets to which nothing can or need be said. */
export function destroyConnection(socket: Duplex): void {
  givenUp.add(socket);
  socket.destroy();
}

/**
 * Writes `answer`, ends the connection, and destroys it once the client has read it and closed,
 * or after {@link LINGER_MS} at most, whichever comes first.
 */
export function closeWithAnswer(socket: Duplex, answer: string): void {
  if (givenUp.has(socket)) return;
  givenUp.add(socket);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
  socket.on("error", () => socket.destroy());
  socket.on("end", () => socket.destroy());
  socket.resume();
  socket.end(answer);
}

/** Whether an answer to an earlier request on this connection has begun (then no raw bytes fit). */
function answerInFlight(socket: Duplex): boolean {
  return (socket as { _httpMessage?: ServerResponse })._httpMessage?.headersSent === true;
}

/** What to say to a client whose HTTP request Node's parser refused; undefined: say nothing. */
function answerForClientError(code: string | undefined): GatehouseError | undefined {
  if (code === "HPE_HEADER_OVERFLOW") {
    // 431 (RFC 6585 §5): it is the headers, not the body, that are too large.
    return new GatehouseError("headers_too_large", "the request headers are larger than 16 KiB");
  }
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") {
    return new GatehouseError("invalid_request", "the request did not arrive in time");
  }
  if (code?.startsWith("HPE_")) {
    return new GatehouseError("invalid_request", "the request is not valid HTTP");
  }
  // TLS failures, handshake timeouts, resets: there is no HTTP session to answer in.
  return undefined;
}

/**
 * fastify's `clientErrorHandler`: the https server routes its `tlsClientError`s (a handshake
 * timeout, bytes that are not TLS, a failed handshake) here as well as the HTTP parser's errors.
 * The first get a destroyed socket, the second a catalogue answer and then a destroyed socket.
 */
export function onClientError(error: Error, socket: Duplex, metrics: RefusalCounter): void {
  if (givenUp.has(socket)) return;
  const answer = answerForClientError((error as NodeJS.ErrnoException).code);
  if (answer === undefined) return destroyConnection(socket);
  // A refused request counts whether or not its answer can still be written.
  metrics.refused(answer.code);
  if (!socket.writable || answerInFlight(socket)) return destroyConnection(socket);
  closeWithAnswer(socket, rawAnswer(answer));
}

/**
 * Takes over the answers that Node and the WebSocket library give by themselves once a request is
 * parsed: an `Expect` other than 100-continue (417), `CONNECT` (a bare close), a malformed upgrade
 * (a text/html 400), an upgrade to a route that is not a WebSocket, and HTTP/1.1 without `Host`
 * (an empty 400; the server must be built with `requireHostHeader: false` for this hook to see it).
 * Call after @fastify/websocket is registered and before any route is.
 */
export function installHttpEdges(app: FastifyInstance, metrics: RefusalCounter): void {
  app.server.on("checkExpectation", (_request: IncomingMessage, response: ServerResponse) => {
    const error = new GatehouseError("invalid_request", "only `Expect: 100-continue` is supported");
    metrics.refused(error.code);
    const body = JSON.stringify(error.toBody());
    response.writeHead(error.status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      connection: "close",
    });
    response.end(body);
  });
  app.server.on("connect", (_request: IncomingMessage, socket: Duplex) => {
    metrics.refused("invalid_request");
    closeWithAnswer(
      socket,
      rawAnswer(new GatehouseError("invalid_request", "CONNECT is not supported here")),
    );
  });
  app.websocketServer.on("wsClientError", (error: Error, socket: Duplex) => {
    metrics.refused("invalid_request");
    closeWithAnswer(
      socket,
      rawAnswer(new GatehouseError("invalid_request", `not a valid WebSocket upgrade: ${error.message}`)),
    );
  });

  const websocketRoutes = new Set<string>();
  app.addHook("onRoute", (route) => {
    if (route.websocket) websocketRoutes.add(route.url);
  });
  app.addHook("onRequest", async (request: FastifyRequest) => {
    if (request.raw.httpVersion === "1.1" && request.headers.host === undefined) {
      throw new GatehouseError("invalid_request", "an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)");
    }
    // Node keeps the first of several Host headers; RFC 9112 §3.2 says to refuse the request.
    if (rawHeaderValues(request.raw.rawHeaders, "host").length > 1) {
      throw new GatehouseError(
        "invalid_request",
        "the request has more than one Host header (RFC 9112 §3.2)",
      );
    }
    if (!request.ws || request.is404) return;
    if (request.headers.upgrade?.toLowerCase() !== "websocket") {
      throw new GatehouseError("invalid_request", "the only upgrade this gateway speaks is `websocket`");
    }
    if (!websocketRoutes.has(request.routeOptions.url ?? "")) {
      throw new GatehouseError(
        "invalid_request",
        `${request.routeOptions.url} does not take a WebSocket upgrade`,
      );
    }
  });
}
