import { Command } from "commander";
import { initGatewayHome, gatewayHomeExists, type GatewayInitResult } from "../gateway/home.js";
import { startGateway } from "../gateway/start.js";
import { action } from "./run.js";
import { checkListen, checkSans } from "./validate.js";
import { printJson, printNotice } from "./output.js";

function printInit(result: GatewayInitResult): void {
  printNotice(
    [
      `✓ Gateway home created at ${result.home}`,
      `  gateway id:      ${result.gatewayId}`,
      `  CA fingerprint:  ${result.caFingerprint}`,
      `  listen:          ${result.listen}`,
      ``,
      `Register a node (on the node's machine):`,
      `  ${result.registerCommand}`,
      ``,
    ].join("\n"),
  );
}

export function gatewayCommands(): Command {
  const gateway = new Command("gateway").description("run and set up the gateway");

  gateway
    .command("init")
    .description("create the gateway home: CA, server certificate, admin credential, config, database")
    .option("--listen <host:port>", "address to listen on", "127.0.0.1:18789")
    .option("--name <name>", "a name for this gateway")
    .option("--san <names...>", "extra names or addresses for the server certificate")
    .action(
      action(async (ctx, options: { listen: string; name?: string; san?: string[] }) => {
        checkListen("--listen", options.listen);
        checkSans(options.san);
        const result = await initGatewayHome(ctx.home, {
          listen: options.listen,
          name: options.name,
          sans: options.san,
        });
        if (ctx.json) printJson(result);
        else printInit(result);
      }),
    );

  gateway
    .command("start")
    .description("serve HTTPS and WSS; creates the home first if there is none")
    .option("--listen <host:port>", "address to listen on for this run (overrides gateway.json)")
    .action(
      action(async (ctx, options: { listen?: string }) => {
        checkListen("--listen", options.listen);
        if (!gatewayHomeExists(ctx.home)) {
          const result = await initGatewayHome(ctx.home, options.listen ? { listen: options.listen } : {});
          if (!ctx.json) printInit(result);
        }
        const running = await startGateway(ctx.home, {
          flags: options.listen ? { listen: options.listen } : {},
        });
        if (!ctx.json && process.stderr.isTTY) printNotice(`✓ Gateway listening on ${running.url}\n`);
        await new Promise<void>((resolve) => {
          const shutdown = (signal: string) => {
            running.ctx.logger.info({ signal }, "shutting down");
            running.close().then(resolve, resolve);
          };
          process.once("SIGINT", shutdown);
          process.once("SIGTERM", shutdown);
        });
      }),
    );

  return gateway;
}
