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
    .option(
      "--store <ref>",
      "keep the state in PostgreSQL for several instances: a URL or a secret reference (env://GATEHOUSE_DATABASE_URL)",
    )
    .option(
      "--key-encryption-key <ref>",
      "with --store: the secret reference of the key the CA and signing keys are sealed under (default: env://GATEHOUSE_KEY_ENCRYPTION_KEY)",
    )
    .action(lazyAction(async () => (await import("./gateway-actions.js")).gatewayInit));

  gateway
    .command("join")
    .description("make the home of another instance of a gateway whose state is in PostgreSQL")
    .requiredOption("--store <ref>", "the database `gateway init --store` used: a URL or a secret reference")
    .requiredOption("--listen <host:port>", "address this instance listens on")
    .option(
      "--key-encryption-key <ref>",
      "the secret reference of the key the shared CA is sealed under (default: env://GATEHOUSE_KEY_ENCRYPTION_KEY)",
    )
    .option("--san <names...>", "extra names or addresses for this instance's server certificate")
    .option("--admin <new>", "the admin credential of this home: a new admin device", "new")
    .action(lazyAction(async () => (await import("./gateway-actions.js")).gatewayJoin));

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
