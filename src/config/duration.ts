import { z } from "zod";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * The longest duration the config takes: 100 years, in ms. Anything longer makes no sense for a
 * lifetime or a delay, and would put a certificate's notAfter past what a date holds.
 */
export const MAX_DURATION_MS = 36_500 * 86_400_000;

/**
 * Parses "500ms", "30s", "15m", "24h", "90d" (or a bare number of milliseconds) to milliseconds.
 * Undefined for anything else, a negative number, or more than MAX_DURATION_MS.
 */
export function parseDuration(input: string | number): number | undefined {
  let ms: number;
  if (typeof input === "number") ms = input;
  else {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(input.trim());
    if (!match) return undefined;
    ms = Math.round(Number(match[1]) * (UNITS[match[2] as string] as number));
  }
  return Number.isFinite(ms) && ms >= 0 && ms <= MAX_DURATION_MS ? ms : undefined;
}

function notADuration(value: string | number): string {
  return `"${value}" is not a duration like 30s, 15m, 24h or 90d (at most ${MAX_DURATION_MS / 86_400_000}d)`;
}

/** A duration in config: written as "24h", read as milliseconds. */
export const durationSchema = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: notADuration(value) });
    return z.NEVER;
  }
  return ms;
});

/** The shortest lifetime the config accepts for a certificate, token or registration: 1 minute. */
export const MIN_LIFETIME_MS = 60_000;

/**
 * The environment variable that lets lifetimes be shorter than a minute. For end-to-end tests
 * only, which make certificates expire within seconds: the gateway warns loudly at start when it
 * is set, and `doctor` and `config explain` report it. Only the exact value "1" counts.
 */
export const SHORT_LIFETIMES_VARIABLE = "GATEHOUSE_ALLOW_SHORT_LIFETIMES";

/** What the gateway, `doctor` and `config explain` say while SHORT_LIFETIMES_VARIABLE is set. */
export const SHORT_LIFETIMES_WARNING = `${SHORT_LIFETIMES_VARIABLE}=1 is set: lifetimes under a minute are accepted. This is for tests only; unset it for any gateway people use.`;

/** True when the environment allows lifetimes under a minute (see SHORT_LIFETIMES_VARIABLE). */
export function shortLifetimesAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[SHORT_LIFETIMES_VARIABLE] === "1";
}

/**
 * The life of a credential or a pending request (a certificate, a token, a registration), written
 * and read like durationSchema, of at least MIN_LIFETIME_MS: anything shorter expires before a
 * node could renew it and makes no sense outside a test (see SHORT_LIFETIMES_VARIABLE). The
 * refusal names the value as written ("0.5m").
 */
export const lifetimeSchema = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: notADuration(value) });
    return z.NEVER;
  }
  if (ms < MIN_LIFETIME_MS && !shortLifetimesAllowed()) {
    ctx.addIssue({ code: "custom", message: `"${value}" is too short: a lifetime must be at least 1m` });
    return z.NEVER;
  }
  return ms;
});

/** The schemas of settings written as durations and kept as milliseconds (for `config explain`). */
export const DURATION_SCHEMAS: ReadonlySet<unknown> = new Set([durationSchema, lifetimeSchema]);

export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
