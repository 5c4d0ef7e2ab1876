import {
  X509Certificate,
  createPublicKey,
  generateKeyPairSync,
  verify as verifySignature,
  type KeyObject,
} from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";
import type { CaRotationNotice, CertificateResponse } from "../protocol/messages.js";
import {
  issueClientCertificate,
  verifyCsr,
  fingerprintPrefix,
  type IssuedCertificate,
} from "../pki/index.js";
import type { Principal } from "../auth/roles.js";
import type { DeviceRecord } from "../store/types.js";
import type { GatewayContext } from "./context.js";
import { ReissueChallenges } from "./reissue-challenges.js";

/** What a device signs to prove it holds its key when its certificate has expired. */
export function reissueProof(deviceId: string, challenge: string): Buffer {
  return Buffer.from(`gatehouse-reissue:v1:${deviceId}:${challenge}`);
}

let decoy: KeyObject | undefined;

/** A P-256 public key no device holds, made once per process. */
function decoyKey(): KeyObject {
  decoy ??= generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
  return decoy;
}

/**
 * The certificate lifecycle after approval: renewal with the current certificate, re-issue after
 * expiry by proof of possession of the approved key, and what a node is told about a CA rotation.
 */
export class CertificateService {
  /**
   * @param challenges issued challenges are not stored; only spent ones are, until they expire
   *   (default: this process's key and memory; several instances pass `sharedReissueChallenges`).
   */
  constructor(
    private readonly ctx: GatewayContext,
    private readonly challenges: ReissueChallenges = new ReissueChallenges(),
  ) {}

  caRotationNotice(): CaRotationNotice | undefined {
    const rotation = this.ctx.tls.rotation;
    return rotation ? { statement: rotation.statement, signature: rotation.signature } : undefined;
  }

  /** Renewal: a CSR for the same device key, authenticated by the device's current certificate. */
  async renew(principal: Principal, csrPem: unknown, address: string): Promise<CertificateResponse> {
    if (principal.kind !== "certificate" || !principal.deviceId) {
      throw new GatehouseError("insufficient_scope", "renewal needs the device's current client certificate");
    }
    const device = this.ctx.devices.get(principal.deviceId);
    if (!device || device.status !== "approved")
      throw new GatehouseError("device_revoked", `device ${principal.deviceId} is not approved`);
    return this.issueFor(device, csrPem, "cert.renew", address);
  }

  /**
   * A fresh, single-use re-issue challenge: 43 base64url characters (32 bytes: expiry, nonce and an
   * HMAC-SHA-256 tag over them and the device id), valid for 60 s. Issuing one stores nothing, so a
   * flood of requests cannot crowd out a device that needs one. Any well-formed id gets one, whatever
   * the gateway knows of it: an anonymous caller learns a device's state (unknown, pending, denied,
   * revoked, approved) only once it has proved possession of the device's key, in `reissue`.
   * @throws GatehouseError `invalid_request` for a malformed id.
   */
  challenge(deviceId: unknown): { challenge: string; expiresAt: string } {
    if (typeof deviceId !== "string" || !/^[a-z2-7]{26}$/.test(deviceId)) {
      throw new GatehouseError("invalid_request", "deviceId must be a 26-character device id");
    }
    const { challenge, expiresAt } = this.challenges.issue(deviceId, this.ctx.now().getTime());
    return { challenge, expiresAt: new Date(expiresAt).toISOString() };
  }

  /**
   * Re-issue after expiry: the device signs a fresh, single-use, gateway-issued challenge with its
   * approved key. No admin step — unless the device was revoked or denied meanwhile. In order: the
   * challenge's tag and expiry, the signature by the device's key, then the challenge is spent
   * (single use), and only then is the device's state told.
   * @throws GatehouseError `invalid_request` for a challenge not issued for this device id, expired
   *   or already used, or a signature that does not verify with the device's key;
   *   `device_pending` / `device_denied` / `device_revoked` / `not_found` after a proof of
   *   possession by a device that is not approved.
   */
  async reissue(
    input: { deviceId: string; challenge: string; signature: string; csr: string },
    address: string,
  ): Promise<CertificateResponse> {
    const checked = this.challenges.check(input.deviceId, input.challenge, this.ctx.now().getTime());
    const device = this.ctx.devices.get(input.deviceId);
    // Possession first, state second: an unknown id and a wrong key get the same refusal.
    if (!this.provesPossession(device, input)) {
      throw new GatehouseError(
        "invalid_request",
        "the challenge signature does not verify with the device's key",
        "Sign the challenge with the key the device registered with.",
      );
    }
    await this.challenges.spend(checked, this.ctx.now().getTime());
    this.refuseUnlessApproved(device, input.deviceId);
    return this.issueFor(device!, input.csr, "cert.reissue", address);
  }

  /**
   * Whether `signature` (ECDSA P-256 over SHA-256, IEEE P1363 r||s, base64url) signs the re-issue
   * proof with the device's registered key, in any state. An unknown device is checked against a
   * decoy key, so that it costs the same verification as a known one.
   */
  private provesPossession(
    device: DeviceRecord | undefined,
    input: { deviceId: string; challenge: string; signature: string },
  ): boolean {
    try {
      const key = device
        ? createPublicKey({ key: Buffer.from(device.publicKey, "base64"), format: "der", type: "spki" })
        : decoyKey();
      const valid = verifySignature(
        "sha256",
        reissueProof(input.deviceId, input.challenge),
        { key, dsaEncoding: "ieee-p1363" },
        Buffer.from(input.signature, "base64url"),
      );
      return valid && device !== undefined;
    } catch {
      // A signature or stored key that does not parse proves nothing.
      return false;
    }
  }

  private refuseUnlessApproved(device: DeviceRecord | undefined, deviceId: string): void {
    if (!device || device.kind !== "node") throw new GatehouseError("not_found", `no device ${deviceId}`);
    if (device.status === "revoked")
      throw new GatehouseError(
        "device_revoked",
        `device ${deviceId} has been revoked; it cannot get a certificate`,
      );
    if (device.status === "denied")
      throw new GatehouseError("device_denied", `device ${deviceId} was denied`);
    if (device.status !== "approved")
      throw new GatehouseError("device_pending", `device ${deviceId} is not approved yet`);
  }

  private async issueFor(
    device: DeviceRecord,
    csrPem: unknown,
    event: "cert.renew" | "cert.reissue",
    address: string,
  ): Promise<CertificateResponse> {
    const csr = await verifyCsr(csrPem);
    if (csr.deviceId !== device.deviceId) {
      throw new GatehouseError(
        "invalid_request",
        "the CSR's key is not this device's key; a new key must register as a new device",
      );
    }
    const now = this.ctx.now();
    const issued: IssuedCertificate = await issueClientCertificate(this.ctx.tls.ca, {
      publicKey: csr.publicKey,
      deviceId: device.deviceId,
      now,
      ttlMs: this.ctx.config.certificates.clientTtl,
    });
    await this.ctx.store.insertCertificate({
      serial: issued.serial,
      deviceId: device.deviceId,
      fingerprint: issued.fingerprint,
      notBefore: issued.notBefore.toISOString(),
      notAfter: issued.notAfter.toISOString(),
      issuedAt: now.toISOString(),
      pem: issued.pem,
    });
    // Only a still-approved device gets the new certificate recorded: a revocation that landed
    // meanwhile wins (the certificate row exists, but the CRL lists it and auth refuses it).
    const current = this.ctx.devices.get(device.deviceId);
    if (current?.status !== "approved")
      throw new GatehouseError("device_revoked", `device ${device.deviceId} was revoked`);
    await this.ctx.devices.update(device.deviceId, {
      certFingerprint: issued.fingerprint,
      certExpiresAt: issued.notAfter.toISOString(),
      updatedAt: now.toISOString(),
    });
    // The live sessions of this device were opened with the old certificate; the device just
    // proved it holds the key again, so they live on until the new certificate expires.
    this.ctx.sessions.extendCredential(device.deviceId, issued.notAfter);
    this.ctx.metrics.certificateIssued(event === "cert.renew" ? "renewal" : "reissue");
    this.ctx.audit.recordInBackground({
      type: event,
      outcome: "success",
      subject: device.deviceId,
      address,
      details: {
        certFingerprint: fingerprintPrefix(issued.fingerprint),
        expiresAt: issued.notAfter.toISOString(),
      },
    });
    const notice = this.caRotationNotice();
    return {
      certificate: issued.pem,
      caBundle: this.ctx.tls.caBundle(),
      expiresAt: issued.notAfter.toISOString(),
      ...(notice ? { caRotation: notice } : {}),
    };
  }
}

export function describeCertificate(pem: string): { notBefore: Date; notAfter: Date } {
  const cert = new X509Certificate(pem);
  return { notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) };
}
