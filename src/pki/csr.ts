import { x509, subtle } from "./x509.js";
import { SIGNING_ALGORITHM } from "./keys.js";
import { identityOfSpki, type KeyIdentity } from "./keys.js";
import { GatehouseError } from "../protocol/errors.js";
import { encodePem } from "./pem.js";

/** The largest CSR we parse; a P-256 CSR is about 400 bytes of PEM. */
export const MAX_CSR_PEM_BYTES = 8 * 1024;

export async function createCsr(keys: CryptoKeyPair, commonName: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
  });
  return encodePem(csr.rawData, "CERTIFICATE REQUEST");
}

export interface VerifiedCsr extends KeyIdentity {
  publicKey: CryptoKey;
}

function invalid(description: string): GatehouseError {
  return new GatehouseError(
    "invalid_request",
    description,
    "Send a PEM PKCS#10 CSR signed by an ECDSA P-256 key.",
  );
}

/**
 * Parses a CSR and checks what the gateway relies on: PEM of one CERTIFICATE REQUEST, a valid
 * self-signature, and a key on the allow-list (ECDSA P-256: one curve, so one canonical encoding;
 * Ed25519, RSA and other curves are refused with `invalid_request`). Requested extensions and the
 * subject are ignored: the gateway decides every field of the certificate it issues. The returned
 * `spki`, `deviceId` and `keyFingerprint` are over the canonical SPKI (`canonicalSpki`).
 */
export async function verifyCsr(pem: unknown): Promise<VerifiedCsr> {
  if (typeof pem !== "string" || pem.length === 0) throw invalid("csr is missing or not a string");
  if (pem.length > MAX_CSR_PEM_BYTES) throw invalid(`csr is larger than ${MAX_CSR_PEM_BYTES} bytes`);
  const trimmed = pem.trim();
  if (!/^-----BEGIN CERTIFICATE REQUEST-----[\s\S]+-----END CERTIFICATE REQUEST-----$/.test(trimmed)) {
    throw invalid("csr is not a PEM CERTIFICATE REQUEST");
  }
  // @peculiar/x509 decodes parts of a request lazily: reading `publicKey.algorithm` parses the
  // key's domain parameters, and a mangled OID there throws from the getter, not the constructor.
  // Everything read from the parsed request is read here, so any ASN.1 fault is `invalid_request`.
  let csr: x509.Pkcs10CertificateRequest;
  let algorithm: EcKeyAlgorithm;
  try {
    csr = new x509.Pkcs10CertificateRequest(trimmed);
    algorithm = csr.publicKey.algorithm as EcKeyAlgorithm;
  } catch {
    throw invalid("csr is not a well-formed PKCS#10 request");
  }
  if (algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
    throw invalid(
      `csr key type ${algorithm.name}${algorithm.namedCurve ? " " + algorithm.namedCurve : ""} is not allowed (only ECDSA P-256)`,
    );
  }
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw invalid("csr signature does not verify");
  // The key is identified (and later certified) in its one canonical encoding, whatever point
  // form or DER variant the CSR carried: otherwise one key could register as many devices.
  const identity = identityOfSpki(new Uint8Array(csr.publicKey.rawData));
  const publicKey = await subtle.importKey("spki", new Uint8Array(identity.spki), SIGNING_ALGORITHM, true, [
    "verify",
  ]);
  return { ...identity, publicKey };
}
