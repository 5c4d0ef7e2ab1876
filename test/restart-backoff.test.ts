import { describe, expect, it } from "vitest";
import {
  FRESH_RECONNECT,
  RESTART_GRACE_MS,
  RESTART_WINDOW_MS,
  nextReconnect,
  type ReconnectState,
} from "../src/node/backoff.js";

const ladder = { initialMs: 1000, maxMs: 60_000 };
const inWindow = (ms: number) => ms >= RESTART_WINDOW_MS.min && ms <= RESTART_WINDOW_MS.max;

/** Feeds failures one after another, as the agent does, and returns every delay it was given. */
function delaysFor(
  failures: { closeCode?: number; code: Parameters<typeof nextReconnect>[1]["code"]; at: number }[],
  random: () => number,
  start: ReconnectState = FRESH_RECONNECT,
): number[] {
  let state = start;
  return failures.map((failure) => {
    const next = nextReconnect(state, failure, failure.at, ladder, random);
    state = next.state;
    return next.delayMs;
  });
}

describe("the reconnect delay after a gateway restart", () => {
  it("a 1012 `gateway restarting` close gives a delay in the flat window, spread uniformly by random", () => {
    const at = 1_000_000;
    const low = nextReconnect(FRESH_RECONNECT, { closeCode: 1012, code: "unavailable" }, at, ladder, () => 0);
    const high = nextReconnect(
      FRESH_RECONNECT,
      { closeCode: 1012, code: "unavailable" },
      at,
      ladder,
      () => 0.999,
    );
    const middle = nextReconnect(
      FRESH_RECONNECT,
      { closeCode: 1012, code: "unavailable" },
      at,
      ladder,
      () => 0.5,
    );
    expect(low.delayMs).toBe(RESTART_WINDOW_MS.min);
    expect(inWindow(high.delayMs)).toBe(true);
    expect(high.delayMs).toBeGreaterThan(RESTART_WINDOW_MS.max - 10);
    expect(middle.delayMs).toBe(Math.round((RESTART_WINDOW_MS.min + RESTART_WINDOW_MS.max) / 2));
    // The window is a few seconds, not the exponential ladder's minute.
    expect(RESTART_WINDOW_MS.max).toBeLessThanOrEqual(5000);
  });

  it("1001 (gateway shutting down) is treated the same way", () => {
    const next = nextReconnect(
      FRESH_RECONNECT,
      { closeCode: 1001, code: "unavailable" },
      0,
      ladder,
      () => 0.9,
    );
    expect(inWindow(next.delayMs)).toBe(true);
  });

  it("connection refused after a 1012 stays in the flat window instead of climbing", () => {
    const t0 = 5_000_000;
    const failures = [
      { closeCode: 1012, code: "unavailable" as const, at: t0 },
      ...Array.from({ length: 8 }, (_, i) => ({
        code: "connection_refused" as const,
        at: t0 + 500 * (i + 1),
      })),
      { code: "unavailable" as const, at: t0 + 6000 },
    ];
    const delays = delaysFor(failures, () => 0.99);
    for (const delay of delays) expect(inWindow(delay)).toBe(true);
  });

  it("connection refused long after the restart notice climbs the ladder again", () => {
    const t0 = 5_000_000;
    const delays = delaysFor(
      [
        { closeCode: 1012, code: "unavailable", at: t0 },
        { code: "connection_refused", at: t0 + RESTART_GRACE_MS + 1 },
        { code: "connection_refused", at: t0 + RESTART_GRACE_MS + 2 },
        { code: "connection_refused", at: t0 + RESTART_GRACE_MS + 3 },
        { code: "connection_refused", at: t0 + RESTART_GRACE_MS + 4 },
        { code: "connection_refused", at: t0 + RESTART_GRACE_MS + 5 },
        { code: "connection_refused", at: t0 + RESTART_GRACE_MS + 6 },
        { code: "connection_refused", at: t0 + RESTART_GRACE_MS + 7 },
      ],
      () => 1,
    );
    expect(delays.slice(1)).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000]);
  });

  it("other failures still climb the exponential ladder, even right after a restart notice", () => {
    const t0 = 0;
    const delays = delaysFor(
      [
        { closeCode: 1012, code: "unavailable", at: t0 },
        { code: "ca_mismatch", at: t0 + 100 },
        { code: "connection_timeout", at: t0 + 200 },
        { code: "dns_failed", at: t0 + 300 },
        { code: "rate_limited", at: t0 + 400 },
      ],
      () => 1,
    );
    expect(inWindow(delays[0]!)).toBe(true);
    expect(delays.slice(1)).toEqual([1000, 2000, 4000, 8000]);
  });

  it("without a restart notice, connection refused climbs as before (a gateway that is simply down)", () => {
    const delays = delaysFor(
      [0, 1, 2, 3, 4].map((i) => ({ code: "connection_refused" as const, at: i })),
      () => 1,
    );
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000]);
  });

  it("a session closed for another reason (4408 idle, 1006) climbs the ladder", () => {
    const delays = delaysFor(
      [
        { closeCode: 4408, code: "connection_failed", at: 0 },
        { closeCode: 1006, code: "connection_failed", at: 1 },
      ],
      () => 1,
    );
    expect(delays).toEqual([1000, 2000]);
  });
});
