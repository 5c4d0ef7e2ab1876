import { Command } from "commander";
import { lazyAction } from "./run.js";

/** The `service` commands; what each does is in service-actions.ts, loaded when it runs. */
export function serviceCommands(): Command {
  const service = new Command("service").description("run the gateway or the node as a service");
  service
    .command("install")
    .description("write a systemd user unit (Linux) or a LaunchAgent (macOS) that holds no credential")
    .argument("<role>", "gateway or node")
    .option("--dry-run", "print the file instead of writing it")
    .option("--platform <platform>", "linux or darwin (default: this machine's)")
    .option("--force", "replace a different file that is already there")
    .action(lazyAction(async () => (await import("./service-actions.js")).serviceInstall));
  return service;
}
