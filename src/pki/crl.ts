import { x509 } from "./x509.js";
import { SIGNING_ALGORITHM } from "./keys.js";
import { encodePem } from "./pem.js";
import type { CertificateAuthority } from "./authority.js";

export interface RevokedEntry {
  serial: string;
  revokedAt: Date;
}

export interface IssuedCrl {
  der: Uint8Array;
  /** Encoded as `X509 CRL`: Node's TLS rejects the `CRL` label some libraries write. */
  pem: string;
  thisUpdate: Date;
  nextUpdate: Date;
}

/**
 * A CRL for one CA. Once loaded into a TLS context its dates bind every client: a `thisUpdate` in
 * the future fails them all (CRL_NOT_YET_VALID), an expired `nextUpdate` too (CRL_HAS_EXPIRED).
 * So `thisUpdate` is backdated and the caller re-issues well before `nextUpdate`.
 */
export async function issueCrl(
  ca: CertificateAuthority,
  options: { now: Date; validityMs: number; revoked: RevokedEntry[] },
): Promise<IssuedCrl> {
  const thisUpdate = new Date(options.now.getTime() - 5 * 60_000);
  const nextUpdate = new Date(options.now.getTime() + options.validityMs);
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.cert.subject,
    thisUpdate,
    nextUpdate,
    signingAlgorithm: SIGNING_ALGORITHM,
    signingKey: ca.keys.privateKey,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey)],
    entries: options.revoked.map((entry) => ({
      serialNumber: entry.serial,
      revocationDate: entry.revokedAt,
      reason: x509.X509CrlReason.cessationOfOperation,
    })),
  });
  const der = new Uint8Array(crl.rawData);
  return { der, pem: encodePem(crl.rawData, "X509 CRL"), thisUpdate, nextUpdate };
}
