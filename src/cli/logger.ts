import { pino, type DestinationStream, type Logger } from "pino";
import { printLogLine, UsageError } from "./output.js";
import { escapeUnsafe, safeJson } from "../protocol/safe-text.js";

/** `json`: one pino JSON document per line (for log collectors); `pretty`: one readable line per entry. */
export type LogFormat = "json" | "pretty";

/**
 * The format the long-running commands log in: the flag when given, else readable lines when
 * standard output is a terminal and JSON when it is a pipe or a file (what a service manager or a
 * log collector reads).
 * @throws UsageError for a value other than json or pretty.
 */
export function chooseLogFormat(
  flag: string | undefined,
  stdout: { isTTY?: boolean } = process.stdout,
): LogFormat {
  if (flag === undefined) return stdout.isTTY ? "pretty" : "json";
  if (flag === "json" || flag === "pretty") return flag;
  throw new UsageError(`--log-format ${JSON.stringify(flag)} is neither json nor pretty`);
}

/**
 * Where `gateway start` and `node start` write their log: undefined for pino's own JSON on
 * standard output, else a destination that writes readable lines there. The `hidden` keys (the
 * base fields: gatewayId, deviceId) stay in every JSON line but are left out of readable lines,
 * since they are the same on every line.
 */
export function logDestination(format: LogFormat, hidden: string[]): DestinationStream | undefined {
  if (format === "json") return undefined;
  return prettyDestination(new Set(hidden), Boolean(process.stdout.isTTY) && !process.env.NO_COLOR);
}

/** A pino logger writing to standard output in the chosen format (see logDestination). */
export function createLogger(options: {
  level: string;
  base: Record<string, unknown>;
  format: LogFormat;
}): Logger {
  const settings = { level: options.level, base: options.base };
  const destination = logDestination(options.format, Object.keys(options.base));
  return destination ? pino(settings, destination) : pino(settings);
}

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: "TRACE", color: "\x1b[90m" },
  20: { name: "DEBUG", color: "\x1b[90m" },
  30: { name: "INFO ", color: "\x1b[32m" },
  40: { name: "WARN ", color: "\x1b[33m" },
  50: { name: "ERROR", color: "\x1b[31m" },
  60: { name: "FATAL", color: "\x1b[41m" },
};

/** Keys pino writes that a readable line shows in its own way, or not at all. */
const SHOWN_APART = new Set(["level", "time", "msg", "pid", "hostname", "err"]);

/**
 * A pino destination that turns each JSON line into `2026-11-29 19:53:12.345 INFO  message key=value …`
 * (local time). Every value can hold text a node sent (a name, a reason, a command): messages and
 * string values pass through escapeUnsafe, other values through safeJson, so nothing in a log line
 * acts on the terminal. The colour codes are the only raw escapes, and they are this module's own.
 */
export function prettyDestination(hidden: ReadonlySet<string>, color: boolean): DestinationStream {
  return {
    write(line: string) {
      printLogLine(formatLogLine(line, hidden, color));
    },
  };
}

/** One pino JSON line as a readable line (with its newline); a line that is not JSON is shown escaped. */
export function formatLogLine(line: string, hidden: ReadonlySet<string> = new Set(), color = false): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return escapeUnsafe(line.trimEnd()) + "\n";
  }
  const level = LEVELS[entry.level as number] ?? { name: String(entry.level).padEnd(5), color: "" };
  const levelText = color && level.color ? `${level.color}${level.name}\x1b[0m` : level.name;
  const fields = Object.entries(entry)
    .filter(([key]) => !SHOWN_APART.has(key) && !hidden.has(key))
    .map(([key, value]) => `${escapeUnsafe(key)}=${fieldValue(value)}`);
  const parts = [localTime(entry.time), levelText, escapeUnsafe(String(entry.msg ?? "")), ...fields];
  let text = parts.filter((part) => part !== "").join(" ");
  const err = entry.err as { type?: unknown; message?: unknown; stack?: unknown } | undefined;
  if (err && typeof err === "object") {
    const stack =
      typeof err.stack === "string" ? err.stack : `${String(err.type ?? "Error")}: ${String(err.message)}`;
    text += "\n" + escapeUnsafe(stack, { multiline: true }).replace(/^/gm, "    ");
  }
  return text + "\n";
}

/** A value as `key=value` shows it: bare when it is a plain word, else quoted or as JSON. */
function fieldValue(value: unknown): string {
  if (typeof value === "string") return /^[\w.:/@+-]+$/.test(value) ? value : safeJson(value);
  return safeJson(value) ?? String(value);
}

function localTime(time: unknown): string {
  if (typeof time !== "number") return "";
  const at = new Date(time);
  const two = (n: number) => String(n).padStart(2, "0");
  return (
    `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())} ` +
    `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}.${String(at.getMilliseconds()).padStart(3, "0")}`
  );
}
