import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { NODE_FILES, writeJsonAtomic, type NodeConfig } from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import type { EnrollStatusResponse } from "../protocol/messages.js";
import { requestJson, type TlsClientOptions } from "../client/https-json.js";

/**
 * `registration.json` in a node home: the request `node register` sent, and how it ended when it
 * ended without a certificate (denied, expired), so that a home without `device.pem` can say why
 * even when the gateway cannot be asked.
 */
export interface RegistrationFile {
  requestId: string;
  userCode: string;
  /** When the request expires unless approved (ISO-8601). */
  expiresAt: string;
  /** Set when the registration ended without a certificate. */
  outcome?: "denied" | "expired";
  /** The admin's reason for a denial. */
  reason?: string;
}

/** The home's registration file, or undefined when there is none (or it is unreadable). */
export function readRegistrationFile(home: string): RegistrationFile | undefined {
  const file = path.join(home, NODE_FILES.registration);
  if (!existsSync(file)) return undefined;
  try {
    const value = JSON.parse(readFileSync(file, "utf8")) as Partial<RegistrationFile>;
    return typeof value.requestId === "string" && typeof value.userCode === "string"
      ? (value as RegistrationFile)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Records the start of a registration (a new request replaces any earlier outcome). */
export function writeRegistrationFile(home: string, registration: RegistrationFile): void {
  writeJsonAtomic(path.join(home, NODE_FILES.registration), registration);
}

/** Records how the registration ended without a certificate (see RegistrationFile.outcome). */
export function recordRegistrationOutcome(
  home: string,
  outcome: "denied" | "expired",
  reason?: string,
): void {
  const current = readRegistrationFile(home);
  if (!current) return;
  writeRegistrationFile(home, { ...current, outcome, ...(reason ? { reason } : {}) });
}

/** The device.pem a certificate-less home lacks, named as `config_missing`. */
function noCertificate(
  home: string,
  hint = "Register this node: `gatehouse node register`.",
): GatehouseError {
  return new GatehouseError(
    "config_missing",
    `${path.join(home, NODE_FILES.deviceCert)} does not exist`,
    hint,
  );
}

function denied(deviceId: string, reason: string | undefined): GatehouseError {
  return new GatehouseError(
    "device_denied",
    `the registration of ${deviceId} was denied${reason ? `: ${reason}` : ""}`,
  );
}

function pending(deviceId: string, userCode: string, note = ""): GatehouseError {
  return new GatehouseError(
    "device_pending",
    `device ${deviceId} is waiting for approval (user code ${userCode})${note}`,
    `Ask an admin to run \`gatehouse devices approve ${userCode}\`.`,
  );
}

function expired(deviceId: string, expiresAt: string): GatehouseError {
  return new GatehouseError(
    "registration_expired",
    `the registration of ${deviceId} expired at ${expiresAt}`,
  );
}

/**
 * A home without a certificate: the gateway's answer on the registration says why (GET
 * /api/v1/enroll/:requestId). Always throws: `device_pending` (with the user code),
 * `device_denied` (with the admin's reason), `registration_expired`, or `config_missing` when there
 * is no registration or it was approved but the certificate never written. Network failures
 * propagate as requestJson names them.
 */
export async function explainMissingCertificate(
  origin: string,
  tls: TlsClientOptions,
  registration: { requestId: string; userCode: string } | undefined,
  home: string,
  timeoutMs: number,
): Promise<never> {
  if (!registration) throw noCertificate(home);
  const { body } = await requestJson<EnrollStatusResponse>(
    `${origin}/api/v1/enroll/${registration.requestId}`,
    {
      tls,
      timeoutMs,
    },
  );
  switch (body.status) {
    case "pending":
      throw pending(body.deviceId, registration.userCode);
    case "denied":
      throw denied(body.deviceId, body.reason);
    case "expired":
      throw expired(body.deviceId, body.expiresAt);
    default:
      throw new GatehouseError(
        "config_missing",
        `the device was approved but ${path.join(home, NODE_FILES.deviceCert)} was never written`,
        "Run `gatehouse node register` again to fetch the certificate.",
      );
  }
}

/**
 * Why `node start` cannot run on a home without device.pem (and without an API key): the same
 * verdict as `node test-connection`'s device layer. A denial the home recorded is final for its key
 * and needs no gateway; otherwise the gateway is asked, and when it cannot be reached the home's
 * own record of the request answers (pending until its expiry). Always throws.
 */
export async function refuseStartWithoutCertificate(home: string, config: NodeConfig): Promise<never> {
  const registration = readRegistrationFile(home);
  const caFile = path.join(home, NODE_FILES.caCert);
  const deviceId = config.deviceId ?? "this device";
  if (!registration || !existsSync(caFile))
    throw noCertificate(
      home,
      "Register this node first: `gatehouse node register --gateway URL --ca-fingerprint sha256:...` (or set apiKey in node.json to a reference to an API key of role node).",
    );
  if (registration.outcome === "denied") throw denied(deviceId, registration.reason);
  try {
    await explainMissingCertificate(
      config.gatewayUrl,
      { ca: readFileSync(caFile, "utf8") },
      registration,
      home,
      5000,
    );
  } catch (error) {
    if (!(error instanceof GatehouseError)) throw error;
    if (
      error.code.startsWith("device_") ||
      error.code === "registration_expired" ||
      error.code === "config_missing"
    )
      throw error;
    if (error.code === "not_found")
      throw noCertificate(
        home,
        "The gateway does not know this node's registration request (was it set up anew?): run `gatehouse node register` again.",
      );
    // The gateway could not be asked: what the home knows of its request.
    const unreachable = ` (the gateway could not be asked: ${error.code})`;
    if (registration.outcome === "expired" || registration.expiresAt <= new Date().toISOString())
      throw expired(deviceId, registration.expiresAt);
    throw pending(deviceId, registration.userCode, unreachable);
  }
  throw noCertificate(home);
}
