import type { ErrorCode } from "../protocol/errors.js";

/**
 * Exponential backoff with full jitter (a random delay between 0 and the capped exponential), so
 * that many nodes cut off by one gateway restart do not all come back in the same instant.
 *
 * @param attempt failures so far (0 for the first retry)
 * @param initialMs the first step, in ms (also the floor: half of it)
 * @param maxMs the cap, in ms
 * @returns the delay in ms
 */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.max(initialMs / 2, Math.round(random() * ceiling));
}

/**
 * Close codes of a gateway that goes away on purpose and comes back: 1001 Going Away and 1012
 * Service Restart (RFC 6455 §7.4.1 and the IANA WebSocket close code registry).
 */
export const GATEWAY_RESTART_CLOSE_CODES: ReadonlySet<number> = new Set([1001, 1012]);

/**
 * After a restart notice a node comes back after a delay drawn uniformly from this window (ms):
 * the fleet spreads over a few seconds instead of stampeding, and no node waits a minute.
 */
export const RESTART_WINDOW_MS = { min: 250, max: 3000 } as const;

/**
 * For this long after a restart notice (ms), an answer that means "the gateway is not back yet"
 * keeps the flat window instead of climbing the ladder: a stop and a start take about a second.
 */
export const RESTART_GRACE_MS = 30_000;

/** What a stopped or starting gateway answers: nothing listens, a reset, or a 503. */
const NOT_BACK_YET: ReadonlySet<ErrorCode> = new Set([
  "connection_refused",
  "connection_failed",
  "unavailable",
]);

/** Where a node's reconnects stand: failures on the ladder, and when the gateway said it restarts. */
export interface ReconnectState {
  /** Ladder steps taken (failures that were not part of a restart). */
  attempt: number;
  /** When (ms since the epoch, the caller's clock) the last 1001/1012 close came; null if none. */
  restartNoticeAt: number | null;
}

/** A node that just connected (or never failed). */
export const FRESH_RECONNECT: ReconnectState = Object.freeze({ attempt: 0, restartNoticeAt: null });

/**
 * The delay before the next connection attempt, and the state after it. Pure: the caller passes
 * the time and may pass `random` (default Math.random, uniform in [0, 1)).
 *
 * - A session closed with 1001 or 1012: a delay uniform in RESTART_WINDOW_MS; the ladder is not
 *   climbed.
 * - Within RESTART_GRACE_MS of that close, connection refused / reset / 503: the same window.
 * - Anything else: the exponential ladder with full jitter (`backoffDelay`).
 *
 * `restarting` is true when the delay came from the flat window (the gateway is restarting).
 *
 * @param failure `closeCode` when an open session was closed; `code` the catalogue code reported
 * @param at the time of the failure, ms since the epoch
 * @param ladder `initialMs` and `maxMs` of the exponential ladder (the node's `reconnect` config)
 */
export function nextReconnect(
  state: ReconnectState,
  failure: { closeCode?: number; code: ErrorCode },
  at: number,
  ladder: { initialMs: number; maxMs: number },
  random: () => number = Math.random,
): { delayMs: number; state: ReconnectState; restarting: boolean } {
  const restartNotice = failure.closeCode !== undefined && GATEWAY_RESTART_CLOSE_CODES.has(failure.closeCode);
  const restartNoticeAt = restartNotice ? at : state.restartNoticeAt;
  const withinGrace =
    restartNoticeAt !== null && at - restartNoticeAt >= 0 && at - restartNoticeAt <= RESTART_GRACE_MS;
  if (restartNotice || (withinGrace && NOT_BACK_YET.has(failure.code))) {
    const { min, max } = RESTART_WINDOW_MS;
    return {
      delayMs: Math.round(min + random() * (max - min)),
      state: { attempt: state.attempt, restartNoticeAt },
      restarting: true,
    };
  }
  return {
    delayMs: backoffDelay(state.attempt, ladder.initialMs, ladder.maxMs, random),
    state: { attempt: state.attempt + 1, restartNoticeAt },
    restarting: false,
  };
}
