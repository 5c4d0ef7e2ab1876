/**
 * What `node test-connection` and `node status` do, loaded only when one runs (their definitions
 * are in node-commands.ts). Apart from node-actions.ts: a diagnosis must start fast, so it loads
 * neither the agent (ws sessions, pino, the executor) nor the registration's key and CSR code.
 */
import type { CommandContext } from "./run.js";
import { checkGatewayUrl } from "./validate.js";
import { UsageError, fields, printJson, printText } from "./output.js";
import {
  testConnection,
  testEveryGateway,
  urlsToTest,
  type LayerResult,
  type TestConnectionResult,
} from "../node/test-connection.js";
import { readNodeStatus } from "../node/status.js";

function formatLayer(layer: LayerResult): string {
  const mark = layer.ok ? "✓" : "✗";
  const ms = `${layer.ms} ms`.padStart(8);
  // A failing layer shows its code here; the description and the fix follow once, below.
  return `${mark} ${layer.layer.padEnd(10)} ${ms}  ${layer.ok ? layer.detail : layer.code}\n`;
}

/** `node test-connection`: checks each layer to the gateway; exit 1 at the first that fails. */
export async function nodeTestConnection(
  ctx: CommandContext,
  options: { gateway?: string; token?: string; timeout: string },
): Promise<void> {
  if (options.gateway) checkGatewayUrl(options.gateway);
  const timeoutMs = Number(options.timeout);
  // At most 10 minutes: a layer's timeout is a timer (ws's handshake timer among them), and a
  // Node timer past 2^31-1 ms fires at once.
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000)
    throw new UsageError("--timeout must be a number of milliseconds, at most 600000 (10 minutes)");
  const common = {
    ...(options.token ? { token: options.token } : {}),
    timeoutMs,
    onLayer: ctx.json ? undefined : (layer: LayerResult) => printText(formatLayer(layer)),
  };
  const urls = urlsToTest(ctx.home, options.gateway);
  if (urls.length > 1) {
    // Several instances in node.json: each one is walked and named, even when another serves.
    const results = await testEveryGateway(ctx.home, urls as string[], {
      ...common,
      onGateway: ctx.json
        ? undefined
        : (url, index, count) =>
            printText(`${index > 0 ? "\n" : ""}gateway ${url} (${index + 1} of ${count})\n`),
      onWalk: ctx.json ? undefined : printSummary,
    });
    if (ctx.json) printJson(results);
    else {
      const failed = results.gateways.filter((walk) => !walk.ok);
      printText(
        failed.length === 0
          ? `\n✓ all ${urls.length} gateway URLs fine in ${results.totalMs} ms\n`
          : `\n✗ ${failed.length} of ${urls.length} gateway URLs failed: ${failed.map((walk) => walk.gatewayUrl ?? "?").join(", ")}\n`,
      );
    }
    if (!results.ok) process.exitCode = 1;
    return;
  }
  const result = await testConnection(ctx.home, { ...(urls[0] ? { gatewayUrl: urls[0] } : {}), ...common });
  if (ctx.json) printJson(result);
  else printSummary(result);
  if (!result.ok) process.exitCode = 1;
}

/** The end of one walk: all fine, or the failing layer's code, description and fix. */
function printSummary(result: TestConnectionResult): void {
  if (result.ok) printText(`\n✓ all layers fine in ${result.totalMs} ms\n`);
  else if (result.error) {
    printText(
      `\n✗ ${result.error.code} (${result.error.layer})\n  ${result.error.description}\n  fix: ${result.error.hint}\n`,
    );
  }
}

/** `node status`: the agent's state, certificate and last error, from the home's status file. */
export async function nodeStatus(ctx: CommandContext, options: { verbose?: boolean }): Promise<void> {
  const status = readNodeStatus(ctx.home);
  if (ctx.json) {
    printJson(status);
    return;
  }
  const rows: [string, string | null | undefined][] = [
    ["state", status.running ? `${status.state} (pid ${status.pid}, since ${status.since})` : "not running"],
    ["config", status.configPath],
    ["gateway", status.gatewayUrls.join(", ")],
    // Several instances: which one the agent is on now.
    ["using", status.gatewayUrls.length > 1 ? status.currentGatewayUrl : null],
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
}
