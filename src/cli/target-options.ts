import type { Command } from "commander";
import type { TargetOptions } from "./admin-client.js";

export type { TargetOptions };

/** The options every command that talks to the gateway's API takes. */
export function withTarget(command: Command): Command {
  return command
    .option("--gateway <url>", "the gateway's URL (default: from the home's credential)")
    .option("--ca-file <file>", "the gateway's CA certificate (default: from the home)")
    .option(
      "--token <token>",
      "a bearer access token instead of the home's certificate (or GATEHOUSE_TOKEN)",
    );
}
