import { X509Certificate, verify as verifySignature, webcrypto } from "node:crypto";
import { sha256Fingerprint } from "./fingerprint.js";
import type { CertificateAuthority } from "./authority.js";
import { GatehouseError } from "../protocol/errors.js";

// Node's WebCrypto, not @peculiar/x509's re-export of it: checking a CA bundle or a succession
// (a node, `node test-connection`) must not load the x509 library and its polyfill.
const subtle = webcrypto.subtle as unknown as SubtleCrypto;

/** A rotation as the gateway announces it; `nextSignature` lets a node that pinned the new CA trust the previous one. */
export interface CaRotationEvidence {
  statement: CaRotationStatement;
  /** The previous CA's signature (base64url, IEEE P1363 ECDSA P-256/SHA-256). */
  signature: string;
  /** The next CA's signature over the same statement under the succession label. */
  nextSignature?: string;
}

/** "The CA you pinned hands over to this one": what a node needs to follow a CA rotation. */
export interface CaRotationStatement {
  version: 1;
  previousFingerprint: string;
  nextFingerprint: string;
  nextCaPem: string;
  issuedAt: string;
}

/**
 * The exact bytes signed: fixed field order, so signer and verifier agree without a JSON
 * canonicaliser. The label separates the two signatures over one statement: the previous CA's
 * ("I hand over to the next CA") and the next CA's ("I take over from the previous CA").
 */
function signedBytes(
  statement: CaRotationStatement,
  label: "gatehouse-ca-rotation" | "gatehouse-ca-succession" = "gatehouse-ca-rotation",
): Buffer {
  const { version, previousFingerprint, nextFingerprint, nextCaPem, issuedAt } = statement;
  return Buffer.from(
    JSON.stringify([label, version, previousFingerprint, nextFingerprint, nextCaPem, issuedAt]),
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
  const next = parseCertificate(statement.nextCaPem, "the CA rotation statement");
  if (!next.ca || sha256Fingerprint(next.raw) !== statement.nextFingerprint) {
    throw new GatehouseError(
      "ca_mismatch",
      "the CA rotation statement names a certificate that is not the stated CA",
    );
  }
  return next;
}

/**
 * The next CA's side of a rotation: its signature over the statement (label
 * "gatehouse-ca-succession"), saying that it takes over from the previous CA. A node that pinned
 * the next CA trusts the previous one during the overlap only on this word, because the server
 * certificate still chains to the previous CA until it retires.
 * @returns base64url IEEE P1363 ECDSA signature
 */
export async function signCaSuccession(
  next: CertificateAuthority,
  statement: CaRotationStatement,
): Promise<string> {
  const signature = await subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    next.keys.privateKey,
    new Uint8Array(signedBytes(statement, "gatehouse-ca-succession")),
  );
  return Buffer.from(signature).toString("base64url");
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM bundle, in order (RFC 7468 text; anything between them is ignored). */
export function certificatesOfBundle(bundlePem: string): X509Certificate[] {
  return (bundlePem.match(PEM_CERTIFICATE) ?? []).map((pem) => parseCertificate(pem, "the CA bundle"));
}

/** A certificate that does not parse is a `ca_mismatch` naming where it came from, not a crash. */
function parseCertificate(pem: string, where: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new GatehouseError("ca_mismatch", `${where} holds a certificate that does not parse`);
  }
}

/**
 * The next CA's succession signature over a statement that names it (see signCaSuccession).
 * @throws GatehouseError `ca_mismatch` naming what does not hold
 */
function verifyCaSuccession(next: X509Certificate, statement: CaRotationStatement, signature?: string): void {
  if (
    statement.version !== 1 ||
    sha256Fingerprint(parseCertificate(statement.nextCaPem, "the CA rotation statement").raw) !==
      statement.nextFingerprint
  ) {
    throw new GatehouseError(
      "ca_mismatch",
      "the CA rotation statement names a certificate that is not the stated CA",
    );
  }
  if (!signature) {
    throw new GatehouseError(
      "ca_mismatch",
      "the gateway did not send the new CA's succession signature, so the previous CA cannot be trusted on the new CA's word",
    );
  }
  const valid = verifySignature(
    "sha256",
    signedBytes(statement, "gatehouse-ca-succession"),
    { key: next.publicKey, dsaEncoding: "ieee-p1363" },
    Buffer.from(signature, "base64url"),
  );
  if (!valid) throw new GatehouseError("ca_mismatch", "the new CA's succession signature does not verify");
}

/**
 * Checks a CA bundle as a bundle: the pinned CA is in it, and it vouches for every other CA in it
 * through the rotation's signed statement. If the pin is the previous CA, its signature hands over
 * to the next one (as a connected node follows a rotation); if the pin is the next CA, its
 * succession signature (signCaSuccession) names the previous one, which the server certificate
 * still chains to during the overlap. Fingerprints are SHA-256 over DER (RFC 5280 certificates).
 *
 * @param bundlePem one or more PEM certificates (RFC 7468)
 * @param pinnedFingerprint `sha256:` + 64 hex digits
 * @param rotation the gateway's rotation notice, when one is under way
 * @returns the CAs to trust, the pinned one first, each once
 * @throws GatehouseError `ca_mismatch` when the pinned CA is missing, a certificate is not a CA,
 *   or a CA is not vouched for by the pinned one
 */
export function checkCaBundle(
  bundlePem: string,
  pinnedFingerprint: string,
  rotation?: CaRotationEvidence,
): X509Certificate[] {
  const seen = new Map<string, X509Certificate>();
  for (const cert of certificatesOfBundle(bundlePem)) seen.set(sha256Fingerprint(cert.raw), cert);
  const pinned = seen.get(pinnedFingerprint);
  if (!pinned || !pinned.ca) {
    throw new GatehouseError(
      "ca_mismatch",
      `the gateway's CA bundle (${[...seen.keys()].map((fp) => fp.slice(0, 19) + "…").join(", ") || "empty"}) does not hold the pinned CA ${pinnedFingerprint}`,
    );
  }
  const trusted = [pinned];
  for (const [fingerprint, cert] of seen) {
    if (fingerprint === pinnedFingerprint) continue;
    const statement = rotation?.statement;
    if (!cert.ca) {
      throw new GatehouseError(
        "ca_mismatch",
        `the gateway's CA bundle holds ${fingerprint.slice(0, 19)}…, which is not a CA certificate`,
      );
    }
    if (statement?.previousFingerprint === pinnedFingerprint && statement.nextFingerprint === fingerprint) {
      verifyCaRotation(pinned.toString(), statement, rotation!.signature);
    } else if (
      statement?.nextFingerprint === pinnedFingerprint &&
      statement.previousFingerprint === fingerprint
    ) {
      verifyCaSuccession(pinned, statement, rotation!.nextSignature);
    } else {
      throw new GatehouseError(
        "ca_mismatch",
        `the gateway's CA bundle holds ${fingerprint.slice(0, 19)}… besides the pinned CA ${pinnedFingerprint.slice(0, 19)}…, and the pinned CA does not vouch for it`,
        "Check the CA fingerprint you were given: during a CA rotation either the previous or the new CA may be pinned (`gatehouse gateway info` on the gateway shows both).",
      );
    }
    trusted.push(cert);
  }
  return trusted;
}
