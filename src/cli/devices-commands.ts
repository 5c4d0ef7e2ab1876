import { Command } from "commander";
import type { DeviceView, ExecHistoryEntry, ExecResponse, NodeView } from "../protocol/messages.js";
import { escapeUnsafe } from "../protocol/safe-text.js";
import { MAX_EXEC_TIMEOUT_MS } from "../gateway/exec.js";
import { AdminClient } from "./admin-client.js";
import { withTarget, type TargetOptions } from "./target-options.js";
import { action } from "./run.js";
import {
  EXIT_EXEC_OWN_FAILURE,
  UsageError,
  ago,
  duration,
  fields,
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

const withGateway = withTarget;

export function devicesCommands(): Command {
  const devices = new Command("devices").description("admin: registered devices");

  withGateway(
    devices
      .command("list")
      .description("list devices")
      .option("--pending", "only devices waiting for approval"),
  ).action(
    action(async (ctx, options: GatewayOption & { pending?: boolean }) => {
      const client = AdminClient.fromHome(ctx.home, options);
      const { devices: list } = await client.get<{ devices: DeviceView[] }>(
        `/api/v1/devices${options.pending ? "?status=pending" : ""}`,
      );
      if (ctx.json) printJson({ devices: list });
      else printText(list.length ? deviceRows(list) : "no devices\n");
    }),
  );

  withGateway(
    devices
      .command("show")
      .description("show one device")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name"),
  ).action(
    action(async (ctx, id: string, options: GatewayOption) => {
      const client = AdminClient.fromHome(ctx.home, options);
      const result = await client.get<{ device: DeviceView; certificates: unknown[] }>(
        `/api/v1/devices/${encodeURIComponent(id)}`,
      );
      if (ctx.json) printJson(result);
      else printText(describeDevice(result.device));
    }),
  );

  withGateway(
    devices
      .command("approve")
      .description("approve a pending device by id or user code")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name")
      .option("--role <role>", "role to grant", "node"),
  ).action(
    action(async (ctx, id: string, options: GatewayOption & { role: string }) => {
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
    }),
  );

  withGateway(
    devices
      .command("deny")
      .description("deny a pending device")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name")
      .option("--reason <text>", "why"),
  ).action(
    action(async (ctx, id: string, options: GatewayOption & { reason?: string }) => {
      const client = AdminClient.fromHome(ctx.home, options);
      const { device } = await client.post<{ device: DeviceView }>(
        `/api/v1/devices/${encodeURIComponent(id)}/deny`,
        options.reason ? { reason: options.reason } : {},
      );
      if (ctx.json) printJson({ device });
      else printText(`✓ denied ${device.deviceId} (${device.name})\n`);
    }),
  );

  withGateway(
    devices
      .command("revoke")
      .description("revoke a device and close its sessions")
      .argument("<device>", "device id, user code (ABCD-EFGH) or device name")
      .option("--reason <text>", "why"),
  ).action(
    action(async (ctx, id: string, options: GatewayOption & { reason?: string }) => {
      const client = AdminClient.fromHome(ctx.home, options);
      const result = await client.post<{ device: DeviceView; sessionsClosed: number }>(
        `/api/v1/devices/${encodeURIComponent(id)}/revoke`,
        options.reason ? { reason: options.reason } : {},
      );
      if (ctx.json) printJson(result);
      else
        printText(
          `✓ revoked ${result.device.deviceId} (${result.device.name}); closed ${result.sessionsClosed} live session(s)\n`,
        );
    }),
  );

  return devices;
}

export function nodesCommands(): Command {
  const nodes = new Command("nodes").description("operators: connected nodes");
  withGateway(nodes.command("list").description("list online nodes")).action(
    action(async (ctx, options: GatewayOption) => {
      const client = AdminClient.fromHome(ctx.home, options);
      const { nodes: list } = await client.get<{ nodes: NodeView[] }>("/api/v1/nodes");
      if (ctx.json) printJson({ nodes: list });
      else
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
                ]),
              )
            : "no nodes online\n",
        );
    }),
  );
  const exec = nodes
    .command("exec")
    .description(
      "run a command on a node (no shell; the node's exec.allow decides): nodes exec ID -- CMD [ARGS...]; " +
        "exits with the command's status, or 125 when gatehouse itself fails",
    )
    .argument("<node>", "device id, the name of an approved node, or key:ID for a node on an API key")
    .argument("<command...>", "the command and its arguments, after --")
    .option("--timeout <ms>", "kill the command after this long", "30000");
  ownUsageStatus(exec, EXIT_EXEC_OWN_FAILURE);
  withGateway(exec).action(
    action(
      async (ctx, node: string, argv: string[], options: GatewayOption & { timeout: string }) => {
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
            printNotice(
              `✗ the command was ended by ${result.signal} on the node (no exit status; exiting 1)\n`,
            );
        }
        // Output cut at the node's cap: gatehouse stopped the command, so it is gatehouse's failure.
        process.exitCode = result.truncated ? EXIT_EXEC_OWN_FAILURE : localExitStatus(result.exitCode);
      },
      { failureStatus: EXIT_EXEC_OWN_FAILURE },
    ),
  );

  withGateway(
    nodes
      .command("history")
      .description("commands run on a node: who, what, when, exit code, duration, output size")
      .argument("<node>", "device id, the name of an approved node, or key:ID for a node on an API key")
      .option("-n, --limit <count>", "how many", "50"),
  ).action(
    action(async (ctx, node: string, options: GatewayOption & { limit: string }) => {
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
    }),
  );

  return nodes;
}

/**
 * The exit status this CLI gives for a remote command's exit code: the code itself when a process
 * can exit with it (0–255), otherwise 1. A node reporting 256 or -1 must not make `nodes exec`
 * exit 0 (a process's status keeps only the low 8 bits), nor a Windows status over 255 look like
 * success; no exit code at all (a signal) is a failure too. The CLI's own failures are not
 * decided here: they exit EXIT_EXEC_OWN_FAILURE (125).
 */
export function localExitStatus(remote: number | null): number {
  return remote !== null && Number.isInteger(remote) && remote >= 0 && remote <= 255 ? remote : 1;
}

/**
 * Makes a command's wrong usage, as commander finds it (a missing argument, an unknown option),
 * exit with `status` instead of 2: commander's own `error()` carries the status to the CLI's
 * entry point as `CommanderError.exitCode`.
 */
function ownUsageStatus(command: Command, status: number): void {
  const usageError = command.error.bind(command);
  command.error = (message, options) => usageError(message, { ...options, exitCode: status });
}
