import { X509Certificate, createHash, createPublicKey, type KeyObject } from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";

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

/**
 * `sha256:` + lower-case hex of the SHA-256 of DER bytes as given. For certificates (whose bytes
 * are signed, so one certificate has one encoding). A public key is fingerprinted with
 * `keyFingerprintOfSpki`, which canonicalises it first.
 */
export function sha256Fingerprint(der: Uint8Array | ArrayBuffer): string {
  const bytes = der instanceof Uint8Array ? der : new Uint8Array(der);
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

/**
 * A certificate's two identities from one SHA-256 pass over its DER bytes: the fingerprint that
 * logs and the store use (`sha256:` + lower-case hex, as {@link sha256Fingerprint}) and the
 * RFC 8705 §3.1 `x5t#S256` thumbprint that binds tokens to it (base64url without padding,
 * RFC 7515 §2). Both are needed for every client certificate the gateway sees, so they are computed
 * together instead of hashing the certificate once per form.
 */
export function certificateDigests(der: Uint8Array): { fingerprint: string; thumbprint: string } {
  const digest = createHash("sha256").update(der).digest();
  return { fingerprint: "sha256:" + digest.toString("hex"), thumbprint: digest.toString("base64url") };
}

/**
 * The same two identities as {@link certificateDigests}, from the SHA-256 that Node's TLS layer
 * already computed for a peer certificate (`PeerCertificate.fingerprint256`: upper-case hex pairs
 * joined by colons), so the certificate is not hashed again.
 * @returns undefined when the text is not 32 colon-separated hex pairs.
 */
export function digestsOfFingerprint256(
  fingerprint256: string | undefined,
): { fingerprint: string; thumbprint: string } | undefined {
  if (fingerprint256?.length !== 95) return undefined;
  const hex = fingerprint256.replaceAll(":", "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
  return { fingerprint: "sha256:" + hex, thumbprint: Buffer.from(hex, "hex").toString("base64url") };
}

/**
 * The one encoding of a public key that identifies it: SubjectPublicKeyInfo DER (RFC 5280 §4.1)
 * as OpenSSL writes it by default — an EC point uncompressed (SEC 1 §2.3.3, `04 || X || Y`) under
 * its named curve. The same key arrives in other encodings (a compressed or hybrid point, BER
 * lengths), and every one of them must map to the same device. Going through JWK drops whatever
 * the sender chose: OpenSSL 3.0 re-exports a key imported from a compressed point still
 * compressed, so exporting the parsed key is not enough.
 *
 * @param spki SubjectPublicKeyInfo DER in any encoding OpenSSL parses.
 * @returns the canonical DER (a new buffer).
 * @throws GatehouseError `invalid_request` when the bytes are not a public key OpenSSL accepts.
 */
export function canonicalSpki(spki: Uint8Array | ArrayBuffer): Buffer {
  const bytes = Buffer.from(spki instanceof Uint8Array ? spki : new Uint8Array(spki));
  let key: KeyObject;
  try {
    const parsed = createPublicKey({ key: bytes, format: "der", type: "spki" });
    key = createPublicKey({ key: parsed.export({ format: "jwk" }), format: "jwk" });
  } catch {
    throw new GatehouseError(
      "invalid_request",
      "the public key is not a well-formed SubjectPublicKeyInfo on a named curve",
    );
  }
  return key.export({ type: "spki", format: "der" });
}

/**
 * A public key's identity, computed once over its canonical SPKI (see `canonicalSpki`): the device
 * id (SHA-256, base32, first 26 characters; stable across renewals and the same for every encoding
 * of one key) and the key fingerprint (`sha256:` + hex).
 * @throws GatehouseError `invalid_request` when the bytes are not a public key.
 */
export function spkiIdentity(spki: Uint8Array | ArrayBuffer): {
  deviceId: string;
  keyFingerprint: string;
  spki: Uint8Array;
} {
  const canonical = canonicalSpki(spki);
  const digest = createHash("sha256").update(canonical).digest();
  return {
    deviceId: base32(digest).slice(0, 26),
    keyFingerprint: "sha256:" + digest.toString("hex"),
    spki: new Uint8Array(canonical),
  };
}

/** A public key's fingerprint: `sha256:` + hex of its canonical SPKI (see `spkiIdentity`). */
export function keyFingerprintOfSpki(spki: Uint8Array | ArrayBuffer): string {
  return spkiIdentity(spki).keyFingerprint;
}

/** The device id of a public key, whatever its encoding (see `spkiIdentity`). */
export function deviceIdFromSpki(spki: Uint8Array | ArrayBuffer): string {
  return spkiIdentity(spki).deviceId;
}

/**
 * The device id of the key a certificate certifies (DER of an X.509 certificate), computed over
 * the canonical SPKI like every other key identity.
 * @throws GatehouseError `invalid_request` when the bytes are not a certificate with a public key.
 */
export function deviceIdOfCertificate(der: Uint8Array): string {
  let spki: Buffer;
  try {
    spki = new X509Certificate(der).publicKey.export({ type: "spki", format: "der" });
  } catch {
    throw new GatehouseError("invalid_request", "the certificate is not well-formed X.509");
  }
  return deviceIdFromSpki(spki);
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
