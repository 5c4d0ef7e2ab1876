import { existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import type { Server as TlsServer } from "node:tls";
import { X509Certificate } from "node:crypto";
import type { Logger } from "pino";
import { GATEWAY_FILES, writeFileAtomic, writeJsonAtomic } from "../config/index.js";
import {
  BACKDATE_MS,
  createCertificateAuthority,
  issueCrl,
  loadCertificateAuthority,
  namesInCertificate,
  sameNames,
  serverCertificateNames,
  signCaRotation,
  type CaRotationStatement,
  type CertificateAuthority,
} from "../pki/index.js";
import type { Store } from "../store/types.js";
import { writeServerCertificate } from "./home.js";
import { loadSharedCa } from "./cluster/shared-material.js";
import type { KeyEncryptionKey } from "../auth/key-encryption.js";
import { GatehouseError } from "../protocol/errors.js";

/** Files of a CA rotation in progress, beside the active CA. */
const PREVIOUS_CA_CERT = "pki/ca-previous.pem";
const PREVIOUS_CA_KEY = "pki/ca-previous.key";
const ROTATION_FILE = "pki/ca-rotation.json";

const CRL_VALIDITY_MS = 7 * 86_400_000;
const CRL_REFRESH_MS = 86_400_000;

export interface CaRotationState {
  statement: CaRotationStatement;
  signature: string;
  /** When the previous CA stops being trusted and the server certificate moves to the new CA. */
  retireAt: string;
}

export interface TlsStateOptions {
  home: string;
  store: Store;
  logger: Logger;
  now: () => Date;
  serverSans: string[];
  serverTtlMs: number;
  /**
   * With a postgres store: the key-encryption key the shared CA key is sealed under. The CA is
   * then read from the database (cluster/shared-material.ts), not from the home's pki/ files.
   */
  sharedKek?: KeyEncryptionKey;
  /** `postgres://user@host:port/db`, for messages about the shared CA. */
  describeStore?: string;
}

/**
 * Everything the gateway's TLS context holds — the CA that signs, the CAs trusted for client
 * certificates, the server certificate, one CRL per trusted CA — and its live replacement with
 * `setSecureContext`, so revocations, server-certificate renewals and CA rotations take effect
 * without a restart.
 */
export class TlsState {
  ca!: CertificateAuthority;
  previousCa: CertificateAuthority | undefined;
  rotation: CaRotationState | undefined;
  private serverKey = "";
  private serverCert = "";
  private crls: string[] = [];
  private crlIssuedAt = 0;
  /** The serials the CRLs in use list, comma-joined (issueCrlsIfChanged compares with it). */
  private crlSerials: string | undefined;
  private server: TlsServer | undefined;

  constructor(private readonly options: TlsStateOptions) {}

  private file(name: string): string {
    return path.join(this.options.home, name);
  }

  private read(name: string): string {
    return readFileSync(this.file(name), "utf8");
  }

  async load(): Promise<void> {
    const { sharedKek, store } = this.options;
    if (store.dialect === "postgres" && !sharedKek)
      throw new Error("a postgres store needs the key-encryption key of the shared CA");
    this.ca = sharedKek
      ? await loadSharedCa(store, sharedKek, this.options.describeStore ?? "")
      : await loadCertificateAuthority(this.read(GATEWAY_FILES.caCert), this.read(GATEWAY_FILES.caKey), {
          cert: this.file(GATEWAY_FILES.caCert),
          key: this.file(GATEWAY_FILES.caKey),
        });
    if (!sharedKek && existsSync(this.file(ROTATION_FILE))) {
      this.rotation = JSON.parse(this.read(ROTATION_FILE)) as CaRotationState;
      this.previousCa = await loadCertificateAuthority(
        this.read(PREVIOUS_CA_CERT),
        this.read(PREVIOUS_CA_KEY),
        { cert: this.file(PREVIOUS_CA_CERT), key: this.file(PREVIOUS_CA_KEY) },
      );
    }
    this.serverKey = this.read(GATEWAY_FILES.serverKey);
    this.serverCert = this.read(GATEWAY_FILES.serverCert);
    await this.maintain();
    await this.matchConfiguredNames();
    await this.issueCrls();
  }

  /** The DNS names and addresses the server certificate in use covers. */
  serverNames(): string[] {
    return namesInCertificate(this.serverCert);
  }

  /**
   * The names configured (`sans` and a specific listen host in gateway.json) are the server
   * certificate's from this start on: a name added or removed is not left waiting for the
   * renewal at 2/3 of the certificate's year.
   */
  private async matchConfiguredNames(): Promise<void> {
    const held = this.serverNames();
    const configured = serverCertificateNames(this.options.serverSans);
    if (sameNames(held, configured)) return;
    await this.renewServerCertificate();
    this.options.logger.info(
      { previousNames: held, names: configured },
      "server certificate re-issued for the names in gateway.json",
    );
  }

  /** The CAs whose client certificates are accepted (the new one first during a rotation). */
  trustedCas(): CertificateAuthority[] {
    return this.previousCa ? [this.ca, this.previousCa] : [this.ca];
  }

  /** What a node should trust: every CA the gateway's certificates may chain to right now. */
  caBundle(): string {
    return this.trustedCas()
      .map((ca) => ca.certPem.trimEnd() + "\n")
      .join("");
  }

  /** The CA that signed the server certificate in use (the previous one until it retires). */
  private serverCa(): CertificateAuthority {
    return this.previousCa ?? this.ca;
  }

  secureContextOptions() {
    return {
      key: this.serverKey,
      cert: this.serverCert.trimEnd() + "\n" + this.serverCa().certPem,
      ca: this.trustedCas().map((ca) => ca.certPem),
      crl: this.crls,
    };
  }

  attach(server: TlsServer): void {
    this.server = server;
  }

  private apply(): void {
    this.server?.setSecureContext(this.secureContextOptions());
  }

  /** Re-issues every trusted CA's CRL from the store and swaps them into the live context. */
  async issueCrls(): Promise<void> {
    const now = this.options.now();
    await this.issueCrlsFor(now, await this.revokedAt(now));
  }

  /**
   * Re-issues the CRLs only when the revoked certificates differ from those in the CRLs in use
   * (the periodic re-read of several instances: a new TLS context every 15 s for nothing would
   * cost a signature per CA and the server's context each time).
   */
  async issueCrlsIfChanged(): Promise<void> {
    const now = this.options.now();
    const revoked = await this.revokedAt(now);
    if (revoked.map((r) => r.serial).join(",") === this.crlSerials) return;
    await this.issueCrlsFor(now, revoked);
  }

  private async revokedAt(now: Date): Promise<{ serial: string; revokedAt: Date }[]> {
    return (await this.options.store.listRevokedCertificates(now.toISOString())).map((r) => ({
      serial: r.serial,
      revokedAt: new Date(r.revokedAt),
    }));
  }

  private async issueCrlsFor(now: Date, revoked: { serial: string; revokedAt: Date }[]): Promise<void> {
    this.crlSerials = revoked.map((r) => r.serial).join(",");
    const crls = await Promise.all(
      this.trustedCas().map((ca) => issueCrl(ca, { now, validityMs: CRL_VALIDITY_MS, revoked })),
    );
    this.crls = crls.map((crl) => crl.pem);
    this.crlIssuedAt = now.getTime();
    this.apply();
  }

  /** The active CA's CRL, as served at GET /api/v1/crl. */
  async currentCrl() {
    const now = this.options.now();
    const revoked = (await this.options.store.listRevokedCertificates(now.toISOString())).map((r) => ({
      serial: r.serial,
      revokedAt: new Date(r.revokedAt),
    }));
    return issueCrl(this.ca, { now, validityMs: CRL_VALIDITY_MS, revoked });
  }

  /**
   * Periodic upkeep: finish a CA rotation whose window is over, renew the server certificate at
   * 2/3 of its life, and re-issue CRLs long before they expire. Returns what changed.
   */
  async maintain(): Promise<string[]> {
    const changed: string[] = [];
    const now = this.options.now();
    if (this.rotation && this.rotation.retireAt <= now.toISOString()) {
      await this.retirePreviousCa();
      changed.push("ca-retired");
    }
    if (this.serverCertNeedsRenewal(now)) {
      await this.renewServerCertificate();
      changed.push("server-certificate");
    }
    if (this.server && now.getTime() - this.crlIssuedAt > CRL_REFRESH_MS) {
      await this.issueCrls();
      changed.push("crl");
    }
    return changed;
  }

  /**
   * At 2/3 of its life — the shorter of the life it was issued with and the configured one, so a
   * shortened `certificates.serverTtl` takes effect without waiting out the old certificate.
   */
  private serverCertNeedsRenewal(now: Date): boolean {
    const cert = new X509Certificate(this.serverCert);
    const issuedAt = new Date(cert.validFrom).getTime() + BACKDATE_MS;
    const life = Math.min(new Date(cert.validTo).getTime() - issuedAt, this.options.serverTtlMs);
    return now.getTime() >= issuedAt + (life * 2) / 3;
  }

  async renewServerCertificate(): Promise<void> {
    const ca = this.serverCa();
    await writeServerCertificate(
      this.options.home,
      ca,
      this.options.serverSans,
      this.options.now(),
      this.options.serverTtlMs,
    );
    this.serverKey = this.read(GATEWAY_FILES.serverKey);
    this.serverCert = this.read(GATEWAY_FILES.serverCert);
    this.options.logger.info("server certificate renewed");
    this.apply();
  }

  /**
   * Starts a CA rotation: a new CA signs from now on; the previous one stays trusted (and keeps
   * signing the server certificate, so nodes that have not heard of the new CA still connect)
   * until `retireAt`. The move is announced in a statement signed by the previous CA's key, which
   * nodes check against the CA they pinned before following it.
   */
  async rotateCa(overlapMs: number): Promise<CaRotationState> {
    if (this.rotation) throw new Error("a CA rotation is already in progress");
    // The rotation's files live in one home; the instances sharing a database would not follow.
    if (this.options.sharedKek)
      throw new GatehouseError(
        "invalid_request",
        "a CA rotation is not yet supported with several instances (store.kind postgres)",
        "Keep the CA until a later version rotates it across instances; rotate the token signing key with `gatehouse rotate signing-key`.",
      );
    const now = this.options.now();
    const previous = this.ca;
    const next = await createCertificateAuthority({
      commonName: `${(previous.cert.subjectName.getField("CN")[0] ?? "Gatehouse CA").replace(/ \(rotated [^)]*\)$/, "")} (rotated ${now.toISOString().slice(0, 10)})`,
      now,
      validityDays: 3650,
    });
    const { statement, signature } = await signCaRotation(previous, next, now);
    const rotation: CaRotationState = {
      statement,
      signature,
      retireAt: new Date(now.getTime() + overlapMs).toISOString(),
    };
    // Files first (each write atomic), the rotation record last: a crash in between leaves the
    // old CA active and the rotation simply not started.
    writeFileAtomic(this.file(PREVIOUS_CA_CERT), previous.certPem, 0o644);
    writeFileAtomic(this.file(PREVIOUS_CA_KEY), this.read(GATEWAY_FILES.caKey), 0o600);
    writeFileAtomic(this.file(GATEWAY_FILES.caKey), next.keyPem, 0o600);
    writeFileAtomic(this.file(GATEWAY_FILES.caCert), next.certPem, 0o644);
    writeJsonAtomic(this.file(ROTATION_FILE), rotation, 0o600);
    this.previousCa = previous;
    this.ca = next;
    this.rotation = rotation;
    await this.issueCrls();
    this.options.logger.info(
      { previous: previous.fingerprint, next: next.fingerprint, retireAt: rotation.retireAt },
      "CA rotation started",
    );
    return rotation;
  }

  private async retirePreviousCa(): Promise<void> {
    const previous = this.previousCa;
    this.previousCa = undefined;
    this.rotation = undefined;
    await writeServerCertificate(
      this.options.home,
      this.ca,
      this.options.serverSans,
      this.options.now(),
      this.options.serverTtlMs,
    );
    this.serverKey = this.read(GATEWAY_FILES.serverKey);
    this.serverCert = this.read(GATEWAY_FILES.serverCert);
    for (const name of [ROTATION_FILE, PREVIOUS_CA_KEY, PREVIOUS_CA_CERT])
      rmSync(this.file(name), { force: true });
    await this.issueCrls();
    this.options.logger.info(
      { retired: previous?.fingerprint, active: this.ca.fingerprint },
      "previous CA retired",
    );
  }
}
