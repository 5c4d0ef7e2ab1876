import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { GatehouseError, isErrorCode } from "../protocol/errors.js";
import { judgeExecAnswer, quoteNodeText } from "./exec-answer.js";
import { resolveNodeTarget, type NodeTarget } from "./node-target.js";
import type { ExecRelay } from "./cluster/exec-relay.js";
import type { ExecRequest, ExecResponse, ExecResult } from "../protocol/messages.js";
import type { Principal } from "../auth/roles.js";
import type { GatewayContext } from "./context.js";
import type { LiveSession } from "./sessions.js";

export const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
export const MAX_EXEC_TIMEOUT_MS = 300_000;
/** Per stream after base64 this stays well inside the session's 64 KiB frame limit. */
export const MAX_EXEC_OUTPUT_BYTES = 16 * 1024;
/** Time the node gets beyond the command's own timeout to report back. */
const REPORT_GRACE_MS = 5000;
/**
 * How long an exec.request entry waits for its result before it is committed on its own. A node
 * usually answers sooner than one fsync takes: both entries then share one commit, and a command
 * pays one fsync instead of two in a row. A longer command's request is made durable while it runs.
 */
const REQUEST_HOLD_MS = 2;

interface Pending {
  session: LiveSession;
  resolve: (result: ExecResult) => void;
  reject: (error: GatehouseError) => void;
  timer: NodeJS.Timeout;
}

/**
 * Sends commands over node sessions and matches the answers: one pending entry per request, failed
 * with `node_offline` when its session goes away and with `exec_timeout` when the node never
 * answers — an operator never waits on a dead node.
 */
export class ExecBroker {
  private readonly pending = new Map<string, Pending>();

  /** @param requestHoldMs see REQUEST_HOLD_MS (tests choose their own). */
  constructor(
    private readonly ctx: GatewayContext,
    private readonly requestHoldMs = REQUEST_HOLD_MS,
  ) {}

  /** Called by the session for every exec_result it receives. */
  settle(session: LiveSession, result: ExecResult): void {
    const entry = this.pending.get(result.id);
    if (!entry || entry.session !== session) return;
    this.pending.delete(result.id);
    clearTimeout(entry.timer);
    entry.resolve(result);
  }

  /** Called when a session closes: its commands will never be answered. */
  sessionClosed(session: LiveSession, code: number, reason: string): void {
    for (const [id, entry] of this.pending) {
      if (entry.session !== session) continue;
      this.pending.delete(id);
      clearTimeout(entry.timer);
      // 1001/1012 is this gateway going away (a stop, Ctrl-C, a restart): the node is fine, so
      // "start the node" would send the operator to the wrong machine.
      entry.reject(
        code === 1001 || code === 1012
          ? new GatehouseError(
              "node_offline",
              `the gateway stopped while the node ran the command (session closed ${code}${closeReasonText(reason)}); its result is lost`,
              "Start the gateway again (`gatehouse gateway start`); the node reconnects by itself. `gatehouse nodes history NODE` shows what ran.",
            )
          : new GatehouseError(
              "node_offline",
              `the node went away while running the command (session closed ${code}${closeReasonText(reason)})`,
            ),
      );
    }
  }

  /**
   * Where the node an operator named runs (`resolveNodeTarget`: by device id, by the name of an
   * approved node — online or not, so an offline "laptop" is never stood in for by another node
   * that calls itself "laptop" — or by an API-key node's subject): its newest session here when it
   * has one. Else, with several instances (`relay`), the shared sessions table is to be asked
   * (`elsewhere`), with the error to give when no other live instance holds it either — which
   * may also be for a node this instance knows no device or key of (an admin credential's session).
   * Synchronous for a session held here: the command goes out without waiting for a tick.
   * @throws GatehouseError `node_not_found`, `invalid_request` (ambiguous name), `node_offline`.
   */
  private findTarget(
    idOrName: string,
    relay: ExecRelay | undefined,
  ):
    | { deviceId: string; session: LiveSession }
    | { deviceId: string; elsewhere: ExecRelay; notHere: () => GatehouseError } {
    let target: NodeTarget;
    try {
      target = resolveNodeTarget(this.ctx, idOrName);
    } catch (error) {
      if (relay && error instanceof GatehouseError && error.code === "node_not_found")
        return { deviceId: idOrName, elsewhere: relay, notHere: () => error };
      throw error;
    }
    const { deviceId, device } = target;
    // Only this device's sessions: no array of every open session per command.
    const session = this.ctx.sessions.newestOf(deviceId);
    if (session) return { deviceId, session };
    // Made only when it is thrown: an error's stack costs tens of µs on every relayed command.
    const offline = () =>
      new GatehouseError(
        "node_offline",
        `node ${deviceId}${device ? ` (${device.name})` : ""} is not connected`,
      );
    if (relay) return { deviceId, elsewhere: relay, notHere: offline };
    throw offline();
  }

  /** A command for a node held by another live instance: relayed there (cluster/exec-relay.ts). */
  private async relayed(
    target: { deviceId: string; elsewhere: ExecRelay; notHere: () => GatehouseError },
    principal: Principal,
    command: string,
    args: string[],
    timeoutMs: number,
  ): Promise<ExecResponse> {
    const holder = await target.elsewhere.locate(target.deviceId);
    if (!holder) throw target.notHere();
    return target.elsewhere.send(holder, principal, { deviceId: target.deviceId, command, args, timeoutMs });
  }

  /**
   * Runs `command` with `args` on the node an operator named and answers with its result. The
   * command is sent at once; its exec.request entry is made durable while it is in flight (in the
   * result's commit when the node answers within a few milliseconds), and the answer comes only
   * once both it and the exec.result entry (with the history row) are on disk.
   * @throws GatehouseError `node_not_found`, `node_offline`, `exec_timeout`, `command_not_allowed`
   * and the other verdicts of exec-answer.ts; `unavailable` (or `internal_error`) when either
   * entry could not be written — never a success that is not audited.
   * A node another live instance holds gets the command relayed there (ctx.relay), which runs
   * and audits it and whose answer (or error) is returned as is. `via`: this call is such a
   * relayed command, from that instance: it runs only on a session held here (never relayed
   * again) and its audit entries name the sender.
   */
  async run(
    principal: Principal,
    idOrName: string,
    command: string,
    args: string[],
    timeoutMs: number,
    options: { via?: string } = {},
  ): Promise<ExecResponse> {
    const { via } = options;
    const target = this.findTarget(idOrName, via === undefined ? this.ctx.relay : undefined);
    if ("elsewhere" in target) return this.relayed(target, principal, command, args, timeoutMs);
    const { deviceId, session } = target;
    const started = performance.now();
    // 24 hex digits of a random UUID: node:crypto draws these from a pool of entropy it keeps,
    // where randomBytes asks the generator again for every command.
    const execId = "exe_" + randomUUID().replaceAll("-", "").slice(0, 24);
    const requestedAt = this.ctx.now();
    // Not awaited here: the command goes out at once, and its request entry is committed while
    // it runs — with the result entry when the node answers within the hold, else on its
    // own. The result entry is always queued after it, so the chain keeps request before result.
    let requestDurable: Promise<GatehouseError | undefined> | undefined;
    const recordRequest = () =>
      (requestDurable ??= this.ctx.audit
        .record({
          type: "exec.request",
          outcome: "success",
          actor: principal.subject,
          subject: deviceId,
          details: { execId, command, argc: args.length, timeoutMs, ...(via ? { via } : {}) },
        })
        .then(
          () => undefined,
          (error: unknown) => auditFailure(this.ctx, error, execId),
        ));
    // eslint-disable-next-line no-restricted-syntax -- a few milliseconds (a test's at most a minute)
    const hold = setTimeout(recordRequest, this.requestHoldMs);

    const request: ExecRequest = {
      type: "exec",
      id: execId,
      command,
      args,
      timeoutMs,
      maxOutputBytes: MAX_EXEC_OUTPUT_BYTES,
    };
    let result: ExecResult | undefined;
    let failure: GatehouseError | undefined;
    try {
      result = await new Promise<ExecResult>((resolve, reject) => {
        // eslint-disable-next-line no-restricted-syntax -- timeoutMs is at most MAX_EXEC_TIMEOUT_MS (the route checks)
        const timer = setTimeout(() => {
          this.pending.delete(execId);
          reject(
            new GatehouseError(
              "exec_timeout",
              `the node did not answer within ${timeoutMs + REPORT_GRACE_MS} ms`,
            ),
          );
        }, timeoutMs + REPORT_GRACE_MS);
        timer.unref();
        this.pending.set(execId, { session, resolve, reject, timer });
        // The session may have closed since it was looked up: say so at once.
        const gone = () => {
          if (!this.pending.delete(execId)) return;
          clearTimeout(timer);
          reject(new GatehouseError("node_offline", "the node's session closed before the command was sent"));
        };
        if (session.socket.readyState !== session.socket.OPEN) gone();
        else session.socket.send(JSON.stringify(request), (error) => error && gone());
      });
    } catch (error) {
      if (!(error instanceof GatehouseError)) this.ctx.logger.error({ err: error, execId }, "exec failed");
      failure = error instanceof GatehouseError ? error : new GatehouseError("internal_error");
    }

    clearTimeout(hold);
    const requestRecorded = recordRequest();
    const finishedAt = this.ctx.now();
    const stdout = Buffer.from(result?.stdout ?? "", "base64");
    const stderr = Buffer.from(result?.stderr ?? "", "base64");
    // The node's answer is data: the gateway decides its code from the outcome (exec-answer.ts).
    const verdict = result ? judgeExecAnswer(result) : undefined;
    const code = failure?.code ?? verdict?.code ?? null;
    const outcome = result?.outcome ?? (failure?.code === "exec_timeout" ? "timeout" : "failed");
    // The history row and its audit entry go to disk in one commit, before the operator hears back.
    const resultDurable = this.ctx.audit.record(
      {
        type: "exec.result",
        outcome: result?.outcome === "completed" ? "success" : "failure",
        actor: principal.subject,
        subject: deviceId,
        code,
        details: {
          execId,
          exitCode: result?.exitCode ?? null,
          outcome,
          stdoutBytes: stdout.length,
          stderrBytes: stderr.length,
          ...(via ? { via } : {}),
        },
      },
      {
        execId,
        deviceId,
        requestedBy: principal.subject,
        command,
        args: JSON.stringify(args),
        requestedAt: requestedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        outcome,
        exitCode: result?.exitCode ?? null,
        durationMs: result?.durationMs ?? finishedAt.getTime() - requestedAt.getTime(),
        stdoutBytes: stdout.length,
        stderrBytes: stderr.length,
        code,
      },
    );
    const [requestFailure, resultFailure] = await Promise.all([
      requestRecorded,
      resultDurable.then(
        () => undefined,
        (error: unknown) => auditFailure(this.ctx, error, execId),
      ),
    ]);
    const unaudited = requestFailure ?? resultFailure;
    this.ctx.metrics.execFinished(unaudited ? "unaudited" : outcome, (performance.now() - started) / 1000);
    if (unaudited) throw unaudited;

    if (failure) throw failure;
    const answered = result!;
    if (verdict?.error) throw verdict.error;
    return {
      execId,
      deviceId,
      command,
      args,
      outcome: answered.outcome,
      exitCode: answered.exitCode,
      signal: answered.signal,
      stdout: stdout.toString("utf8"),
      stderr: stderr.toString("utf8"),
      durationMs: answered.durationMs,
      truncated: answered.outcome === "truncated",
      ...(verdict?.code ? { code: verdict.code } : {}),
    };
  }
}

/**
 * An audit entry that could not be made durable: the exec is answered with this error, never a
 * success. The store's own refusals (`unavailable`) pass as they are; anything else is a fault.
 */
function auditFailure(ctx: GatewayContext, error: unknown, execId: string): GatehouseError {
  if (error instanceof GatehouseError) return error;
  ctx.logger.error({ err: error, execId }, "the audit entry of an exec could not be written");
  return new GatehouseError(
    "internal_error",
    `the command's audit entry could not be written (exec ${execId}); its result is not reported`,
    "Check the gateway's log; `gatehouse nodes history NODE` shows what ran.",
  );
}

/**
 * A session's close reason as it may appear in an error description: one of the gateway's own
 * codes as is, anything else (a node may close with any text) quoted and escaped as node text.
 */
function closeReasonText(reason: string): string {
  if (!reason) return "";
  return ` ${isErrorCode(reason) ? reason : quoteNodeText(reason)}`;
}
