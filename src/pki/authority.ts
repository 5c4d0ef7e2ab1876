import { createPublicKey } from "node:crypto";
import { x509 } from "./x509.js";
import { GatehouseError } from "../protocol/errors.js";
import { SIGNING_ALGORITHM, generateKeyPair, importKeyPairPem, exportPrivateKeyPem, spkiOf } from "./keys.js";
import { randomSerialNumber } from "./serial.js";
import { sha256Fingerprint } from "./fingerprint.js";
import { encodePem } from "./pem.js";
import { serverCertificateNames } from "./server-names.js";

/** Certificates start a minute in the past so that a node whose clock lags slightly accepts them. */
export const BACKDATE_MS = 60_000;

export interface CertificateAuthority {
  cert: x509.X509Certificate;
  certPem: string;
  keys: CryptoKeyPair;
  fingerprint: string;
}

export interface IssuedCertificate {
  cert: x509.X509Certificate;
  pem: string;
  serial: string;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
}

function describe(cert: x509.X509Certificate): IssuedCertificate {
  const pem = encodePem(cert.rawData, "CERTIFICATE");
  return {
    cert,
    pem,
    serial: cert.serialNumber,
    fingerprint: sha256Fingerprint(cert.rawData),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

export async function createCertificateAuthority(options: {
  commonName: string;
  now: Date;
  validityDays: number;
}): Promise<CertificateAuthority & { keyPem: string }> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: [{ CN: [options.commonName] }, { O: ["Gatehouse"] }],
    notBefore: new Date(options.now.getTime() - BACKDATE_MS),
    notAfter: new Date(options.now.getTime() + options.validityDays * 86_400_000),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert,
    certPem: encodePem(cert.rawData, "CERTIFICATE"),
    keys,
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    fingerprint: sha256Fingerprint(cert.rawData),
  };
}

/**
 * A CA from its certificate (PEM) and its PKCS#8 private key (PEM). `names` say where each came
 * from (a file path, a database row), for the message.
 * @throws GatehouseError `config_invalid` when the certificate's public key is not the key's
 *   (RFC 5280 §4.1.2.7): a certificate swapped beside the key would make the gateway trust client
 *   certificates another CA issued.
 */
export async function loadCertificateAuthority(
  certPem: string,
  keyPem: string,
  names: { cert: string; key: string } = { cert: "the CA certificate", key: "the CA key" },
): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const keys = await importKeyPairPem(keyPem);
  const certKey = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: "der", type: "spki" });
  const ownKey = createPublicKey({
    key: Buffer.from(await spkiOf(keys.publicKey)),
    format: "der",
    type: "spki",
  });
  if (!certKey.equals(ownKey))
    throw new GatehouseError(
      "config_invalid",
      `${names.cert} does not belong to ${names.key}: the certificate's public key is another key's (certificate ${sha256Fingerprint(cert.rawData).slice(0, 23)}), so it is not trusted as this gateway's CA`,
      `Put back the CA certificate that was issued with ${names.key} (from a backup); it was replaced.`,
    );
  return {
    cert,
    certPem: encodePem(cert.rawData, "CERTIFICATE"),
    keys,
    fingerprint: sha256Fingerprint(cert.rawData),
  };
}

async function issue(
  ca: CertificateAuthority,
  options: {
    subjectCN: string;
    publicKey: CryptoKey;
    now: Date;
    ttlMs: number;
    extensions: x509.Extension[];
  },
): Promise<IssuedCertificate> {
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: [{ CN: [options.subjectCN] }],
    issuer: ca.cert.subject,
    notBefore: new Date(options.now.getTime() - BACKDATE_MS),
    notAfter: new Date(options.now.getTime() + options.ttlMs),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: options.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      ...options.extensions,
      await x509.SubjectKeyIdentifierExtension.create(options.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return describe(cert);
}

/** The gateway's TLS server certificate: localhost and loopback always, plus the names given. */
export async function issueServerCertificate(
  ca: CertificateAuthority,
  options: { publicKey: CryptoKey; sans: string[]; now: Date; ttlMs: number },
): Promise<IssuedCertificate> {
  const names = serverCertificateNames(options.sans);
  const generalNames: x509.JsonGeneralName[] = names.map((name) =>
    isIpAddress(name) ? { type: "ip", value: name } : { type: "dns", value: name },
  );
  return issue(ca, {
    subjectCN: options.sans[0] ?? "localhost",
    publicKey: options.publicKey,
    now: options.now,
    ttlMs: options.ttlMs,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(generalNames, false),
    ],
  });
}

/** The URI in a client certificate's SAN that names the device. */
export function deviceUri(deviceId: string): string {
  return `urn:gatehouse:device:${deviceId}`;
}

/**
 * A client certificate for an approved device. Every extension is the gateway's choice: nothing
 * from the CSR but its public key is carried over.
 */
export async function issueClientCertificate(
  ca: CertificateAuthority,
  options: { publicKey: CryptoKey; deviceId: string; now: Date; ttlMs: number },
): Promise<IssuedCertificate> {
  return issue(ca, {
    subjectCN: options.deviceId,
    publicKey: options.publicKey,
    now: options.now,
    ttlMs: options.ttlMs,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: deviceUri(options.deviceId) }], false),
    ],
  });
}

function isIpAddress(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(":");
}
