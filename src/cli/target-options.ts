import type { Command } from "commander";
import type { TargetOptions } from "./admin-client.js";

export type { TargetOptions };

/** The options every command that talks to the gateway's API takes. */
export function withTarget(command: Command): Command {
  return command
    .option(
      "--gateway <url>",
      "the gateway's URL (default: listen in a gateway home's gateway.json, else the URL in admin/gateway.json or node.json)",
    )
    .option("--ca-file <file>", "the gateway's CA certificate (default: from the home)")
    .option(
      "--token <token>",
      "a bearer access token; precedence: --token, then GATEHOUSE_TOKEN, then the home's certificate",
    );
}
