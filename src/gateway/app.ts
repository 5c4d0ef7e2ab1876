import fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
} from "fastify";
import websocket from "@fastify/websocket";
import type { TLSSocket } from "node:tls";
import { GatehouseError, refusesCaller } from "../protocol/errors.js";
import { MAX_SESSION_MESSAGE_BYTES } from "../protocol/messages.js";
import type { GatewayContext } from "./context.js";
import { recordRefusal } from "./refusal-record.js";
import { toGatehouseError } from "./framework-errors.js";
import { installHttpEdges, onClientError } from "./http-edges.js";
import { acceptProxyProtocol } from "./proxy-listener.js";
import { registerMetricsRoute } from "./routes/metrics.js";
import { registerBodyParsers } from "./body-parsers.js";
import { registerHealthRoutes } from "./routes/health.js";
import { registerEnrollRoutes } from "./routes/enroll.js";
import { registerDeviceRoutes } from "./routes/devices.js";
import { registerNodeRoutes } from "./routes/nodes.js";
import { registerClusterRoutes } from "./routes/cluster.js";
import { registerConnectRoute } from "./routes/connect.js";
import { registerAuthRoutes } from "./routes/auth.js";
import { registerKeyRoutes } from "./routes/keys.js";
import { registerEnrollTokenRoutes } from "./routes/enroll-tokens.js";
import { registerCertificateRoutes } from "./routes/certs.js";
import { registerCaRoutes } from "./routes/ca.js";
import { registerAuditRoutes } from "./routes/audit.js";
import { registerEventRoutes } from "./routes/events.js";
import { registerRefusalRoutes } from "./routes/refusals.js";
import { registerDashboard } from "./dashboard/plugin.js";
import { addDashboardSecurityHeaders } from "./dashboard/security-headers.js";

export interface TlsMaterial {
  key: string;
  /** The server certificate followed by its CA, so a node can pin the CA from the chain it sees. */
  cert: string;
  /** The CAs whose client certificates are accepted. */
  ca: string[];
  /** One CRL per trusted CA: revoked certificates are marked CERT_REVOKED by the TLS layer. */
  crl: string[];
}

export async function buildGatewayApp(
  ctx: GatewayContext,
  tls: TlsMaterial,
  options: { webDir?: string } = {},
): Promise<FastifyInstance> {
  const { requestTimeout } = ctx.config.http;
  const app = fastify({
    // fastify's default (0) turns Node's request timeout off: set it back from the config.
    requestTimeout,
    loggerInstance: ctx.logger as unknown as FastifyBaseLogger,
    // Refusals are logged by the error handler, one structured line each; routine requests are not.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 256 * 1024,
    // Errors Node's TLS layer and HTTP parser find before any route runs: a catalogue answer when
    // there is an HTTP session to answer in, and a destroyed connection in every case.
    clientErrorHandler: (error, socket) => onClientError(error, socket, ctx.metrics),
    // Bad percent-encoding and over-long path parameters, which fastify would answer itself.
    frameworkErrors: (error, request, reply: FastifyReply) => {
      const gatehouseError = toGatehouseError(error);
      ctx.metrics.refused(gatehouseError.code);
      // No hook runs for these answers: the dashboard's headers are set here.
      addDashboardSecurityHeaders(request, reply);
      return reply.code(gatehouseError.status).send(gatehouseError.toBody());
    },
    https: {
      key: tls.key,
      cert: tls.cert,
      ca: tls.ca,
      ...(tls.crl.length ? { crl: tls.crl } : {}),
      // Ask for a client certificate but never fail the handshake: a refusal must reach the client
      // as an HTTP error with a code, not as a reset connection.
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
      // A connection that has not finished its handshake by then is destroyed (see http-edges.ts).
      handshakeTimeout: ctx.config.tls.handshakeTimeout,
      // Node would answer a missing Host with an empty 400; http-edges.ts answers it instead.
      requireHostHeader: false,
      // A request (headers and body) must arrive within http.requestTimeout, else it is answered
      // and its connection destroyed (http-edges.ts): a trickled body holds no descriptor for long.
      // Node checks at this interval, so it bounds how late past the timeout the check comes.
      requestTimeout,
      headersTimeout: requestTimeout,
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(requestTimeout / 4))),
    },
  });

  // Every error a route or hook throws is answered here, so here it is counted, once, by its code.
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const gatehouseError = toGatehouseError(error);
    ctx.metrics.refused(gatehouseError.code);
    if (gatehouseError.code === "internal_error") {
      request.log.error({ err: error, route: request.url }, "request failed");
    } else if (refusesCaller(gatehouseError.code)) {
      // One structured line per refusal: who, where, which credential (prefix only), and why.
      recordRefusal(ctx, request, gatehouseError);
    }
    if (gatehouseError.retryAfterSeconds)
      reply.header("retry-after", String(gatehouseError.retryAfterSeconds));
    return reply.code(gatehouseError.status).send(gatehouseError.toBody());
  });

  app.setNotFoundHandler((request, reply) => {
    const error = new GatehouseError(
      "not_found",
      `no route ${request.method} ${request.url}`,
      "Check the method and the path: the API lives under /api/v1, and `GET /health` answers without a credential.",
    );
    ctx.metrics.refused(error.code);
    return reply.code(404).send(error.toBody());
  });

  // JSON and form bodies (OAuth2 token requests), decoded strictly as UTF-8.
  registerBodyParsers(app);

  // Session messages are at most MAX_SESSION_MESSAGE_BYTES, checked by the session so that an
  // oversized one is closed with its code as the reason; ws's own limit (which closes with a bare
  // 1009) only bounds the memory one frame can take.
  await app.register(websocket, { options: { maxPayload: 16 * MAX_SESSION_MESSAGE_BYTES } });
  installHttpEdges(app, ctx.metrics);
  // Handshakes are counted on the server itself: a failed one never reaches a route. Node's https
  // server still forwards each tlsClientError to clientErrorHandler; this listener only counts.
  app.server.on("secureConnection", (socket: TLSSocket) =>
    ctx.metrics.tlsHandshake(socket.isSessionReused()),
  );
  app.server.on("tlsClientError", () => ctx.metrics.tlsHandshakeFailed());
  // Behind a TCP balancer that sends the PROXY protocol: its header is read before TLS begins.
  if (ctx.config.proxyProtocol.trusted.length > 0) {
    acceptProxyProtocol(app.server, {
      trusted: ctx.config.proxyProtocol.trusted,
      headerTimeoutMs: ctx.config.tls.handshakeTimeout,
      refused: (code) => ctx.metrics.refused(code),
      logger: ctx.logger,
    });
  }
  registerDashboard(app, ctx, options.webDir === undefined ? {} : { webDir: options.webDir });
  registerHealthRoutes(app, ctx);
  registerEnrollRoutes(app, ctx);
  registerDeviceRoutes(app, ctx);
  registerNodeRoutes(app, ctx);
  registerClusterRoutes(app, ctx);
  registerConnectRoute(app, ctx);
  registerAuthRoutes(app, ctx);
  registerKeyRoutes(app, ctx);
  registerEnrollTokenRoutes(app, ctx);
  registerCertificateRoutes(app, ctx);
  registerCaRoutes(app, ctx);
  registerAuditRoutes(app, ctx);
  registerRefusalRoutes(app, ctx);
  registerEventRoutes(app, ctx);
  registerMetricsRoute(app, ctx);
  return app;
}
