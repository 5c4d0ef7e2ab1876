#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { GATEHOUSE_VERSION } from "../protocol/version.js";
import { gatewayCommands } from "./gateway-commands.js";
import { nodeCommands } from "./node-commands.js";
import { devicesCommands, nodesCommands } from "./devices-commands.js";
import { EXIT_USAGE, printJsonLine } from "./output.js";
import { keysCommands, rotateCommands } from "./keys-commands.js";
import { authCommands, tokenCommand } from "./token-commands.js";
import { auditCommands } from "./audit-commands.js";
import { configCommands } from "./config-commands.js";
import { doctorCommand } from "./doctor-commands.js";
import { serviceCommands } from "./service-commands.js";
import { enrollCommands, migrateCommand } from "./enroll-commands.js";
import { dashboardCommand } from "./dashboard-commands.js";

const program = new Command("gatehouse")
  .description("Gatehouse: device registration, an embedded CA and mutual TLS for a gateway and its nodes")
  .version(GATEHOUSE_VERSION)
  .option("--home <dir>", "the home folder (default: $GATEHOUSE_HOME or ~/.gatehouse)")
  .option("--json", "print one JSON document on stdout (`node register`: JSON Lines, see its --help)")
  .showHelpAfterError()
  .exitOverride();

const groups = [
  gatewayCommands(),
  nodeCommands(),
  devicesCommands(),
  nodesCommands(),
  keysCommands(),
  tokenCommand(),
  authCommands(),
  rotateCommands(),
  auditCommands(),
  configCommands(),
  doctorCommand(),
  serviceCommands(),
  enrollCommands(),
  migrateCommand(),
  dashboardCommand(),
];
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
