import { x509, subtle } from "./x509.js";
import { SIGNING_ALGORITHM } from "./keys.js";
import { identityOfSpki, type KeyIdentity } from "./keys.js";
import { GatehouseError } from "../protocol/errors.js";
import { encodePem } from "./pem.js";
import { createHash } from "node:crypto";
import { base32 } from "./fingerprint.js";

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
 * The fixed DER header of an ECDSA P-256 SubjectPublicKeyInfo with an uncompressed point
 * (RFC 5480 §2: id-ecPublicKey, secp256r1; a 66-byte BIT STRING holding `04 || X || Y`): the
 * canonical encoding (`canonicalSpki`) of every P-256 key, 91 bytes in all.
 */
const P256_SPKI_HEADER = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex");
const P256_SPKI_BYTES = P256_SPKI_HEADER.length + 64;

/**
 * A CSR parsed and checked for shape and key type, its signature not yet verified. `claimed` is
 * the identity of the key it carries, before any proof that the sender holds that key: enough to
 * decide a refusal that does not depend on who asks (a full pending queue), never to grant.
 */
export class ParsedCsr {
  private constructor(
    private readonly csr: x509.Pkcs10CertificateRequest,
    private readonly rawSpki: Uint8Array,
  ) {}

  /**
   * Parses `pem` (at most MAX_CSR_PEM_BYTES): PEM of one CERTIFICATE REQUEST (RFC 2986) whose key
   * is ECDSA P-256. Costs no signature check and no WebCrypto key import.
   * @throws GatehouseError `invalid_request` for anything else.
   */
  static parse(pem: unknown): ParsedCsr {
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
    let rawSpki: Uint8Array;
    try {
      csr = new x509.Pkcs10CertificateRequest(trimmed);
      algorithm = csr.publicKey.algorithm as EcKeyAlgorithm;
      rawSpki = new Uint8Array(csr.publicKey.rawData);
    } catch {
      throw invalid("csr is not a well-formed PKCS#10 request");
    }
    if (algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
      throw invalid(
        `csr key type ${algorithm.name}${algorithm.namedCurve ? " " + algorithm.namedCurve : ""} is not allowed (only ECDSA P-256)`,
      );
    }
    return new ParsedCsr(csr, rawSpki);
  }

  /**
   * The claimed key's identity (as `identityOfSpki`). A key already in its canonical encoding —
   * what every agent sends — is hashed as it is, without OpenSSL parsing it twice; any other
   * encoding goes through `canonicalSpki`. Unproven: the point may not even be on the curve.
   * @throws GatehouseError `invalid_request` when a non-canonical key does not parse.
   */
  claimed(): KeyIdentity {
    const raw = this.rawSpki;
    if (raw.length === P256_SPKI_BYTES && P256_SPKI_HEADER.equals(raw.subarray(0, P256_SPKI_HEADER.length))) {
      const digest = createHash("sha256").update(raw).digest();
      return {
        deviceId: base32(digest).slice(0, 26),
        keyFingerprint: "sha256:" + digest.toString("hex"),
        spki: raw,
      };
    }
    return identityOfSpki(raw);
  }

  /**
   * Verifies the self-signature and returns the key's canonical identity and its WebCrypto key.
   * @throws GatehouseError `invalid_request` when the signature does not verify.
   */
  async verify(): Promise<VerifiedCsr> {
    let valid = false;
    try {
      valid = await this.csr.verify();
    } catch {
      valid = false;
    }
    if (!valid) throw invalid("csr signature does not verify");
    // The key is identified (and later certified) in its one canonical encoding, whatever point
    // form or DER variant the CSR carried: otherwise one key could register as many devices.
    const identity = identityOfSpki(this.rawSpki);
    const publicKey = await subtle.importKey("spki", new Uint8Array(identity.spki), SIGNING_ALGORITHM, true, [
      "verify",
    ]);
    return { ...identity, publicKey };
  }
}

/**
 * Parses a CSR and checks what the gateway relies on: PEM of one CERTIFICATE REQUEST, a valid
 * self-signature, and a key on the allow-list (ECDSA P-256: one curve, so one canonical encoding;
 * Ed25519, RSA and other curves are refused with `invalid_request`). Requested extensions and the
 * subject are ignored: the gateway decides every field of the certificate it issues. The returned
 * `spki`, `deviceId` and `keyFingerprint` are over the canonical SPKI (`canonicalSpki`).
 * @throws GatehouseError `invalid_request`.
 */
export async function verifyCsr(pem: unknown): Promise<VerifiedCsr> {
  return ParsedCsr.parse(pem).verify();
}
