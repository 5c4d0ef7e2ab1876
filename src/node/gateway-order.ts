import type { ErrorCode } from "../protocol/errors.js";

/**
 * Failures that say "this URL cannot serve the node now" (nothing listens, the connection broke,
 * the instance cannot reach its store, something else answers there): another instance of the same
 * gateway may. A refusal of the node itself (revoked, denied, a bad credential, a clock off) would be
 * the same on every instance, so it does not move on.
 */
export const TRY_NEXT_GATEWAY: ReadonlySet<ErrorCode> = new Set([
  "dns_failed",
  "connection_refused",
  "connection_timeout",
  "connection_failed",
  "unavailable",
  "not_a_gateway",
  "ca_mismatch",
]);

/**
 * Failures of reaching a URL at all (or an instance that answers it cannot serve now). Where a
 * wrong answer must be named rather than skipped (registering: a URL that is another gateway would
 * be written into node.json), only these move on to the next URL.
 */
export const UNREACHABLE_GATEWAY: ReadonlySet<ErrorCode> = new Set([
  "dns_failed",
  "connection_refused",
  "connection_timeout",
  "connection_failed",
  "unavailable",
]);

/** Where the agent's next attempt goes: `now` for the next URL at once, else after the backoff. */
export interface NextGateway {
  /** Index into `gatewayUrls` of the URL to try next. */
  index: number;
  /** True: try `index` at once (the round goes on). False: wait the backoff, then start a round. */
  now: boolean;
}

/**
 * The agent tries its gateway URLs in order, one round at a time: a connection failure at one URL
 * moves to the next at once; when the round is spent (or the failure is not about the URL, or a
 * session that was open closed) the next round starts from the first URL after the same backoff a
 * single URL gets. So a list of N URLs costs at most N attempts per backoff step, never a tight loop,
 * and the first URL stays the preferred one. Pure.
 *
 * @param urlCount how many URLs node.json lists (at least 1)
 * @param index the URL (index) the failed attempt used
 * @param failure `code` the catalogue code reported; `sessionClosed` when a session had opened
 */
export function nextGateway(
  urlCount: number,
  index: number,
  failure: { code: ErrorCode; sessionClosed: boolean },
): NextGateway {
  const more = index + 1 < urlCount;
  if (more && !failure.sessionClosed && TRY_NEXT_GATEWAY.has(failure.code))
    return { index: index + 1, now: true };
  return { index: 0, now: false };
}
