import { existsSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { GatehouseError } from "../protocol/errors.js";

/** File names inside a home: part of the contract, scripts and diagnostics rely on them. */
export const GATEWAY_FILES = {
  config: "gateway.json",
  database: "gatehouse.db",
  pkiDir: "pki",
  caCert: "pki/ca.pem",
  caKey: "pki/ca.key",
  serverCert: "pki/server.pem",
  serverKey: "pki/server.key",
  /** The key of the keyed hash that API keys and refresh tokens are stored under. */
  tokenPepper: "pki/token-hmac.key",
  /** The key-encryption key the token signing keys are sealed under in the database. */
  signingKeyKek: "pki/signing-keys.kek",
  adminDir: "admin",
  adminCert: "admin/admin.pem",
  adminKey: "admin/admin.key",
  adminCa: "admin/ca.pem",
  adminGateway: "admin/gateway.json",
} as const;

export const NODE_FILES = {
  config: "node.json",
  deviceKey: "device.key",
  deviceCert: "device.pem",
  caCert: "ca.pem",
  registration: "registration.json",
  state: "state.json",
} as const;

/** `--home` wins over GATEHOUSE_HOME, which wins over ~/.gatehouse. They only locate the home. */
export function resolveHome(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = flag ?? env.GATEHOUSE_HOME ?? path.join(homedir(), ".gatehouse");
  return path.resolve(chosen);
}

/** Which parties this home holds (a gateway, a node, or both); neither is `config_missing`. */
export function homeParties(home: string): { gateway: boolean; node: boolean } {
  const parties = {
    gateway: existsSync(path.join(home, GATEWAY_FILES.config)),
    node: existsSync(path.join(home, NODE_FILES.config)),
  };
  if (!parties.gateway && !parties.node)
    throw new GatehouseError(
      "config_missing",
      `${home} holds neither ${GATEWAY_FILES.config} nor ${NODE_FILES.config}`,
      "Point --home (or GATEHOUSE_HOME) at a gateway or node home, or create one (`gateway init`, `node register`).",
    );
  return parties;
}
