import { isIP } from "node:net";
import { listenSchema } from "../config/schema.js";
import { normaliseFingerprint } from "../pki/fingerprint.js";
import { UsageError } from "./output.js";

// Flags are checked before anything is created or sent: a wrong flag is wrong usage (exit 2),
// and must not leave a half-made home behind.

export function checkListen(flag: string, value: string | undefined): void {
  if (value !== undefined && !listenSchema.safeParse(value).success) {
    throw new UsageError(
      `${flag} ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:18789 or 0.0.0.0:18789)`,
    );
  }
}

const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

export function checkSans(values: string[] | undefined, what = "--san"): void {
  for (const value of values ?? []) {
    if (!isIP(value) && !HOSTNAME.test(value)) {
      throw new UsageError(`${what} ${JSON.stringify(value)} is neither an IP address nor a host name`);
    }
  }
}

export function checkGatewayUrl(value: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--gateway ${JSON.stringify(value)} is not a URL; use https://HOST:PORT`);
  }
  if (url.protocol !== "https:")
    throw new UsageError(`--gateway must be an https:// URL, not ${url.protocol}//`);
}

export function checkFingerprint(value: string): void {
  if (!normaliseFingerprint(value)) {
    throw new UsageError(
      `--ca-fingerprint ${JSON.stringify(value)} is not sha256: followed by 64 hex digits`,
    );
  }
}
