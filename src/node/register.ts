import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  NODE_FILES,
  ensurePrivateDir,
  writeFileAtomic,
  writeJsonAtomic,
  type NodeConfigInput,
} from "../config/index.js";
import {
  createCsr,
  exportPrivateKeyPem,
  generateKeyPair,
  importKeyPairPem,
  identityOfSpki,
  normaliseFingerprint,
  spkiOf,
  x509,
} from "../pki/index.js";
import { GatehouseError, type ErrorCode } from "../protocol/errors.js";
import { normaliseName } from "../protocol/device-name.js";
import type { EnrollResponse, EnrollStatusResponse } from "../protocol/messages.js";
import { fetchGatewayTrust } from "../client/ca-pin.js";
import { requestJson } from "../client/https-json.js";
import { recordRegistrationOutcome, writeRegistrationFile } from "./registration-state.js";
import { UNREACHABLE_GATEWAY } from "./gateway-order.js";

/** Failures worth waiting out while polling for approval. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set([
  "unavailable",
  "connection_refused",
  "connection_timeout",
  "connection_failed",
  "dns_failed",
  "rate_limited",
  "internal_error",
]);

export interface RegisterOptions {
  /** The gateway, or several instances of it in the order the agent will try them. */
  gatewayUrl: string | readonly string[];
  caFingerprint: string;
  name?: string;
  /** Make a new device key even if the home has one (a revoked or denied device starts over). */
  newKey?: boolean;
  /** An enroll token: the gateway approves the device at once. */
  enrollToken?: string;
  /** Called on each state change: the CLI prints these, or spins. */
  onProgress?: (event: RegisterProgress) => void;
  signal?: AbortSignal;
}

export type RegisterProgress =
  | { state: "pinned"; caFingerprint: string }
  | { state: "submitted"; response: EnrollResponse }
  | { state: "waiting"; expiresAt: string }
  | { state: "retrying"; error: GatehouseError };

export interface RegisterResult {
  deviceId: string;
  /** The device's name on the gateway (with an enroll token's prefix), as node.json now holds it. */
  name: string;
  userCode: string;
  keyFingerprint: string;
  status: "approved";
  certExpiresAt: string;
  /** The URL the registration went through (the first that could be reached). */
  gatewayUrl: string;
  /** Every URL node.json now lists, when more than one was given. */
  gatewayUrls?: string[];
  home: string;
}

function validateUrl(input: string): string {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new GatehouseError(
      "invalid_request",
      `--gateway ${JSON.stringify(input)} is not a URL`,
      "Use https://HOST:PORT.",
    );
  }
  if (url.protocol !== "https:") {
    throw new GatehouseError(
      "invalid_request",
      `--gateway must be an https:// URL, not ${url.protocol}//`,
      "Use https://HOST:PORT.",
    );
  }
  return url.origin;
}

/**
 * The device key: the home's own on a second register, otherwise a new one, made here and never
 * sent anywhere. A new key is only held in memory: `save` writes it once the gateway has accepted
 * the request it signs, so a refused registration leaves no key (and keeps the old one with
 * --new-key).
 */
async function loadOrCreateDeviceKey(
  home: string,
  fresh: boolean,
): Promise<{ keys: CryptoKeyPair; save: () => Promise<void> }> {
  const file = path.join(home, NODE_FILES.deviceKey);
  if (existsSync(file) && !fresh)
    return { keys: await importKeyPairPem(readFileSync(file, "utf8")), save: async () => {} };
  const keys = await generateKeyPair();
  return {
    keys,
    save: async () => writeFileAtomic(file, await exportPrivateKeyPem(keys.privateKey), 0o600),
  };
}

/**
 * The CA by its pin from the first of `urls` that can be reached (instances of one gateway). A URL
 * that answers with another CA, or not as a gateway, is named at once: it would go into node.json.
 * @returns the pinned trust and the URL (its index in `urls`) that served it
 */
async function pinFirstReachable(
  urls: readonly string[],
  pin: string,
): Promise<{ pinned: Awaited<ReturnType<typeof fetchGatewayTrust>>; index: number }> {
  let failure: unknown;
  for (const [index, url] of urls.entries()) {
    try {
      return { pinned: await fetchGatewayTrust(url, pin), index };
    } catch (error) {
      if (!(error instanceof GatehouseError) || !UNREACHABLE_GATEWAY.has(error.code)) throw error;
      failure = error;
    }
  }
  throw failure;
}

/**
 * `node register`: makes (or reuses) the device key, sends a CSR through the first reachable
 * gateway URL, waits for approval and writes the home (node.json lists every URL given, in order).
 * @throws GatehouseError `invalid_request` for a URL or fingerprint that is malformed, the pin check's
 *   `ca_mismatch`/`not_a_gateway`, a refused request, `device_denied`, `registration_expired`.
 */
export async function registerNode(home: string, options: RegisterOptions): Promise<RegisterResult> {
  const given = typeof options.gatewayUrl === "string" ? [options.gatewayUrl] : options.gatewayUrl;
  // One entry per origin, in the order given: node.json refuses a URL listed twice.
  const gatewayUrls = [...new Set(given.map(validateUrl))];
  if (gatewayUrls.length === 0)
    throw new GatehouseError("invalid_request", "no gateway URL given", "Use --gateway https://HOST:PORT.");
  const pin = normaliseFingerprint(options.caFingerprint);
  if (!pin) {
    throw new GatehouseError(
      "invalid_request",
      `--ca-fingerprint ${JSON.stringify(options.caFingerprint)} is not sha256: followed by 64 hex digits`,
      "Copy the CA fingerprint that `gatehouse gateway init` printed.",
    );
  }
  // The gateway applies the same rules; checking here refuses before a key is made or sent.
  const name = normaliseName(options.name ?? os.hostname(), {
    field: options.name === undefined ? "the host name (the default --name)" : "--name",
  });

  // Nothing is sent until the gateway proves it holds a certificate from the pinned CA.
  const { pinned, index: reached } = await pinFirstReachable(gatewayUrls, pin);
  const gatewayUrl = gatewayUrls[reached]!;
  options.onProgress?.({ state: "pinned", caFingerprint: pin });
  // The first fully verified request, before anything is written: a clock so far off that TLS
  // fails is named here (clock_skew, measured by requestJson), and the home stays as it was.
  await requestJson(`${gatewayUrl}/health`, { tls: { ca: pinned.caPem } });

  const { keys, save: saveKey } = await loadOrCreateDeviceKey(home, options.newKey ?? false);
  const identity = identityOfSpki(await spkiOf(keys.publicKey));
  const config: NodeConfigInput = {
    // One URL stays a string, as node.json always held it; several are a list, tried in order.
    gatewayUrl: gatewayUrls.length === 1 ? gatewayUrl : gatewayUrls,
    caFingerprint: pin,
    deviceId: identity.deviceId,
    name,
  };

  const tls = { ca: pinned.caPem };
  const csr = await createCsr(keys, identity.deviceId);
  const { body: submitted } = await requestJson<EnrollResponse>(`${gatewayUrl}/api/v1/enroll`, {
    body: {
      csr,
      name,
      platform: `${process.platform}-${process.arch}`,
      ...(options.enrollToken ? { enrollToken: options.enrollToken } : {}),
    },
    tls,
  });
  // The gateway has accepted the request (pending or approved): only now does the home change, so
  // a refusal (a bad enroll token, a name taken, a device denied) leaves it as it was.
  ensurePrivateDir(home);
  await saveKey();
  writeFileAtomic(path.join(home, NODE_FILES.caCert), pinned.caPem, 0o644);
  writeJsonAtomic(path.join(home, NODE_FILES.config), mergeExistingConfig(home, config));
  options.onProgress?.({ state: "submitted", response: submitted });
  writeRegistrationFile(home, {
    requestId: submitted.requestId,
    userCode: submitted.userCode,
    expiresAt: submitted.expiresAt,
  });

  let status: EnrollStatusResponse | undefined;
  let delay = submitted.pollAfterMs;
  // Every instance answers for the request (the state is shared): an unreachable one is passed over.
  let polled = reached;
  if (submitted.status === "pending")
    options.onProgress?.({ state: "waiting", expiresAt: submitted.expiresAt });
  for (;;) {
    try {
      const { body } = await requestJson<EnrollStatusResponse>(
        `${gatewayUrls[polled]}/api/v1/enroll/${submitted.requestId}`,
        { tls },
      );
      status = body;
      delay = submitted.pollAfterMs;
    } catch (error) {
      // The gateway may restart while we wait: keep waiting, slower, and say so. Anything else
      // (the request is gone, the answer is malformed) will not get better by waiting.
      if (!(error instanceof GatehouseError) || !TRANSIENT.has(error.code)) throw error;
      if (UNREACHABLE_GATEWAY.has(error.code)) polled = (polled + 1) % gatewayUrls.length;
      if (Date.now() > new Date(submitted.expiresAt).getTime() + 60_000) {
        throw new GatehouseError(
          "registration_expired",
          `the registration expired at ${submitted.expiresAt} while the gateway was unreachable`,
        );
      }
      options.onProgress?.({ state: "retrying", error });
      delay = Math.min(delay * 2, 30_000);
    }
    if (status && status.status !== "pending") break;
    status = undefined;
    await sleep(delay, undefined, options.signal ? { signal: options.signal } : undefined);
  }

  if (status.status === "denied") {
    // The home remembers it: `node start` says device_denied even when the gateway is away.
    recordRegistrationOutcome(home, "denied", status.reason);
    throw new GatehouseError(
      "device_denied",
      `the registration was denied${status.reason ? `: ${status.reason}` : ""}`,
    );
  }
  if (status.status === "expired") {
    recordRegistrationOutcome(home, "expired");
    throw new GatehouseError(
      "registration_expired",
      `the registration expired at ${status.expiresAt} before an admin approved it`,
    );
  }
  if (!status.certificate)
    throw new GatehouseError("unavailable", "the gateway approved the device but sent no certificate");
  // The CAs to trust were settled before the request was sent (ca.pem holds what fetchGatewayTrust checked):
  // nothing about the CA is refused after the gateway approved, which may have spent a token's use.
  const cert = new x509.X509Certificate(status.certificate);
  if (identityOfSpki(new Uint8Array(cert.publicKey.rawData)).deviceId !== identity.deviceId) {
    throw new GatehouseError("invalid_request", "the gateway issued a certificate for another key");
  }
  writeFileAtomic(path.join(home, NODE_FILES.deviceCert), status.certificate, 0o644);
  // The name the gateway gave the device (an enroll token's --name-prefix changes it) is the one
  // operators use (`nodes exec NAME`): node.json says the same.
  const assigned = status.name ?? submitted.name ?? name;
  if (assigned !== name)
    writeJsonAtomic(
      path.join(home, NODE_FILES.config),
      mergeExistingConfig(home, { ...config, name: assigned }),
    );
  return {
    deviceId: identity.deviceId,
    name: assigned,
    userCode: submitted.userCode,
    keyFingerprint: identity.keyFingerprint,
    status: "approved",
    certExpiresAt: cert.notAfter.toISOString(),
    gatewayUrl,
    ...(gatewayUrls.length > 1 ? { gatewayUrls } : {}),
    home,
  };
}

/** A second `node register` keeps the owner's own settings (exec.allow and the like). */
function mergeExistingConfig(home: string, fresh: NodeConfigInput): NodeConfigInput {
  const file = path.join(home, NODE_FILES.config);
  if (!existsSync(file)) return fresh;
  try {
    const existing = JSON.parse(readFileSync(file, "utf8")) as NodeConfigInput;
    return { ...existing, ...fresh };
  } catch {
    return fresh;
  }
}
