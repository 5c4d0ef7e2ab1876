import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Principal } from "../../auth/roles.js";
import { GatehouseError } from "../../protocol/errors.js";
import { requireScopeHook } from "../authenticate.js";
import type { GatewayContext } from "../context.js";
import type { EventTopic } from "../events.js";
import { recordRefusal } from "../refusal-record.js";
import { callerAddress } from "../caller-address.js";

/** Open event streams at most; one more is refused with `rate_limited`. */
export const MAX_EVENT_STREAMS = 50;
/** A comment line this often keeps proxies from closing an idle stream, in milliseconds. */
export const KEEPALIVE_MS = 25_000;
/** Changes within this window reach a stream as one notice per topic, in milliseconds. */
export const COALESCE_MS = 100;
/** A client that leaves this much unread is dropped (it reconnects and refetches), in bytes. */
const MAX_UNREAD_BYTES = 64 * 1024;

/**
 * Whether the credential a stream was opened with still holds: a dashboard session not ended or
 * expired whose creating credential is not revoked, a token not expired, a device not revoked
 * since. Known at once but for a dashboard session, which is read from where DashboardSessions
 * keeps them (memory alone, the shared store among several instances).
 */
function stillValid(ctx: GatewayContext, principal: Principal): boolean | Promise<boolean> {
  if (principal.kind === "dashboard_session")
    return ctx.dashboard.find(principal.credentialFingerprint).then((found) => found !== undefined);
  if (principal.expiresAt && principal.expiresAt <= ctx.now()) return false;
  if (principal.deviceId && ctx.devices.get(principal.deviceId)?.status !== "approved") return false;
  return true;
}

/**
 * `GET /api/v1/events` (devices:read): Server-Sent Events (HTML Living Standard §9.2). First
 * `event: ready`, then `event: change` with `{"topic": …}` for each change, and `: keepalive`
 * every KEEPALIVE_MS. The stream ends when its credential no longer holds (checked at each
 * keepalive and event), when the client reads too slowly, and when the gateway stops.
 */
export function registerEventRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const open = new Set<() => void>();

  // Before the server closes: ended streams leave their connections idle, which close() then ends,
  // so `gateway stop` never waits for a browser tab.
  app.addHook("preClose", async () => {
    for (const end of [...open]) end();
  });

  app.get(
    "/api/v1/events",
    { onRequest: requireScopeHook(ctx, "devices:read"), exposeHeadRoute: false },
    async (request, reply) => {
      if (open.size >= MAX_EVENT_STREAMS) {
        const error = new GatehouseError(
          "rate_limited",
          `this gateway already serves ${MAX_EVENT_STREAMS} event streams`,
          "Close dashboard tabs you do not use, then reload.",
        );
        error.retryAfterSeconds = 30;
        // Not a refusal of the credential, so the error handler would not record it: a stream
        // turned away is still one the audit log and the refusals page must show.
        recordRefusal(ctx, request, error);
        throw error;
      }
      const principal = request.principal!;
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        // One stream per connection: ending the stream frees the connection at once.
        connection: "close",
        "x-content-type-options": "nosniff",
      });

      let ended = false;
      const send = (text: string): void => {
        if (ended) return;
        const valid = stillValid(ctx, principal);
        if (valid instanceof Promise) {
          void valid.then(
            (holds) => (holds ? write(text) : end()),
            () => end(),
          );
          return;
        }
        if (valid) write(text);
        else end();
      };
      const write = (text: string): void => {
        if (ended) return;
        if (raw.writableLength > MAX_UNREAD_BYTES) {
          end();
          return;
        }
        raw.write(text);
      };
      // A flood (a thousand refusals a second, each also an audit entry) becomes at most one
      // notice per topic per COALESCE_MS: the page refetches a list, not each change.
      const pending = new Set<EventTopic>();
      let flush: NodeJS.Timeout | undefined;
      const unsubscribe = ctx.events.subscribe((topic: EventTopic) => {
        pending.add(topic);
        flush ??= setTimeout(() => {
          flush = undefined;
          for (const changed of pending)
            send(`event: change\ndata: ${JSON.stringify({ topic: changed })}\n\n`);
          pending.clear();
        }, COALESCE_MS);
      });
      const keepalive = setInterval(() => send(": keepalive\n\n"), KEEPALIVE_MS);
      keepalive.unref();
      function end(): void {
        if (ended) return;
        ended = true;
        open.delete(end);
        unsubscribe();
        clearTimeout(flush);
        clearInterval(keepalive);
        raw.end();
      }
      open.add(end);
      raw.on("close", end);
      raw.on("error", end);
      logStream(request, "event stream opened");
      raw.write("event: ready\ndata: {}\n\n");
    },
  );
}

function logStream(request: FastifyRequest, msg: string): void {
  request.log.debug({ address: callerAddress(request), subject: request.principal?.subject }, msg);
}
