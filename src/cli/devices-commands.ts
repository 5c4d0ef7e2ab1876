import { Command } from "commander";
import { withTarget } from "./target-options.js";
import { lazyAction } from "./run.js";
import { EXIT_EXEC_OWN_FAILURE } from "./output.js";

// Where it was first defined: tests and callers import it from here.
export { localExitStatus } from "./output.js";

const withGateway = withTarget;

/** The `devices` commands; what each does is in devices-actions.ts, loaded when it runs. */
export function devicesCommands(): Command {
  const devices = new Command("devices").description("admin: registered devices");

  withGateway(
    devices
      .command("list")
      .description("list devices")
      .option("--pending", "only devices waiting for approval"),
  ).action(lazyAction(async () => (await import("./devices-actions.js")).devicesList));

  withGateway(
    devices
      .command("show")
      .description("show one device")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name"),
  ).action(lazyAction(async () => (await import("./devices-actions.js")).devicesShow));

  withGateway(
    devices
      .command("approve")
      .description("approve a pending device by id or user code")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name")
      .option("--role <role>", "role to grant", "node"),
  ).action(lazyAction(async () => (await import("./devices-actions.js")).devicesApprove));

  withGateway(
    devices
      .command("deny")
      .description("deny a pending device")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name")
      .option("--reason <text>", "why"),
  ).action(lazyAction(async () => (await import("./devices-actions.js")).devicesDeny));

  withGateway(
    devices
      .command("revoke")
      .description("revoke a device and close its sessions")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name")
      .option("--reason <text>", "why"),
  ).action(lazyAction(async () => (await import("./devices-actions.js")).devicesRevoke));

  return devices;
}

/** The `nodes` commands; what each does is in devices-actions.ts, loaded when it runs. */
export function nodesCommands(): Command {
  const nodes = new Command("nodes").description("operators: connected nodes");
  withGateway(nodes.command("list").description("list online nodes")).action(
    lazyAction(async () => (await import("./devices-actions.js")).nodesList),
  );
  const exec = nodes
    .command("exec")
    .description(
      "run a command on a node (no shell; the node's exec.allow decides): nodes exec ID -- CMD [ARGS...]; " +
        "exits with the command's status, or 125 when gatehouse itself fails",
    )
    .argument("<node>", "device id, the name of an approved node, or key:ID for a node on an API key")
    .argument("<command...>", "the command and its arguments, after --")
    .option("--timeout <ms>", "kill the command after this long", "30000");
  ownUsageStatus(exec, EXIT_EXEC_OWN_FAILURE);
  withGateway(exec).action(
    lazyAction(async () => (await import("./devices-actions.js")).nodesExec, {
      failureStatus: EXIT_EXEC_OWN_FAILURE,
    }),
  );

  withGateway(
    nodes
      .command("history")
      .description("commands run on a node: who, what, when, exit code, duration, output size")
      .argument("<node>", "device id, the name of an approved node, or key:ID for a node on an API key")
      .option("-n, --limit <count>", "how many", "50"),
  ).action(lazyAction(async () => (await import("./devices-actions.js")).nodesHistory));

  return nodes;
}

/**
 * Makes a command's wrong usage, as commander finds it (a missing argument, an unknown option),
 * exit with `status` instead of 2: commander's own `error()` carries the status to the CLI's
 * entry point as `CommanderError.exitCode`.
 */
function ownUsageStatus(command: Command, status: number): void {
  const usageError = command.error.bind(command);
  command.error = (message, options) => usageError(message, { ...options, exitCode: status });
}
