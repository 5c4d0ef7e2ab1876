import { lifetimeProblem, type LifetimeBounds } from "../config/duration.js";
import { listenSchema } from "../config/schema.js";
import { serverNameProblem } from "../config/server-name.js";
import { normaliseFingerprint } from "../pki/fingerprint.js";
import { UsageError } from "./output.js";

// Flags are checked before anything is created or sent: a wrong flag is wrong usage (exit 2),
// and must not leave a half-made home behind.

export function checkListen(flag: string, value: string | undefined): void {
  if (value === undefined) return;
  const parsed = listenSchema.safeParse(value);
  if (parsed.success) return;
  const custom = parsed.error.issues.find((issue) => issue.code === "custom");
  throw new UsageError(
    custom
      ? `${flag} ${JSON.stringify(value)}: ${custom.message}`
      : `${flag} ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:18789 or 0.0.0.0:18789)`,
  );
}

/** Names for the server certificate, by the one rule gateway.json's `sans` follows too. */
export function checkSans(values: string[] | undefined, what = "--san"): void {
  for (const value of values ?? []) {
    const problem = serverNameProblem(value);
    if (problem) throw new UsageError(`${what} ${JSON.stringify(value)} ${problem}`);
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

/**
 * A lifetime given by flag (`keys create --expires`, `keys rotate --grace`, `enroll create
 * --expires`, `rotate ca --overlap`), by the rule gateway.json and the API follow too
 * (`lifetimeProblem`: at least 1m), checked before anything is sent. Undefined (flag not given)
 * passes.
 */
export function checkLifetime(flag: string, value: string | undefined, bounds: LifetimeBounds = {}): void {
  if (value === undefined) return;
  const problem = lifetimeProblem(value, bounds);
  if (problem !== undefined) throw new UsageError(`${flag} ${problem}`);
}
