/**
 * The caller's address: the one place the gateway reads where a connection comes from. Alone it
 * is the socket's peer; behind a trusted balancer speaking the PROXY protocol (proxy-listener.ts)
 * it is the source address the balancer's header gave. Rate limits, refusal records, the metrics'
 * loopback exemption, audit entries and session rows all read it here.
 */
import type { Socket } from "node:net";
import type { FastifyRequest } from "fastify";

interface Proxied {
  socket: Socket;
  address: string;
}

/**
 * Proxied connections by their TCP four-tuple. A TLS socket wraps the raw socket's handle, so both
 * report the same tuple (the balancer's address and port, ours), and the tuple is unique among the
 * process's open connections: no private field of Node's TLS socket is needed to find the header.
 */
const proxied = new Map<string, Proxied>();

function tupleOf(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}|${socket.localAddress}|${socket.localPort}`;
}

/**
 * Records the address a PROXY header gave for the raw connection `socket`, until it closes.
 * Called before the connection is handed to the TLS server.
 */
export function noteProxiedAddress(socket: Socket, address: string): void {
  const tuple = tupleOf(socket);
  const entry = { socket, address };
  proxied.set(tuple, entry);
  socket.once("close", () => {
    // A new connection may already hold the same tuple: remove only this one's entry.
    if (proxied.get(tuple) === entry) proxied.delete(tuple);
  });
}

/** The address of whoever is at the other end of `socket` (raw or TLS); "" once it is gone. */
export function socketCallerAddress(socket: Socket): string {
  if (proxied.size > 0) {
    const entry = proxied.get(tupleOf(socket));
    if (entry) return entry.address;
  }
  return socket.remoteAddress ?? "";
}

/** The address of the client that sent `request`: see the module comment. */
export function callerAddress(request: FastifyRequest): string {
  return socketCallerAddress(request.raw.socket);
}
