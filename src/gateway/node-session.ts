import { fingerprintPrefix } from "../pki/fingerprint.js";
import { randomBytes } from "node:crypto";
import type { WebSocket } from "ws";
import type { Principal } from "../auth/roles.js";
import { GatehouseError, closeCodeFor, type ErrorCode } from "../protocol/errors.js";
import { MAX_SESSION_MESSAGE_BYTES, nodeMessageSchema, type GatewayMessage } from "../protocol/messages.js";
import type { GatewayContext } from "./context.js";
import { closeFirmly, type LiveSession } from "./sessions.js";

function send(socket: WebSocket, message: GatewayMessage): void {
  socket.send(JSON.stringify(message));
}

/**
 * Ends a session for a catalogue reason, counted as a refusal: the close code is the catalogue's
 * (4400–4408 in RFC 6455 §7.4.2's private range, 1009 for an oversized message), the reason the
 * code itself. `firmly` cuts the connection if the peer does not answer the close in time.
 */
function refuseSession(ctx: GatewayContext, socket: WebSocket, code: ErrorCode, firmly = false): void {
  // Counted once: a session already closing (a second idle check, say) is not refused again.
  if (socket.readyState === socket.OPEN) ctx.metrics.refused(code);
  if (firmly) closeFirmly(socket, closeCodeFor(code), code);
  else socket.close(closeCodeFor(code), code);
}

/**
 * One open node session: registers it, answers heartbeats, and records its start and end. The
 * registry closes it when it goes quiet (4408) or when its credential expires without a refresh on
 * the session (4401 token_expired / cert_expired), with one sweep and one timer for all sessions.
 * The session keeps only what it needs: log lines carry its fields at the call site (no child
 * logger per session), and nothing holds the upgrade's request or response.
 */
export function runNodeSession(
  ctx: GatewayContext,
  socket: WebSocket,
  opened: { principal: Principal; address: string; thumbprint: string | undefined },
): void {
  let principal = opened.principal;
  if (principal.deviceId) {
    // The device was checked before the upgrade; a revocation may have landed since.
    const current = ctx.devices.get(principal.deviceId);
    if (current?.status !== "approved") {
      refuseSession(ctx, socket, current?.status === "revoked" ? "device_revoked" : "device_denied", true);
      return;
    }
  }
  // A session belongs to a device when a certificate (or a token minted over mTLS) names one; a
  // session opened with an API key's token is listed under that key's subject.
  const device = principal.deviceId ? ctx.devices.get(principal.deviceId) : undefined;
  const now = ctx.now();
  const session: LiveSession = {
    sessionId: "ses_" + randomBytes(12).toString("hex"),
    deviceId: principal.deviceId ?? principal.subject,
    name: device?.name ?? principal.subject,
    socket,
    address: opened.address,
    connectedAt: now,
    lastHeartbeat: now,
    platform: device?.platform ?? null,
    version: null,
    hostname: null,
    uptimeSeconds: null,
    uptimeReportedAt: null,
    // The session ends with its credential: a token (unless refreshed here) or a certificate.
    expiresAt: principal.expiresAt ? principal.expiresAt.getTime() : null,
    expiryReason: principal.kind === "certificate" ? "cert_expired" : "token_expired",
  };
  ctx.sessions.add(session);
  const fields = () => ({ deviceId: session.deviceId, sessionId: session.sessionId });
  ctx.logger.info({ ...fields(), address: session.address, credential: principal.kind }, "node connected");
  if (device)
    ctx.sessionJournal.opened({
      sessionId: session.sessionId,
      deviceId: session.deviceId,
      address: session.address,
      connectedAt: now.toISOString(),
      disconnectedAt: null,
      closeCode: null,
      closeReason: null,
    });
  ctx.audit.recordInBackground({
    type: "session.open",
    outcome: "success",
    subject: principal.subject,
    address: session.address,
    details: {
      sessionId: session.sessionId,
      credential: principal.kind,
      fingerprint: fingerprintPrefix(principal.credentialFingerprint),
    },
  });

  send(socket, {
    type: "welcome",
    sessionId: session.sessionId,
    deviceId: session.deviceId,
    heartbeatIntervalMs: ctx.config.sessions.heartbeatInterval,
    serverTime: now.toISOString(),
    ...(principal.expiresAt ? { credentialExpiresAt: principal.expiresAt.toISOString() } : {}),
    ...(ctx.tls.rotation
      ? { caRotation: { statement: ctx.tls.rotation.statement, signature: ctx.tls.rotation.signature } }
      : {}),
  });

  const refreshToken = (accessToken: string) => {
    const previous = principal;
    ctx.tokens
      .authenticateBearer(accessToken, opened.thumbprint)
      .then((fresh) => {
        if (fresh.subject !== previous.subject) {
          refuseSession(ctx, socket, "insufficient_scope");
          return;
        }
        principal = fresh;
        ctx.sessions.setExpiry(session, fresh.expiresAt);
        send(socket, { type: "token_refreshed", expiresAt: (fresh.expiresAt ?? new Date()).toISOString() });
      })
      .catch((error: unknown) => {
        const code = error instanceof GatehouseError ? error.code : "invalid_token";
        ctx.audit.recordRefusal({
          type: "auth.refused",
          outcome: "failure",
          subject: previous.subject,
          address: session.address,
          code,
          details: { route: "/api/v1/connect (token_refresh)", credential: "access_token" },
        });
        refuseSession(ctx, socket, code);
      });
  };

  socket.on("message", (data, isBinary) => {
    if (messageBytes(data) > MAX_SESSION_MESSAGE_BYTES) {
      ctx.logger.warn({ ...fields(), bytes: messageBytes(data) }, "oversized message on the node session");
      refuseSession(ctx, socket, "payload_too_large");
      return;
    }
    let parsed: unknown;
    try {
      parsed = isBinary ? undefined : JSON.parse(data.toString());
    } catch {
      parsed = undefined;
    }
    const result = nodeMessageSchema.safeParse(parsed);
    if (!result.success) {
      ctx.logger.warn(fields(), "malformed message on the node session");
      refuseSession(ctx, socket, "invalid_request");
      return;
    }
    const message = result.data;
    const at = ctx.now();
    session.lastHeartbeat = at;
    switch (message.type) {
      case "hello":
        session.platform = message.platform;
        session.version = message.version;
        session.hostname = message.hostname ?? null;
        session.uptimeSeconds = message.uptimeSeconds ?? null;
        session.uptimeReportedAt = at;
        break;
      case "heartbeat":
        send(socket, { type: "heartbeat_ack", ts: message.ts, serverTime: at.toISOString() });
        break;
      case "token_refresh":
        refreshToken(message.accessToken);
        break;
      case "exec_result":
        ctx.exec.settle(session, message);
        break;
    }
  });

  // The socket's close event, or a stopping gateway (SessionRegistry.closeAllForExit): once.
  let ended = false;
  session.end = (code: number, reasonGiven: Buffer | string, quiet = false) => {
    if (ended) return;
    ended = true;
    const reason = reasonGiven.toString();
    ctx.sessions.remove(session);
    ctx.exec.sessionClosed(session, code, reason);
    const at = ctx.now().toISOString();
    if (!quiet) ctx.logger.info({ ...fields(), code, reason }, "node disconnected");
    if (!device) return;
    ctx.sessionJournal.closed(
      {
        sessionId: session.sessionId,
        deviceId: session.deviceId,
        at,
        closeCode: code,
        closeReason: reason || null,
      },
      session.address,
    );
  };
  socket.on("close", session.end);
}

/** The size in bytes of a message as ws hands it over (a Buffer, or fragments of one). */
function messageBytes(data: Buffer | ArrayBuffer | Buffer[]): number {
  return Array.isArray(data) ? data.reduce((sum, part) => sum + part.length, 0) : data.byteLength;
}
