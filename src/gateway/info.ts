import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { GATEWAY_FILES, loadGatewayConfig } from "../config/index.js";
import { isLoopbackName, namesInCertificate, sha256Fingerprint } from "../pki/index.js";
import { registerCommandFor } from "./home.js";
import { dialUrlForListen } from "../config/listen-url.js";

/** Files of a CA rotation in progress (written by tls-state.ts). */
const PREVIOUS_CA_CERT = "pki/ca-previous.pem";
const ROTATION_FILE = "pki/ca-rotation.json";

/** What `gatehouse gateway info` shows, and `gateway start` repeats at each start. */
export interface GatewayInfo {
  home: string;
  gatewayId: string;
  name: string;
  /** The address it listens on, as this run would (gateway.json, or --listen). */
  listen: string;
  /** The URL a client on this machine uses. */
  url: string;
  /** The active CA: the one that signs new certificates. */
  caFingerprint: string;
  /** During a CA rotation: the previous CA, trusted until `previousCaRetiresAt`. */
  previousCaFingerprint?: string;
  previousCaRetiresAt?: string;
  /** The CA a new node pins: the one that signed the server certificate in use. */
  registerFingerprint: string;
  /** The names the server certificate covers (DNS names and addresses). */
  serverNames: string[];
  registerCommand: string;
}

/**
 * Reads a gateway home without starting it (and without its keys): ids, CAs, names and the
 * `node register` line.
 * @throws GatehouseError `config_missing` / `config_invalid` when gateway.json is absent or wrong.
 */
export function describeGatewayHome(home: string, flags: Record<string, unknown> = {}): GatewayInfo {
  const { config } = loadGatewayConfig(home, flags);
  const file = (name: string) => path.join(home, name);
  const ca = new X509Certificate(readFileSync(file(GATEWAY_FILES.caCert)));
  const previous = existsSync(file(PREVIOUS_CA_CERT))
    ? new X509Certificate(readFileSync(file(PREVIOUS_CA_CERT)))
    : undefined;
  const serverPem = readFileSync(file(GATEWAY_FILES.serverCert), "utf8");
  const server = new X509Certificate(serverPem);
  const signer =
    previous && server.checkIssued(previous) && server.verify(previous.publicKey) ? previous : ca;
  const fingerprint = (cert: X509Certificate) => sha256Fingerprint(new Uint8Array(cert.raw));
  const retireAt =
    previous && existsSync(file(ROTATION_FILE)) ? readRetireAt(file(ROTATION_FILE)) : undefined;
  return {
    home,
    gatewayId: config.gatewayId,
    name: config.name,
    listen: config.listen,
    url: dialUrlForListen(config.listen),
    caFingerprint: fingerprint(ca),
    ...(previous ? { previousCaFingerprint: fingerprint(previous) } : {}),
    ...(retireAt ? { previousCaRetiresAt: retireAt } : {}),
    registerFingerprint: fingerprint(signer),
    serverNames: namesInCertificate(serverPem),
    registerCommand: registerCommandFor(config.listen, config.sans, fingerprint(signer)),
  };
}

function readRetireAt(file: string): string | undefined {
  try {
    const retireAt = (JSON.parse(readFileSync(file, "utf8")) as { retireAt?: unknown }).retireAt;
    return typeof retireAt === "string" ? retireAt : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a listen host accepts connections from other machines (a wildcard or another address). */
function listensBeyondLoopback(listen: string): boolean {
  const host = /^(.*):\d+$/.exec(listen)?.[1] ?? "";
  return !isLoopbackName(host || "localhost");
}

/**
 * The warning for a gateway that listens beyond loopback while its server certificate names only
 * this machine: a node elsewhere would reach it and fail the name check (ERR_TLS_CERT_ALTNAME_INVALID).
 * Undefined when there is nothing to warn about.
 */
export function unreachableNamesWarning(listen: string, serverNames: string[]): string | undefined {
  if (!listensBeyondLoopback(listen) || !serverNames.every(isLoopbackName)) return undefined;
  return (
    `the gateway listens on ${listen}, but its server certificate names only this machine ` +
    `(${serverNames.join(", ")}): nodes on other machines cannot verify it. ` +
    "Add the name or address they use: `gatehouse gateway add-name HOST`, then restart the gateway."
  );
}
