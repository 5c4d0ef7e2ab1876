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
  checkCaBundle,
  verifyCaRotation,
} from "../pki/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { setLongTimeout, type LongTimer } from "../protocol/long-timer.js";
import type { CaRotationNotice, CertificateResponse } from "../protocol/messages.js";
import { requestJson } from "../client/https-json.js";
import { NTP_HINT, SKEW_TOLERANCE_MS, describeSkew } from "../client/clock-skew.js";
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

/** The least time between two renewals, whatever the clocks say: 1/6 of the life, at least 1 s. */
export function renewalFloorMs(lifeMs: number): number {
  return Math.max(1000, lifeMs / 6);
}

/**
 * How long to wait before renewing, in ms of this machine's time. The certificate's dates are the
 * gateway's clock, so "now" is this machine's time plus the measured offset; and however the
 * clocks move, a renewal comes no sooner than renewalFloorMs after the last one, so a certificate
 * that looks due again as soon as it arrives (a clock far ahead) cannot make renewal loop.
 *
 * @param renewal the certificate's renewalTime.
 * @param clock nowMs: this machine's time (epoch ms); offsetMs: gateway minus local time (ms);
 *   sinceRenewedMs: ms since the last renewal, undefined when there was none in this process.
 * @returns delayMs, and heldBack: true when the floor, not the certificate, set the delay.
 */
export function renewalDelay(
  renewal: { renewAt: Date; lifeMs: number },
  clock: { nowMs: number; offsetMs: number; sinceRenewedMs: number | undefined },
): { delayMs: number; heldBack: boolean } {
  const dueInMs = Math.max(0, renewal.renewAt.getTime() - (clock.nowMs + clock.offsetMs));
  const floorInMs =
    clock.sinceRenewedMs === undefined ? 0 : renewalFloorMs(renewal.lifeMs) - clock.sinceRenewedMs;
  return floorInMs > dueInMs ? { delayMs: floorInMs, heldBack: true } : { delayMs: dueInMs, heldBack: false };
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
  /** The gateway's clock minus this machine's, in ms, as last measured. */
  private clockOffsetMs = 0;
  /** When the last renewal finished (performance.now(), immune to wall-clock steps). */
  private renewedAt: number | undefined;
  /** The timer waits for a renewal that is due (not a retry, nor one in flight). */
  private waiting = false;
  /** States already told, so each warning comes once per state. */
  private skewTold = false;
  private heldBackTold = false;

  constructor(
    private readonly home: string,
    private readonly config: NodeConfig,
    private readonly credentials: NodeCredentials,
    private readonly logger: Logger,
    /** The instance to ask for renewals and re-issues: the one the node reaches now. */
    private readonly gatewayUrl: () => string = () => config.gatewayUrl,
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

  /**
   * Records the gateway's time as read at `localMs` (this machine's epoch ms): from a welcome, a
   * heartbeat answer, or a certificate just issued. Renewals follow it; a skew that matters (past
   * SKEW_TOLERANCE_MS, or a third of the certificate's life) is warned about once, and again only
   * after the clocks agreed in between. A change of more than 2 s re-arms a waiting renewal.
   */
  observeGatewayTime(gatewayTime: Date, localMs: number): void {
    const offsetMs = gatewayTime.getTime() - localMs;
    if (!Number.isFinite(offsetMs)) return;
    const moved = Math.abs(offsetMs - this.clockOffsetMs) > 2000;
    this.clockOffsetMs = offsetMs;
    const lifeMs = this.credentials.certPem ? renewalTime(this.credentials.certPem).lifeMs : Infinity;
    const skewed = Math.abs(offsetMs) > Math.min(SKEW_TOLERANCE_MS, lifeMs / 3);
    if (skewed && !this.skewTold) {
      this.logger.warn(
        { code: "clock_skew", skewMs: Math.round(offsetMs), hint: NTP_HINT },
        `${describeSkew(offsetMs)}: ${
          this.credentials.certPem
            ? "certificate renewals follow the gateway's clock"
            : "the gateway judges tokens by its own clock"
        }. ${NTP_HINT}`,
      );
    } else if (!skewed && this.skewTold) {
      this.logger.info({ skewMs: Math.round(offsetMs) }, `${describeSkew(offsetMs)}: the clocks agree again`);
    }
    this.skewTold = skewed;
    if (moved && this.waiting) this.schedule();
  }

  /** Arms the renewal timer for the current certificate (re-arming replaces the old timer). */
  schedule(): void {
    if (this.stopped || !this.credentials.certPem) return;
    this.timer?.cancel();
    const { renewAt, notAfter, lifeMs } = renewalTime(this.identity().certPem);
    const { delayMs: delay, heldBack } = renewalDelay(
      { renewAt, lifeMs },
      {
        nowMs: Date.now(),
        offsetMs: this.clockOffsetMs,
        sinceRenewedMs: this.renewedAt === undefined ? undefined : performance.now() - this.renewedAt,
      },
    );
    if (heldBack && !this.heldBackTold) {
      // Only a clock that moved since it was measured gets here: say so, once.
      this.logger.warn(
        { code: "clock_skew", renewAt: renewAt.toISOString(), delayMs: Math.round(delay), hint: NTP_HINT },
        `the certificate looks due for renewal as soon as it was renewed: this machine's clock does not agree with the gateway's; renewing at most every ${Math.round(renewalFloorMs(lifeMs) / 1000)} s. ${NTP_HINT}`,
      );
    }
    this.heldBackTold = heldBack;
    this.logger.debug(
      { renewAt: renewAt.toISOString(), notAfter: notAfter.toISOString(), delayMs: Math.round(delay) },
      "certificate renewal scheduled",
    );
    this.waiting = true;
    // Renewal of a long-lived certificate is weeks away: a long timer (setTimeout overflows).
    this.timer = setLongTimeout(() => {
      this.waiting = false;
      this.renew()
        .then(() => {
          this.failures = 0;
          this.schedule();
        })
        .catch((error: unknown) => {
          const named =
            error instanceof GatehouseError ? error : new GatehouseError("connection_failed", String(error));
          // By the gateway's clock, which judges the certificate.
          const left = notAfter.getTime() - (Date.now() + this.clockOffsetMs);
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
    const csr = await this.csr();
    const sentAt = Date.now();
    const { body } = await requestJson<CertificateResponse>(`${this.gatewayUrl()}/api/v1/certs/renew`, {
      body: { csr },
      tls: this.tls(),
    });
    this.install(body, "renewed", sentAt);
    this.renewedAt = performance.now();
  }

  /** Re-issue after expiry: prove possession of the approved key by signing a fresh challenge. */
  async reissue(): Promise<void> {
    const deviceId = this.config.deviceId;
    if (!deviceId) throw new GatehouseError("config_invalid", "node.json has no deviceId; register again");
    const tls = { ca: this.credentials.caPem };
    const { body: challenge } = await requestJson<{ challenge: string }>(
      `${this.gatewayUrl()}/api/v1/certs/challenge`,
      {
        body: { deviceId },
        tls,
      },
    );
    const signature = signWithKey("sha256", reissueProof(deviceId, challenge.challenge), {
      key: createPrivateKey(this.identity().keyPem),
      dsaEncoding: "ieee-p1363",
    }).toString("base64url");
    const sentAt = Date.now();
    const { body } = await requestJson<CertificateResponse>(`${this.gatewayUrl()}/api/v1/certs/reissue`, {
      body: { deviceId, challenge: challenge.challenge, signature, csr: await this.csr() },
      tls,
    });
    this.install(body, "re-issued", sentAt);
  }

  /** Installs a certificate the gateway issued for a request sent at `sentAt` (epoch ms, local). */
  private install(response: CertificateResponse, how: string, sentAt: number): void {
    const receivedAt = Date.now();
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
    // The certificate starts at the gateway's time of issue less BACKDATE_MS, in whole seconds: an
    // offset that disagrees with it by more than that rounding and the round trip is out of date.
    const issuedAt = new Date(cert.validFrom).getTime() + BACKDATE_MS + 500;
    const midpoint = (sentAt + receivedAt) / 2;
    if (Math.abs(issuedAt - midpoint - this.clockOffsetMs) > 2000 + (receivedAt - sentAt) / 2)
      this.observeGatewayTime(new Date(issuedAt), midpoint);
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
