import { Command } from "commander";
import { pino } from "pino";
import { registerNode, type RegisterProgress } from "../node/register.js";
import { loadNode } from "../node/home.js";
import { NodeAgent } from "../node/agent.js";
import { action } from "./run.js";
import { checkFingerprint, checkGatewayUrl } from "./validate.js";
import { Progress, printJson } from "./output.js";

export function nodeCommands(): Command {
  const node = new Command("node").description("register and run this machine as a node");

  node
    .command("register")
    .description("make a device key, send a CSR, and wait for an admin's approval")
    .requiredOption("--gateway <url>", "the gateway, e.g. https://gateway.lan:18789")
    .requiredOption("--ca-fingerprint <sha256:hex>", "the gateway CA's fingerprint, from `gateway init`")
    .option("--name <name>", "a name for this device (default: the host name)")
    .option("--new-key", "make a new device key (after a revocation or denial); the old key is replaced")
    .action(
      action(
        async (ctx, options: { gateway: string; caFingerprint: string; name?: string; newKey?: boolean }) => {
          checkGatewayUrl(options.gateway);
          checkFingerprint(options.caFingerprint);
          const progress = new Progress(ctx.json);
          const say = (line: string) => {
            if (!ctx.json) {
              progress.stop();
              process.stdout.write(line + "\n");
            }
          };
          const onProgress = (event: RegisterProgress) => {
            switch (event.state) {
              case "pinned":
                say(`✓ Gateway CA matches ${event.caFingerprint}`);
                break;
              case "submitted":
                say(`Device id:        ${event.response.deviceId}`);
                say(`Key fingerprint:  ${event.response.keyFingerprint}`);
                say(`User code:        ${event.response.userCode}`);
                if (event.response.status === "pending") {
                  say(`Ask an admin to run: gatehouse devices approve ${event.response.userCode}`);
                }
                break;
              case "waiting":
                say(`Waiting for approval (the request expires at ${event.expiresAt})…`);
                progress.spin("waiting for approval");
                break;
              case "retrying":
                say(`… the gateway did not answer (${event.error.code}); still waiting`);
                progress.spin("waiting for approval");
                break;
            }
          };
          try {
            const result = await registerNode(ctx.home, {
              gatewayUrl: options.gateway,
              caFingerprint: options.caFingerprint,
              name: options.name,
              newKey: Boolean(options.newKey),
              onProgress,
            });
            progress.stop();
            if (ctx.json) printJson(result);
            else {
              say(`✓ Approved. Certificate valid until ${result.certExpiresAt}.`);
              say(`Start the node: gatehouse node start --home ${result.home}`);
            }
          } finally {
            progress.stop();
          }
        },
      ),
    );

  node
    .command("start")
    .description("run the node agent: connect, heartbeat, reconnect")
    .action(
      action(async (ctx) => {
        const { loaded, credentials } = loadNode(ctx.home);
        const logger = pino({ level: loaded.config.logLevel, base: { deviceId: loaded.config.deviceId } });
        const agent = new NodeAgent(ctx.home, loaded.config, credentials, logger);
        await new Promise<void>((resolve, reject) => {
          agent.once("fatal", reject);
          const shutdown = () => {
            agent.stop().then(resolve, resolve);
          };
          process.once("SIGINT", shutdown);
          process.once("SIGTERM", shutdown);
          agent.start();
        });
      }),
    );

  return node;
}
