/** How many keys (remote addresses) a RateLimiter remembers at most, unless told otherwise. */
export const RATE_LIMITER_MAX_KEYS = 10_000;

interface Bucket {
  tokens: number;
  updated: number;
}

/**
 * A token bucket per key (the remote address): `capacity` requests at once, refilled at
 * `capacity` per minute.
 *
 * The map is bounded: at most `maxKeys` buckets, least recently used first out. A flood from more
 * addresses than that (IPv6 hands out addresses by the billion) costs O(1) per request and a fixed
 * amount of memory; an address that keeps asking stays recent, so it stays limited, while one gone
 * quiet may come back with a fresh bucket. The pending-registration cap, not this limiter, is what
 * bounds the stored state.
 */
export class RateLimiter {
  /** In least recently used order (a Map iterates in insertion order; a key taken is moved last). */
  private readonly buckets = new Map<string, Bucket>();

  /**
   * @param capacity requests per key at once, and per minute.
   * @param now the clock, in ms since the epoch.
   * @param maxKeys buckets kept at most (least recently used dropped first).
   */
  constructor(
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
    private readonly maxKeys: number = RATE_LIMITER_MAX_KEYS,
  ) {}

  /** Keys remembered now (at most `maxKeys`). */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes a token; returns 0 if allowed, else the seconds to wait. */
  take(key: string): number {
    const now = this.now();
    const refillPerMs = this.capacity / 60_000;
    let bucket = this.buckets.get(key);
    if (bucket)
      this.buckets.delete(key); // set again below, as the most recently used
    else bucket = { tokens: this.capacity, updated: now };
    bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.updated) * refillPerMs);
    bucket.updated = now;
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    if (bucket.tokens < 1) return Math.ceil((1 - bucket.tokens) / refillPerMs / 1000);
    bucket.tokens -= 1;
    return 0;
  }
}
