import { x509, subtle } from "./x509.js";
import { spkiIdentity } from "./fingerprint.js";
import { encodePem } from "./pem.js";

/** The only signature algorithm this gateway issues with: ECDSA P-256 over SHA-256. */
export const SIGNING_ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(SIGNING_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey("pkcs8", key);
  return encodePem(der, "PRIVATE KEY");
}

/** Imports a PKCS#8 P-256 private key and derives its public key (WebCrypto keeps them apart). */
export async function importKeyPairPem(pem: string): Promise<CryptoKeyPair> {
  const der = x509.PemConverter.decodeFirst(pem);
  const privateKey = await subtle.importKey("pkcs8", der, SIGNING_ALGORITHM, true, ["sign"]);
  const jwk = await subtle.exportKey("jwk", privateKey);
  delete jwk.d;
  jwk.key_ops = ["verify"];
  const publicKey = await subtle.importKey("jwk", jwk, SIGNING_ALGORITHM, true, ["verify"]);
  return { privateKey, publicKey };
}

export async function spkiOf(publicKey: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await subtle.exportKey("spki", publicKey));
}

export interface KeyIdentity {
  deviceId: string;
  keyFingerprint: string;
  spki: Uint8Array;
}

/**
 * Who a public key is: its device id and fingerprint, both over the canonical SPKI (which is also
 * what `spki` holds, so the store keeps one encoding per key).
 * @throws GatehouseError `invalid_request` when the bytes are not a public key.
 */
export function identityOfSpki(spki: Uint8Array): KeyIdentity {
  return spkiIdentity(spki);
}
