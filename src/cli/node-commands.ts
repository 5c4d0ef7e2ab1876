import { Command } from "commander";
import { lazyAction } from "./run.js";
import { LOG_FORMAT_OPTION } from "./log-format-option.js";

/** What `node register --help` says about --json: the contract scripts rely on. */
const REGISTER_JSON_HELP = `
With --json the output is JSON Lines (one JSON document per line on stdout):
  while the request waits for approval, first
    {"status":"pending","requestId","deviceId","name","userCode","keyFingerprint","expiresAt"}
  then one last line: the result {"status":"approved","deviceId","name",...}
  or the error {"error","error_description","hint"}.
A registration approved at once (an enroll token) prints only the last line.`;

/**
 * The `node` commands; what each does is in node-actions.ts (register, start) or
 * node-diagnostics-actions.ts (test-connection, status), loaded when it runs.
 */
export function nodeCommands(): Command {
  const node = new Command("node").description("register and run this machine as a node");

  node
    .command("register")
    .description("make a device key, send a CSR, and wait for an admin's approval")
    .requiredOption(
      "--gateway <url>",
      "the gateway, e.g. https://gateway.lan:18789; repeat it for several instances of one gateway (tried in order)",
      (url: string, earlier: string[] | undefined) => [...(earlier ?? []), url],
    )
    .requiredOption("--ca-fingerprint <sha256:hex>", "the gateway CA's fingerprint, from `gateway init`")
    .option("--name <name>", "a name for this device (default: the host name)")
    .option("--new-key", "make a new device key (after a revocation or denial); the old key is replaced")
    .option(
      "--enroll-token <token>",
      "approve at once with an enroll token (or GATEHOUSE_ENROLL_TOKEN, which stays out of the process list)",
    )
    .addHelpText("after", REGISTER_JSON_HELP)
    .action(lazyAction(async () => (await import("./node-actions.js")).nodeRegister));

  node
    .command("start")
    .description("run the node agent: connect, heartbeat, reconnect")
    .option(...LOG_FORMAT_OPTION)
    .action(lazyAction(async () => (await import("./node-actions.js")).nodeStart));

  node
    .command("test-connection")
    .description(
      "check every layer between this node and its gateway; stop at the first failure and name the fix",
    )
    .option("--gateway <url>", "test this gateway URL instead of the one in node.json")
    .option(
      "--token <token>",
      "test a bearer access token instead of the device certificate (or GATEHOUSE_TOKEN)",
    )
    .option("--timeout <ms>", "time each layer may take", "3000")
    .action(lazyAction(async () => (await import("./node-diagnostics-actions.js")).nodeTestConnection));

  node
    .command("status")
    .description("the agent's state, certificate and last error")
    .option("--verbose", "show every field")
    .action(lazyAction(async () => (await import("./node-diagnostics-actions.js")).nodeStatus));

  return node;
}
