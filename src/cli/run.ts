import type { Command } from "commander";
import { resolveHome } from "../config/paths.js";
import { printError, type GlobalOptions } from "./output.js";

export interface CommandContext {
  home: string;
  json: boolean;
}

/**
 * Wraps a command's action: resolves --home and --json (given before or after the subcommand),
 * renders any error with its code, and sets the exit code (1 for a failure it explains, 2 for
 * wrong usage, or `options.failureStatus` for both: `nodes exec` exits 125 for its own failures,
 * so that any status from 0 to 255 is the remote command's). Actions that keep running (gateway
 * start, node start) resolve only when they are done.
 */
export function action<A extends unknown[]>(
  fn: (ctx: CommandContext, ...args: A) => Promise<void>,
  options: { failureStatus?: number } = {},
) {
  return async (...args: unknown[]): Promise<void> => {
    const command = args[args.length - 1] as Command;
    const globals = command.optsWithGlobals<GlobalOptions>();
    const ctx: CommandContext = { home: resolveHome(globals.home), json: Boolean(globals.json) };
    try {
      await fn(ctx, ...(args.slice(0, -1) as A));
    } catch (error) {
      const status = printError(error, ctx.json, commandPath(command));
      process.exitCode = options.failureStatus ?? status;
    }
  };
}

/**
 * `action()` for an implementation that lives in a module of its own, loaded only when the command
 * runs. The command definitions (names, options, help text) load nothing but commander, so
 * `gatehouse --help`, `--version` and a wrong flag never pay for fastify, SQLite, x509 or jose;
 * a command pays only for what it uses. A failure to load the module is rendered as any other
 * failure (internal_error, exit 1).
 * @param load resolves to the implementation, e.g. `async () => (await import("./x-actions.js")).run`.
 */
export function lazyAction<A extends unknown[]>(
  load: () => Promise<(ctx: CommandContext, ...args: A) => Promise<void>>,
  options: { failureStatus?: number } = {},
) {
  return action<A>(async (ctx, ...args) => (await load())(ctx, ...args), options);
}

/** "gatehouse devices list": the names of a command and its parents, as typed. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at; at = at.parent) names.unshift(at.name());
  return names.join(" ");
}
