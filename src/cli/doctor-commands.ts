import { Command } from "commander";
import { lazyAction } from "./run.js";

/** The `doctor` command; what it does is in doctor-actions.ts, loaded when it runs. */
export function doctorCommand(): Command {
  return new Command("doctor")
    .description(
      "check this home (modes, secrets, certificates, pins, conflicting sources); --legacy scans for old tokens",
    )
    .option(
      "--legacy",
      "scan the old token locations (~/.clawdbot, ~/.openclaw, ~/.moltbot, .env, plists, compose files)",
    )
    .action(lazyAction(async () => (await import("./doctor-actions.js")).doctor));
}
