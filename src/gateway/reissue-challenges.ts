import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";
import type { Store } from "../store/types.js";

/** How long a re-issue challenge may be answered, in milliseconds. */
export const CHALLENGE_TTL_MS = 60_000;

// A challenge is 32 bytes, sent as 43 base64url characters:
//   expiry (6 bytes, ms since the epoch, big-endian) | nonce (10 random bytes) | tag (16 bytes)
// tag = HMAC-SHA-256(key, LABEL | deviceId | expiry | nonce) truncated to 128 bits, the least
// RFC 2104 §5 allows for SHA-256. The gateway keeps nothing per challenge: the tag proves it issued
// the challenge, for this device id, with this expiry.
const EXPIRY_BYTES = 6;
const NONCE_BYTES = 10;
const TAG_BYTES = 16;
const CHALLENGE_BYTES = EXPIRY_BYTES + NONCE_BYTES + TAG_BYTES;
const LABEL = "gatehouse-reissue-challenge:v1";

/** A challenge whose tag and expiry have been checked, not yet spent. */
export interface CheckedChallenge {
  /** The nonce, hex: what marks the challenge as used. */
  nonce: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

/**
 * Where spent challenges are remembered. `spend` answers false when the nonce was spent already;
 * it must decide in one step, so that two answers to one challenge cannot both pass.
 */
export interface SpentChallenges {
  spend(nonce: string, expiresAt: number, now: number): boolean | Promise<boolean>;
  /** How many are remembered (each only until it expires). */
  readonly size: number;
}

/** One process's spent challenges, in memory: a gateway alone. */
class LocalSpentChallenges implements SpentChallenges {
  /** Nonce (hex) → expiry (ms since the epoch) of each challenge spent and not yet expired. */
  private readonly used = new Map<string, number>();

  spend(nonce: string, expiresAt: number, now: number): boolean {
    for (const [spent, until] of this.used) if (until <= now) this.used.delete(spent);
    if (this.used.has(nonce)) return false;
    this.used.set(nonce, expiresAt);
    return true;
  }

  get size(): number {
    return this.used.size;
  }
}

/** Expired spent challenges are deleted from the store at most this often, in milliseconds. */
const PRUNE_EVERY_MS = 60_000;

/**
 * Spent challenges in the store's `spent_challenges` table, for instances that share it: a nonce
 * spent through one instance is refused by every other (one INSERT … ON CONFLICT DO NOTHING).
 * Rows are deleted once expired, at most once a minute, in the background.
 */
class StoredSpentChallenges implements SpentChallenges {
  private prunedAt = 0;
  private spent = 0;

  constructor(private readonly store: Store) {}

  async spend(nonce: string, expiresAt: number, now: number): Promise<boolean> {
    if (now - this.prunedAt >= PRUNE_EVERY_MS) {
      this.prunedAt = now;
      // An expired challenge is refused by its tag's expiry already: pruning late is harmless.
      void this.store.pruneSpentChallenges(new Date(now).toISOString()).catch(() => undefined);
    }
    const first = await this.store.spendChallenge(nonce, new Date(expiresAt).toISOString());
    if (first) this.spent++;
    return first;
  }

  /** Spent through this instance since it started (the table holds every instance's). */
  get size(): number {
    return this.spent;
  }
}

/**
 * The challenges of instances that share `store`: the MAC key derived from the token hash key
 * every instance holds (HKDF-SHA-256, RFC 5869, with its own label, so it is no key used elsewhere
 * and nothing new is stored), and the spent ones in the store. A challenge issued by one instance
 * is answered through any other, once.
 * @param hashKey the shared token hash key (the pepper: `tokens.hashKey` or the database's).
 */
export function sharedReissueChallenges(store: Store, hashKey: Buffer): ReissueChallenges {
  const key = Buffer.from(hkdfSync("sha256", hashKey, Buffer.alloc(0), LABEL, 32));
  return new ReissueChallenges(key, new StoredSpentChallenges(store));
}

/**
 * Stateless, single-use re-issue challenges. Issuing one stores nothing, so no number of strangers
 * asking for challenges can crowd out a device that needs one. A challenge is marked used only
 * once its signature has proved possession of the device's key (`spend`), and only until it
 * expires: the used set grows only with successful proofs of possession.
 *
 * Alone, the MAC key is made for each process: a restart forgets the used set, so it must also
 * forget the key, or a challenge spent before the restart could be replayed after it. Several
 * instances share both (`sharedReissueChallenges`).
 */
export class ReissueChallenges {
  constructor(
    private readonly key: Buffer = randomBytes(32),
    private readonly used: SpentChallenges = new LocalSpentChallenges(),
  ) {}

  /**
   * A fresh challenge for `deviceId`, valid for 60 s from `now` (ms since the epoch).
   * @returns the challenge (43 base64url characters) and its expiry in ms since the epoch.
   */
  issue(deviceId: string, now: number): { challenge: string; expiresAt: number } {
    const expiresAt = now + CHALLENGE_TTL_MS;
    const body = Buffer.alloc(EXPIRY_BYTES + NONCE_BYTES);
    body.writeUIntBE(expiresAt, 0, EXPIRY_BYTES);
    randomBytes(NONCE_BYTES).copy(body, EXPIRY_BYTES);
    return { challenge: Buffer.concat([body, this.tag(deviceId, body)]).toString("base64url"), expiresAt };
  }

  /**
   * Checks that `challenge` was issued by this gateway (this process alone, any instance among several) for `deviceId` and has not expired at `now`
   * (ms since the epoch). Changes nothing.
   * @throws GatehouseError `invalid_request` for a challenge that is malformed, altered, issued for
   *   another device id or by another process, or expired.
   */
  check(deviceId: string, challenge: string, now: number): CheckedChallenge {
    const bytes = /^[A-Za-z0-9_-]{43}$/.test(challenge) ? Buffer.from(challenge, "base64url") : undefined;
    // Only the one canonical spelling: trailing bits that base64url would ignore are refused too.
    if (bytes?.length !== CHALLENGE_BYTES || bytes.toString("base64url") !== challenge) {
      throw notIssued();
    }
    const body = bytes.subarray(0, EXPIRY_BYTES + NONCE_BYTES);
    if (!timingSafeEqual(bytes.subarray(EXPIRY_BYTES + NONCE_BYTES), this.tag(deviceId, body))) {
      throw notIssued();
    }
    const expiresAt = body.readUIntBE(0, EXPIRY_BYTES);
    if (expiresAt <= now) {
      throw new GatehouseError(
        "invalid_request",
        "the challenge has expired",
        "Ask for a new challenge (POST /api/v1/certs/challenge) and sign it within 60 s.",
      );
    }
    return { nonce: body.subarray(EXPIRY_BYTES).toString("hex"), expiresAt };
  }

  /**
   * Marks a checked challenge as used; call only once its signature proved possession of the
   * device's key. Decided in one step (in memory alone: before any await; among several: one
   * statement), so two concurrent answers to one challenge cannot both pass.
   * @throws GatehouseError `invalid_request` when the challenge was already used (through any
   *   instance); `unavailable` when the shared store cannot be reached.
   */
  async spend(checked: CheckedChallenge, now: number): Promise<void> {
    if (!(await this.used.spend(checked.nonce, checked.expiresAt, now))) {
      throw new GatehouseError(
        "invalid_request",
        "the challenge has already been used",
        "Ask for a new challenge (POST /api/v1/certs/challenge); each one answers once.",
      );
    }
  }

  /** How many spent challenges are remembered (each only until it expires). */
  get spentCount(): number {
    return this.used.size;
  }

  private tag(deviceId: string, body: Buffer): Buffer {
    return createHmac("sha256", this.key)
      .update(`${LABEL}\0${deviceId}\0`)
      .update(body)
      .digest()
      .subarray(0, TAG_BYTES);
  }
}

function notIssued(): GatehouseError {
  return new GatehouseError(
    "invalid_request",
    "the challenge was not issued by this gateway for this device id",
    "Ask for a new challenge (POST /api/v1/certs/challenge) for this device id and send it back unchanged.",
  );
}
