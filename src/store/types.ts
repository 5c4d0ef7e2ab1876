/**
 * The one Store interface. The gateway talks only to this; one Kysely implementation
 * (kysely-store.ts) serves it over SQLite (the default, openSqliteStore) and over PostgreSQL
 * (several instances of one gateway, openPostgresStore), with the few dialect differences behind
 * StoreDialect hooks: timestamps are ISO-8601 strings, booleans are integers, ids are text.
 */
import type { ExecHistoryEntry } from "../protocol/messages.js";
import type { TokenStore } from "./token-types.js";

export type DeviceStatus = "pending" | "approved" | "denied" | "revoked";
/** "node" devices connect and run commands; "operator" devices are admin/operator credentials. */
export type DeviceKind = "node" | "operator";
export type RegistrationStatus = "pending" | "approved" | "denied" | "expired";

export interface DeviceRecord {
  deviceId: string;
  kind: DeviceKind;
  name: string;
  platform: string | null;
  status: DeviceStatus;
  role: string;
  /** base64 DER SubjectPublicKeyInfo of the device key */
  publicKey: string;
  /** sha256:hex of the SPKI */
  keyFingerprint: string;
  userCode: string | null;
  address: string | null;
  createdAt: string;
  updatedAt: string;
  approvedAt: string | null;
  revokedAt: string | null;
  statusReason: string | null;
  lastSeen: string | null;
  certFingerprint: string | null;
  certExpiresAt: string | null;
}

export interface RegistrationRecord {
  requestId: string;
  deviceId: string;
  userCode: string;
  status: RegistrationStatus;
  csr: string;
  name: string;
  platform: string | null;
  address: string | null;
  createdAt: string;
  expiresAt: string;
  /** PEM of the issued certificate once approved */
  certificate: string | null;
  reason: string | null;
}

export interface CertificateRecord {
  serial: string;
  deviceId: string;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  pem: string;
}

export interface SessionRecord {
  sessionId: string;
  deviceId: string;
  /** The gateway instance holding the session (several gateways on one database); null or absent alone. */
  instanceId?: string | null;
  address: string | null;
  connectedAt: string;
  disconnectedAt: string | null;
  closeCode: number | null;
  closeReason: string | null;
}

/** One change to the sessions table: a session opened, or one ended (the first end wins). */
export type SessionChange =
  | { kind: "open"; session: SessionRecord }
  | { kind: "close"; sessionId: string; at: string; closeCode: number | null; closeReason: string | null };

export interface AuditEventInput {
  ts: string;
  type: string;
  outcome: "success" | "failure";
  actor: string | null;
  subject: string | null;
  address: string | null;
  code: string | null;
  details: Record<string, unknown>;
}

export interface AuditEventRecord extends AuditEventInput {
  id: number;
  /** Position in the hash chain (1, 2, 3 …), the previous entry's hash, and this entry's. */
  seq: number;
  prevHash: string;
  hash: string;
  /** The details exactly as stored and hashed. */
  detailsJson: string;
}

/** One command run on a node, kept per device id (stable across renewals and re-issue). */
export type ExecRecord = Omit<ExecHistoryEntry, "args"> & {
  /** JSON array text */
  args: string;
};

/** An enroll token: a node that registers with it is approved at once, while uses are left. */
export interface EnrollTokenRecord {
  tokenId: string;
  /** Keyed hash (HMAC-SHA-256) of the token; the token itself is never stored. */
  hash: string;
  name: string;
  role: string;
  /** Names of devices registered with this token start with this. */
  namePrefix: string | null;
  usesTotal: number;
  usesLeft: number;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  /** "created" by `enroll create`, or "legacy": the old shared token, imported by `migrate`. */
  source: string;
  lastUsedAt: string | null;
}

/**
 * One gateway instance of several that share a PostgreSQL database: where the others reach it
 * (exec relay) and when it last said it was alive. A SQLite gateway is one instance alone.
 */
export interface InstanceRecord {
  /** `gi_` + 16 base32 characters, written in gateway.json by `gateway init --store` / `join`. */
  instanceId: string;
  /** https URL other instances dial to relay commands to nodes this one holds. */
  url: string;
  /** The address it listens on (HOST:PORT), for `/health` and `nodes list`. */
  listen: string;
  startedAt: string;
  heartbeatAt: string;
  /** Set by a clean stop; an instance killed keeps null and goes stale (heartbeatAt). */
  stoppedAt: string | null;
}

/**
 * Key material every instance needs and no disk holds for all of them (the CA's certificate and
 * key, the token hash key). `value` of a private item is sealed under the key-encryption key
 * (auth/key-encryption.ts, bound to `name`): the database never holds it in the clear.
 */
/**
 * A dashboard login link shared by the instances: `linkHash` is sha256 (hex) of the link's token,
 * never the token. `used` is 1 once redeemed (kept until it would have expired, to say so).
 */
export interface DashboardLinkRecord {
  linkHash: string;
  role: string;
  createdBy: string;
  expiresAt: string;
  used: number;
}

/**
 * A dashboard cookie session shared by the instances: `fingerprint` is sha256 (hex) of the cookie
 * value, never the value. `csrfToken` is the synchronizer token the page echoes (no credential alone).
 */
export interface DashboardSessionRecord {
  fingerprint: string;
  role: string;
  createdBy: string;
  csrfToken: string;
  createdAt: string;
  lastUsedAt: string;
}

export interface SharedMaterialRecord {
  /** e.g. `pki/ca.pem`, `pki/ca.key`, `pki/token-hmac.key` (the home file it stands for). */
  name: string;
  value: string;
  /** 1 when `value` is sealed (private), 0 for public material such as a certificate. */
  sealed: number;
  updatedAt: string;
}

/** One audit entry to append, and the history row it describes, written in the same commit. */
export interface AuditWrite {
  event: AuditEventInput;
  exec?: ExecRecord;
}

export interface ApprovalResult {
  device: DeviceRecord;
  registration: RegistrationRecord;
  certificate: CertificateRecord;
}

/** What an approval writes: see Store.recordApproval. Times are ISO-8601 strings. */
export interface ApprovalInput {
  deviceId: string;
  /** The request to approve, or null for the device's newest pending one. */
  requestId: string | null;
  role: string;
  /** When the approval happens (ISO-8601): a request whose expiresAt is not after it is refused. */
  at: string;
  certificate: CertificateRecord;
  /** The device state the caller decided from (default "pending"); anything else fails. */
  expectedStatus?: DeviceStatus;
  /** An approval by enroll token: one use is taken in the same transaction, or nothing happens. */
  enrollTokenId?: string;
}

/** The result of Store.recordRegistration. */
export type RegistrationOutcome =
  | { outcome: "pending"; device: DeviceRecord; registration: RegistrationRecord }
  | ({ outcome: "approved" } & ApprovalResult)
  /** maxPending unexpired requests were waiting already: nothing was written. */
  | { outcome: "queue_full"; pending: number }
  /** With reusePending: the device's own unexpired request, still pending; nothing was written. */
  | { outcome: "waiting"; registration: RegistrationRecord };

export interface Store {
  /** API keys, signing keys and refresh tokens. */
  readonly tokens: TokenStore;
  /** "sqlite": one gateway owns the file; "postgres": several instances may share the database. */
  readonly dialect: "sqlite" | "postgres";

  /** Runs pending migrations; called once at start. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  // devices
  getDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  listDevices(filter?: { status?: DeviceStatus }): Promise<DeviceRecord[]>;
  /** Inserts, or updates name/platform/address/userCode/status of a device that is not approved. */
  upsertDevice(device: DeviceRecord): Promise<void>;
  updateDevice(
    deviceId: string,
    patch: Partial<Omit<DeviceRecord, "deviceId" | "createdAt">>,
  ): Promise<DeviceRecord | undefined>;
  /** Marks many devices' lastSeen at once (batched from the session registry). */
  touchDevices(seen: { deviceId: string; lastSeen: string; address: string | null }[]): Promise<void>;

  // registration requests
  createRegistration(reg: RegistrationRecord): Promise<void>;
  getRegistration(requestId: string): Promise<RegistrationRecord | undefined>;
  findRegistrationByUserCode(userCode: string): Promise<RegistrationRecord | undefined>;
  /** The newest pending registration for a device. */
  findPendingRegistrationByDevice(deviceId: string): Promise<RegistrationRecord | undefined>;
  countPendingRegistrations(now: string): Promise<number>;
  updateRegistration(requestId: string, patch: Partial<Omit<RegistrationRecord, "requestId">>): Promise<void>;
  /** Marks pending registrations whose expiresAt <= now as expired; returns how many. */
  expireRegistrations(now: string): Promise<number>;

  /**
   * Approval in one transaction: device approved (with role, cert fields), registration approved
   * with its certificate, certificate row inserted. Durable when it resolves.
   */
  recordApproval(input: ApprovalInput): Promise<ApprovalResult>;

  /**
   * A new registration, decided and written in one transaction, or not written at all: the
   * device row (`device`, left alone when the device is approved already) and its request; with
   * `maxPending`, nothing is written when that many unexpired requests are pending already; with
   * `reusePending`, nothing is written when the device has an unexpired pending request (the
   * same key asking again is the same request, however many times it asks at once);
   * with `approval`, the request is approved in the same commit (as recordApproval), and an
   * approval that fails (an enroll token with no use left, a device no longer in the expected
   * state) leaves neither row behind. Durable when it resolves.
   * @throws GatehouseError from the approval (`invalid_token`, `invalid_request`, `not_found`).
   */
  recordRegistration(input: {
    device?: DeviceRecord;
    registration: RegistrationRecord;
    maxPending?: number;
    reusePending?: boolean;
    approval?: Omit<ApprovalInput, "deviceId" | "requestId">;
  }): Promise<RegistrationOutcome>;

  // certificates
  insertCertificate(cert: CertificateRecord): Promise<void>;
  /** Unexpired certificates of revoked devices, for the CRL. */
  listRevokedCertificates(now: string): Promise<{ serial: string; revokedAt: string }[]>;
  listCertificates(deviceId: string): Promise<CertificateRecord[]>;

  // sessions
  openSession(session: SessionRecord): Promise<void>;
  closeSession(
    sessionId: string,
    at: string,
    closeCode: number | null,
    closeReason: string | null,
  ): Promise<void>;
  /**
   * Sessions left open by a crash are closed at start: every open session, or with `instanceId`
   * only those that instance held (several instances share the table). With `connectedBefore` (an
   * ISO 8601 time) only sessions that connected at or before it: a sweep of an instance gone stale
   * leaves the sessions it opened after its last heartbeat (a restart under the same id). Returns
   * how many.
   */
  closeAllOpenSessions(
    at: string,
    reason: string,
    instanceId?: string,
    connectedBefore?: string,
  ): Promise<number>;
  /** Sessions not ended yet (disconnectedAt null), oldest first, with the instance holding each. */
  listOpenSessions(): Promise<SessionRecord[]>;
  /**
   * Session opens and ends, in the order they happened, and the devices' last seen, in one
   * transaction: one commit for a whole batch instead of one per session (a reconnect storm).
   */
  recordSessionChanges(
    changes: SessionChange[],
    seen: { deviceId: string; lastSeen: string; address: string | null }[],
  ): Promise<void>;

  // enroll tokens
  createEnrollToken(token: EnrollTokenRecord): Promise<void>;
  listEnrollTokens(): Promise<EnrollTokenRecord[]>;
  findEnrollTokenByHash(hash: string): Promise<EnrollTokenRecord | undefined>;
  revokeEnrollToken(tokenId: string, at: string): Promise<EnrollTokenRecord | undefined>;

  // execution history (written with its audit entry, see AuditWrite)
  listExecs(deviceId: string, limit?: number): Promise<ExecRecord[]>;

  // gateway instances (several gateways on one database)
  /** Inserts the instance, or replaces its url/listen/startedAt/heartbeatAt and clears stoppedAt. */
  upsertInstance(instance: InstanceRecord): Promise<void>;
  heartbeatInstance(instanceId: string, at: string): Promise<void>;
  markInstanceStopped(instanceId: string, at: string): Promise<void>;
  listInstances(): Promise<InstanceRecord[]>;

  // shared key material (see SharedMaterialRecord)
  getSharedMaterial(name: string): Promise<SharedMaterialRecord | undefined>;
  /**
   * Writes `record`; with `onlyIfAbsent`, only when no row has its name (two instances racing to
   * create the same material: the first wins). Returns whether it wrote.
   */
  putSharedMaterial(record: SharedMaterialRecord, options?: { onlyIfAbsent?: boolean }): Promise<boolean>;

  // rate limits shared by instances
  /**
   * Counts one more hit of `key` in the fixed window starting at `windowStart` (ISO-8601), in one
   * statement (two instances counting at once both count), and returns the window's count after it.
   */
  countRateHit(key: string, windowStart: string): Promise<number>;
  /** Deletes windows that started before `before`; returns how many. */
  pruneRateWindows(before: string): Promise<number>;

  // what one instance alone keeps in memory and several share (spent challenges, dashboard)
  /**
   * Marks a re-issue challenge's nonce (hex) spent until `expiresAt` (ISO-8601), in one statement:
   * of two instances spending the same nonce at once exactly one gets true.
   */
  spendChallenge(nonce: string, expiresAt: string): Promise<boolean>;
  /** Forgets spent challenges that expired before `before` (ISO-8601); returns how many. */
  pruneSpentChallenges(before: string): Promise<number>;
  putDashboardLink(link: DashboardLinkRecord): Promise<void>;
  getDashboardLink(linkHash: string): Promise<DashboardLinkRecord | undefined>;
  /**
   * Marks the link used if it is unused and expires after `now` (ISO-8601), in one statement (two
   * instances redeeming one link at once: one gets it). Returns the link when this call used it.
   */
  useDashboardLink(linkHash: string, now: string): Promise<DashboardLinkRecord | undefined>;
  /** Forgets links that expired before `before` (ISO-8601); returns how many. */
  pruneDashboardLinks(before: string): Promise<number>;
  /** Adds a session, then forgets the oldest logins past `keep` sessions. */
  putDashboardSession(session: DashboardSessionRecord, keep: number): Promise<void>;
  getDashboardSession(fingerprint: string): Promise<DashboardSessionRecord | undefined>;
  touchDashboardSession(fingerprint: string, lastUsedAt: string): Promise<void>;
  /** Ends one session; returns whether it was there. */
  deleteDashboardSession(fingerprint: string): Promise<boolean>;
  /**
   * Ends the sessions last used before `idleBefore` or made before `createdBefore`, or opened by
   * `createdBy` (ISO-8601 times; a credential revoked); returns how many.
   */
  deleteDashboardSessions(match: {
    idleBefore?: string;
    createdBefore?: string;
    createdBy?: string;
  }): Promise<number>;

  /**
   * Tells every instance listening on the database (PostgreSQL NOTIFY on `channel`); a no-op on
   * SQLite, where there is no other instance. `payload` is at most 7,999 bytes.
   */
  notify(channel: string, payload: string): Promise<void>;

  // audit (a hash-chained append)
  /**
   * Appends entries, in order, in one transaction (a group commit: one fsync for many entries),
   * each with the record it describes when there is one. Returns the new entries' ids.
   */
  appendAudit(writes: AuditWrite[]): Promise<number[]>;
  /**
   * At most `limit` (default 100) entries. `order` "asc" (default): those after `afterId`
   * (default 0), oldest first. `order` "desc": those before `beforeId` (default: the newest
   * included), newest first, so the latest page is one query however long the log is. The
   * filters are AND-combined. `subject` matches `<id>` and `device:<id>` (a device is the
   * subject either way). `type` ending in `.` (`device.`) matches everything under it; without one
   * (`device`), that type and everything under `device.`.
   */
  listAudit(options?: AuditQuery): Promise<AuditEventRecord[]>;
}

/** Which audit entries to list (see Store.listAudit). */
export interface AuditQuery {
  /** "asc" (default) pages with `afterId`; "desc" pages with `beforeId`. */
  order?: "asc" | "desc";
  afterId?: number;
  /** Only with order "desc": entries whose id is below this one. */
  beforeId?: number;
  limit?: number;
  subject?: string;
  actor?: string;
  type?: string;
}
