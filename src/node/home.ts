import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { NODE_FILES, loadNodeConfig } from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";

export interface NodeCredentials {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** Reads the node's key, certificate and CA, naming the missing file if one is missing. */
export function readNodeCredentials(home: string): NodeCredentials {
  const read = (name: string) => {
    const file = path.join(home, name);
    if (!existsSync(file)) {
      throw new GatehouseError(
        "config_missing",
        `${file} does not exist`,
        "Register this node first: `gatehouse node register --gateway URL --ca-fingerprint sha256:...`.",
      );
    }
    return readFileSync(file, "utf8");
  };
  return {
    keyPem: read(NODE_FILES.deviceKey),
    certPem: read(NODE_FILES.deviceCert),
    caPem: read(NODE_FILES.caCert),
  };
}

export function loadNode(home: string) {
  return { loaded: loadNodeConfig(home), credentials: readNodeCredentials(home) };
}
