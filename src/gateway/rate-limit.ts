/**
 * A token bucket per key (the remote address): `capacity` requests at once, refilled at
 * `capacity` per minute. Buckets that are full again are dropped so the map stays small.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; updated: number }>();

  constructor(
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes a token; returns 0 if allowed, else the seconds to wait. */
  take(key: string): number {
    const now = this.now();
    const refillPerMs = this.capacity / 60_000;
    const bucket = this.buckets.get(key) ?? { tokens: this.capacity, updated: now };
    bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.updated) * refillPerMs);
    bucket.updated = now;
    if (bucket.tokens < 1) {
      this.buckets.set(key, bucket);
      return Math.ceil((1 - bucket.tokens) / refillPerMs / 1000);
    }
    bucket.tokens -= 1;
    this.buckets.set(key, bucket);
    if (this.buckets.size > 10_000) this.sweep(now, refillPerMs);
    return 0;
  }

  private sweep(now: number, refillPerMs: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.updated) * refillPerMs >= this.capacity) this.buckets.delete(key);
    }
  }
}
