import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  NODE_FILES,
  loadNodeConfig,
  resolveSecret,
  vaultAccess,
  writeFileAtomic,
  type LoadedConfig,
  type NodeConfig,
} from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { fetchGatewayTrust } from "../client/ca-pin.js";
import { AccessTokenSource } from "./access-tokens.js";
import { refuseStartWithoutCertificate } from "./registration-state.js";
import { UNREACHABLE_GATEWAY } from "./gateway-order.js";

/** The node's trust and identity. Key and certificate are absent for a node that uses an API key. */
export interface NodeCredentials {
  caPem: string;
  keyPem?: string;
  certPem?: string;
}

function missing(file: string): GatehouseError {
  return new GatehouseError(
    "config_missing",
    `${file} does not exist`,
    "Register this node first: `gatehouse node register --gateway URL --ca-fingerprint sha256:...` (or set apiKey in node.json to a reference to an API key of role node).",
  );
}

/** Reads the node's key, certificate and CA, naming the missing file if one is missing. */
export function readNodeCredentials(home: string): Required<NodeCredentials> {
  const read = (name: string) => {
    const file = path.join(home, name);
    if (!existsSync(file)) throw missing(file);
    return readFileSync(file, "utf8");
  };
  return {
    keyPem: read(NODE_FILES.deviceKey),
    certPem: read(NODE_FILES.deviceCert),
    caPem: read(NODE_FILES.caCert),
  };
}

/**
 * The gateway's CA bundle by its pinned fingerprint, from the first of `urls` (instances of one
 * gateway, in node.json's order) that proves it holds it; a URL that cannot be reached is skipped.
 * @throws GatehouseError the last URL's failure when none could be reached; at once, any other
 *   failure (a CA that does not match the pin is named, not skipped).
 */
async function fetchTrustFromAny(urls: readonly string[], pin: string): Promise<string> {
  let failure: unknown;
  for (const url of urls) {
    try {
      return (await fetchGatewayTrust(url, pin)).caPem;
    } catch (error) {
      if (!(error instanceof GatehouseError) || !UNREACHABLE_GATEWAY.has(error.code)) throw error;
      failure = error;
    }
  }
  throw failure;
}

export interface PreparedNode {
  loaded: LoadedConfig<NodeConfig>;
  credentials: NodeCredentials;
  /** Set when the node authenticates with its API key instead of a client certificate. */
  tokens?: AccessTokenSource;
}

/**
 * What `node start` runs with: the device certificate when the home has one; otherwise the API key
 * that `apiKey` references (resolved now, so a bad reference fails the start by name), with the
 * gateway's CA fetched once by its pinned fingerprint when ca.pem is not there yet.
 *
 * @throws GatehouseError for a home with neither: `device_pending` (with the user code),
 *   `device_denied`, `registration_expired`, or `config_missing` when it was never registered
 *   (see refuseStartWithoutCertificate).
 */
export async function prepareNode(home: string): Promise<PreparedNode> {
  const loaded = loadNodeConfig(home);
  const { config } = loaded;
  const file = (name: string) => path.join(home, name);
  if (existsSync(file(NODE_FILES.deviceCert)) || !config.apiKey) {
    // No certificate yet: the registration's state (pending, denied, expired) says why.
    if (!existsSync(file(NODE_FILES.deviceCert))) await refuseStartWithoutCertificate(home, config);
    return { loaded, credentials: readNodeCredentials(home) };
  }

  const apiKey = await resolveSecret(config.apiKey, "apiKey", { vault: vaultAccess(config) });
  let caPem: string;
  if (existsSync(file(NODE_FILES.caCert))) caPem = readFileSync(file(NODE_FILES.caCert), "utf8");
  else {
    caPem = await fetchTrustFromAny(config.gatewayUrls, config.caFingerprint);
    writeFileAtomic(file(NODE_FILES.caCert), caPem, 0o644);
  }
  const credentials: NodeCredentials = { caPem };
  return {
    loaded,
    credentials,
    tokens: new AccessTokenSource(config.gatewayUrl, apiKey, () => credentials.caPem),
  };
}
