import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/**
 * The Content-Security-Policy of every dashboard response (CSP Level 3): scripts, styles and
 * connections from this origin only, no inline script or style, no framing, no plugins, forms post
 * only here. The page is built to need nothing more (web/build.mjs emits external files only).
 */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** Headers every `/dashboard` and `/dashboard/*` response carries, whatever its status. */
export const DASHBOARD_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": DASHBOARD_CSP,
  // For browsers without frame-ancestors: no page may frame the dashboard (clickjacking).
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  // A login link's token must never leave in a Referer header.
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

/**
 * Whether a request's path is the dashboard's (`/dashboard` or under `/dashboard/`), as the router
 * reads it: the raw path, its percent-decoded form (the router decodes `/%64ashboard/` to the
 * dashboard's route) and the route it matched. A path that only looks like it gets the headers too,
 * which costs nothing.
 */
export function isDashboardPath(request: FastifyRequest): boolean {
  const url = request.raw.url ?? request.url;
  const end = url.search(/[?#]/);
  const raw = end === -1 ? url : url.slice(0, end);
  let decoded = raw;
  // This runs for every response, the nodes' API included: decode only what has an escape.
  if (raw.includes("%")) {
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      // Malformed percent-encoding: the router refuses it; the raw path decides.
    }
  }
  const routed = request.routeOptions?.url;
  return [raw, decoded, routed].some(
    (path) => path !== undefined && (path === "/dashboard" || path.startsWith("/dashboard/")),
  );
}

/** Sets DASHBOARD_SECURITY_HEADERS on a reply to a dashboard path (see isDashboardPath). */
export function addDashboardSecurityHeaders(request: FastifyRequest, reply: FastifyReply): void {
  if (isDashboardPath(request)) reply.headers(DASHBOARD_SECURITY_HEADERS);
}

/**
 * Adds DASHBOARD_SECURITY_HEADERS to every dashboard response, including refusals, 404s and the
 * 503 of a gateway built without its web files. A hook on the root instance, so that the not-found
 * and error handlers' answers are covered too; the answers fastify makes before any hook runs
 * (bad percent-encoding: the app's `frameworkErrors`) call addDashboardSecurityHeaders themselves.
 */
export function installDashboardSecurityHeaders(app: FastifyInstance): void {
  // A callback hook, not an async one: no promise per response on the nodes' hot path.
  app.addHook("onSend", (request, reply, payload, done) => {
    addDashboardSecurityHeaders(request, reply);
    done(null, payload);
  });
}
