import { Command } from "commander";
import { registerNode, type RegisterProgress } from "../node/register.js";
import { prepareNode } from "../node/home.js";
import { NodeAgent } from "../node/agent.js";
import { acquireAgentLock } from "../node/agent-lock.js";
import { killRunningCommands } from "../node/executor.js";
import { action } from "./run.js";
import { chooseLogFormat, createLogger, LOG_FORMAT_OPTION } from "./logger.js";
import { checkFingerprint, checkGatewayUrl } from "./validate.js";
import { Progress, UsageError, fields, printJson, printJsonLine, printText } from "./output.js";
import type { EnrollResponse } from "../protocol/messages.js";
import { testConnection, type LayerResult } from "../node/test-connection.js";
import { readNodeStatus } from "../node/status.js";

/** What `node register --help` says about --json: the contract scripts rely on. */
const REGISTER_JSON_HELP = `
With --json the output is JSON Lines (one JSON document per line on stdout):
  while the request waits for approval, first
    {"status":"pending","requestId","deviceId","name","userCode","keyFingerprint","expiresAt"}
  then one last line: the result {"status":"approved","deviceId","name",...}
  or the error {"error","error_description","hint"}.
A registration approved at once (an enroll token) prints only the last line.`;

/** The first line of `node register --json`: what a script needs to have the request approved. */
function pendingLine(response: EnrollResponse) {
  const { requestId, deviceId, name, userCode, keyFingerprint, status, expiresAt } = response;
  return { status, requestId, deviceId, name, userCode, keyFingerprint, expiresAt };
}

export function nodeCommands(): Command {
  const node = new Command("node").description("register and run this machine as a node");

  node
    .command("register")
    .description("make a device key, send a CSR, and wait for an admin's approval")
    .requiredOption("--gateway <url>", "the gateway, e.g. https://gateway.lan:18789")
    .requiredOption("--ca-fingerprint <sha256:hex>", "the gateway CA's fingerprint, from `gateway init`")
    .option("--name <name>", "a name for this device (default: the host name)")
    .option("--new-key", "make a new device key (after a revocation or denial); the old key is replaced")
    .option(
      "--enroll-token <token>",
      "approve at once with an enroll token (or GATEHOUSE_ENROLL_TOKEN, which stays out of the process list)",
    )
    .addHelpText("after", REGISTER_JSON_HELP)
    .action(
      action(
        async (
          ctx,
          options: {
            gateway: string;
            caFingerprint: string;
            name?: string;
            newKey?: boolean;
            enrollToken?: string;
          },
        ) => {
          const enrollToken = options.enrollToken ?? process.env.GATEHOUSE_ENROLL_TOKEN;
          checkGatewayUrl(options.gateway);
          checkFingerprint(options.caFingerprint);
          const progress = new Progress(ctx.json);
          const say = (line: string) => {
            if (!ctx.json) {
              progress.stop();
              printText(line + "\n");
            }
          };
          const onProgress = (event: RegisterProgress) => {
            switch (event.state) {
              case "pinned":
                say(`✓ Gateway CA matches ${event.caFingerprint}`);
                break;
              case "submitted":
                // JSON Lines: a script learns the user code while the request waits.
                if (ctx.json && event.response.status === "pending")
                  printJsonLine(pendingLine(event.response));
                say(`Device id:        ${event.response.deviceId}`);
                say(`Name:             ${event.response.name}`);
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
              ...(enrollToken ? { enrollToken } : {}),
              onProgress,
            });
            progress.stop();
            if (ctx.json) printJsonLine(result);
            else {
              say(`✓ Approved as ${result.name}. Certificate valid until ${result.certExpiresAt}.`);
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
    .option(...LOG_FORMAT_OPTION)
    .action(
      action(async (ctx, options: { logFormat?: string }) => {
        const format = chooseLogFormat(options.logFormat);
        const { loaded, credentials, tokens } = await prepareNode(ctx.home);
        const logger = createLogger({
          level: loaded.config.logLevel,
          base: { deviceId: loaded.config.deviceId },
          format,
        });
        // One agent per home: a second would share the certificate, the status file and the name.
        const lock = acquireAgentLock(ctx.home);
        const agent = new NodeAgent(ctx.home, loaded.config, credentials, logger, tokens);
        let stopping: Promise<void> | undefined;
        let stopped = () => {};
        const shutdown = (signal: NodeJS.Signals) => {
          if (stopping) {
            // A second Ctrl-C: no more grace for the running commands, but never leave them behind.
            logger.warn({ signal }, `${signal} again: killing the running commands now`);
            killRunningCommands();
            lock.release();
            process.exit(130);
          }
          stopping = agent.stop().then(
            () => stopped(),
            () => stopped(),
          );
        };
        process.on("SIGINT", shutdown);
        process.on("SIGTERM", shutdown);
        try {
          await new Promise<void>((resolve, reject) => {
            stopped = resolve;
            agent.once("fatal", reject);
            agent.start();
          });
        } finally {
          process.removeListener("SIGINT", shutdown);
          process.removeListener("SIGTERM", shutdown);
          lock.release();
        }
      }),
    );

  node
    .command("test-connection")
    .description(
      "check every layer between this node and its gateway; stop at the first failure and name the fix",
    )
    .option("--gateway <url>", "test this gateway URL instead of the one in node.json")
    .option(
      "--token <token>",
      "test a bearer access token instead of the device certificate (or GATEHOUSE_TOKEN)",
    )
    .option("--timeout <ms>", "time each layer may take", "3000")
    .action(
      action(async (ctx, options: { gateway?: string; token?: string; timeout: string }) => {
        if (options.gateway) checkGatewayUrl(options.gateway);
        const timeoutMs = Number(options.timeout);
        // At most 10 minutes: a layer's timeout is a timer (ws's handshake timer among them), and a
        // Node timer past 2^31-1 ms fires at once.
        if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000)
          throw new UsageError("--timeout must be a number of milliseconds, at most 600000 (10 minutes)");
        const result = await testConnection(ctx.home, {
          ...(options.gateway ? { gatewayUrl: options.gateway } : {}),
          ...(options.token ? { token: options.token } : {}),
          timeoutMs,
          onLayer: ctx.json ? undefined : (layer) => printText(formatLayer(layer)),
        });
        if (ctx.json) printJson(result);
        else if (result.ok) printText(`\n✓ all layers fine in ${result.totalMs} ms\n`);
        else if (result.error) {
          printText(
            `\n✗ ${result.error.code} (${result.error.layer})\n  ${result.error.description}\n  fix: ${result.error.hint}\n`,
          );
        }
        if (!result.ok) process.exitCode = 1;
      }),
    );

  node
    .command("status")
    .description("the agent's state, certificate and last error")
    .option("--verbose", "show every field")
    .action(
      action(async (ctx, options: { verbose?: boolean }) => {
        const status = readNodeStatus(ctx.home);
        if (ctx.json) {
          printJson(status);
          return;
        }
        const rows: [string, string | null | undefined][] = [
          [
            "state",
            status.running ? `${status.state} (pid ${status.pid}, since ${status.since})` : "not running",
          ],
          ["config", status.configPath],
          ["gateway", status.gatewayUrl],
          ["device id", status.deviceId],
          [
            "certificate",
            status.certificate
              ? `${status.certificate.expired ? "EXPIRED at" : "valid until"} ${status.certificate.expiresAt}`
              : "none (not registered yet)",
          ],
          ["last attempt", status.lastAttemptAt ?? "never"],
          ["last connected", status.lastConnectedAt ?? "never"],
          [
            "last error",
            status.lastError
              ? `${status.lastError.code}: ${status.lastError.message} (${status.lastError.at})`
              : "none",
          ],
          ["reconnect in", status.backoffMs !== null ? `${status.backoffMs} ms` : null],
        ];
        if (options.verbose) {
          rows.push(
            ["CA fingerprint", status.caFingerprint],
            ["cert fingerprint", status.certificate?.fingerprint],
            ["cert valid from", status.certificate?.validFrom],
            ["session", status.sessionId],
          );
        }
        printText(fields(rows));
      }),
    );

  return node;
}

function formatLayer(layer: LayerResult): string {
  const mark = layer.ok ? "✓" : "✗";
  const ms = `${layer.ms} ms`.padStart(8);
  // A failing layer shows its code here; the description and the fix follow once, below.
  return `${mark} ${layer.layer.padEnd(10)} ${ms}  ${layer.ok ? layer.detail : layer.code}\n`;
}
