#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { GATEHOUSE_VERSION } from "../protocol/version.js";
import { EXIT_USAGE, printJsonLine } from "./output.js";

/**
 * The command groups, in the order help lists them. Each is defined in a module of its own,
 * imported only when wanted (see namedGroup); what a command does is loaded when it runs.
 */
const GROUPS: { name: string; define: () => Promise<Command> }[] = [
  { name: "gateway", define: async () => (await import("./gateway-commands.js")).gatewayCommands() },
  { name: "node", define: async () => (await import("./node-commands.js")).nodeCommands() },
  { name: "devices", define: async () => (await import("./devices-commands.js")).devicesCommands() },
  { name: "nodes", define: async () => (await import("./devices-commands.js")).nodesCommands() },
  { name: "keys", define: async () => (await import("./keys-commands.js")).keysCommands() },
  { name: "token", define: async () => (await import("./token-commands.js")).tokenCommand() },
  { name: "auth", define: async () => (await import("./token-commands.js")).authCommands() },
  { name: "rotate", define: async () => (await import("./keys-commands.js")).rotateCommands() },
  { name: "audit", define: async () => (await import("./audit-commands.js")).auditCommands() },
  { name: "config", define: async () => (await import("./config-commands.js")).configCommands() },
  { name: "doctor", define: async () => (await import("./doctor-commands.js")).doctorCommand() },
  { name: "service", define: async () => (await import("./service-commands.js")).serviceCommands() },
  { name: "enroll", define: async () => (await import("./enroll-commands.js")).enrollCommands() },
  { name: "migrate", define: async () => (await import("./enroll-commands.js")).migrateCommand() },
  { name: "dashboard", define: async () => (await import("./dashboard-commands.js")).dashboardCommand() },
];

/**
 * The group a command line names when only --home and --json come before it: then that group
 * alone is defined, which is all commander needs to parse, run or explain it. Anything else
 * (help, --version, no command, a mistyped one) defines every group, so that help lists them all
 * and a wrong name gets its "did you mean".
 */
function namedGroup(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--json" || arg.startsWith("--home=")) continue;
    if (arg === "--home") {
      i++;
      continue;
    }
    return GROUPS.some((group) => group.name === arg) ? arg : undefined;
  }
  return undefined;
}

const program = new Command("gatehouse")
  .description("Gatehouse: device registration, an embedded CA and mutual TLS for a gateway and its nodes")
  .version(GATEHOUSE_VERSION)
  .option("--home <dir>", "the home folder (default: $GATEHOUSE_HOME or ~/.gatehouse)")
  .option("--json", "print one JSON document on stdout (`node register`: JSON Lines, see its --help)")
  .showHelpAfterError()
  .exitOverride();

const wanted = namedGroup(process.argv.slice(2));
const groups = await Promise.all(
  GROUPS.filter((group) => wanted === undefined || group.name === wanted).map((group) => group.define()),
);
for (const group of groups) {
  // Sub-commands report usage errors through the same override, so they exit 2 as well.
  group.exitOverride();
  for (const command of group.commands) command.exitOverride();
  program.addCommand(group);
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help that was asked for (--help, `help`) and --version exit 0. Help shown because a command
    // is missing (a bare `gatehouse`, `gatehouse node`) goes to stderr and commander gives it
    // exitCode 1: that is wrong usage.
    const asked = ["commander.helpDisplayed", "commander.version", "commander.help"].includes(error.code);
    const ok = asked && error.exitCode === 0;
    // A command may name its own status for wrong usage (`nodes exec`: 125, see ownUsageStatus).
    process.exitCode = ok ? 0 : error.exitCode > EXIT_USAGE ? error.exitCode : EXIT_USAGE;
    // Scripts that asked for --json get one JSON document even for wrong usage.
    if (!ok && process.argv.includes("--json")) {
      printJsonLine({
        error: "invalid_request",
        error_description:
          error.code === "commander.help" ? "no command given" : error.message.replace(/^error: /, ""),
        hint: "Run the command with --help.",
      });
    }
  } else {
    throw error;
  }
}
