import os from "node:os";
import path from "node:path";
import { EventEmitter } from "node:events";
import WebSocket from "ws";
import type { Logger } from "pino";
import { X509Certificate } from "node:crypto";
import { NODE_FILES, writeJsonAtomic, type NodeConfig } from "../config/index.js";
import { GatehouseError, closeCodeFor, isErrorCode, type ErrorCode } from "../protocol/errors.js";
import { MAX_TIMER_MS, setLongTimeout, type LongTimer } from "../protocol/long-timer.js";
import { GATEHOUSE_VERSION, gatewayMessageSchema, type NodeMessage } from "../protocol/index.js";
import { describeNetworkError } from "../client/https-json.js";
import { explainTimeValidity, isTimeValidityError } from "../client/clock-skew.js";
import type { NodeCredentials } from "./home.js";
import {
  FRESH_RECONNECT,
  GATEWAY_RESTART_CLOSE_CODES,
  nextReconnect,
  type ReconnectState,
} from "./backoff.js";
import { CredentialKeeper } from "./credential-keeper.js";
import { nextGateway } from "./gateway-order.js";
import type { CaRotationNotice, ExecRequest } from "../protocol/messages.js";
import { isBuiltinStatus, runExecRequest, runningCommands, stopRunningCommands } from "./executor.js";
import type { AccessToken, AccessTokenSource } from "./access-tokens.js";

export type AgentState = "connecting" | "connected" | "backoff" | "stopped";

/** Refusals that no retry can fix: the agent stops and says why instead of hammering the gateway. */
const PERMANENT: ReadonlySet<ErrorCode> = new Set(["device_revoked", "device_denied"]);

/** The slowest heartbeat a timer can hold (setInterval takes at most 2^31-1 ms, about 24.8 days). */
const MAX_HEARTBEAT_MS = MAX_TIMER_MS;
/** How long running commands get to end after SIGTERM when the agent stops, before SIGKILL: 2 s. */
export const COMMAND_STOP_GRACE_MS = 2000;
/** The fastest heartbeat the agent keeps, whatever the gateway asks: 1 s. */
const MIN_HEARTBEAT_MS = 1000;

/**
 * A heartbeat pace in ms (a welcome's or the config's), held to 1 s .. 2^31-1 ms: a pace of 0, a negative
 * one or one past what a timer holds (which Node fires at once) would make the agent send a
 * heartbeat every millisecond and drop its own session.
 */
export function heartbeatPace(requestedMs: number, fallbackMs: number): number {
  const pace = Number.isFinite(requestedMs) ? requestedMs : fallbackMs;
  return Math.min(MAX_HEARTBEAT_MS, Math.max(MIN_HEARTBEAT_MS, pace));
}

export interface AgentStatus {
  state: AgentState;
  since: string;
  lastAttemptAt: string | null;
  lastConnectedAt: string | null;
  lastError: { code: ErrorCode; message: string; at: string } | null;
  backoffMs: number | null;
  sessionId: string | null;
  /** The gateway URL of the last attempt (or the open session): one of node.json's gatewayUrls. */
  gatewayUrl: string | null;
}

/**
 * The node agent: one WSS session with its client certificate, heartbeats, and reconnects with
 * backoff. Emits "state" on each change, with the reason; the status file mirrors it for
 * `gatehouse node status`.
 */
export class NodeAgent extends EventEmitter {
  private socket: WebSocket | undefined;
  /** Ladder steps and the last restart notice (1001/1012), for the next reconnect's delay. */
  private reconnect: ReconnectState = FRESH_RECONNECT;
  /** The last restart notice, as the gateway closed the session ("1012 gateway restarting"). */
  private restartNotice = "";
  private timer: LongTimer | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly startedAt = Date.now();
  readonly status: AgentStatus = {
    state: "stopped",
    since: new Date().toISOString(),
    lastAttemptAt: null,
    lastConnectedAt: null,
    lastError: null,
    backoffMs: null,
    sessionId: null,
    gatewayUrl: null,
  };

  private readonly keeper: CredentialKeeper;
  private reissuing = false;
  /** Which of the config's gatewayUrls the current attempt (or session) uses. */
  private urlIndex = 0;

  constructor(
    private readonly home: string,
    private readonly config: NodeConfig,
    private readonly credentials: NodeCredentials,
    private readonly logger: Logger,
    /** Set for a node that authenticates with an API key instead of a client certificate. */
    private readonly tokens?: AccessTokenSource,
  ) {
    super();
    // Renewals and re-issues go to the instance this node reaches now.
    this.keeper = new CredentialKeeper(home, config, credentials, logger, () => this.gatewayUrl());
  }

  /** The gateway URL of the current attempt or session (node.json's gatewayUrls, in order). */
  private gatewayUrl(): string {
    return this.config.gatewayUrls[this.urlIndex] ?? this.config.gatewayUrl;
  }

  start(): void {
    this.warnIfCertificateExpired();
    this.connect();
  }

  /**
   * Ends the commands this node runs (SIGTERM to their process groups, SIGKILL after
   * COMMAND_STOP_GRACE_MS), then closes the session cleanly; resolves when both are gone.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.keeper.stop();
    this.timer?.cancel();
    this.tokenTimer?.cancel();
    clearInterval(this.heartbeat);
    const commands = runningCommands();
    if (commands.length > 0) {
      const names = commands.map((c) => `${c.command} (pid ${c.pid})`).join(", ");
      this.logger.warn(
        { commands, graceMs: COMMAND_STOP_GRACE_MS },
        `stopping ${commands.length} running command${commands.length === 1 ? "" : "s"}: ${names}; SIGTERM to ${commands.length === 1 ? "its process group" : "their process groups"}, SIGKILL after ${COMMAND_STOP_GRACE_MS} ms`,
      );
      await stopRunningCommands(COMMAND_STOP_GRACE_MS);
      this.logger.info({ commands }, "running commands stopped");
    }
    const socket = this.socket;
    if (socket && socket.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.close(1000, "node stopping");
        setTimeout(() => {
          socket.terminate();
          resolve();
        }, 2000).unref();
      });
    }
    this.setState("stopped", "stopped by the operator");
  }

  private setState(state: AgentState, reason: string, extra: Record<string, unknown> = {}): void {
    this.status.state = state;
    this.status.since = new Date().toISOString();
    const trouble = state === "backoff" || (state === "stopped" && reason !== "stopped by the operator");
    const level = trouble ? "warn" : "info";
    this.logger[level]({ state, reason, ...extra }, `node ${state}: ${reason}`);
    this.persistStatus();
    this.emit("state", state, reason, extra);
  }

  private persistStatus(): void {
    try {
      writeJsonAtomic(path.join(this.home, NODE_FILES.state), { ...this.status, pid: process.pid }, 0o600);
    } catch (error) {
      this.logger.debug({ err: error }, "could not write the status file");
    }
  }

  /** @param closeCode set when an open session was closed (1012 tells the node the gateway restarts) */
  private fail(code: ErrorCode, message: string, hint?: string, closeCode?: number): void {
    this.status.lastError = { code, message, at: new Date().toISOString() };
    if (code === "cert_expired" && !this.reissuing && this.credentials.certPem) {
      this.reissueThenConnect(message);
      return;
    }
    if (PERMANENT.has(code)) {
      this.stopping = true;
      this.setState("stopped", `${code}: ${message}`, { code, hint });
      this.emit("fatal", new GatehouseError(code, message, hint));
      return;
    }
    this.scheduleReconnect(code, message, hint, closeCode);
  }

  /** An expired certificate is not the end: the approved key gets a new one, no admin needed. */
  private reissueThenConnect(reason: string): void {
    this.reissuing = true;
    this.setState("backoff", `cert_expired: ${reason}; asking the gateway to re-issue the certificate`);
    this.keeper
      .reissue()
      .then(() => {
        this.reissuing = false;
        this.reconnect = FRESH_RECONNECT;
        this.connect();
      })
      .catch((error: unknown) => {
        this.reissuing = false;
        const named =
          error instanceof GatehouseError ? error : new GatehouseError("connection_failed", String(error));
        this.fail(
          named.code === "cert_expired" ? "connection_failed" : named.code,
          `re-issue failed: ${named.message}`,
          named.hint,
        );
      });
  }

  private scheduleReconnect(code: ErrorCode, message: string, hint?: string, closeCode?: number): void {
    if (this.stopping) return;
    // Several URLs: a connection failure moves on to the next one at once; the backoff comes
    // between rounds (gateway-order.ts).
    const failedUrl = this.gatewayUrl();
    const next = nextGateway(this.config.gatewayUrls.length, this.urlIndex, {
      code,
      sessionClosed: closeCode !== undefined,
    });
    this.urlIndex = next.index;
    if (next.now) {
      this.logger.warn(
        { code, hint, gatewayUrl: failedUrl, next: this.gatewayUrl() },
        `${failedUrl}: ${code}: ${message}; trying ${this.gatewayUrl()}`,
      );
      this.connect();
      return;
    }
    // A restarting gateway (1012/1001, and "not back yet" answers shortly after) gets a flat,
    // jittered few seconds; anything else climbs the exponential ladder.
    const step = nextReconnect(
      this.reconnect,
      { code, ...(closeCode === undefined ? {} : { closeCode }) },
      Date.now(),
      {
        initialMs: this.config.reconnect.initialDelay,
        maxMs: this.config.reconnect.maxDelay,
      },
    );
    this.reconnect = step.state;
    const delay = step.delayMs;
    if (closeCode !== undefined && GATEWAY_RESTART_CLOSE_CODES.has(closeCode)) this.restartNotice = message;
    else if (step.restarting && this.restartNotice) {
      // Refused while the gateway restarts: the status says why this is expected.
      message = `${message}; the gateway is restarting (${this.restartNotice})`;
      if (this.status.lastError) this.status.lastError.message = message;
    }
    this.status.backoffMs = delay;
    this.setState("backoff", `${code}: ${message}; reconnecting in ${delay} ms`, {
      code,
      hint,
      delayMs: delay,
    });
    // reconnect.maxDelay is configured: it may be longer than one Node timer holds.
    this.timer = setLongTimeout(() => this.connect(), delay);
  }

  private connect(): void {
    if (this.stopping) return;
    this.status.lastAttemptAt = new Date().toISOString();
    this.status.backoffMs = null;
    const gatewayUrl = this.gatewayUrl();
    this.status.gatewayUrl = gatewayUrl;
    const url = gatewayUrl.replace(/^https:/, "wss:") + "/api/v1/connect";
    this.setState("connecting", `connecting to ${url}`);
    const { caPem, keyPem, certPem } = this.credentials;
    if (!this.tokens) {
      this.open(url, { ca: caPem, ...(keyPem && certPem ? { key: keyPem, cert: certPem } : {}) });
      return;
    }
    // A node on an API key: a fresh access token for every session.
    this.tokens.fetch(gatewayUrl).then(
      (token) => {
        if (this.stopping) return;
        this.accessToken = token;
        this.open(url, { ca: caPem, headers: { authorization: `Bearer ${token.token}` } });
      },
      (error: unknown) => {
        const named =
          error instanceof GatehouseError ? error : new GatehouseError("connection_failed", String(error));
        this.fail(named.code, `could not get an access token with the API key: ${named.message}`, named.hint);
      },
    );
  }

  private accessToken: AccessToken | undefined;
  private tokenTimer: LongTimer | undefined;

  /** Refreshes the session's access token at 2/3 of its life, on the session (no reconnect). */
  private scheduleTokenRefresh(socket: WebSocket): void {
    this.tokenTimer?.cancel();
    const token = this.accessToken;
    if (!this.tokens || !token) return;
    const delay = Math.max(1000, token.expiresAt - token.lifetimeMs / 3 - Date.now());
    // A token may live longer than one Node timer holds (tokens.accessTtl "30d"): a long timer.
    this.tokenTimer = setLongTimeout(() => {
      this.tokens!.fetch(this.gatewayUrl()).then(
        (fresh) => {
          if (socket.readyState !== WebSocket.OPEN) return;
          this.accessToken = fresh;
          socket.send(
            JSON.stringify({ type: "token_refresh", accessToken: fresh.token } satisfies NodeMessage),
          );
          this.logger.info({ expiresAt: new Date(fresh.expiresAt).toISOString() }, "access token refreshed");
          this.scheduleTokenRefresh(socket);
        },
        (error: unknown) => {
          const named =
            error instanceof GatehouseError ? error : new GatehouseError("connection_failed", String(error));
          this.logger.warn({ code: named.code }, `access token refresh failed (${named.message}); retrying`);
          if (socket.readyState === WebSocket.OPEN)
            this.tokenTimer = setLongTimeout(() => this.scheduleTokenRefresh(socket), 5000);
        },
      );
    }, delay);
    this.tokenTimer.unref();
  }

  private open(
    url: string,
    auth: { ca: string; key?: string; cert?: string; headers?: Record<string, string> },
  ): void {
    const socket = new WebSocket(url, {
      ...auth,
      handshakeTimeout: 10_000,
      maxPayload: 1024 * 1024,
    });
    this.socket = socket;
    // Each attempt ends in exactly one report: an HTTP refusal, a network error, or the close of
    // a session that opened. Whatever happens first is reported; the rest is ignored.
    let reported = false;
    let opened = false;
    const report = (code: ErrorCode, message: string, hint?: string, closeCode?: number) => {
      clearInterval(this.heartbeat);
      this.tokenTimer?.cancel();
      if (reported || this.socket !== socket) return;
      reported = true;
      this.status.sessionId = null;
      if (this.stopping) return;
      this.fail(code, message, hint, closeCode);
    };

    socket.on("unexpected-response", (_request, response) => {
      const chunks: Buffer[] = [];
      const status = response.statusCode ?? 0;
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          body = undefined;
        }
        const error = GatehouseError.fromBody(body, "not_a_gateway");
        const message = body ? error.message : `HTTP ${status} without a Gatehouse error body`;
        report(error.code, message, error.hint);
        socket.terminate();
      });
      const broken = () => {
        report(
          "connection_failed",
          `the gateway refused the session (HTTP ${status}) and the answer broke off`,
        );
        socket.terminate();
      };
      response.on("error", broken);
      response.on("aborted", broken);
    });

    socket.on("open", () => {
      opened = true;
      const hello: NodeMessage = {
        type: "hello",
        version: GATEHOUSE_VERSION,
        platform: `${process.platform}-${process.arch}`,
        hostname: os.hostname(),
        uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      };
      socket.send(JSON.stringify(hello));
      this.startHeartbeat(socket, heartbeatPace(this.config.heartbeatInterval, 15_000));
    });

    socket.on("message", (data) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(data.toString());
      } catch {
        return;
      }
      const result = gatewayMessageSchema.safeParse(parsed);
      if (!result.success) return;
      const message = result.data;
      this.lastMessageAt = Date.now();
      if (message.type === "ca_rotation") this.followCaRotation(message.caRotation);
      // A heartbeat's answer carries the gateway's time, read halfway through the round trip.
      if (message.type === "heartbeat_ack")
        this.keeper.observeGatewayTime(new Date(message.serverTime), (message.ts + Date.now()) / 2);
      if (message.type === "exec") this.execute(socket, message);
      if (message.type === "welcome") {
        this.reconnect = FRESH_RECONNECT;
        this.status.sessionId = message.sessionId;
        this.status.lastConnectedAt = new Date().toISOString();
        this.status.lastError = null;
        // The gateway decides the heartbeat pace: its idle timeout is set to match its interval.
        this.startHeartbeat(
          socket,
          heartbeatPace(message.heartbeatIntervalMs, this.config.heartbeatInterval),
        );
        if (message.caRotation) this.followCaRotation(message.caRotation);
        // Renewals follow the gateway's clock: the welcome says what time it is there.
        this.keeper.observeGatewayTime(new Date(message.serverTime), Date.now());
        this.keeper.schedule();
        this.scheduleTokenRefresh(socket);
        this.setState("connected", `session ${message.sessionId} open`, { sessionId: message.sessionId });
      }
    });

    // A certificate outside its dates is judged by the gateway's clock before it is reported.
    let judgingClock = false;
    socket.on("close", (code, reasonBuffer) => {
      const reason = reasonBuffer.toString();
      if (judgingClock) return;
      if (!opened) {
        report("connection_failed", `the connection closed before the session opened (${code})`);
        return;
      }
      // ws closes an over-long frame with a bare 1009 (no reason): that is still payload_too_large.
      const errorCode: ErrorCode = isErrorCode(reason)
        ? reason
        : GATEWAY_RESTART_CLOSE_CODES.has(code)
          ? "unavailable"
          : code === closeCodeFor("payload_too_large")
            ? "payload_too_large"
            : "connection_failed";
      const hint = GATEWAY_RESTART_CLOSE_CODES.has(code)
        ? "The gateway stopped or is restarting; this node reconnects by itself within a few seconds of it being back."
        : undefined;
      report(errorCode, `session closed by the gateway (${code}${reason ? ` ${reason}` : ""})`, hint, code);
    });

    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (opened) return; // the close that follows is the report
      if (isTimeValidityError(error)) {
        judgingClock = true;
        void explainTimeValidity(this.gatewayUrl(), error, auth.ca).then((named) =>
          report(named.code, named.message, named.hint),
        );
        return;
      }
      const named = describeNetworkError(this.gatewayUrl(), error);
      report(named.code, named.message, named.hint);
    });
  }

  /** Runs an operator's command on this node's terms and answers on the same session. */
  private execute(socket: WebSocket, request: ExecRequest): void {
    const allow = this.config.exec.allow;
    runExecRequest(request, allow)
      .then((result) => {
        const fields = {
          execId: request.id,
          command: request.command,
          argc: request.args.length,
          outcome: result.outcome,
        };
        // The node's own record of what it was asked to do, refused or not. The built-in status
        // runs nothing and monitoring may poll it many times a second: its line is debug, so a
        // busy node does not pay a log write per probe; every program it runs stays at info.
        if (result.outcome === "refused")
          this.logger.warn({ ...fields, code: result.code }, `refused to run ${request.command}`);
        else if (isBuiltinStatus(request.command, allow))
          this.logger.debug({ ...fields, durationMs: result.durationMs }, `answered ${request.command}`);
        else
          this.logger.info(
            { ...fields, exitCode: result.exitCode, durationMs: result.durationMs },
            `ran ${request.command}`,
          );
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(result));
      })
      .catch((error: unknown) => this.logger.error({ err: error, execId: request.id }, "exec failed"));
  }

  private followCaRotation(notice: CaRotationNotice): void {
    try {
      this.keeper.followCaRotation(notice);
    } catch (error) {
      // A notice we cannot verify is ignored (and said): the pin only moves on the old CA's word.
      const named =
        error instanceof GatehouseError ? error : new GatehouseError("ca_mismatch", String(error));
      this.logger.error({ code: named.code }, `ignored a CA rotation notice: ${named.message}`);
    }
  }

  private lastMessageAt = 0;

  private startHeartbeat(socket: WebSocket, interval: number): void {
    clearInterval(this.heartbeat);
    this.lastMessageAt = Date.now();
    // eslint-disable-next-line no-restricted-syntax -- heartbeatPace holds it to 1 s .. MAX_TIMER_MS
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastMessageAt > interval * 3) {
        this.logger.warn("no answer from the gateway for three heartbeats; reconnecting");
        socket.terminate();
        return;
      }
      socket.send(JSON.stringify({ type: "heartbeat", ts: Date.now() } satisfies NodeMessage));
    }, interval);
  }

  private warnIfCertificateExpired(): void {
    if (!this.credentials.certPem) return;
    try {
      const cert = new X509Certificate(this.credentials.certPem);
      const expires = new Date(cert.validTo);
      if (expires.getTime() < Date.now()) {
        this.logger.warn(
          { certExpiresAt: expires.toISOString() },
          "the device certificate has expired; the gateway will refuse it (cert_expired)",
        );
      }
    } catch {
      this.logger.warn("the device certificate cannot be read");
    }
  }
}
