import { Command } from "commander";
import { lazyAction } from "./run.js";
import { LOG_FORMAT_OPTION } from "./log-format-option.js";

/** The `gateway` commands; what each does is in gateway-actions.ts, loaded when it runs. */
export function gatewayCommands(): Command {
  const gateway = new Command("gateway").description("run and set up the gateway");

  gateway
    .command("init")
    .description("create the gateway home: CA, server certificate, admin credential, config, database")
    .option("--listen <host:port>", "address to listen on", "127.0.0.1:18789")
    .option("--name <name>", "a name for this gateway")
    .option("--san <names...>", "extra names or addresses for the server certificate")
    .action(lazyAction(async () => (await import("./gateway-actions.js")).gatewayInit));

  gateway
    .command("start")
    .description("serve HTTPS and WSS; creates the home first if there is none")
    .option("--listen <host:port>", "address to listen on for this run (overrides gateway.json)")
    .option(...LOG_FORMAT_OPTION)
    .action(lazyAction(async () => (await import("./gateway-actions.js")).gatewayStart));

  gateway
    .command("info")
    .description("this gateway's id, address, CA fingerprint(s) and the `node register` line")
    .option("--listen <host:port>", "as `gateway start --listen` would serve")
    .action(lazyAction(async () => (await import("./gateway-actions.js")).gatewayInfo));

  gateway
    .command("add-name")
    .description("add a DNS name or address that nodes use to the server certificate (at the next start)")
    .argument("<names...>", "host names or IP addresses, e.g. gateway.lan 192.168.1.20")
    .action(lazyAction(async () => (await import("./gateway-actions.js")).gatewayAddName));

  return gateway;
}
