import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type {} from "@fastify/websocket";
import type { WebSocket } from "ws";
import type { GatewayContext } from "../context.js";
import { requireScopeHook } from "../authenticate.js";
import { nodeMessageSchema, type GatewayMessage } from "../../protocol/messages.js";
import type { LiveSession } from "../sessions.js";

function send(socket: WebSocket, message: GatewayMessage): void {
  socket.send(JSON.stringify(message));
}

/**
 * The node session. Authentication happens in `onRequest`, before the upgrade, so a refused node
 * gets an HTTP status and the catalogue's JSON body instead of a bare close (the old 1006).
 */
export function registerConnectRoute(app: FastifyInstance, ctx: GatewayContext): void {
  app.get(
    "/api/v1/connect",
    { websocket: true, onRequest: requireScopeHook(ctx, "node:connect") },
    (socket, request) => {
      const principal = request.principal!;
      const device = ctx.devices.get(principal.deviceId);
      const now = ctx.now();
      const session: LiveSession = {
        sessionId: "ses_" + randomBytes(12).toString("hex"),
        deviceId: principal.deviceId,
        name: device?.name ?? principal.deviceId,
        socket,
        address: request.ip,
        connectedAt: now,
        lastHeartbeat: now,
        platform: device?.platform ?? null,
        version: null,
        hostname: null,
        uptimeSeconds: null,
        uptimeReportedAt: null,
      };
      ctx.sessions.add(session);
      const log = ctx.logger.child({ deviceId: session.deviceId, sessionId: session.sessionId });
      log.info({ address: session.address }, "node connected");
      ctx.store
        .openSession({
          sessionId: session.sessionId,
          deviceId: session.deviceId,
          address: session.address,
          connectedAt: now.toISOString(),
          disconnectedAt: null,
          closeCode: null,
          closeReason: null,
        })
        .catch((err: unknown) => log.error({ err }, "could not record the session"));
      ctx.audit.recordInBackground({
        type: "session.open",
        outcome: "success",
        subject: session.deviceId,
        address: session.address,
        details: {
          sessionId: session.sessionId,
          certFingerprint: principal.credentialFingerprint.slice(0, 19),
        },
      });

      send(socket, {
        type: "welcome",
        sessionId: session.sessionId,
        deviceId: session.deviceId,
        heartbeatIntervalMs: ctx.config.sessions.heartbeatInterval,
        serverTime: now.toISOString(),
      });

      const idleCheck = setInterval(
        () => {
          if (ctx.now().getTime() - session.lastHeartbeat.getTime() > ctx.config.sessions.heartbeatTimeout) {
            socket.close(4408, "heartbeat_timeout");
          }
        },
        Math.min(ctx.config.sessions.heartbeatInterval, 5000),
      );
      idleCheck.unref();

      socket.on("message", (data, isBinary) => {
        let parsed: unknown;
        try {
          parsed = isBinary ? undefined : JSON.parse(data.toString());
        } catch {
          parsed = undefined;
        }
        const result = nodeMessageSchema.safeParse(parsed);
        if (!result.success) {
          log.warn("malformed message on the node session");
          socket.close(4400, "invalid_request");
          return;
        }
        const message = result.data;
        const at = ctx.now();
        session.lastHeartbeat = at;
        if (message.type === "hello") {
          session.platform = message.platform;
          session.version = message.version;
          session.hostname = message.hostname ?? null;
          session.uptimeSeconds = message.uptimeSeconds ?? null;
          session.uptimeReportedAt = at;
        } else {
          send(socket, { type: "heartbeat_ack", ts: message.ts, serverTime: at.toISOString() });
        }
      });

      socket.on("close", (code, reasonBuffer) => {
        clearInterval(idleCheck);
        ctx.sessions.remove(session);
        const at = ctx.now().toISOString();
        const reason = reasonBuffer.toString();
        log.info({ code, reason }, "node disconnected");
        ctx.store
          .closeSession(session.sessionId, at, code, reason || null)
          .then(() => ctx.devices.update(session.deviceId, { lastSeen: at, address: session.address }))
          .catch((err: unknown) => log.error({ err }, "could not record the session's end"));
      });
    },
  );
}
