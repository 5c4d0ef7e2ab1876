import { fingerprintPrefix } from "../pki/fingerprint.js";
import { randomBytes, randomInt } from "node:crypto";
import type { Logger } from "pino";
import type { GatewayConfig } from "../config/schema.js";
import { GatehouseError } from "../protocol/errors.js";
import {
  USER_CODE_ALPHABET,
  formatUserCode,
  parseUserCode,
  type EnrollRequest,
  type EnrollResponse,
  type EnrollStatusResponse,
} from "../protocol/messages.js";
import { prefixedDeviceName } from "../protocol/device-name.js";
import { ParsedCsr, verifyCsr, issueClientCertificate } from "../pki/index.js";
import type { TlsState } from "./tls-state.js";
import { requireKnownRole } from "../auth/roles.js";
import type { AuditLog } from "../audit/audit-log.js";
import type {
  CertificateRecord,
  DeviceRecord,
  RegistrationOutcome,
  RegistrationRecord,
  Store,
} from "../store/types.js";
import type { DeviceDirectory } from "./device-directory.js";
import type { SessionRegistry } from "./sessions.js";
import type { EnrollTokenService } from "./enroll-tokens.js";
import type { EventHub } from "./events.js";
import type { CertificateIssueKind, GatewayMetrics } from "./metrics.js";

export interface RegistrationDeps {
  store: Store;
  devices: DeviceDirectory;
  sessions: SessionRegistry;
  /** The TLS state: its current CA signs (it changes in a CA rotation). */
  tls: TlsState;
  config: GatewayConfig;
  audit: AuditLog;
  enrollTokens: EnrollTokenService;
  logger: Logger;
  now: () => Date;
  /** Told of every change to a device's registration state (the dashboard's `devices` notice). */
  events?: Pick<EventHub, "emit">;
  /** Counts registrations by outcome, certificates issued and devices revoked. */
  metrics: Pick<GatewayMetrics, "registration" | "certificateIssued" | "revoked">;
}

const POLL_AFTER_MS = 2000;

function newUserCode(): string {
  let code = "";
  for (let i = 0; i < 8; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/**
 * The rules of registration and of the admin's decisions. Routes only translate HTTP to these
 * calls; every state change is written to the store (durably) before it is acknowledged.
 */
export class RegistrationService {
  constructor(private readonly deps: RegistrationDeps) {}

  /**
   * A node asks to register: a pending request (waiting for an admin), or approved at once (an
   * enroll token, or a key already approved). Every refusal, whatever its code, counts as a
   * `refused` registration.
   * @throws GatehouseError `invalid_csr`, `device_revoked`, `device_denied`, `rate_limited` (the
   *   pending cap), an enroll token's refusal, …
   */
  async enroll(request: EnrollRequest, address: string | null): Promise<EnrollResponse> {
    try {
      return await this.decideEnrollment(request, address);
    } catch (error) {
      if (error instanceof GatehouseError) this.deps.metrics.registration("refused");
      throw error;
    }
  }

  private async decideEnrollment(request: EnrollRequest, address: string | null): Promise<EnrollResponse> {
    const { store, devices, config, audit, now } = this.deps;
    const parsed = ParsedCsr.parse(request.csr);
    const at = now();
    // A registration without a token waits in the queue the cap protects: when that queue is full
    // and the key is new here, the answer is rate_limited whoever holds the key, so it is given
    // before the signature check — the costly step a flood of registrations would otherwise buy.
    if (request.enrollToken === undefined) await this.refuseWhenQueueFull(parsed, address, at);
    const csr = await parsed.verify();
    // By key, not only by id: a key revoked or denied under an id from before keys were
    // canonicalised stays revoked or denied in any encoding.
    const existing = devices.forKey(csr);
    if (existing?.status === "revoked") {
      audit.recordRefusal({
        type: "enroll",
        outcome: "failure",
        subject: csr.deviceId,
        address,
        code: "device_revoked",
      });
      throw new GatehouseError(
        "device_revoked",
        `device ${csr.deviceId} has been revoked; register with a new key`,
      );
    }
    if (existing?.status === "denied") {
      audit.recordRefusal({
        type: "enroll",
        outcome: "failure",
        subject: csr.deviceId,
        address,
        code: "device_denied",
      });
      throw new GatehouseError("device_denied", `device ${csr.deviceId} was denied`);
    }
    if (existing?.kind === "operator") {
      throw new GatehouseError("invalid_request", "this key belongs to an operator credential, not a node");
    }

    // An enroll token approves at once; a bad one is refused (401, audited) before anything is stored.
    const viaToken =
      request.enrollToken !== undefined && existing?.status !== "approved"
        ? await this.deps.enrollTokens.check(request.enrollToken)
        : undefined;
    const name = prefixedDeviceName(viaToken?.namePrefix, request.name);

    const registration: RegistrationRecord = {
      requestId: "req_" + randomBytes(16).toString("hex"),
      deviceId: csr.deviceId,
      userCode: newUserCode(),
      status: "pending",
      csr: request.csr,
      name,
      platform: request.platform ?? null,
      address,
      createdAt: at.toISOString(),
      expiresAt: new Date(at.getTime() + config.enroll.pendingTtl).toISOString(),
      certificate: null,
      reason: null,
    };

    // Every path below writes the device and its request in the store transaction that decides
    // the registration (the pending cap, the enroll token's use, the device's state), so a refused
    // request leaves nothing behind, however many race for the last place or the last use.
    if (existing?.status === "approved") {
      // The CSR's signature proves possession of an approved key: issue a fresh certificate at once.
      const certificate = await this.issueCertificate(csr.publicKey, csr.deviceId, at);
      const result = await store.recordRegistration({
        registration,
        approval: { role: existing.role, at: at.toISOString(), certificate, expectedStatus: "approved" },
      });
      const approved = await this.approved(result, existing.role, "self (approved key)", "reissue");
      return this.enrollResponse(approved.registration, csr.keyFingerprint);
    }

    const device: DeviceRecord = {
      deviceId: csr.deviceId,
      kind: "node",
      name,
      platform: request.platform ?? null,
      status: "pending",
      role: "node",
      publicKey: Buffer.from(csr.spki).toString("base64"),
      keyFingerprint: csr.keyFingerprint,
      userCode: registration.userCode,
      address,
      createdAt: existing?.createdAt ?? at.toISOString(),
      updatedAt: at.toISOString(),
      approvedAt: null,
      revokedAt: null,
      statusReason: null,
      lastSeen: null,
      certFingerprint: null,
      certExpiresAt: null,
    };
    const enrolled = {
      type: "enroll",
      outcome: "success" as const,
      subject: csr.deviceId,
      address,
      details: {
        name,
        userCode: formatUserCode(registration.userCode),
        keyFingerprint: fingerprintPrefix(csr.keyFingerprint),
      },
    };

    if (viaToken) {
      // A token registration is approved at once: it never waits in the queue the cap protects.
      const certificate = await this.issueCertificate(csr.publicKey, csr.deviceId, at);
      const result = await store.recordRegistration({
        device,
        registration,
        approval: {
          role: viaToken.role,
          at: at.toISOString(),
          certificate,
          expectedStatus: "pending",
          enrollTokenId: viaToken.tokenId,
        },
      });
      await audit.record(enrolled);
      const approved = await this.approved(result, viaToken.role, `enroll-token ${viaToken.tokenId}`);
      this.deps.logger.info(
        { deviceId: csr.deviceId, tokenId: viaToken.tokenId, address },
        "registered with an enroll token",
      );
      return this.enrollResponse(approved.registration, csr.keyFingerprint);
    }

    const result = await store.recordRegistration({
      device,
      registration,
      maxPending: config.enroll.maxPending,
      // The same key asking again (a node restarted while waiting): the same request, not a new one.
      reusePending: true,
    });
    if (result.outcome === "waiting") return this.enrollResponse(result.registration, csr.keyFingerprint);
    if (result.outcome === "queue_full") throw this.queueFull(csr.deviceId, address);
    if (result.outcome !== "pending")
      throw new Error(`registration ${registration.requestId} was ${result.outcome}`);
    devices.remember(result.device);
    await audit.record(enrolled);
    this.deps.metrics.registration("pending");
    this.changed();
    this.deps.logger.info(
      { deviceId: csr.deviceId, userCode: formatUserCode(registration.userCode), address },
      "registration pending approval",
    );
    return this.enrollResponse(result.registration, csr.keyFingerprint);
  }

  /**
   * Refuses a key this gateway does not know (no device holds it: not pending, so not a node
   * asking again for its waiting request) while `enroll.maxPending` unexpired requests wait.
   * Decided on the CSR's claimed key, unverified: the refusal is the same for any sender, and a
   * known key always goes on to the verified path (its 202, its approval, its revocation).
   * The store's transaction still decides the last place (`recordRegistration`).
   * @throws GatehouseError `rate_limited` (audited as the queue-full refusal always is).
   */
  private async refuseWhenQueueFull(parsed: ParsedCsr, address: string | null, at: Date): Promise<void> {
    const claimed = parsed.claimed();
    if (this.deps.devices.forKey(claimed) !== undefined) return;
    const pending = await this.deps.store.countPendingRegistrations(at.toISOString());
    if (pending >= this.deps.config.enroll.maxPending) throw this.queueFull(claimed.deviceId, address);
  }

  /** The pending queue is full: audits the refusal and returns the `rate_limited` to throw. */
  private queueFull(deviceId: string, address: string | null): GatehouseError {
    const { audit, config } = this.deps;
    audit.recordRefusal({
      type: "enroll",
      outcome: "failure",
      subject: deviceId,
      address,
      code: "rate_limited",
    });
    const error = new GatehouseError(
      "rate_limited",
      `too many registrations are waiting for approval (at most ${config.enroll.maxPending})`,
      "Ask the admin to approve or deny the pending devices (`gatehouse devices list --pending`), then retry.",
    );
    error.retryAfterSeconds = 60;
    return error;
  }

  /** The name the device has on this gateway: an enroll token's prefix, or its approved name. */
  private deviceName(reg: RegistrationRecord): string {
    return this.deps.devices.get(reg.deviceId)?.name ?? reg.name;
  }

  private enrollResponse(reg: RegistrationRecord, keyFingerprint: string): EnrollResponse {
    return {
      requestId: reg.requestId,
      deviceId: reg.deviceId,
      name: this.deviceName(reg),
      userCode: formatUserCode(reg.userCode),
      keyFingerprint,
      status: reg.status,
      expiresAt: reg.expiresAt,
      pollAfterMs: POLL_AFTER_MS,
    };
  }

  async status(requestId: string): Promise<EnrollStatusResponse> {
    const { store, now, tls } = this.deps;
    let reg = await store.getRegistration(requestId);
    if (!reg) throw new GatehouseError("not_found", `no registration request ${requestId}`);
    if (reg.status === "pending" && reg.expiresAt <= now().toISOString()) {
      await store.updateRegistration(requestId, { status: "expired" });
      this.deps.metrics.registration("expired");
      reg = { ...reg, status: "expired" };
      this.changed();
    }
    const response: EnrollStatusResponse = {
      requestId: reg.requestId,
      deviceId: reg.deviceId,
      name: this.deviceName(reg),
      status: reg.status,
      expiresAt: reg.expiresAt,
    };
    if (reg.reason) response.reason = reg.reason;
    if (reg.status === "approved" && reg.certificate) {
      response.certificate = reg.certificate;
      response.caBundle = tls.caBundle();
    }
    return response;
  }

  /**
   * The device an operator names in `devices show|approve|deny|revoke` (and `/api/v1/devices/:id…`),
   * tried in this order: a device id (any status and kind); the user code of a registration
   * (`ABCD-EFGH`, as `node register` prints it); a device name (`DeviceDirectory.resolveByName`,
   * so a pending device is found by its name as well as by its code).
   * @param verb the devices command, for the hint of an ambiguous name (`show`, `approve`, …).
   * @throws GatehouseError `not_found` when nothing matches; `invalid_request` for a name several
   *   devices share (naming their ids).
   */
  async resolveDevice(
    idOrCode: string,
    verb = "show",
  ): Promise<{ device: DeviceRecord; registration?: RegistrationRecord }> {
    const { store, devices } = this.deps;
    const withRegistration = async (device: DeviceRecord) => {
      const registration = await store.findPendingRegistrationByDevice(device.deviceId);
      return registration ? { device, registration } : { device };
    };
    const direct = devices.get(idOrCode) ?? devices.get(idOrCode.toLowerCase());
    if (direct) return withRegistration(direct);
    const code = parseUserCode(idOrCode);
    if (code) {
      const registration = await store.findRegistrationByUserCode(code);
      const device = registration && devices.get(registration.deviceId);
      if (registration && device) return { device, registration };
    }
    const named = devices.resolveByName(idOrCode, verb);
    if (named) return withRegistration(named);
    throw new GatehouseError(
      "not_found",
      `no device, user code or device name ${JSON.stringify(idOrCode)}`,
      "`gatehouse devices list` shows every device with its id and name; `--status pending` the ones waiting.",
    );
  }

  async approve(idOrCode: string, role: string, actor: string): Promise<DeviceRecord> {
    requireKnownRole(role);
    const { device, registration } = await this.resolveDevice(idOrCode, "approve");
    if (device.status === "approved") return device;
    if (device.status !== "pending") {
      throw new GatehouseError(
        "invalid_request",
        `device ${device.deviceId} is ${device.status} and cannot be approved`,
        "A revoked or denied device must register again with a new key.",
      );
    }
    if (!registration || registration.status !== "pending") {
      throw new GatehouseError(
        "registration_expired",
        `device ${device.deviceId} has no pending registration`,
      );
    }
    // One reading of the clock decides and dates the approval; the store refuses it again if the
    // request has expired by then, so no path can approve a request past its expiry.
    const at = this.deps.now();
    try {
      if (registration.expiresAt <= at.toISOString())
        throw new GatehouseError(
          "registration_expired",
          `the registration of ${device.deviceId} expired at ${registration.expiresAt}`,
        );
      return await this.approveRegistration(registration, role, actor, at);
    } catch (error) {
      if (error instanceof GatehouseError && error.code === "registration_expired") {
        await this.deps.store.updateRegistration(registration.requestId, { status: "expired" });
        this.deps.metrics.registration("expired");
        this.changed();
      }
      throw error;
    }
  }

  private async approveRegistration(
    registration: RegistrationRecord,
    role: string,
    actor: string,
    at: Date,
  ): Promise<DeviceRecord> {
    const csr = await verifyCsr(registration.csr);
    const certificate = await this.issueCertificate(csr.publicKey, registration.deviceId, at);
    const result = await this.deps.store.recordApproval({
      deviceId: registration.deviceId,
      requestId: registration.requestId,
      role,
      at: at.toISOString(),
      certificate,
    });
    return (await this.approved({ outcome: "approved", ...result }, role, actor)).device;
  }

  /** A client certificate for a device key, as the certificate row the approval stores. */
  private async issueCertificate(
    publicKey: CryptoKey,
    deviceId: string,
    at: Date,
  ): Promise<CertificateRecord> {
    const issued = await issueClientCertificate(this.deps.tls.ca, {
      publicKey,
      deviceId,
      now: at,
      ttlMs: this.deps.config.certificates.clientTtl,
    });
    return {
      serial: issued.serial,
      deviceId,
      fingerprint: issued.fingerprint,
      notBefore: issued.notBefore.toISOString(),
      notAfter: issued.notAfter.toISOString(),
      issuedAt: at.toISOString(),
      pem: issued.pem,
    };
  }

  /**
   * After an approval has committed: the cache, the audit trail, the log and the metrics learn of it.
   * @param certificateKind `reissue` when an already approved key registered again.
   */
  private async approved(
    result: RegistrationOutcome,
    role: string,
    actor: string,
    certificateKind: CertificateIssueKind = "initial",
  ): Promise<Extract<RegistrationOutcome, { outcome: "approved" }>> {
    if (result.outcome !== "approved") throw new Error(`the approval was ${result.outcome}`);
    const { device, certificate } = result;
    this.deps.devices.remember(device);
    this.deps.metrics.registration("approved");
    this.deps.metrics.certificateIssued(certificateKind);
    await this.deps.audit.record({
      type: "device.approve",
      outcome: "success",
      actor,
      subject: device.deviceId,
      details: {
        role,
        certFingerprint: fingerprintPrefix(certificate.fingerprint),
        certExpiresAt: certificate.notAfter,
      },
    });
    this.deps.logger.info({ deviceId: device.deviceId, role, actor }, "device approved");
    this.changed();
    return result;
  }

  async deny(idOrCode: string, reason: string | undefined, actor: string): Promise<DeviceRecord> {
    const { device, registration } = await this.resolveDevice(idOrCode, "deny");
    if (device.status !== "pending") {
      throw new GatehouseError(
        "invalid_request",
        `device ${device.deviceId} is ${device.status}; only a pending device can be denied`,
        "Use `gatehouse devices revoke` for an approved device.",
      );
    }
    const at = this.deps.now().toISOString();
    if (registration)
      await this.deps.store.updateRegistration(registration.requestId, {
        status: "denied",
        reason: reason ?? "denied by an admin",
      });
    const updated = await this.deps.devices.update(device.deviceId, {
      status: "denied",
      statusReason: reason ?? null,
      updatedAt: at,
    });
    await this.deps.audit.record({
      type: "device.deny",
      outcome: "success",
      actor,
      subject: device.deviceId,
      details: { reason: reason ?? null },
    });
    this.deps.metrics.registration("denied");
    this.changed();
    return updated!;
  }

  /**
   * Revokes a device: its certificates go on the CRL and its sessions close with 4403.
   * @param actor the audit actor; `onBehalfOf`, for a dashboard session, the credential that opened
   *   it. An admin credential may not revoke itself, directly or through a dashboard session it
   *   opened: that would lock the gateway's own admin out.
   * @throws GatehouseError `not_found`, `invalid_request` (self-revocation).
   */
  async revoke(
    idOrCode: string,
    reason: string | undefined,
    actor: string,
    onBehalfOf?: string,
  ): Promise<{ device: DeviceRecord; sessionsClosed: number }> {
    const { device, registration } = await this.resolveDevice(idOrCode, "revoke");
    const self = `device:${device.deviceId}`;
    if (device.kind === "operator" && device.role === "admin" && (actor === self || onBehalfOf === self)) {
      throw new GatehouseError(
        "invalid_request",
        actor === self
          ? "an admin credential cannot revoke itself"
          : "an admin credential cannot revoke itself: this dashboard session was opened with it",
        "Revoke it with another admin credential, if that is what you mean; revoking the credential you act with would lock you out.",
      );
    }
    const at = this.deps.now().toISOString();
    if (registration)
      await this.deps.store.updateRegistration(registration.requestId, {
        status: "denied",
        reason: "revoked",
      });
    // Durable first, then the cache (which every later handshake reads), then the live sessions.
    const updated = await this.deps.devices.update(device.deviceId, {
      status: "revoked",
      revokedAt: at,
      statusReason: reason ?? null,
      updatedAt: at,
    });
    const sessionsClosed = this.deps.sessions.closeDevice(device.deviceId, 4403, "device_revoked");
    if (device.status !== "revoked") this.deps.metrics.revoked("device");
    // And at the TLS layer: the new CRL marks its certificates revoked in every later handshake.
    await this.deps.tls.issueCrls();
    await this.deps.audit.record({
      type: "device.revoke",
      outcome: "success",
      actor,
      subject: device.deviceId,
      details: { reason: reason ?? null, sessionsClosed },
    });
    this.deps.logger.info({ deviceId: device.deviceId, sessionsClosed, actor }, "device revoked");
    this.changed();
    return { device: updated!, sessionsClosed };
  }

  /** A device's registration state changed: tell the dashboard's stream. */
  private changed(): void {
    this.deps.events?.emit("devices");
  }
}
