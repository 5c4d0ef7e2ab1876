import { createHash } from "node:crypto";

const BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** RFC 4648 base32 without padding, lower case (ids read better in lower case). */
export function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32_ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** `sha256:` + lower-case hex of the SHA-256 of DER bytes (a certificate or an SPKI). */
export function sha256Fingerprint(der: Uint8Array | ArrayBuffer): string {
  const bytes = der instanceof Uint8Array ? der : new Uint8Array(der);
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

/** The device id: SHA-256 of the SPKI, base32, first 26 characters; stable across renewals. */
export function deviceIdFromSpki(spki: Uint8Array | ArrayBuffer): string {
  const bytes = spki instanceof Uint8Array ? spki : new Uint8Array(spki);
  return base32(createHash("sha256").update(bytes).digest()).slice(0, 26);
}

/** A short prefix of a fingerprint, safe and enough to tell credentials apart in logs. */
export function fingerprintPrefix(fingerprint: string, length = 12): string {
  const hex = fingerprint.startsWith("sha256:") ? fingerprint.slice(7) : fingerprint;
  return "sha256:" + hex.slice(0, length);
}

/** Accepts `sha256:HEX`, `HEX` or colon-separated hex (as openssl prints it) and normalises it. */
export function normaliseFingerprint(input: string): string | undefined {
  const hex = input
    .trim()
    .toLowerCase()
    .replace(/^sha256:/, "")
    .replace(/:/g, "");
  return /^[0-9a-f]{64}$/.test(hex) ? "sha256:" + hex : undefined;
}
