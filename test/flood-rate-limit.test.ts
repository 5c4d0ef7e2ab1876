/**
 * The registration rate limiter (src/gateway/rate-limit.ts) under a flood from many addresses:
 * it remembers a bounded number of them, an address that keeps asking stays refused whatever the
 * others do, and the per-address budget and its refill are what they were. Injected clock.
 */
import { describe, expect, it } from "vitest";
import { RATE_LIMITER_MAX_KEYS, RateLimiter } from "../src/gateway/rate-limit.js";

/** An IPv6 address of a /64 an attacker holds: one per attempt costs them nothing. */
const address = (i: number) => `2001:db8::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}`;

describe("the registration rate limiter under a flood from many addresses", () => {
  it("remembers at most its bound of addresses, however many ask", () => {
    let at = 0;
    const limiter = new RateLimiter(20, () => at);
    for (let i = 0; i < 2.5 * RATE_LIMITER_MAX_KEYS; i++) {
      expect(limiter.take(address(i))).toBe(0); // each new address's first request is allowed
      at += 1; // 25,000 addresses within 25 s: none of their buckets is full again
    }
    expect(limiter.size).toBeLessThanOrEqual(RATE_LIMITER_MAX_KEYS);
  });

  it("keeps refusing an address that keeps asking while thousands of others flood", () => {
    const at = 0;
    const limiter = new RateLimiter(20, () => at, 1000);
    for (let i = 0; i < 20; i++) expect(limiter.take("198.51.100.7")).toBe(0);
    for (let i = 0; i < 10_000; i++) {
      limiter.take(address(i));
      if (i % 100 === 0) expect(limiter.take("198.51.100.7")).toBeGreaterThan(0);
    }
    expect(limiter.size).toBeLessThanOrEqual(1000);
  });

  it("gives each address `capacity` at once and refills it over a minute", () => {
    let at = 1_000_000;
    const limiter = new RateLimiter(20, () => at);
    for (let i = 0; i < 20; i++) expect(limiter.take("192.0.2.1")).toBe(0);
    expect(limiter.take("192.0.2.1")).toBe(3); // one token comes back every 3 s
    expect(limiter.take("192.0.2.2")).toBe(0); // another address has its own bucket
    at += 60_000;
    for (let i = 0; i < 20; i++) expect(limiter.take("192.0.2.1")).toBe(0);
    expect(limiter.take("192.0.2.1")).toBeGreaterThan(0);
  });
});
