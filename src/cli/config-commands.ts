import { Command } from "commander";
import { lazyAction } from "./run.js";

/** The `config` commands; what each does is in config-actions.ts, loaded when it runs. */
export function configCommands(): Command {
  const config = new Command("config").description("this home's configuration");
  config
    .command("explain")
    .description("every effective setting, its value (secrets as their reference) and where it came from")
    .option("--listen <host:port>", "as `gateway start --listen` would see it")
    .option("--gateway <url>", "as `node test-connection --gateway` would see it")
    .action(lazyAction(async () => (await import("./config-actions.js")).configExplain));
  return config;
}
