import { X509Certificate, sign as signWithKey, createPrivateKey, createPublicKey } from "node:crypto";
import path from "node:path";
import type { Logger } from "pino";
import {
  NODE_FILES,
  writeFileAtomic,
  writeJsonAtomic,
  readJsonFile,
  type NodeConfig,
} from "../config/index.js";
import {
  BACKDATE_MS,
  createCsr,
  importKeyPairPem,
  sha256Fingerprint,
  verifyCaRotation,
  checkCaBundle,
} from "../pki/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { setLongTimeout, type LongTimer } from "../protocol/long-timer.js";
import type { CaRotationNotice, CertificateResponse } from "../protocol/messages.js";
import { requestJson } from "../client/https-json.js";
import type { NodeCredentials } from "./home.js";

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function splitPemBundle(bundle: string): string[] {
  return bundle.match(PEM_CERTIFICATE) ?? [];
}

/** When a certificate should be renewed: at 2/3 of the life it was issued with. */
export function renewalTime(certPem: string): { renewAt: Date; notAfter: Date; lifeMs: number } {
  const cert = new X509Certificate(certPem);
  const issuedAt = new Date(cert.validFrom).getTime() + BACKDATE_MS;
  const notAfter = new Date(cert.validTo).getTime();
  const lifeMs = Math.max(1000, notAfter - issuedAt);
  return { renewAt: new Date(issuedAt + (lifeMs * 2) / 3), notAfter: new Date(notAfter), lifeMs };
}

/** Mirrors the reissue proof the gateway checks (see gateway/certificates.ts). */
function reissueProof(deviceId: string, challenge: string): Buffer {
  return Buffer.from(`gatehouse-reissue:v1:${deviceId}:${challenge}`);
}

/**
 * Keeps the node's credential alive without anyone touching it: renews the certificate at 2/3 of
 * its life, re-issues an expired one by signing a gateway challenge with the device key, and
 * follows a CA rotation announced with the old CA's signature. Every file is replaced atomically,
 * so a crash at any moment leaves a working credential (the old one, or the new one).
 */
export class CredentialKeeper {
  private timer: LongTimer | undefined;
  private failures = 0;
  private stopped = false;

  constructor(
    private readonly home: string,
    private readonly config: NodeConfig,
    private readonly credentials: NodeCredentials,
    private readonly logger: Logger,
  ) {}

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** The device key and certificate; a node that runs on an API key has neither to keep. */
  private identity(): { keyPem: string; certPem: string } {
    const { keyPem, certPem } = this.credentials;
    if (!keyPem || !certPem)
      throw new GatehouseError("config_missing", "this node has no device certificate (it uses an API key)");
    return { keyPem, certPem };
  }

  /** Arms the renewal timer for the current certificate (re-arming replaces the old timer). */
  schedule(): void {
    if (this.stopped || !this.credentials.certPem) return;
    this.timer?.cancel();
    const { renewAt, notAfter, lifeMs } = renewalTime(this.identity().certPem);
    const delay = Math.max(0, renewAt.getTime() - Date.now());
    this.logger.debug(
      { renewAt: renewAt.toISOString(), notAfter: notAfter.toISOString() },
      "certificate renewal scheduled",
    );
    // Renewal of a long-lived certificate is weeks away: a long timer (setTimeout overflows).
    this.timer = setLongTimeout(() => {
      this.renew()
        .then(() => {
          this.failures = 0;
          this.schedule();
        })
        .catch((error: unknown) => {
          const named =
            error instanceof GatehouseError ? error : new GatehouseError("connection_failed", String(error));
          const left = notAfter.getTime() - Date.now();
          const retryIn = Math.min(
            5 * 60_000,
            Math.max(1000, Math.min(2 ** this.failures++ * 1000, left / 10)),
          );
          const level = left < lifeMs / 6 ? "error" : "warn";
          this.logger[level](
            { code: named.code, retryInMs: retryIn, certExpiresInMs: left },
            `certificate renewal failed (${named.code}: ${named.message}); retrying in ${retryIn} ms`,
          );
          if (this.stopped) return;
          this.timer = setLongTimeout(() => this.schedule(), retryIn);
        });
    }, delay);
    this.timer.unref();
  }

  private tls() {
    const { keyPem, certPem } = this.identity();
    return { ca: this.credentials.caPem, key: keyPem, cert: certPem };
  }

  private async csr(): Promise<string> {
    return createCsr(await importKeyPairPem(this.identity().keyPem), this.config.deviceId ?? "device");
  }

  /** Renewal with the current certificate; the same key, a new certificate. */
  async renew(): Promise<void> {
    const { body } = await requestJson<CertificateResponse>(`${this.config.gatewayUrl}/api/v1/certs/renew`, {
      body: { csr: await this.csr() },
      tls: this.tls(),
    });
    this.install(body, "renewed");
  }

  /** Re-issue after expiry: prove possession of the approved key by signing a fresh challenge. */
  async reissue(): Promise<void> {
    const deviceId = this.config.deviceId;
    if (!deviceId) throw new GatehouseError("config_invalid", "node.json has no deviceId; register again");
    const tls = { ca: this.credentials.caPem };
    const { body: challenge } = await requestJson<{ challenge: string }>(
      `${this.config.gatewayUrl}/api/v1/certs/challenge`,
      {
        body: { deviceId },
        tls,
      },
    );
    const signature = signWithKey("sha256", reissueProof(deviceId, challenge.challenge), {
      key: createPrivateKey(this.identity().keyPem),
      dsaEncoding: "ieee-p1363",
    }).toString("base64url");
    const { body } = await requestJson<CertificateResponse>(
      `${this.config.gatewayUrl}/api/v1/certs/reissue`,
      {
        body: { deviceId, challenge: challenge.challenge, signature, csr: await this.csr() },
        tls,
      },
    );
    this.install(body, "re-issued");
  }

  private install(response: CertificateResponse, how: string): void {
    const cert = new X509Certificate(response.certificate);
    if (!cert.publicKey.equals(createPublicKey(createPrivateKey(this.identity().keyPem)))) {
      // A gateway must never hand us a certificate for another key; keep the one we have.
      throw new GatehouseError("invalid_request", "the gateway returned a certificate for another key");
    }
    writeFileAtomic(path.join(this.home, NODE_FILES.deviceCert), response.certificate, 0o644);
    this.credentials.certPem = response.certificate;
    this.logger.info(
      {
        certExpiresAt: new Date(cert.validTo).toISOString(),
        certFingerprint: sha256Fingerprint(cert.raw).slice(0, 19),
      },
      `certificate ${how}`,
    );
    if (response.caRotation) this.followCaRotation(response.caRotation);
  }

  /**
   * Follows a CA rotation if the notice is signed by the CA this node pinned: the new CA joins
   * ca.pem and becomes the pin in node.json. A notice already followed is ignored.
   */
  followCaRotation(notice: CaRotationNotice): boolean {
    const { statement } = notice;
    if (statement.nextFingerprint === this.config.caFingerprint) return false;
    const pinned = splitPemBundle(this.credentials.caPem).find(
      (pem) => sha256Fingerprint(new X509Certificate(pem).raw) === this.config.caFingerprint,
    );
    if (!pinned) throw new GatehouseError("ca_mismatch", "ca.pem does not hold the pinned CA");
    // The notice must hand over to a real CA (verifyCaRotation); the bundle that results passes the
    // same check as registration's: the pinned CA vouches for every CA that joins it.
    const next = verifyCaRotation(pinned, statement, notice.signature);
    const bundle = checkCaBundle(pinned + "\n" + next.toString(), this.config.caFingerprint, notice)
      .map((ca) => ca.toString().trimEnd() + "\n")
      .join("");
    writeFileAtomic(path.join(this.home, NODE_FILES.caCert), bundle, 0o644);
    const file = path.join(this.home, NODE_FILES.config);
    writeJsonAtomic(file, { ...readJsonFile(file), caFingerprint: statement.nextFingerprint });
    this.credentials.caPem = bundle;
    this.config.caFingerprint = statement.nextFingerprint;
    this.logger.info(
      { previous: statement.previousFingerprint, next: statement.nextFingerprint },
      "followed the gateway's CA rotation",
    );
    return true;
  }
}
