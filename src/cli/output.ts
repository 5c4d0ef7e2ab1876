import { GatehouseError } from "../protocol/errors.js";
import { escapeUnsafe, safeJson } from "../protocol/safe-text.js";

export interface GlobalOptions {
  home?: string;
  json?: boolean;
}

/** Exit codes of the contract: 0 success, 1 a failure we explain, 2 wrong usage. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/**
 * `nodes exec`'s status for its own failures (wrong usage, no gateway, a refused credential, an
 * unknown or offline node, a refused or stopped command), as `docker run` does: every status from
 * 0 to 255 but this one is the remote command's.
 */
export const EXIT_EXEC_OWN_FAILURE = 125;

export class UsageError extends Error {}

/**
 * The exit status this CLI gives for a remote command's exit code: the code itself when a process
 * can exit with it (0–255), otherwise 1. A node reporting 256 or -1 must not make `nodes exec`
 * exit 0 (a process's status keeps only the low 8 bits), nor a Windows status over 255 look like
 * success; no exit code at all (a signal) is a failure too. The CLI's own failures are not
 * decided here: they exit EXIT_EXEC_OWN_FAILURE (125).
 */
export function localExitStatus(remote: number | null): number {
  return remote !== null && Number.isInteger(remote) && remote >= 0 && remote <= 255 ? remote : 1;
}

/**
 * Every line this CLI prints for a person goes through here (stdout), or printNotice (stderr):
 * the one place where text from nodes, registrations and the gateway is filtered for the
 * terminal. The only exception is a command's own output in `nodes exec` (passThrough).
 */
export function printText(text: string): void {
  process.stdout.write(escapeUnsafe(text, { multiline: true }));
}

/** As printText, to stderr: progress and notices that must stay out of a pipe's data. */
export function printNotice(text: string): void {
  process.stderr.write(escapeUnsafe(text, { multiline: true }));
}

/**
 * A command's own stdout and stderr from `nodes exec`, byte for byte, as `ssh host cmd` prints
 * them: the operator asked for this output and may pipe it anywhere, so it is not filtered.
 */
export function passThrough(stdout: string, stderr: string): void {
  process.stdout.write(stdout);
  process.stderr.write(stderr);
}

/**
 * A readable log line from cli/logger.ts (gateway start, node start on a terminal), on stdout as
 * it is: formatLogLine escaped every text in it, and its colour codes are the formatter's own.
 */
export function printLogLine(line: string): void {
  process.stdout.write(line);
}

/** One JSON document on stdout (--json). */
export function printJson(value: unknown): void {
  process.stdout.write(safeJson(value, 2) + "\n");
}

/** One JSON document per line (audit export, audit tail -f --json). */
export function printJsonLine(value: unknown): void {
  process.stdout.write(safeJson(value) + "\n");
}

/** `key  value` lines, keys padded; each value kept on its own line whatever it holds. */
export function fields(rows: [string, string | null | undefined][], keyWidth = 16): string {
  return (
    rows
      .filter((row): row is [string, string] => row[1] !== null && row[1] !== undefined)
      .map(([key, value]) => `${key.padEnd(keyWidth)} ${escapeUnsafe(value)}`)
      .join("\n") + "\n"
  );
}

/**
 * What an unexpected exception in the CLI's own process becomes: `internal_error` with a hint for
 * a local failure (the gateway's log knows nothing of it). An `internal_error` the gateway sent
 * arrives as a GatehouseError with the gateway's own hint (`GatehouseError.fromBody`) and is kept.
 * @param command the command as typed, e.g. "gatehouse devices list", to quote in the report.
 */
export function localFailure(error: unknown, command = "gatehouse"): GatehouseError {
  return new GatehouseError(
    "internal_error",
    error instanceof Error ? error.message : String(error),
    `This failed in the CLI itself (\`${command}\`), not on the gateway: it is a bug in gatehouse. Please report it with the command and this message.`,
  );
}

/**
 * Renders an error for a person (stderr) or a script (one JSON document on stdout, on one line, so
 * it may also end a JSON Lines stream such as `node register --json`'s). Anything that is not a
 * GatehouseError failed in this process: `localFailure` names it.
 * @param command the command as typed (e.g. "gatehouse devices list"), for a local failure's hint.
 */
export function printError(error: unknown, json: boolean, command?: string): number {
  if (error instanceof UsageError) {
    if (json)
      printJsonLine({
        error: "invalid_request",
        error_description: error.message,
        hint: "Run the command with --help.",
      });
    else printNotice(`error: ${escapeUnsafe(error.message)}\n`);
    return EXIT_USAGE;
  }
  const named = error instanceof GatehouseError ? error : localFailure(error, command);
  if (json) {
    printJsonLine(named.toBody());
  } else {
    // The description and hint may quote a node or a registration: one line each, filtered.
    printNotice(`✗ ${named.code}: ${escapeUnsafe(named.message)}\n  hint: ${escapeUnsafe(named.hint)}\n`);
  }
  return EXIT_FAILURE;
}

/** A plain text table: columns padded to their widest cell; every cell filtered by escapeUnsafe. */
export function table(headers: string[], unsafeRows: string[][]): string {
  // Cells may hold names and addresses a node chose: one line each, nothing a terminal acts on.
  const rows = unsafeRows.map((row) => row.map((cell) => escapeUnsafe(cell)));
  const widths = headers.map((header, i) =>
    Math.max(header.length, ...rows.map((row) => (row[i] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** A span of time in the largest unit that keeps it readable: 42s, 7m, 5h, 3d. */
export function duration(seconds: number): string {
  if (seconds < 90) return `${seconds}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return "-";
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  return seconds < 0 ? `in ${duration(-seconds)}` : `${duration(seconds)} ago`;
}

/** A spinner on a terminal; nothing at all when the output is not one (or with --json). */
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private text = "";
  private readonly enabled: boolean;

  constructor(json: boolean) {
    this.enabled = !json && Boolean(process.stderr.isTTY);
  }

  spin(text: string): void {
    if (!this.enabled) return;
    this.text = text;
    if (this.timer) return;
    const frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
    this.timer = setInterval(() => {
      process.stderr.write(`\r${frames[this.frame++ % frames.length]} ${this.text}\x1b[K`);
    }, 100);
  }

  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    process.stderr.write("\r\x1b[K");
  }
}
