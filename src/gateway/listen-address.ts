import { existsSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { GATEWAY_FILES, writeFileAtomic } from "../config/index.js";
import { isProcessAlive } from "../config/processes.js";
import { dialUrlForListen } from "../config/listen-url.js";
import { GatehouseError } from "../protocol/errors.js";

/** The running gateway's process id, beside its gateway.json; removed at a clean stop. */
const PID_FILE = "gateway.pid";
const PREVIOUS_CA_CERT = "pki/ca-previous.pem";

export interface ListenAddress {
  /** As configured, e.g. "0.0.0.0:18789" or "[::1]:18789". */
  listen: string;
  /** Without brackets, e.g. "::1". */
  host: string;
  port: number;
}

/**
 * Whether the address is free, checked by binding it for a moment — before the start writes
 * anything (closes stale sessions, renews certificates), so a start that cannot serve changes no
 * state. Port 0 (any free port) is always free.
 * @throws GatehouseError `address_in_use` (see addressInUse), or `config_invalid` when the address
 *   is not this machine's or the port is privileged.
 */
export async function checkAddressFree(
  home: string,
  gatewayId: string,
  address: ListenAddress,
): Promise<void> {
  if (address.port === 0) return;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen({ host: address.host, port: address.port, exclusive: true }, resolve);
    });
  } catch (error) {
    throw await listenFailure(error, home, gatewayId, address);
  } finally {
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

/**
 * The named error for a failed listen: EADDRINUSE is `address_in_use` (saying so when this home's
 * own gateway holds the address), EADDRNOTAVAIL, EACCES and a host that does not resolve
 * (ENOTFOUND, EAI_AGAIN, EAI_FAIL) are `config_invalid` naming `listen`;
 * anything else is returned as it is.
 */
export async function listenFailure(
  error: unknown,
  home: string,
  gatewayId: string,
  address: ListenAddress,
): Promise<unknown> {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === "EADDRINUSE") return addressInUse(home, gatewayId, address);
  if (code === "EADDRNOTAVAIL")
    return new GatehouseError(
      "config_invalid",
      `listen ${address.listen}: ${address.host} is not an address of this machine`,
      "Use an address this machine has (`ip -brief address`), 0.0.0.0 for all of them, or 127.0.0.1.",
    );
  if (code === "EACCES")
    return new GatehouseError(
      "config_invalid",
      `listen ${address.listen}: ports below 1024 need privileges this process lacks`,
      "Use a port of 1024 or above (the default is 18789).",
    );
  // A listen host is looked up before the bind: a name that does not resolve is the setting's fault.
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_FAIL")
    return new GatehouseError(
      "config_invalid",
      `listen ${address.listen}: ${address.host} does not resolve to an address of this machine (${code})`,
      "Listen on an address (127.0.0.1, 0.0.0.0 for every interface, or one of `ip -brief address`), or a name that resolves to one.",
    );
  return error;
}

async function addressInUse(
  home: string,
  gatewayId: string,
  address: ListenAddress,
): Promise<GatehouseError> {
  const holder = await ownGatewayAnswers(home, gatewayId, address);
  if (holder) {
    const pid = livePid(home);
    return new GatehouseError(
      "address_in_use",
      `${address.listen} is already in use: this home's gateway ${gatewayId} is running there${pid ? ` (pid ${pid})` : ""}`,
      pid
        ? `It is already serving; to restart it, stop it first (\`kill ${pid}\`, or Ctrl-C where it runs).`
        : "It is already serving; to restart it, stop it first (Ctrl-C where it runs).",
    );
  }
  return new GatehouseError(
    "address_in_use",
    `${address.listen} is already in use by another program`,
    `Find it with \`ss -ltnp 'sport = :${address.port}'\` and stop it, or choose another address with --listen or \`listen\` in gateway.json.`,
  );
}

/**
 * Whether the gateway of this home answers on the address: GET /health over TLS trusting only
 * the home's CAs, and the same gateway id. Anything else (no answer, another service, another
 * gateway) is false. At most two seconds.
 */
async function ownGatewayAnswers(home: string, gatewayId: string, address: ListenAddress): Promise<boolean> {
  const ca = [GATEWAY_FILES.caCert, PREVIOUS_CA_CERT]
    .map((name) => path.join(home, name))
    .filter((file) => existsSync(file))
    .map((file) => readFileSync(file, "utf8"));
  if (!ca.length) return false;
  // Where a client on this machine dials that listen address (a wildcard as loopback).
  const host = new URL(dialUrlForListen(address.listen)).hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve) => {
    const request = https.get(
      {
        host,
        port: address.port,
        path: "/health",
        ca,
        // The name does not matter here: the CA and the gateway id say whose gateway it is.
        checkServerIdentity: () => undefined,
        timeout: 2000,
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          if (body.length < 4096) body += chunk;
        });
        response.on("end", () => {
          try {
            resolve((JSON.parse(body) as { gatewayId?: unknown }).gatewayId === gatewayId);
          } catch {
            resolve(false);
          }
        });
      },
    );
    request.on("error", () => resolve(false));
    request.on("timeout", () => request.destroy());
  });
}

/** The pid of the home's running gateway (its pid file, when that process is alive), else undefined. */
export function livePid(home: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(home, PID_FILE), "utf8").trim());
    return isProcessAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Records this process as the home's running gateway (after it listens). */
export function writePidFile(home: string): void {
  // No fsync: a pid file means nothing after a power loss, and an fsync here held up the first
  // handshakes after a restart (hundreds of ms on a busy disk).
  writeFileAtomic(path.join(home, PID_FILE), `${process.pid}\n`, 0o644, { fsync: false });
}

/** Removes the pid file at a clean stop, if it is still this process's. */
export function removePidFile(home: string): void {
  const file = path.join(home, PID_FILE);
  try {
    if (readFileSync(file, "utf8").trim() === String(process.pid)) rmSync(file, { force: true });
  } catch {
    // Already gone.
  }
}
