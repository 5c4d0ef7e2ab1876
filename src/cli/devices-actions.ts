/**
 * What the `devices` and `nodes` commands do, loaded only when one runs (their definitions are in
 * devices-commands.ts).
 */
import type { DeviceView, ExecHistoryEntry, ExecResponse, NodeList } from "../protocol/messages.js";
import { escapeUnsafe } from "../protocol/safe-text.js";
import { MAX_EXEC_TIMEOUT_MS } from "../gateway/exec.js";
import { AdminClient } from "./admin-client.js";
import type { TargetOptions } from "./target-options.js";
import type { CommandContext } from "./run.js";
import {
  EXIT_EXEC_OWN_FAILURE,
  UsageError,
  ago,
  duration,
  fields,
  localExitStatus,
  passThrough,
  printJson,
  printNotice,
  printText,
  table,
} from "./output.js";

type GatewayOption = TargetOptions;

function deviceRows(devices: DeviceView[]): string {
  return table(
    [
      "DEVICE ID",
      "NAME",
      "STATUS",
      "ROLE",
      "USER CODE",
      "ONLINE",
      "LAST SEEN",
      "CERT EXPIRES",
      "LAST FAILURE",
    ],
    devices.map((d) => [
      d.deviceId,
      d.name,
      d.status,
      d.role,
      d.userCode ?? "-",
      d.online ? "yes" : "no",
      d.online ? "now" : ago(d.lastSeen),
      d.certExpiresAt ?? "-",
      d.recentFailures[0] ? `${d.recentFailures[0].code} ${ago(d.recentFailures[0].at)}` : "-",
    ]),
  );
}

function describeDevice(d: DeviceView): string {
  const lines: [string, string | null][] = [
    ["device id", d.deviceId],
    ["name", d.name],
    ["kind", d.kind],
    ["status", d.status + (d.statusReason ? ` (${d.statusReason})` : "")],
    ["role", d.role],
    ["user code", d.userCode],
    ["key fingerprint", d.fingerprint],
    ["platform", d.platform],
    ["address", d.address],
    ["online", d.online ? "yes" : "no"],
    ["last seen", d.lastSeen],
    ["certificate", d.certFingerprint],
    ["cert expires", d.certExpiresAt],
    ["registered", d.createdAt],
    ["approved", d.approvedAt],
    ["revoked", d.revokedAt],
  ];
  const failures = d.recentFailures.map((f) =>
    escapeUnsafe(`  ${f.at}  ${f.code}  from ${f.address}  ${f.route}  (${f.credential})`),
  );
  return fields(lines) + (failures.length ? `recent failures\n${failures.join("\n")}\n` : "");
}

/**
 * `devices list [--pending]`. Whether a device is online is said across instances; when the
 * answering instance could not read the others' sessions, `--json` passes `incomplete` on and a
 * terminal gets a warning line on stderr, as `nodes list` does.
 */
export async function devicesList(
  ctx: CommandContext,
  options: GatewayOption & { pending?: boolean },
): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const { devices: list, incomplete } = await client.get<{
    devices: DeviceView[];
    incomplete?: NodeList["incomplete"];
  }>(`/api/v1/devices${options.pending ? "?status=pending" : ""}`);
  if (ctx.json) printJson({ devices: list, ...(incomplete ? { incomplete } : {}) });
  else {
    if (incomplete)
      printNotice(
        `warning: ${incomplete.error}: ${incomplete.error_description}\n  hint: ${incomplete.hint}\n`,
      );
    printText(list.length ? deviceRows(list) : "no devices\n");
  }
}

/** `devices show DEVICE`. */
export async function devicesShow(ctx: CommandContext, id: string, options: GatewayOption): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const result = await client.get<{ device: DeviceView; certificates: unknown[] }>(
    `/api/v1/devices/${encodeURIComponent(id)}`,
  );
  if (ctx.json) printJson(result);
  else printText(describeDevice(result.device));
}

/** `devices approve DEVICE [--role ROLE]`. */
export async function devicesApprove(
  ctx: CommandContext,
  id: string,
  options: GatewayOption & { role: string },
): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const { device } = await client.post<{ device: DeviceView }>(
    `/api/v1/devices/${encodeURIComponent(id)}/approve`,
    { role: options.role },
  );
  if (ctx.json) printJson({ device });
  else
    printText(
      `✓ approved ${device.deviceId} (${device.name}) with role ${device.role}; certificate valid until ${device.certExpiresAt}\n`,
    );
}

/** `devices deny DEVICE [--reason TEXT]`. */
export async function devicesDeny(
  ctx: CommandContext,
  id: string,
  options: GatewayOption & { reason?: string },
): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const { device } = await client.post<{ device: DeviceView }>(
    `/api/v1/devices/${encodeURIComponent(id)}/deny`,
    options.reason ? { reason: options.reason } : {},
  );
  if (ctx.json) printJson({ device });
  else printText(`✓ denied ${device.deviceId} (${device.name})\n`);
}

/** `devices revoke DEVICE [--reason TEXT]`. */
export async function devicesRevoke(
  ctx: CommandContext,
  id: string,
  options: GatewayOption & { reason?: string },
): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const result = await client.post<RevokeAnswer>(
    `/api/v1/devices/${encodeURIComponent(id)}/revoke`,
    options.reason ? { reason: options.reason } : {},
  );
  if (ctx.json) printJson(result);
  else printText(revokedLine(result));
}

/** What `POST /api/v1/devices/:id/revoke` answers. */
export interface RevokeAnswer {
  device: DeviceView;
  /** Sessions the answering instance closed. */
  sessionsClosed: number;
  /**
   * Only with several instances: the open sessions the other live instances held (they close them
   * as they hear of the revocation); null when they could not be read.
   */
  sessionsOnOtherInstances?: number | null;
}

/**
 * The line `devices revoke` prints. Alone: the sessions closed. With several instances the
 * answering one closes only those it holds, so the line says "here" and what the others hold,
 * which they close as they hear of it.
 */
export function revokedLine(result: RevokeAnswer): string {
  const head = `✓ revoked ${result.device.deviceId} (${result.device.name}); closed ${result.sessionsClosed} live session(s)`;
  const elsewhere = result.sessionsOnOtherInstances;
  if (elsewhere === undefined) return `${head}\n`;
  const others =
    elsewhere === null
      ? "the other instances close theirs as they hear of it (within about a second)"
      : elsewhere === 0
        ? "no other instance held one"
        : `the other instances close their ${elsewhere} as they hear of it (within about a second)`;
  return `${head} here; ${others}\n`;
}

/**
 * `nodes list`: the nodes online now, one per device. When the answering instance could not read
 * the others' sessions (the shared database is away), it lists its own: `--json` passes the
 * answer's `incomplete` on, a terminal gets a warning line on stderr; either way the exit is 0.
 */
export async function nodesList(ctx: CommandContext, options: GatewayOption): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const { nodes: list, incomplete } = await client.get<NodeList>("/api/v1/nodes");
  // Several instances: one more column, saying which instance holds each session.
  const instances = list.some((n) => n.instanceId);
  if (ctx.json) printJson({ nodes: list, ...(incomplete ? { incomplete } : {}) });
  else {
    if (incomplete)
      printNotice(
        `warning: ${incomplete.error}: ${incomplete.error_description}\n  hint: ${incomplete.hint}\n`,
      );
    printText(
      list.length
        ? table(
            [
              "DEVICE ID",
              "NAME",
              "PLATFORM",
              "VERSION",
              "UPTIME",
              "ADDRESS",
              "CONNECTED",
              "LAST HEARTBEAT",
              ...(instances ? ["INSTANCE"] : []),
            ],
            list.map((n) => [
              n.deviceId,
              n.name,
              n.platform ?? "-",
              n.version ?? "-",
              n.uptimeSeconds === null ? "-" : duration(n.uptimeSeconds),
              n.address ?? "-",
              ago(n.connectedAt),
              ago(n.lastHeartbeat),
              ...(instances ? [n.instanceId ?? "-"] : []),
            ]),
          )
        : "no nodes online\n",
    );
  }
}

/**
 * `nodes exec NODE -- CMD [ARGS...]`: prints the command's output as it is and exits with its
 * status (see localExitStatus); gatehouse's own failures exit EXIT_EXEC_OWN_FAILURE (125).
 */
export async function nodesExec(
  ctx: CommandContext,
  node: string,
  argv: string[],
  options: GatewayOption & { timeout: string },
): Promise<void> {
  const [command, ...args] = argv;
  const timeoutMs = Number(options.timeout);
  if (!command || !Number.isInteger(timeoutMs))
    throw new UsageError("usage: gatehouse nodes exec ID [--timeout MS] -- CMD [ARGS...]");
  // The gateway's bounds, checked here first: a wait of any length is then safe to arm.
  if (timeoutMs < 100 || timeoutMs > MAX_EXEC_TIMEOUT_MS)
    throw new UsageError(
      `--timeout ${options.timeout}: give milliseconds from 100 to ${MAX_EXEC_TIMEOUT_MS} (5 minutes)`,
    );
  const client = AdminClient.fromHome(ctx.home, options);
  const result = await client.post<ExecResponse>(
    `/api/v1/nodes/${encodeURIComponent(node)}/exec`,
    { command, args, timeoutMs },
    timeoutMs + 15_000,
  );
  if (ctx.json) printJson(result);
  else {
    passThrough(result.stdout, result.stderr);
    if (result.truncated)
      printNotice(`\n✗ ${result.code}: the output passed the node's cap; the command was stopped\n`);
    // A command ended by a signal has no status of its own: say so, or the exit status 1
    // (a node stopped with Ctrl-C while it ran, a kill on the node) comes with no word at all.
    else if (result.exitCode === null && result.signal)
      printNotice(`✗ the command was ended by ${result.signal} on the node (no exit status; exiting 1)\n`);
  }
  // Output cut at the node's cap: gatehouse stopped the command, so it is gatehouse's failure.
  process.exitCode = result.truncated ? EXIT_EXEC_OWN_FAILURE : localExitStatus(result.exitCode);
}

/** `nodes history NODE [-n COUNT]`: commands run on a node, newest first. */
export async function nodesHistory(
  ctx: CommandContext,
  node: string,
  options: GatewayOption & { limit: string },
): Promise<void> {
  const { history } = await AdminClient.fromHome(ctx.home, options).get<{ history: ExecHistoryEntry[] }>(
    `/api/v1/nodes/${encodeURIComponent(node)}/history?limit=${encodeURIComponent(options.limit)}`,
  );
  if (ctx.json) printJson({ history });
  else
    printText(
      history.length
        ? table(
            ["WHEN", "WHO", "COMMAND", "OUTCOME", "EXIT", "MS", "OUTPUT"],
            history.map((h) => [
              h.requestedAt,
              h.requestedBy,
              [h.command, ...h.args].join(" ").slice(0, 60),
              h.code ? `${h.outcome} (${h.code})` : h.outcome,
              h.exitCode === null ? "-" : String(h.exitCode),
              String(h.durationMs ?? "-"),
              `${h.stdoutBytes + h.stderrBytes} B`,
            ]),
          )
        : "no commands run on this node\n",
    );
}
