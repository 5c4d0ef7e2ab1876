import { describe, expect, it } from "vitest";
import { absoluteTime, fingerprintPrefix, relativeTime } from "../web/src/format.js";

const now = Date.parse("2026-03-01T12:00:00Z");
const at = (seconds: number) => new Date(now + seconds * 1000).toISOString();

describe("dashboard times and fingerprints", () => {
  it("says how long ago, in the largest unit that reads well", () => {
    expect(relativeTime(at(-3), now)).toBe("just now");
    expect(relativeTime(at(-45), now)).toBe("45 s ago");
    expect(relativeTime(at(-180), now)).toBe("3 min ago");
    expect(relativeTime(at(-5 * 3600), now)).toBe("5 h ago");
    expect(relativeTime(at(-12 * 86400), now)).toBe("12 d ago");
  });

  it("says how far ahead for expiries", () => {
    expect(relativeTime(at(20 * 3600), now)).toBe("in 20 h");
    expect(relativeTime(at(40 * 86400), now)).toBe("in 40 d");
  });

  it("returns text it cannot read as a time unchanged", () => {
    expect(relativeTime("<b>soon</b>", now)).toBe("<b>soon</b>");
    expect(absoluteTime("never")).toBe("never");
  });

  it("shows a fingerprint as sha256: and 12 hex digits, as the gateway's logs do", () => {
    expect(fingerprintPrefix("sha256:9f2c41d07ab3e55c0d1e2f3a")).toBe("sha256:9f2c41d07ab3");
    expect(fingerprintPrefix("9f2c41d07ab3e55c")).toBe("sha256:9f2c41d07ab3");
  });
});
