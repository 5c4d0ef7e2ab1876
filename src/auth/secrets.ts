import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { base32 } from "../pki/fingerprint.js";

/** A random string of base32 characters carrying `bytes` bytes of entropy. */
export function randomToken(bytes: number): string {
  return base32(randomBytes(bytes));
}

/**
 * The stored form of a high-entropy secret (API key, refresh token): a keyed hash. A fast hash is
 * right here — these secrets are 160+ random bits, so there is nothing to brute-force — and the
 * key (the gateway's pepper file) means a copy of the database alone cannot test guesses.
 */
export function hashSecret(pepper: Buffer, secret: string): string {
  return createHmac("sha256", pepper).update(secret).digest("hex");
}

/** Constant-time comparison of two hex digests. */
export function sameDigest(a: string, b: string): boolean {
  const left = Buffer.from(a, "hex");
  const right = Buffer.from(b, "hex");
  return left.length === right.length && timingSafeEqual(left, right);
}
