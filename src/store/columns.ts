/**
 * The columns of each record the store writes, and the helpers that build rows from them: one
 * list per table, shared by every query and both dialects.
 */
import type { CertificateRecord, DeviceRecord, RegistrationRecord, SessionRecord } from "./types.js";

/**
 * The columns of each record. Rows are built from these lists rather than from whatever object a
 * caller passes, so a record carrying extra properties (a view model, say) never becomes an
 * unknown column in SQL. Record<keyof T, true> makes the compiler keep the lists complete.
 */
export type Columns<T> = Record<keyof T, true>;

export const DEVICE: Columns<DeviceRecord> = {
  deviceId: true,
  kind: true,
  name: true,
  platform: true,
  status: true,
  role: true,
  publicKey: true,
  keyFingerprint: true,
  userCode: true,
  address: true,
  createdAt: true,
  updatedAt: true,
  approvedAt: true,
  revokedAt: true,
  statusReason: true,
  lastSeen: true,
  certFingerprint: true,
  certExpiresAt: true,
};

export const REGISTRATION: Columns<RegistrationRecord> = {
  requestId: true,
  deviceId: true,
  userCode: true,
  status: true,
  csr: true,
  name: true,
  platform: true,
  address: true,
  createdAt: true,
  expiresAt: true,
  certificate: true,
  reason: true,
};

export const CERTIFICATE: Columns<CertificateRecord> = {
  serial: true,
  deviceId: true,
  fingerprint: true,
  notBefore: true,
  notAfter: true,
  issuedAt: true,
  pem: true,
};

export const SESSION: Columns<SessionRecord> = {
  sessionId: true,
  deviceId: true,
  instanceId: true,
  address: true,
  connectedAt: true,
  disconnectedAt: true,
  closeCode: true,
  closeReason: true,
};

/** Exactly the columns of `T` from `source`: extra properties never reach SQL. */
export function row<T extends object>(source: T, columns: Columns<T>): T {
  return patch(source, columns, []) as T;
}

/** The known, defined fields of a partial record, minus the ones that must never change. */
export function patch<T extends object>(
  source: Partial<T>,
  columns: Columns<T>,
  immutable: (keyof T)[],
): Partial<T> {
  const out: Partial<T> = {};
  for (const key of Object.keys(columns) as (keyof T)[]) {
    if (!immutable.includes(key) && source[key] !== undefined) out[key] = source[key];
  }
  return out;
}
