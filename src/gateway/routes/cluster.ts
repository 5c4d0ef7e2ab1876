import type { FastifyError, FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { GatehouseError } from "../../protocol/errors.js";
import { requireScope, type Principal } from "../../auth/roles.js";
import { tokenFingerprint } from "../../auth/token-service.js";
import { fingerprintPrefix } from "../../pki/fingerprint.js";
import type { GatewayContext } from "../context.js";
import { bearerToken } from "../authenticate.js";
import { parseBody } from "../parse-body.js";
import { RELAY_EXEC_PATH } from "../cluster/exec-relay.js";
import {
  relayBodyHash,
  relayRefusalHint,
  verifyRelayToken,
  type RelayClaims,
} from "../cluster/relay-token.js";
import { toGatehouseError } from "../framework-errors.js";
import { execBodyShape } from "./nodes.js";

const relayExecBody = z.strictObject({ deviceId: z.string().min(1).max(256), ...execBodyShape });

/** The largest relayed exec body: 64 arguments of 4 KiB and the rest. */
const RELAY_BODY_LIMIT = 300 * 1024;

/**
 * The route other instances of this gateway relay commands to (only with several instances:
 * ctx.relay). It takes nothing but a relay token (cluster/relay-token.ts) for this instance, bound
 * to the exact body bytes and used once: a node's certificate, an operator's access token or API
 * key, a dashboard cookie are all refused with a 401, and every refusal carries
 * relayRefusalHint. The command runs through this instance's
 * ExecBroker on a session held here, for the operator the token names, and is answered as
 * `POST /api/v1/nodes/:id/exec` answers.
 */
export function registerClusterRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const relay = ctx.relay;
  if (!relay) return;
  const verified = new WeakMap<FastifyRequest, RelayClaims>();
  /** Requests whose relay was taken: what fails from there on is the command's answer. */
  const running = new WeakSet<FastifyRequest>();
  void app.register(async (scope) => {
    // Every refusal of the relay itself (credential, size, type, body) says what this route is,
    // not the hints meant for operators' tokens or CSRs. The command's own answer (node_offline,
    // command_not_allowed, …) is the operator's, passed back by the sender: it keeps its hint. The
    // app's error handler then answers, counts and records it (a rethrow reaches the parent).
    scope.setErrorHandler((error: FastifyError, request) => {
      if (running.has(request)) throw error;
      const refusal = toGatehouseError(error);
      throw Object.assign(
        new GatehouseError(refusal.code, refusal.message, relayRefusalHint(refusal.code)),
        refusal.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: refusal.retryAfterSeconds },
      );
    });
    // The body's hash is checked against the token: the route needs the bytes as sent. Content-type
    // parsers are encapsulated, so this one serves this route alone.
    scope.removeContentTypeParser("application/json");
    scope.addContentTypeParser("application/json", { parseAs: "buffer" }, (_request, body, done) =>
      done(null, body),
    );
    scope.post(
      RELAY_EXEC_PATH,
      {
        bodyLimit: RELAY_BODY_LIMIT,
        // Before the body is read: a request without a valid relay token costs no more than that.
        onRequest: async (request) => {
          const token = bearerToken(request);
          if (token === undefined)
            throw new GatehouseError(
              "missing_credentials",
              "this route takes only a relay token from another instance of this gateway",
            );
          request.credentialTried = {
            credential: "relay-token",
            fingerprint: fingerprintPrefix(tokenFingerprint(token)),
          };
          // A token names the run of this instance it is for: one made before a restart (whose
          // spent ids this process never saw) is refused.
          const run = relay.currentRun();
          if (!run)
            throw new GatehouseError(
              "unavailable",
              "this instance is starting and takes relayed commands once it is registered",
            );
          verified.set(
            request,
            await verifyRelayToken(token, {
              ring: ctx.signingKeys.ring,
              instanceId: run.instanceId,
              startedAt: run.startedAt,
              now: ctx.now(),
            }),
          );
        },
      },
      async (request) => {
        const claims = verified.get(request)!;
        const raw = request.body;
        if (!Buffer.isBuffer(raw))
          throw new GatehouseError("invalid_request", "a relayed command's body is JSON (application/json)");
        if (relayBodyHash(raw) !== claims.bodySha256)
          throw new GatehouseError("invalid_token", "the body is not the one the relay token was signed for");
        if (!relay.takeOnce(claims.jti, claims.expiresAtMs))
          throw new GatehouseError("invalid_token", "this relay token was used already");
        const principal: Principal = { ...claims.principal };
        // The sender checked the scope; checked again here, where the command runs.
        requireScope(principal, "node:execute");
        let json: unknown;
        try {
          json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
        } catch {
          throw new GatehouseError("invalid_request", "a relayed command's body is not valid UTF-8 JSON");
        }
        const body = parseBody(relayExecBody, json);
        running.add(request);
        return ctx.exec.run(principal, body.deviceId, body.command, body.args, body.timeoutMs, {
          via: claims.via,
        });
      },
    );
  });
}
