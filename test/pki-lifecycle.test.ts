import { describe, it, expect } from "vitest";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import {
  createCertificateAuthority,
  generateKeyPair,
  issueClientCertificate,
  issueCrl,
  signCaRotation,
  verifyCaRotation,
  deviceIdFromSpki,
  spkiOf,
  x509,
} from "../src/pki/index.js";
import { renewalTime, splitPemBundle } from "../src/node/credential-keeper.js";

const NOW = new Date("2026-02-01T00:00:00Z");

describe("CRLs", () => {
  it("lists the revoked serials, backdates thisUpdate, and loads into a TLS context", async () => {
    const ca = await createCertificateAuthority({ commonName: "ca", now: NOW, validityDays: 10 });
    const keys = await generateKeyPair();
    const deviceId = deviceIdFromSpki(await spkiOf(keys.publicKey));
    const issued = await issueClientCertificate(ca, {
      publicKey: keys.publicKey,
      deviceId,
      now: NOW,
      ttlMs: 3_600_000,
    });
    const crl = await issueCrl(ca, {
      now: NOW,
      validityMs: 86_400_000,
      revoked: [{ serial: issued.serial, revokedAt: NOW }],
    });

    expect(crl.pem).toMatch(/^-----BEGIN X509 CRL-----/);
    expect(crl.thisUpdate.getTime()).toBeLessThan(NOW.getTime());
    expect(crl.nextUpdate.getTime()).toBe(NOW.getTime() + 86_400_000);
    const parsed = new x509.X509Crl(crl.pem);
    expect(parsed.entries.map((e) => e.serialNumber)).toEqual([issued.serial]);
    expect(await parsed.verify({ publicKey: ca.cert.publicKey })).toBe(true);
    // Node's TLS rejects a CRL it cannot parse ("Failed to parse CRL"); this one must load.
    expect(() => tls.createSecureContext({ ca: ca.certPem, crl: crl.pem })).not.toThrow();
  });
});

describe("CA rotation notices", () => {
  it("verifies only a notice signed by the pinned CA that names the stated next CA", async () => {
    const previous = await createCertificateAuthority({ commonName: "old", now: NOW, validityDays: 10 });
    const next = await createCertificateAuthority({ commonName: "new", now: NOW, validityDays: 10 });
    const other = await createCertificateAuthority({ commonName: "other", now: NOW, validityDays: 10 });
    const { statement, signature } = await signCaRotation(previous, next, NOW);

    expect(verifyCaRotation(previous.certPem, statement, signature).fingerprint256).toBe(
      new X509Certificate(next.certPem).fingerprint256,
    );

    // Pinned to another CA: the statement is not about us.
    expect(() => verifyCaRotation(other.certPem, statement, signature)).toThrow(
      /not from the CA this node pinned/,
    );
    // Tampered: the next CA swapped for an attacker's.
    const swapped = { ...statement, nextCaPem: other.certPem, nextFingerprint: other.fingerprint };
    expect(() => verifyCaRotation(previous.certPem, swapped, signature)).toThrow(/signature does not verify/);
    // Signed by someone else's key, claiming to be from our CA.
    const forged = await signCaRotation({ ...other, fingerprint: previous.fingerprint }, next, NOW);
    expect(() => verifyCaRotation(previous.certPem, forged.statement, forged.signature)).toThrow(
      /signature does not verify/,
    );
    // A next certificate that does not match its stated fingerprint.
    const mismatched = await signCaRotation(
      previous,
      { certPem: other.certPem, fingerprint: next.fingerprint },
      NOW,
    );
    expect(() => verifyCaRotation(previous.certPem, mismatched.statement, mismatched.signature)).toThrow(
      /not the stated CA/,
    );
  });
});

describe("renewal timing", () => {
  it("renews at 2/3 of the life the certificate was issued with (not counting the backdating)", async () => {
    const ca = await createCertificateAuthority({ commonName: "ca", now: NOW, validityDays: 10 });
    const keys = await generateKeyPair();
    const deviceId = deviceIdFromSpki(await spkiOf(keys.publicKey));
    const issued = await issueClientCertificate(ca, {
      publicKey: keys.publicKey,
      deviceId,
      now: NOW,
      ttlMs: 24 * 3_600_000,
    });
    const { renewAt, notAfter } = renewalTime(issued.pem);
    expect(notAfter.getTime()).toBe(NOW.getTime() + 24 * 3_600_000);
    expect(renewAt.getTime()).toBe(NOW.getTime() + 16 * 3_600_000);
  });

  it("splits a CA bundle", async () => {
    const a = await createCertificateAuthority({ commonName: "a", now: NOW, validityDays: 1 });
    const b = await createCertificateAuthority({ commonName: "b", now: NOW, validityDays: 1 });
    expect(splitPemBundle(a.certPem + b.certPem)).toHaveLength(2);
  });
});
