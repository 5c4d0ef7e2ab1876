import { GatehouseError } from "../protocol/errors.js";
import type { ApiKeyRecord } from "../store/token-types.js";
import { randomToken, sameDigest, hashSecret } from "./secrets.js";

export const API_KEY_PREFIX = "ghk_";
const PUBLIC_PART = 8;

/** A new key: `ghk_` + 8 public characters (the key's name in logs) + 40 secret characters. */
export function generateApiKey(): { secret: string; prefix: string } {
  const prefix = randomToken(5).slice(0, PUBLIC_PART);
  return { secret: API_KEY_PREFIX + prefix + randomToken(25), prefix };
}

export function apiKeyPrefix(secret: string): string | undefined {
  if (!secret.startsWith(API_KEY_PREFIX) || secret.length < API_KEY_PREFIX.length + PUBLIC_PART + 20)
    return undefined;
  const prefix = secret.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + PUBLIC_PART);
  return /^[a-z2-7]{8}$/.test(prefix) ? prefix : undefined;
}

/** How an API key names itself in logs and errors: its public part only. */
export function apiKeyLabel(prefix: string): string {
  return `${API_KEY_PREFIX}${prefix}`;
}

/**
 * Checks an API key against its record: the hash in constant time, then revocation, expiry and
 * the end of a rotation's grace period — each refused with a code that says which.
 */
export function checkApiKey(
  record: ApiKeyRecord | undefined,
  secret: string,
  pepper: Buffer,
  now: Date,
): ApiKeyRecord {
  const prefix = apiKeyPrefix(secret);
  if (!record || !prefix || !sameDigest(record.hash, hashSecret(pepper, secret))) {
    throw new GatehouseError(
      "invalid_token",
      prefix ? `API key ${apiKeyLabel(prefix)} is not valid` : "the API key is malformed",
    );
  }
  checkApiKeyState(record, now);
  return record;
}

/** The state checks alone, also applied to tokens already minted from a key. */
export function checkApiKeyState(record: ApiKeyRecord, now: Date): void {
  const label = apiKeyLabel(record.prefix);
  if (record.revokedAt)
    throw new GatehouseError(
      "invalid_token",
      `API key ${label} was revoked at ${record.revokedAt}`,
      "Ask an admin for a new key (`gatehouse keys create`).",
    );
  if (record.expiresAt && record.expiresAt <= now.toISOString()) {
    throw new GatehouseError(
      "token_expired",
      `API key ${label} expired at ${record.expiresAt}`,
      "Ask an admin for a new key (`gatehouse keys create`).",
    );
  }
  if (record.graceUntil && record.graceUntil <= now.toISOString()) {
    throw new GatehouseError(
      "token_expired",
      `API key ${label} was rotated; its grace period ended at ${record.graceUntil}`,
      "Use the key that replaced it.",
    );
  }
}
