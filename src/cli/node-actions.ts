/**
 * What `node register` and `node start` do, loaded only when one runs (their definitions are in
 * node-commands.ts; test-connection and status are in node-diagnostics-actions.ts, so that they
 * load neither the agent nor the registration's key and CSR code).
 */
import { registerNode, type RegisterProgress } from "../node/register.js";
import { prepareNode } from "../node/home.js";
import { NodeAgent } from "../node/agent.js";
import { acquireAgentLock } from "../node/agent-lock.js";
import { killRunningCommands } from "../node/executor.js";
import type { CommandContext } from "./run.js";
import { chooseLogFormat, createLogger } from "./logger.js";
import { checkFingerprint, checkGatewayUrl } from "./validate.js";
import { Progress, printJsonLine, printText } from "./output.js";
import type { EnrollResponse } from "../protocol/messages.js";

/** The first line of `node register --json`: what a script needs to have the request approved. */
function pendingLine(response: EnrollResponse) {
  const { requestId, deviceId, name, userCode, keyFingerprint, status, expiresAt } = response;
  return { status, requestId, deviceId, name, userCode, keyFingerprint, expiresAt };
}

/** `node register`: makes a device key, sends a CSR and waits for approval (or an enroll token's). */
export async function nodeRegister(
  ctx: CommandContext,
  options: {
    /** Each --gateway, in the order given. */
    gateway: string[];
    caFingerprint: string;
    name?: string;
    newKey?: boolean;
    enrollToken?: string;
  },
): Promise<void> {
  const enrollToken = options.enrollToken ?? process.env.GATEHOUSE_ENROLL_TOKEN;
  for (const url of options.gateway) checkGatewayUrl(url);
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
        if (ctx.json && event.response.status === "pending") printJsonLine(pendingLine(event.response));
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
}

/** `node start`: runs the agent until SIGINT or SIGTERM (a second one kills running commands). */
export async function nodeStart(ctx: CommandContext, options: { logFormat?: string }): Promise<void> {
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
}
