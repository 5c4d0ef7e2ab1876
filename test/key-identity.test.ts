import { describe, it, expect } from "vitest";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import {
  canonicalSpki,
  createCertificateAuthority,
  createCsr,
  deviceIdFromSpki,
  generateKeyPair,
  identityOfSpki,
  issueClientCertificate,
  keyFingerprintOfSpki,
  spkiOf,
  verifyCsr,
} from "../src/pki/index.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { compressP256Spki, compressedPointCsr } from "./fixtures/key-encodings.js";

const NOW = new Date("2026-01-15T12:00:00Z");

describe("one key is one device, in any encoding", () => {
  it("gives a compressed and an uncompressed P-256 point the same device id and fingerprint", async () => {
    const keys = await generateKeyPair();
    const uncompressed = await spkiOf(keys.publicKey);
    const compressed = compressP256Spki(uncompressed);
    expect(compressed.length).toBe(59);
    expect(uncompressed.length).toBe(91);
    expect(deviceIdFromSpki(compressed)).toBe(deviceIdFromSpki(uncompressed));
    expect(keyFingerprintOfSpki(compressed)).toBe(keyFingerprintOfSpki(uncompressed));
    expect(identityOfSpki(compressed)).toEqual(identityOfSpki(uncompressed));
    // The canonical form is what OpenSSL writes by default: the uncompressed point.
    expect(Buffer.from(canonicalSpki(compressed)).equals(Buffer.from(uncompressed))).toBe(true);
  });

  it("identifies the key of a compressed-point CSR as the same device, and certifies it uncompressed", async () => {
    const keys = await generateKeyPair();
    const plain = await verifyCsr(await createCsr(keys, "laptop"));
    const squeezed = await verifyCsr(await compressedPointCsr(keys, "laptop"));
    expect(squeezed.deviceId).toBe(plain.deviceId);
    expect(squeezed.keyFingerprint).toBe(plain.keyFingerprint);
    expect(Buffer.from(squeezed.spki).equals(Buffer.from(plain.spki))).toBe(true);

    const ca = await createCertificateAuthority({ commonName: "CA", now: NOW, validityDays: 365 });
    const issued = await issueClientCertificate(ca, {
      publicKey: squeezed.publicKey,
      deviceId: squeezed.deviceId,
      now: NOW,
      ttlMs: 3_600_000,
    });
    const certKey = new X509Certificate(issued.pem).publicKey.export({ type: "spki", format: "der" });
    expect(certKey.equals(Buffer.from(plain.spki))).toBe(true);
  });

  it("gives an Ed25519 key one identity and refuses bytes that are not a key with invalid_request", () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    const der = publicKey.export({ type: "spki", format: "der" });
    expect(Buffer.from(canonicalSpki(der)).equals(der)).toBe(true);
    let error: unknown;
    try {
      canonicalSpki(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(GatehouseError);
    expect((error as GatehouseError).code).toBe("invalid_request");
  });
});
