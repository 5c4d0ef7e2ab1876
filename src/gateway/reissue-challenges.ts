import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";

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
 * Stateless, single-use re-issue challenges. Issuing one stores nothing, so no number of strangers
 * asking for challenges can crowd out a device that needs one. A challenge is marked used only
 * once its signature has proved possession of the device's key (`spend`), and only until it
 * expires: the used set grows only with successful proofs of possession.
 *
 * The MAC key is made for each process: a restart forgets the used set, so it must also forget the
 * key, or a challenge spent before the restart could be replayed after it.
 */
export class ReissueChallenges {
  /** Nonce (hex) → expiry (ms since the epoch) of each challenge spent and not yet expired. */
  private readonly used = new Map<string, number>();

  constructor(private readonly key: Buffer = randomBytes(32)) {}

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
   * Checks that `challenge` was issued by this process for `deviceId` and has not expired at `now`
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
   * device's key. Synchronous, so two concurrent answers to one challenge cannot both pass.
   * @throws GatehouseError `invalid_request` when the challenge was already used.
   */
  spend(checked: CheckedChallenge, now: number): void {
    for (const [nonce, expiresAt] of this.used) if (expiresAt <= now) this.used.delete(nonce);
    if (this.used.has(checked.nonce)) {
      throw new GatehouseError(
        "invalid_request",
        "the challenge has already been used",
        "Ask for a new challenge (POST /api/v1/certs/challenge); each one answers once.",
      );
    }
    this.used.set(checked.nonce, checked.expiresAt);
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
