import { lookup, type LoadedConfig, type Provenance, type ValueSource } from "./load.js";
import { describeSecret } from "./secrets.js";
import { formatDuration } from "./duration.js";
import { durationKeys } from "./schema-walk.js";
import type { z } from "zod";

/** One effective setting, as `config explain` shows it. */
export interface ExplainedSetting {
  key: string;
  value: unknown;
  source: ValueSource;
  file?: string;
  /** A value from a lower source that this one hid (a flag over the file). */
  shadowed?: { source: ValueSource; value: unknown; file?: string };
  secret?: true;
}

/** Durations are kept in milliseconds; people wrote (and read) them as 24h. */
function display(key: string, value: unknown, durations: ReadonlySet<string>): unknown {
  return typeof value === "number" && durations.has(key) ? formatDuration(value) : value;
}

/**
 * Every effective setting with where it came from. Secrets are shown as their reference or a
 * fingerprint prefix, never their value (a plaintext secret in the file is marked as such).
 */
export function explainConfig(
  loaded: LoadedConfig<object>,
  schema: z.ZodType,
  secretKeys: readonly string[],
): ExplainedSetting[] {
  const secrets = new Set(secretKeys);
  const durations = new Set(durationKeys(schema));
  const show = (key: string, value: unknown) =>
    secrets.has(key) && typeof value === "string" ? describeSecret(value) : display(key, value, durations);
  return Object.entries(loaded.provenance)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, provenance]: [string, Provenance]) => {
      const value = lookup(loaded.config, key).value;
      return {
        key,
        value: show(key, value),
        source: provenance.source,
        ...(provenance.file ? { file: provenance.file } : {}),
        ...(provenance.shadowed
          ? { shadowed: { ...provenance.shadowed, value: show(key, provenance.shadowed.value) } }
          : {}),
        ...(secrets.has(key) ? { secret: true as const } : {}),
      };
    });
}
