import { describe, expect, it } from "vitest";
import { renewalDelay, renewalFloorMs } from "../src/node/credential-keeper.js";

/** A certificate issued at gateway time `issuedAt` for `lifeMs`, as renewalTime reads it. */
function certificate(issuedAt: number, lifeMs: number) {
  return { renewAt: new Date(issuedAt + (lifeMs * 2) / 3), lifeMs };
}

const T = Date.parse("2026-01-01T00:00:00Z");
const LIFE = 12_000;

describe("when a node renews its certificate", () => {
  it("in step with the gateway: at 2/3 of the life", () => {
    expect(renewalDelay(certificate(T, LIFE), { nowMs: T, offsetMs: 0, sinceRenewedMs: undefined })).toEqual({
      delayMs: 8000,
      heldBack: false,
    });
  });

  it("10 s ahead, offset measured: still at 2/3 of the life by the gateway's clock, not at once", () => {
    const renewal = renewalDelay(certificate(T, LIFE), {
      nowMs: T + 10_000,
      offsetMs: -10_000,
      sinceRenewedMs: 0,
    });
    expect(renewal).toEqual({ delayMs: 8000, heldBack: false });
  });

  it("10 minutes behind, offset measured: a certificate due by the gateway's clock is renewed now", () => {
    const renewal = renewalDelay(certificate(T, LIFE), {
      nowMs: T + 9000 - 600_000,
      offsetMs: 600_000,
      sinceRenewedMs: undefined,
    });
    expect(renewal).toEqual({ delayMs: 0, heldBack: false });
  });

  it("ahead with the offset unknown: a certificate due as soon as it arrives waits out the floor (no loop)", () => {
    const renewal = renewalDelay(certificate(T, LIFE), { nowMs: T + 10_000, offsetMs: 0, sinceRenewedMs: 0 });
    expect(renewal).toEqual({ delayMs: renewalFloorMs(LIFE), heldBack: true });
    // However often it is asked, at most one renewal per floor: 6 per life, not hundreds.
    expect(renewalFloorMs(LIFE)).toBe(2000);
    expect(renewalFloorMs(365 * 86_400_000)).toBe((365 * 86_400_000) / 6);
    expect(renewalFloorMs(100)).toBe(1000);
  });

  it("the floor counts from the last renewal, so a retry after a failure is not held back by it", () => {
    expect(
      renewalDelay(certificate(T, LIFE), { nowMs: T + 10_000, offsetMs: 0, sinceRenewedMs: 5000 }),
    ).toEqual({ delayMs: 0, heldBack: false });
  });
});
