/**
 * What the `gateway` commands do, loaded only when one runs (their definitions are in
 * gateway-commands.ts).
 */
import { addServerNames, gatewayHomeExists, type GatewayInitResult } from "../gateway/home.js";
import { initAndStartGateway, initGatewayHomeOrNothing, makeHomeOrNothing } from "../gateway/first-start.js";
import {
  initClusterGatewayHome,
  joinClusterGatewayHome,
  type ClusterHomeOptions,
} from "../gateway/cluster/join.js";
import { isSecretReference } from "../config/index.js";
import { describeGatewayHome, unreachableNamesWarning, type GatewayInfo } from "../gateway/info.js";
import { startGateway, type RunningGateway } from "../gateway/start.js";
import { livePid } from "../gateway/listen-address.js";
import type { CommandContext } from "./run.js";
import { checkListen, checkSans } from "./validate.js";
import { chooseLogFormat, logDestination } from "./logger.js";
import { UsageError, fields, printJson, printNotice, printText } from "./output.js";

function printInit(result: GatewayInitResult): void {
  printNotice(
    [
      `✓ Gateway home created at ${result.home}`,
      `  gateway id:      ${result.gatewayId}`,
      ...(result.instanceId ? [`  instance id:     ${result.instanceId}`] : []),
      `  CA fingerprint:  ${result.caFingerprint}`,
      `  listen:          ${result.listen}`,
      ``,
      `Register a node (on the node's machine):`,
      `  ${result.registerCommand}`,
      ``,
    ].join("\n"),
  );
}

/** The lines `gateway info` prints, and `gateway start` repeats once it listens. */
function infoLines(info: GatewayInfo): string {
  const previous = info.previousCaFingerprint
    ? `${info.previousCaFingerprint} (trusted until ${info.previousCaRetiresAt ?? "the rotation ends"})`
    : undefined;
  return (
    fields([
      ["gateway id", info.gatewayId],
      ["home", info.home],
      ["listen", info.listen],
      ["CA fingerprint", info.caFingerprint],
      ["previous CA", previous],
      ["server names", info.serverNames.join(", ")],
    ]) + `\nRegister a node (on the node's machine):\n  ${info.registerCommand}\n`
  );
}

/**
 * `gateway init`: creates the home (CA, server certificate, admin credential, config, database);
 * with `--store`, the first instance of a gateway whose state lives in PostgreSQL.
 */
export async function gatewayInit(
  ctx: CommandContext,
  options: { listen: string; name?: string; san?: string[]; store?: string; keyEncryptionKey?: string },
): Promise<void> {
  checkListen("--listen", options.listen);
  checkSans(options.san);
  if (options.keyEncryptionKey !== undefined && options.store === undefined)
    throw new UsageError(
      "--key-encryption-key goes with --store (a gateway alone keeps its keys in its home)",
    );
  const cluster =
    options.store === undefined ? undefined : clusterOptions({ ...options, store: options.store });
  const result = cluster
    ? await makeHomeOrNothing(ctx.home, () =>
        initClusterGatewayHome(ctx.home, { ...cluster, ...(options.name ? { name: options.name } : {}) }),
      )
    : await initGatewayHomeOrNothing(ctx.home, {
        listen: options.listen,
        name: options.name,
        sans: options.san,
      });
  if (ctx.json) printJson(result);
  else printInit(result);
}

/** `gateway join`: the home of another instance of the gateway a PostgreSQL database holds. */
export async function gatewayJoin(
  ctx: CommandContext,
  options: { store: string; listen: string; keyEncryptionKey?: string; san?: string[]; admin: string },
): Promise<void> {
  checkListen("--listen", options.listen);
  checkSans(options.san);
  if (options.admin !== "new")
    throw new UsageError(
      `--admin ${JSON.stringify(options.admin)}: only "new" (a new admin device for this instance); to share one, copy admin/ of the first home`,
    );
  const cluster = clusterOptions(options);
  const result = await makeHomeOrNothing(ctx.home, () => joinClusterGatewayHome(ctx.home, cluster));
  if (ctx.json) printJson(result);
  else printInit(result);
}

/** The flags `gateway init --store` and `gateway join` share, checked before anything is made. */
function clusterOptions(options: {
  store: string;
  listen: string;
  keyEncryptionKey?: string;
  san?: string[];
}): ClusterHomeOptions {
  return {
    store: checkReference("--store", options.store),
    ...(options.keyEncryptionKey !== undefined
      ? { keyEncryptionKey: checkReference("--key-encryption-key", options.keyEncryptionKey) }
      : {}),
    listen: options.listen,
    ...(options.san ? { sans: options.san } : {}),
  };
}

/** A flag that names a secret: a reference (env://, file://, op://, vault://) or, for --store, a URL. */
function checkReference(flag: string, value: string): string {
  if (isSecretReference(value)) return value;
  if (flag === "--store" && /^postgres(ql)?:\/\//.test(value)) return value;
  throw new UsageError(
    flag === "--store"
      ? `${flag} must be a postgres:// URL or a secret reference (env://NAME, file://PATH, op://…, vault://…#field)`
      : `${flag} must be a secret reference (env://NAME, file://PATH, op://…, vault://…#field), never the key itself`,
  );
}

/** `gateway start`: serves until SIGINT or SIGTERM; creates the home first if there is none. */
export async function gatewayStart(
  ctx: CommandContext,
  options: { listen?: string; logFormat?: string },
): Promise<void> {
  checkListen("--listen", options.listen);
  const flags = options.listen ? { listen: options.listen } : {};
  const start = {
    flags,
    logDestination: logDestination(chooseLogFormat(options.logFormat), ["gatewayId"]),
  };
  // Listening for the stop signals before the start: a SIGTERM that arrives while the gateway is
  // starting (a service manager, a test that saw /health answer) stops it cleanly once it is up,
  // instead of killing it without a 1012 to its nodes and with its pid file left behind.
  // A second signal leaves at once (a start stuck on a slow secret reference, a stop stuck on a
  // disk), with the shell's 128 + signal number.
  let running: RunningGateway | undefined;
  let stopSignal: string | undefined;
  let stopRequested: (signal: string) => void = () => undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal) process.exit(signal === "SIGINT" ? 130 : 143);
    stopSignal = signal;
    stopRequested(signal);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  if (gatewayHomeExists(ctx.home)) {
    running = await startGateway(ctx.home, start);
  } else {
    // Printed only once the gateway listens: a start that fails leaves no home and no claim of one.
    const first = await initAndStartGateway(ctx.home, flags, start);
    running = first.running;
    if (!ctx.json) printNotice(`✓ Gateway home created at ${first.created.home}\n`);
  }
  if (!ctx.json) {
    const info = describeGatewayHome(ctx.home, flags);
    printNotice(`✓ Gateway started: ${running.url}\n${infoLines(info)}\n`);
  }
  const signal = await new Promise<string>((resolve) => {
    stopRequested = resolve;
    if (stopSignal) resolve(stopSignal);
  });
  running.ctx.logger.info({ signal }, "shutting down");
  try {
    await running.close({ processExits: true });
  } catch (error) {
    // A stop that failed part-way (a store that could not close) is said, and the exit says so.
    running.ctx.logger.error({ err: error }, "the gateway did not stop cleanly");
    process.exitCode = 1;
  }
  // The stop left the node connections to the exit (the kernel closes them; each node already has
  // its 1012 close frame): tearing 2,000 TLS connections down one by one took longer than the rest
  // of the stop. What must last is written; pino flushes its log on exit.
  process.exit();
}

/** `gateway info`: id, address, CA fingerprint(s) and the `node register` line. */
export async function gatewayInfo(ctx: CommandContext, options: { listen?: string }): Promise<void> {
  checkListen("--listen", options.listen);
  const info = describeGatewayHome(ctx.home, options.listen ? { listen: options.listen } : {});
  const warning = unreachableNamesWarning(info.listen, info.serverNames);
  if (ctx.json) printJson({ ...info, ...(warning ? { warning } : {}) });
  else printText(infoLines(info) + (warning ? `\n! ${warning}\n` : ""));
}

/** `gateway add-name NAMES...`: adds server names; the certificate is re-issued at the next start. */
export async function gatewayAddName(ctx: CommandContext, names: string[]): Promise<void> {
  checkSans(names, "name");
  const result = addServerNames(ctx.home, names);
  // The certificate is re-issued at start: a running gateway serves the old one until then.
  const pid = livePid(ctx.home);
  if (ctx.json) printJson({ ...result, restartNeeded: result.added.length > 0 && pid !== undefined });
  else if (!result.added.length) printText(`✓ gateway.json already names ${names.join(", ")}\n`);
  else
    printText(
      `✓ added ${result.added.join(", ")} to sans in gateway.json\n` +
        (pid
          ? `  The running gateway (pid ${pid}) serves its old certificate until it restarts: stop it and run \`gatehouse gateway start\` again.\n`
          : "  The next `gatehouse gateway start` re-issues the server certificate with it.\n"),
    );
}
