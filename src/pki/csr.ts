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
 * A CSR checked for shape (PEM of one CERTIFICATE REQUEST, RFC 2986), not yet parsed as ASN.1 nor
 * verified. `claimed()` is the identity of the key it carries, before any proof that the sender
 * holds that key: enough to decide a refusal that does not depend on who asks (a full pending
 * queue), never to grant anything. `verify()` parses, checks the key type and the signature.
 */
export class ParsedCsr {
  /** The request parsed by @peculiar/x509, and its key's algorithm and SPKI, once read. */
  private decoded: { csr: x509.Pkcs10CertificateRequest; rawSpki: Uint8Array } | undefined;

  private constructor(
    private readonly pem: string,
    private readonly der: Buffer,
  ) {}

  /**
   * Checks `pem`'s shape (a string of at most MAX_CSR_PEM_BYTES, one PEM CERTIFICATE REQUEST).
   * Costs no ASN.1 parse, no signature check and no WebCrypto key import.
   * @throws GatehouseError `invalid_request`.
   */
  static parse(pem: unknown): ParsedCsr {
    if (typeof pem !== "string" || pem.length === 0) throw invalid("csr is missing or not a string");
    if (pem.length > MAX_CSR_PEM_BYTES) throw invalid(`csr is larger than ${MAX_CSR_PEM_BYTES} bytes`);
    const trimmed = pem.trim();
    const match = /^-----BEGIN CERTIFICATE REQUEST-----([\s\S]+)-----END CERTIFICATE REQUEST-----$/.exec(
      trimmed,
    );
    if (!match) throw invalid("csr is not a PEM CERTIFICATE REQUEST");
    return new ParsedCsr(trimmed, Buffer.from(match[1]!, "base64"));
  }

  /**
   * The request parsed as ASN.1, with an ECDSA P-256 key (the allow-list: one curve, so one
   * canonical encoding; Ed25519, RSA and other curves are refused).
   * @throws GatehouseError `invalid_request`.
   */
  private decode(): { csr: x509.Pkcs10CertificateRequest; rawSpki: Uint8Array } {
    if (this.decoded) return this.decoded;
    // @peculiar/x509 decodes parts of a request lazily: reading `publicKey.algorithm` parses the
    // key's domain parameters, and a mangled OID there throws from the getter, not the constructor.
    // Everything read from the parsed request is read here, so any ASN.1 fault is `invalid_request`.
    let csr: x509.Pkcs10CertificateRequest;
    let algorithm: EcKeyAlgorithm;
    let rawSpki: Uint8Array;
    try {
      csr = new x509.Pkcs10CertificateRequest(this.pem);
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
    this.decoded = { csr, rawSpki };
    return this.decoded;
  }

  /**
   * The claimed key's identity (as `identityOfSpki`), unproven: the point may not even be on the
   * curve. What every agent sends — a P-256 key in its canonical encoding — is found as the one
   * run of bytes in the request that starts with the canonical SPKI header, and hashed as it is,
   * without an ASN.1 parse or OpenSSL reading the key twice. A request holding no such run, or
   * more than one, is parsed in full (`canonicalSpki`), so a key placed elsewhere in a request
   * (an attribute, the subject) never stands in for the request's own key.
   * @throws GatehouseError `invalid_request` when the request or its key does not parse.
   */
  claimed(): KeyIdentity {
    const at = this.der.indexOf(P256_SPKI_HEADER);
    if (
      at >= 0 &&
      at + P256_SPKI_BYTES <= this.der.length &&
      this.der.indexOf(P256_SPKI_HEADER, at + 1) < 0
    ) {
      const spki = new Uint8Array(this.der.subarray(at, at + P256_SPKI_BYTES));
      const digest = createHash("sha256").update(spki).digest();
      return {
        deviceId: base32(digest).slice(0, 26),
        keyFingerprint: "sha256:" + digest.toString("hex"),
        spki,
      };
    }
    return identityOfSpki(this.decode().rawSpki);
  }

  /**
   * Parses the request, checks its key type and verifies its self-signature; returns the key's
   * canonical identity and its WebCrypto key.
   * @throws GatehouseError `invalid_request` when it does not parse, its key is not ECDSA P-256 or
   *   its signature does not verify.
   */
  async verify(): Promise<VerifiedCsr> {
    const { csr, rawSpki } = this.decode();
    let valid = false;
    try {
      valid = await csr.verify();
    } catch {
      valid = false;
    }
    if (!valid) throw invalid("csr signature does not verify");
    // The key is identified (and later certified) in its one canonical encoding, whatever point
    // form or DER variant the CSR carried: otherwise one key could register as many devices.
    const identity = identityOfSpki(rawSpki);
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
