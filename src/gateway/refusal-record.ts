import type { FastifyRequest } from "fastify";
import type { GatehouseError } from "../protocol/errors.js";
import { credentialSummary } from "./authenticate.js";
import type { GatewayContext } from "./context.js";
import { callerAddress } from "./caller-address.js";

/**
 * What every refusal of a caller leaves behind, whatever renders it (the JSON error handler, the
 * dashboard's login page): one structured log line, an entry in the recent-refusals list that
 * `devices show` and the dashboard read (with the reply's own description and hint, so the
 * dashboard repeats what the caller was told), and an `auth.refused` audit entry. The credential
 * is named by its kind and fingerprint prefix only.
 */
export function recordRefusal(ctx: GatewayContext, request: FastifyRequest, error: GatehouseError): void {
  const credential = credentialSummary(request);
  const route = request.routeOptions.url ?? request.url;
  request.log.warn({ address: callerAddress(request), route, ...credential, code: error.code }, "refused");
  ctx.failures.record({
    at: ctx.now().toISOString(),
    code: error.code,
    address: callerAddress(request),
    route,
    ...credential,
    description: error.message,
    hint: error.hint,
  });
  ctx.audit.recordRefusal({
    type: "auth.refused",
    outcome: "failure",
    subject: credential.deviceId ?? null,
    address: callerAddress(request),
    code: error.code,
    details: { route, ...credential },
  });
}
