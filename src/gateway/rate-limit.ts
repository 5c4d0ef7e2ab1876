import type { Logger } from "pino";
import type { Store } from "../store/types.js";

/** How many keys (remote addresses) a RateLimiter remembers at most, unless told otherwise. */
export const RATE_LIMITER_MAX_KEYS = 10_000;

interface Bucket {
  tokens: number;
  updated: number;
}

/** A limit per key (the remote address): `take` returns 0 when allowed, else the seconds to wait. */
export interface AddressRateLimit {
  take(key: string): number | Promise<number>;
  /** Keys remembered in memory (the bucket limiter); undefined when the count lives in the store. */
  readonly size?: number;
}

/** The length of one shared rate window: a limit "per minute" counts in fixed minutes. */
export const RATE_WINDOW_MS = 60_000;

/**
 * A limit per key that several instances of one gateway share: requests are counted in the
 * store's `rate_windows`, one row per key and fixed one-minute window (UTC minute boundaries), so
 * an address gets `capacity` requests per minute in all, whichever instances it reaches (a load
 * balancer spreads it over them). Unlike the bucket, a burst of up to 2 × capacity can straddle a
 * window boundary. Windows older than the previous one are pruned once a minute, by whichever
 * instance counts first in a new window.
 */
export class SharedRateLimiter implements AddressRateLimit {
  private prunedBefore = 0;
  private pruning: Promise<unknown> = Promise.resolve();

  /**
   * @param capacity requests per key per window.
   * @param scope prefixes the key, so limits of different things never share a count.
   * @param now the clock, in ms since the epoch.
   */
  constructor(
    private readonly store: Pick<Store, "countRateHit" | "pruneRateWindows">,
    private readonly capacity: number,
    private readonly scope: string,
    private readonly logger: Pick<Logger, "warn">,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Counts one request of `key`; returns 0 if it is within the window's capacity, else the
   * seconds until the next window starts (at least 1).
   * @throws GatehouseError `unavailable` when the store cannot be reached: a refusal, never a pass.
   */
  async take(key: string): Promise<number> {
    const now = this.now();
    const windowStart = now - (now % RATE_WINDOW_MS);
    if (windowStart > this.prunedBefore) {
      this.prunedBefore = windowStart;
      // Not awaited: the count does not depend on it, and a failed prune is retried next minute.
      this.pruning = this.store
        .pruneRateWindows(new Date(windowStart - RATE_WINDOW_MS).toISOString())
        .catch((err: unknown) => this.logger.warn({ err }, "could not prune old rate windows"));
    }
    const count = await this.store.countRateHit(`${this.scope}:${key}`, new Date(windowStart).toISOString());
    if (count <= this.capacity) return 0;
    return Math.max(1, Math.ceil((windowStart + RATE_WINDOW_MS - now) / 1000));
  }

  /** Resolves once the prune in flight, if any, has finished (or failed and been logged). */
  async settled(): Promise<void> {
    await this.pruning;
  }
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
export class RateLimiter implements AddressRateLimit {
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
