import { describe, it, expect } from "vitest";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import {
  createCertificateAuthority,
  issueServerCertificate,
  issueClientCertificate,
  createCsr,
  verifyCsr,
  generateKeyPair,
  exportPrivateKeyPem,
  importKeyPairPem,
  spkiOf,
  deviceIdFromSpki,
  normaliseFingerprint,
  deviceUri,
  x509,
} from "../src/pki/index.js";
import { GatehouseError } from "../src/protocol/errors.js";

const NOW = new Date("2026-01-15T12:00:00Z");
const HOUR = 3_600_000;

async function expectCode(promise: Promise<unknown>, code: string, text?: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GatehouseError);
  expect((error as GatehouseError).code).toBe(code);
  if (text) expect((error as GatehouseError).message).toMatch(text);
}

describe("pki", () => {
  it("creates a CA that is a CA, with a fixed clock", async () => {
    const ca = await createCertificateAuthority({
      commonName: "Gatehouse CA test",
      now: NOW,
      validityDays: 3650,
    });
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(new Date(cert.validTo).getTime()).toBe(NOW.getTime() + 3650 * 86_400_000);
    expect(new Date(cert.validFrom).getTime()).toBeLessThan(NOW.getTime());
    expect(ca.fingerprint).toBe("sha256:" + cert.fingerprint256.replace(/:/g, "").toLowerCase());
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it("issues a server certificate for localhost, loopback and the names given", async () => {
    const ca = await createCertificateAuthority({ commonName: "ca", now: NOW, validityDays: 10 });
    const keys = await generateKeyPair();
    const issued = await issueServerCertificate(ca, {
      publicKey: keys.publicKey,
      sans: ["gw.example", "10.1.2.3"],
      now: NOW,
      ttlMs: 24 * HOUR,
    });
    const cert = new X509Certificate(issued.pem);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.checkHost("localhost")).toBe("localhost");
    expect(cert.checkHost("gw.example")).toBe("gw.example");
    expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(cert.checkIP("10.1.2.3")).toBe("10.1.2.3");
    expect(cert.ca).toBe(false);
  });

  it("round-trips a CSR and issues a client certificate whose extensions the gateway chose", async () => {
    const ca = await createCertificateAuthority({ commonName: "ca", now: NOW, validityDays: 10 });
    const keys = await generateKeyPair();
    const deviceId = deviceIdFromSpki(await spkiOf(keys.publicKey));
    expect(deviceId).toMatch(/^[a-z2-7]{26}$/);
    const verified = await verifyCsr(await createCsr(keys, "whatever-the-node-asks"));
    expect(verified.deviceId).toBe(deviceId);
    expect(verified.keyFingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);

    const issued = await issueClientCertificate(ca, {
      publicKey: verified.publicKey,
      deviceId,
      now: NOW,
      ttlMs: 24 * HOUR,
    });
    const cert = new X509Certificate(issued.pem);
    expect(cert.subject).toBe(`CN=${deviceId}`);
    expect(cert.subjectAltName).toBe(`URI:${deviceUri(deviceId)}`);
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(cert.ca).toBe(false);
    expect(new Date(cert.validTo).getTime()).toBe(NOW.getTime() + 24 * HOUR);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(issued.fingerprint).toBe("sha256:" + cert.fingerprint256.replace(/:/g, "").toLowerCase());
  });

  it("keeps the device id stable across a key export and import", async () => {
    const keys = await generateKeyPair();
    const pem = await exportPrivateKeyPem(keys.privateKey);
    const again = await importKeyPairPem(pem);
    expect(deviceIdFromSpki(await spkiOf(again.publicKey))).toBe(
      deviceIdFromSpki(await spkiOf(keys.publicKey)),
    );
  });

  it("refuses CSRs that are not PEM, are tampered, too large or use another key type", async () => {
    await expectCode(verifyCsr("hello"), "invalid_request", /not a PEM/);
    await expectCode(verifyCsr(42), "invalid_request", /missing or not a string/);
    await expectCode(verifyCsr("x".repeat(20_000)), "invalid_request", /larger than/);
    await expectCode(
      verifyCsr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"),
      "invalid_request",
      /well-formed/,
    );

    // A request whose key's curve OID is mangled parses, then throws from a lazy getter: found by
    // the hostile-input suite, once a 500.
    await expectCode(
      verifyCsr(
        "-----BEGIN CERTIFICATE REQUEST-----\nMIHOMHYCAQAwFDESMBAGA1UEAxMJY3NyLWZyZXNoMFkwEwYHKoZIzj0CAQcIKoZI\n" +
          "zj0DAQcDQgAEPBnou3kaUdbmrtAwkbXLipF/pZIGSSbjUmgKY/gTRsPESiVhsGrX\neJiomCA+PpbEvyYHUCcd5mJS+UiBYKjGvKAAMAoGCCqGSM49BAMCA0gAMEUCIFQb\n" +
          "KMKEMtBSogHl3MYMyEqkOZoIH3EQgrt8eIhN78Y5AiEA5Zqnfnz0Mtkyjb1qUWr4\nbftEZWe4nmHWUNjZNgUp+CA=\n-----END CERTIFICATE REQUEST-----\n",
      ),
      "invalid_request",
      /well-formed/,
    );

    // A valid CSR whose signature byte is flipped no longer verifies.
    const keys = await generateKeyPair();
    const good = new x509.Pkcs10CertificateRequest(await createCsr(keys, "n"));
    const raw = new Uint8Array(good.rawData.slice(0));
    raw[raw.length - 3] = (raw[raw.length - 3] ?? 0) ^ 0xff;
    await expectCode(
      verifyCsr(x509.PemConverter.encode(raw.buffer, "CERTIFICATE REQUEST")),
      "invalid_request",
      /signature|well-formed/,
    );

    // An RSA key is not on the allow-list.
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const rsaAlg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    const rsaKeys = {
      privateKey: await crypto.subtle.importKey(
        "pkcs8",
        rsa.privateKey.export({ type: "pkcs8", format: "der" }),
        rsaAlg,
        true,
        ["sign"],
      ),
      publicKey: await crypto.subtle.importKey(
        "spki",
        rsa.publicKey.export({ type: "spki", format: "der" }),
        rsaAlg,
        true,
        ["verify"],
      ),
    };
    const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: "CN=rsa",
      keys: rsaKeys,
      signingAlgorithm: rsaAlg,
    });
    await expectCode(
      verifyCsr(rsaCsr.toString("pem")),
      "invalid_request",
      /RSASSA-PKCS1-v1_5 is not allowed/,
    );
  });

  it("normalises fingerprints in the forms people paste", () => {
    const hex = "ab".repeat(32);
    expect(normaliseFingerprint(`sha256:${hex}`)).toBe(`sha256:${hex}`);
    expect(normaliseFingerprint(hex.toUpperCase())).toBe(`sha256:${hex}`);
    expect(normaliseFingerprint(hex.match(/../g)!.join(":"))).toBe(`sha256:${hex}`);
    expect(normaliseFingerprint("sha256:abc")).toBeUndefined();
  });
});
