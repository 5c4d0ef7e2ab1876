import { X509Certificate, verify as verifySignature } from "node:crypto";
import { subtle } from "./x509.js";
import { sha256Fingerprint } from "./fingerprint.js";
import type { CertificateAuthority } from "./authority.js";
import { GatehouseError } from "../protocol/errors.js";

/** "The CA you pinned hands over to this one": what a node needs to follow a CA rotation. */
export interface CaRotationStatement {
  version: 1;
  previousFingerprint: string;
  nextFingerprint: string;
  nextCaPem: string;
  issuedAt: string;
}

/** The exact bytes signed: fixed field order, so signer and verifier agree without a JSON canonicaliser. */
function signedBytes(statement: CaRotationStatement): Buffer {
  const { version, previousFingerprint, nextFingerprint, nextCaPem, issuedAt } = statement;
  return Buffer.from(
    JSON.stringify([
      "gatehouse-ca-rotation",
      version,
      previousFingerprint,
      nextFingerprint,
      nextCaPem,
      issuedAt,
    ]),
  );
}

export async function signCaRotation(
  previous: CertificateAuthority,
  next: { certPem: string; fingerprint: string },
  now: Date,
): Promise<{ statement: CaRotationStatement; signature: string }> {
  const statement: CaRotationStatement = {
    version: 1,
    previousFingerprint: previous.fingerprint,
    nextFingerprint: next.fingerprint,
    nextCaPem: next.certPem,
    issuedAt: now.toISOString(),
  };
  const signature = await subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    previous.keys.privateKey,
    new Uint8Array(signedBytes(statement)),
  );
  return { statement, signature: Buffer.from(signature).toString("base64url") };
}

/**
 * A node follows a rotation only if the statement names the CA it pinned, is signed by that CA's
 * key, and hands over to a CA certificate whose fingerprint it states. Returns the next CA.
 */
export function verifyCaRotation(
  pinnedCaPem: string,
  statement: CaRotationStatement,
  signature: string,
): X509Certificate {
  const pinned = new X509Certificate(pinnedCaPem);
  if (statement.version !== 1 || statement.previousFingerprint !== sha256Fingerprint(pinned.raw)) {
    throw new GatehouseError("ca_mismatch", "the CA rotation statement is not from the CA this node pinned");
  }
  const valid = verifySignature(
    "sha256",
    signedBytes(statement),
    { key: pinned.publicKey, dsaEncoding: "ieee-p1363" },
    Buffer.from(signature, "base64url"),
  );
  if (!valid)
    throw new GatehouseError("ca_mismatch", "the CA rotation statement's signature does not verify");
  const next = new X509Certificate(statement.nextCaPem);
  if (!next.ca || sha256Fingerprint(next.raw) !== statement.nextFingerprint) {
    throw new GatehouseError(
      "ca_mismatch",
      "the CA rotation statement names a certificate that is not the stated CA",
    );
  }
  return next;
}
