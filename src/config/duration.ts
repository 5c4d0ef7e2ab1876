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

/** What `lifetimeProblem` allows besides a lifetime of MIN_LIFETIME_MS up to MAX_DURATION_MS. */
export interface LifetimeBounds {
  /** 0 is accepted as "at once" (a rotation grace that ends the old key now). */
  allowZero?: boolean;
  /** A longer limit than MAX_DURATION_MS does not apply; in ms. */
  maxMs?: number;
}

/**
 * The one rule for the life of a credential or a pending request (a certificate, a token, an
 * enroll token, an API key, a rotation's grace or overlap), in gateway.json, in an API body and
 * in a flag: a duration (`parseDuration`) of at least MIN_LIFETIME_MS, since anything shorter
 * expires before a node or a person could act on it, and makes no sense outside a test (see
 * SHORT_LIFETIMES_VARIABLE).
 * @returns why the value is refused, quoting it as written ("0.5m"), or undefined when accepted.
 */
export function lifetimeProblem(value: string | number, bounds: LifetimeBounds = {}): string | undefined {
  const ms = parseDuration(value);
  if (ms === undefined) return notADuration(value);
  if (ms === 0 && bounds.allowZero) return undefined;
  if (ms < MIN_LIFETIME_MS && !shortLifetimesAllowed())
    return `"${value}" is too short: a lifetime must be at least 1m${bounds.allowZero ? " (or 0 for at once)" : ""}`;
  if (bounds.maxMs !== undefined && ms > bounds.maxMs)
    return `"${value}" is too long: at most ${formatDuration(bounds.maxMs)}`;
  return undefined;
}

/** A lifetime (`lifetimeProblem`) written like durationSchema and read as milliseconds. */
export function lifetimeSchemaWithin(bounds: LifetimeBounds = {}) {
  return z.union([z.string(), z.number()]).transform((value, ctx) => {
    const problem = lifetimeProblem(value, bounds);
    if (problem !== undefined) {
      ctx.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    }
    return parseDuration(value) as number;
  });
}

/**
 * The life of a credential or a pending request in gateway.json (`lifetimeProblem`: at least
 * MIN_LIFETIME_MS, unless SHORT_LIFETIMES_VARIABLE is set). The refusal names the value as
 * written ("0.5m").
 */
export const lifetimeSchema = lifetimeSchemaWithin();

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
