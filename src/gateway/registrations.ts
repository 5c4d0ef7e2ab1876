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
import { verifyCsr, issueClientCertificate } from "../pki/index.js";
import type { TlsState } from "./tls-state.js";
import { isKnownRole } from "../auth/roles.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { DeviceRecord, RegistrationRecord, Store } from "../store/types.js";
import type { DeviceDirectory } from "./device-directory.js";
import type { SessionRegistry } from "./sessions.js";
import type { EnrollTokenService } from "./enroll-tokens.js";

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

  async enroll(request: EnrollRequest, address: string | null): Promise<EnrollResponse> {
    const { store, devices, config, audit, now } = this.deps;
    const csr = await verifyCsr(request.csr);
    const at = now();
    const existing = devices.get(csr.deviceId);
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
    const name =
      viaToken?.namePrefix && !request.name.startsWith(viaToken.namePrefix)
        ? (viaToken.namePrefix + request.name).slice(0, 64)
        : request.name;

    if (!viaToken && (!existing || existing.status === "pending")) {
      const pending = await store.findPendingRegistrationByDevice(csr.deviceId);
      if (pending && pending.expiresAt > at.toISOString()) {
        // The same key asking again (a node restarted while waiting): the same request, not a new one.
        return this.enrollResponse(pending, csr.keyFingerprint);
      }
      await store.expireRegistrations(at.toISOString());
      if ((await store.countPendingRegistrations(at.toISOString())) >= config.enroll.maxPending) {
        audit.recordRefusal({
          type: "enroll",
          outcome: "failure",
          subject: csr.deviceId,
          address,
          code: "rate_limited",
        });
        const error = new GatehouseError(
          "rate_limited",
          `too many registrations are waiting for approval (at most ${config.enroll.maxPending})`,
          "Ask the admin to approve or deny the pending devices (`gatehouse devices list --pending`), then retry.",
        );
        error.retryAfterSeconds = 60;
        throw error;
      }
    }

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

    if (existing?.status === "approved") {
      // The CSR's signature proves possession of an approved key: issue a fresh certificate at once.
      await store.createRegistration(registration);
      await this.approveRegistration(registration, existing.role, "self (approved key)", "approved");
      return this.enrollResponse((await store.getRegistration(registration.requestId))!, csr.keyFingerprint);
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
    await store.upsertDevice(device);
    await store.createRegistration(registration);
    devices.remember((await store.getDevice(device.deviceId)) ?? device);
    await audit.record({
      type: "enroll",
      outcome: "success",
      subject: csr.deviceId,
      address,
      details: {
        name,
        userCode: formatUserCode(registration.userCode),
        keyFingerprint: fingerprintPrefix(csr.keyFingerprint),
      },
    });
    if (viaToken) {
      await this.approveRegistration(
        registration,
        viaToken.role,
        `enroll-token ${viaToken.tokenId}`,
        "pending",
        viaToken.tokenId,
      );
      this.deps.logger.info(
        { deviceId: csr.deviceId, tokenId: viaToken.tokenId, address },
        "registered with an enroll token",
      );
      return this.enrollResponse((await store.getRegistration(registration.requestId))!, csr.keyFingerprint);
    }
    this.deps.logger.info(
      { deviceId: csr.deviceId, userCode: formatUserCode(registration.userCode), address },
      "registration pending approval",
    );
    return this.enrollResponse(registration, csr.keyFingerprint);
  }

  private enrollResponse(reg: RegistrationRecord, keyFingerprint: string): EnrollResponse {
    return {
      requestId: reg.requestId,
      deviceId: reg.deviceId,
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
      reg = { ...reg, status: "expired" };
    }
    const response: EnrollStatusResponse = {
      requestId: reg.requestId,
      deviceId: reg.deviceId,
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

  /** Finds a device by id or by the user code of its pending registration. */
  async resolveDevice(
    idOrCode: string,
  ): Promise<{ device: DeviceRecord; registration?: RegistrationRecord }> {
    const { store, devices } = this.deps;
    const direct = devices.get(idOrCode) ?? devices.get(idOrCode.toLowerCase());
    if (direct) {
      const registration = await store.findPendingRegistrationByDevice(direct.deviceId);
      return registration ? { device: direct, registration } : { device: direct };
    }
    const code = parseUserCode(idOrCode);
    if (code) {
      const registration = await store.findRegistrationByUserCode(code);
      const device = registration && devices.get(registration.deviceId);
      if (registration && device) return { device, registration };
    }
    throw new GatehouseError("not_found", `no device or user code ${JSON.stringify(idOrCode)}`);
  }

  async approve(idOrCode: string, role: string, actor: string): Promise<DeviceRecord> {
    if (!isKnownRole(role))
      throw new GatehouseError("invalid_request", `unknown role ${JSON.stringify(role)}`);
    const { device, registration } = await this.resolveDevice(idOrCode);
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
    if (registration.expiresAt <= this.deps.now().toISOString()) {
      await this.deps.store.updateRegistration(registration.requestId, { status: "expired" });
      throw new GatehouseError(
        "registration_expired",
        `the registration of ${device.deviceId} expired at ${registration.expiresAt}`,
      );
    }
    return this.approveRegistration(registration, role, actor);
  }

  private async approveRegistration(
    registration: RegistrationRecord,
    role: string,
    actor: string,
    expectedStatus: "pending" | "approved" = "pending",
    enrollTokenId?: string,
  ): Promise<DeviceRecord> {
    const { store, devices, tls, config, audit, now } = this.deps;
    const at = now();
    const csr = await verifyCsr(registration.csr);
    const issued = await issueClientCertificate(tls.ca, {
      publicKey: csr.publicKey,
      deviceId: registration.deviceId,
      now: at,
      ttlMs: config.certificates.clientTtl,
    });
    const result = await store.recordApproval({
      deviceId: registration.deviceId,
      requestId: registration.requestId,
      role,
      at: at.toISOString(),
      expectedStatus,
      ...(enrollTokenId ? { enrollTokenId } : {}),
      certificate: {
        serial: issued.serial,
        deviceId: registration.deviceId,
        fingerprint: issued.fingerprint,
        notBefore: issued.notBefore.toISOString(),
        notAfter: issued.notAfter.toISOString(),
        issuedAt: at.toISOString(),
        pem: issued.pem,
      },
    });
    devices.remember(result.device);
    await audit.record({
      type: "device.approve",
      outcome: "success",
      actor,
      subject: registration.deviceId,
      details: {
        role,
        certFingerprint: fingerprintPrefix(issued.fingerprint),
        certExpiresAt: issued.notAfter.toISOString(),
      },
    });
    this.deps.logger.info({ deviceId: registration.deviceId, role, actor }, "device approved");
    return result.device;
  }

  async deny(idOrCode: string, reason: string | undefined, actor: string): Promise<DeviceRecord> {
    const { device, registration } = await this.resolveDevice(idOrCode);
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
    return updated!;
  }

  async revoke(
    idOrCode: string,
    reason: string | undefined,
    actor: string,
  ): Promise<{ device: DeviceRecord; sessionsClosed: number }> {
    const { device, registration } = await this.resolveDevice(idOrCode);
    if (device.kind === "operator" && device.role === "admin" && actor === `device:${device.deviceId}`) {
      throw new GatehouseError("invalid_request", "an admin credential cannot revoke itself");
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
    return { device: updated!, sessionsClosed };
  }
}
