import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import type {} from "@fastify/websocket";
import type { GatewayContext } from "../context.js";
import { peerThumbprint, requireScopeHook } from "../authenticate.js";
import { runNodeSession } from "../node-session.js";
import { GatehouseError } from "../../protocol/errors.js";
import { callerAddress } from "../caller-address.js";

/**
 * The node session. Authentication happens in `onRequest`, before the upgrade, so a refused node
 * gets an HTTP status and the catalogue's JSON body instead of a bare close (the old 1006).
 */
export function registerConnectRoute(app: FastifyInstance, ctx: GatewayContext): void {
  app.get(
    "/api/v1/connect",
    {
      websocket: true,
      onRequest: [
        requireScopeHook(ctx, "node:connect"),
        async (request) => {
          // An operator's certificate (the admin credential) is not a node, nor is a dashboard.
          if (request.principal?.kind === "dashboard_session") {
            throw new GatehouseError("insufficient_scope", "a dashboard session cannot open a node session");
          }
          if (request.principal?.deviceKind === "operator") {
            throw new GatehouseError(
              "insufficient_scope",
              "an operator credential cannot open a node session",
            );
          }
          // A plain HTTP request here would get the WebSocket plugin's empty 404: say what it is.
          if (!request.ws) {
            throw new GatehouseError(
              "invalid_request",
              "/api/v1/connect is the node session: open it as a WebSocket (Connection: Upgrade, Upgrade: websocket)",
            );
          }
        },
      ],
    },
    (socket, request) => {
      const opened = {
        principal: request.principal!,
        address: callerAddress(request),
        thumbprint: peerThumbprint(request),
      };
      forgetUpgrade(ctx, socket, request.raw.socket);
      runNodeSession(ctx, socket, opened);
    },
  );
}

/**
 * Lets the upgrade's request and response go once the session is open, so an idle session does
 * not hold them (headers, fastify's Request and Reply) for its whole life. Two things keep them:
 * the HTTP response Node assigned to the TLS socket for the upgrade (`detachSocket` undoes that),
 * and @fastify/websocket's "error" listener, a closure over the request and reply; it is replaced
 * by one that logs what went wrong on the session (ws closes the connection itself).
 */
function forgetUpgrade(ctx: GatewayContext, socket: WebSocket, raw: Socket): void {
  const response = (raw as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (response) response.detachSocket(raw);
  socket.removeAllListeners("error");
  socket.on("error", (err) => ctx.logger.warn({ err: err.message }, "node session error"));
}
