/**
 * The Store over Kysely. KyselyStore speaks only portable SQL (ON CONFLICT, RETURNING, plain
 * UPDATE/SELECT), so a PostgreSQL opener can hand it a Kysely with another dialect; only
 * openSqliteStore below knows about SQLite.
 */
import fs from "node:fs";
import Database from "better-sqlite3";
import { CamelCasePlugin, CompiledQuery, Kysely, SqliteDialect, SqliteDriver, sql } from "kysely";
import type { DatabaseConnection, Driver, SqliteDialectConfig, Transaction } from "kysely";
import { GatehouseError } from "../protocol/errors.js";
import { enrollTokenRefusal } from "../protocol/enroll-token-refusal.js";
import { migrateToLatest, type Database as Tables } from "./migrations.js";
import { KyselyTokenStore } from "./token-store.js";
import { SqliteAuditWriter } from "./sqlite-audit-writer.js";
import { GENESIS_HASH, auditEntryHash } from "../audit/chain.js";
import type { TokenStore } from "./token-types.js";
import type {
  AuditQuery,
  ApprovalInput,
  ApprovalResult,
  AuditWrite,
  AuditEventRecord,
  CertificateRecord,
  DeviceRecord,
  DeviceStatus,
  EnrollTokenRecord,
  ExecRecord,
  InstanceRecord,
  RegistrationOutcome,
  RegistrationRecord,
  SessionChange,
  SessionRecord,
  SharedMaterialRecord,
  Store,
} from "./types.js";

/**
 * The columns of each record. Rows are built from these lists rather than from whatever object a
 * caller passes, so a record carrying extra properties (a view model, say) never becomes an
 * unknown column in SQL. Record<keyof T, true> makes the compiler keep the lists complete.
 */
type Columns<T> = Record<keyof T, true>;

const DEVICE: Columns<DeviceRecord> = {
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

const REGISTRATION: Columns<RegistrationRecord> = {
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

const CERTIFICATE: Columns<CertificateRecord> = {
  serial: true,
  deviceId: true,
  fingerprint: true,
  notBefore: true,
  notAfter: true,
  issuedAt: true,
  pem: true,
};

const SESSION: Columns<SessionRecord> = {
  sessionId: true,
  deviceId: true,
  instanceId: true,
  address: true,
  connectedAt: true,
  disconnectedAt: true,
  closeCode: true,
  closeReason: true,
};

function row<T extends object>(source: T, columns: Columns<T>): T {
  return patch(source, columns, []) as T;
}

/** The known, defined fields of a partial record, minus the ones that must never change. */
function patch<T extends object>(
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

export class KyselyStore implements Store {
  readonly tokens: TokenStore;
  readonly dialect: "sqlite" | "postgres" = "sqlite";

  private readonly auditWriter: Pick<SqliteAuditWriter, "append" | "close"> | undefined;

  /**
   * @param options.scrubFreedPages the dialect's way to erase freed bytes (see KyselyTokenStore).
   * @param options.auditWriter appends audit batches in place of this connection (off the event
   * loop: see sqlite-audit-writer.ts); without one, appendAudit writes through Kysely.
   */
  constructor(
    private readonly db: Kysely<Tables>,
    options: {
      scrubFreedPages?: () => Promise<void>;
      auditWriter?: Pick<SqliteAuditWriter, "append" | "close">;
    } = {},
  ) {
    this.tokens = new KyselyTokenStore(db, options.scrubFreedPages);
    this.auditWriter = options.auditWriter;
  }

  async migrate(): Promise<void> {
    await migrateToLatest(this.db);
  }

  async close(): Promise<void> {
    await this.auditWriter?.close();
    await this.db.destroy();
  }

  // devices

  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    return this.db.selectFrom("devices").selectAll().where("deviceId", "=", deviceId).executeTakeFirst();
  }

  async listDevices(filter?: { status?: DeviceStatus }): Promise<DeviceRecord[]> {
    let query = this.db.selectFrom("devices").selectAll().orderBy("createdAt").orderBy("deviceId");
    if (filter?.status !== undefined) query = query.where("status", "=", filter.status);
    return query.execute();
  }

  async upsertDevice(device: DeviceRecord): Promise<void> {
    await upsertDeviceIn(this.db, device);
  }

  async updateDevice(
    deviceId: string,
    changes: Partial<Omit<DeviceRecord, "deviceId" | "createdAt">>,
  ): Promise<DeviceRecord | undefined> {
    const set = patch<DeviceRecord>(changes, DEVICE, ["deviceId", "createdAt"]);
    if (Object.keys(set).length === 0) return this.getDevice(deviceId);
    return this.db
      .updateTable("devices")
      .set(set)
      .where("deviceId", "=", deviceId)
      .returningAll()
      .executeTakeFirst();
  }

  async touchDevices(seen: { deviceId: string; lastSeen: string; address: string | null }[]): Promise<void> {
    if (seen.length === 0) return;
    await this.db.transaction().execute(async (trx) => {
      for (const { deviceId, lastSeen, address } of seen) {
        // A session without a known address should not erase the last one we saw.
        const set = address === null ? { lastSeen } : { lastSeen, address };
        await trx.updateTable("devices").set(set).where("deviceId", "=", deviceId).execute();
      }
    });
  }

  // registration requests

  async createRegistration(reg: RegistrationRecord): Promise<void> {
    await this.db.insertInto("registration_requests").values(row(reg, REGISTRATION)).execute();
  }

  async getRegistration(requestId: string): Promise<RegistrationRecord | undefined> {
    return this.db
      .selectFrom("registration_requests")
      .selectAll()
      .where("requestId", "=", requestId)
      .executeTakeFirst();
  }

  async findRegistrationByUserCode(userCode: string): Promise<RegistrationRecord | undefined> {
    // Codes are short and may come round again; the newest request is the one a user means.
    return this.db
      .selectFrom("registration_requests")
      .selectAll()
      .where("userCode", "=", userCode)
      .orderBy("createdAt", "desc")
      .orderBy("requestId", "desc")
      .limit(1)
      .executeTakeFirst();
  }

  async findPendingRegistrationByDevice(deviceId: string): Promise<RegistrationRecord | undefined> {
    return latestPendingRequest(this.db, deviceId);
  }

  async countPendingRegistrations(now: string): Promise<number> {
    return countPending(this.db, now);
  }

  async updateRegistration(
    requestId: string,
    changes: Partial<Omit<RegistrationRecord, "requestId">>,
  ): Promise<void> {
    const set = patch<RegistrationRecord>(changes, REGISTRATION, ["requestId"]);
    if (Object.keys(set).length === 0) return;
    await this.db.updateTable("registration_requests").set(set).where("requestId", "=", requestId).execute();
  }

  async expireRegistrations(now: string): Promise<number> {
    const result = await this.db
      .updateTable("registration_requests")
      .set({ status: "expired" })
      .where("status", "=", "pending")
      .where("expiresAt", "<=", now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async recordApproval(input: ApprovalInput): Promise<ApprovalResult> {
    return this.db.transaction().execute((trx) => approveIn(trx, input));
  }

  async recordRegistration(input: {
    device?: DeviceRecord;
    registration: RegistrationRecord;
    maxPending?: number;
    reusePending?: boolean;
    approval?: Omit<ApprovalInput, "deviceId" | "requestId">;
  }): Promise<RegistrationOutcome> {
    const { device, registration, maxPending, reusePending, approval } = input;
    if (device !== undefined && device.deviceId !== registration.deviceId)
      throw new Error(`registration ${registration.requestId} is for another device than ${device.deviceId}`);
    // The count and the inserts share one transaction. Transactions on this store are serialised
    // (one SQLite connection behind Kysely's mutex), so two registrations can never both see room
    // for the last place. (A PostgreSQL store needs SERIALIZABLE or a lock for the same guarantee.)
    return this.db.transaction().execute(async (trx): Promise<RegistrationOutcome> => {
      const now = registration.createdAt;
      if (reusePending) {
        const waiting = await trx
          .selectFrom("registration_requests")
          .selectAll()
          .where("deviceId", "=", registration.deviceId)
          .where("status", "=", "pending")
          .where("expiresAt", ">", now)
          .orderBy("createdAt", "desc")
          .orderBy("requestId", "desc")
          .limit(1)
          .executeTakeFirst();
        if (waiting !== undefined) return { outcome: "waiting", registration: waiting };
      }
      if (maxPending !== undefined) {
        const pending = await countPending(trx, now);
        if (pending >= maxPending) return { outcome: "queue_full", pending };
      }
      await trx
        .updateTable("registration_requests")
        .set({ status: "expired" })
        .where("status", "=", "pending")
        .where("expiresAt", "<=", now)
        .execute();
      if (device !== undefined) await upsertDeviceIn(trx, device);
      await trx.insertInto("registration_requests").values(row(registration, REGISTRATION)).execute();
      if (approval !== undefined) {
        const approved = await approveIn(trx, {
          ...approval,
          deviceId: registration.deviceId,
          requestId: registration.requestId,
        });
        return { outcome: "approved", ...approved };
      }
      const stored = await trx
        .selectFrom("devices")
        .selectAll()
        .where("deviceId", "=", registration.deviceId)
        .executeTakeFirstOrThrow();
      return { outcome: "pending", device: stored, registration };
    });
  }

  // certificates

  async listRevokedCertificates(now: string): Promise<{ serial: string; revokedAt: string }[]> {
    const rows = await this.db
      .selectFrom("certificates")
      .innerJoin("devices", "devices.deviceId", "certificates.deviceId")
      .select([
        "certificates.serial as serial",
        "devices.revokedAt as revokedAt",
        "devices.updatedAt as updatedAt",
      ])
      .where("devices.status", "=", "revoked")
      .where("certificates.notAfter", ">", now)
      .orderBy("certificates.serial")
      .execute();
    return rows.map((r) => ({ serial: r.serial, revokedAt: r.revokedAt ?? r.updatedAt }));
  }

  async insertCertificate(cert: CertificateRecord): Promise<void> {
    await this.db.insertInto("certificates").values(row(cert, CERTIFICATE)).execute();
  }

  async listCertificates(deviceId: string): Promise<CertificateRecord[]> {
    return this.db
      .selectFrom("certificates")
      .selectAll()
      .where("deviceId", "=", deviceId)
      .orderBy("issuedAt")
      .orderBy("serial")
      .execute();
  }

  // sessions

  async openSession(session: SessionRecord): Promise<void> {
    await this.db.insertInto("sessions").values(row(session, SESSION)).execute();
  }

  async closeSession(
    sessionId: string,
    at: string,
    closeCode: number | null,
    closeReason: string | null,
  ): Promise<void> {
    // The first close wins: a late duplicate must not rewrite when and why the session ended.
    await this.db
      .updateTable("sessions")
      .set({ disconnectedAt: at, closeCode, closeReason })
      .where("sessionId", "=", sessionId)
      .where("disconnectedAt", "is", null)
      .execute();
  }

  async recordSessionChanges(
    changes: SessionChange[],
    seen: { deviceId: string; lastSeen: string; address: string | null }[],
  ): Promise<void> {
    if (changes.length === 0 && seen.length === 0) return;
    // Bookkeeping, not evidence (the audit log records every session durably by itself): the
    // batch commits without an fsync on the event loop. With WAL and synchronous=NORMAL it
    // survives the process crashing; a power cut may lose the last batch, and a start closes
    // whatever sessions were left open. One connection throughout, so no other commit runs
    // under NORMAL.
    await this.db.connection().execute(async (conn) => {
      await sql`PRAGMA synchronous = NORMAL`.execute(conn);
      try {
        await conn.transaction().execute((trx) => writeSessionChanges(trx, changes, seen));
      } finally {
        await sql`PRAGMA synchronous = FULL`.execute(conn);
      }
    });
  }

  async closeAllOpenSessions(at: string, reason: string, instanceId?: string): Promise<number> {
    let query = this.db
      .updateTable("sessions")
      .set({ disconnectedAt: at, closeReason: reason })
      .where("disconnectedAt", "is", null);
    if (instanceId !== undefined) query = query.where("instanceId", "=", instanceId);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async listOpenSessions(): Promise<SessionRecord[]> {
    return this.db
      .selectFrom("sessions")
      .selectAll()
      .where("disconnectedAt", "is", null)
      .orderBy("connectedAt")
      .orderBy("sessionId")
      .execute();
  }

  // gateway instances

  async upsertInstance(instance: InstanceRecord): Promise<void> {
    const { instanceId, url, listen, startedAt, heartbeatAt } = instance;
    await this.db
      .insertInto("gateway_instances")
      .values({ instanceId, url, listen, startedAt, heartbeatAt, stoppedAt: null })
      .onConflict((oc) =>
        oc.column("instanceId").doUpdateSet({ url, listen, startedAt, heartbeatAt, stoppedAt: null }),
      )
      .execute();
  }

  async heartbeatInstance(instanceId: string, at: string): Promise<void> {
    await this.db
      .updateTable("gateway_instances")
      .set({ heartbeatAt: at })
      .where("instanceId", "=", instanceId)
      .execute();
  }

  async markInstanceStopped(instanceId: string, at: string): Promise<void> {
    await this.db
      .updateTable("gateway_instances")
      .set({ stoppedAt: at })
      .where("instanceId", "=", instanceId)
      .execute();
  }

  async listInstances(): Promise<InstanceRecord[]> {
    return this.db
      .selectFrom("gateway_instances")
      .selectAll()
      .orderBy("startedAt")
      .orderBy("instanceId")
      .execute();
  }

  // shared key material

  async getSharedMaterial(name: string): Promise<SharedMaterialRecord | undefined> {
    return this.db.selectFrom("shared_material").selectAll().where("name", "=", name).executeTakeFirst();
  }

  async putSharedMaterial(
    record: SharedMaterialRecord,
    options: { onlyIfAbsent?: boolean } = {},
  ): Promise<boolean> {
    const { name, value, sealed, updatedAt } = record;
    // RETURNING tells whether the row was written on both dialects (DO NOTHING returns no row).
    const written = await this.db
      .insertInto("shared_material")
      .values({ name, value, sealed, updatedAt })
      .onConflict((oc) =>
        options.onlyIfAbsent
          ? oc.column("name").doNothing()
          : oc.column("name").doUpdateSet({ value, sealed, updatedAt }),
      )
      .returning("name")
      .executeTakeFirst();
    return written !== undefined;
  }

  // rate limits shared by instances

  async countRateHit(key: string, windowStart: string): Promise<number> {
    // One statement: two instances counting the same window at once both count.
    const { count } = await this.db
      .insertInto("rate_windows")
      .values({ key, windowStart, count: 1 })
      .onConflict((oc) =>
        oc.columns(["key", "windowStart"]).doUpdateSet((eb) => ({ count: eb("rate_windows.count", "+", 1) })),
      )
      .returning("count")
      .executeTakeFirstOrThrow();
    return Number(count);
  }

  async pruneRateWindows(before: string): Promise<number> {
    const result = await this.db
      .deleteFrom("rate_windows")
      .where("windowStart", "<", before)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async notify(channel: string, payload: string): Promise<void> {
    // No other instance shares a SQLite file: there is no one to tell.
    void channel;
    void payload;
    return Promise.resolve();
  }

  // audit

  async createEnrollToken(token: EnrollTokenRecord): Promise<void> {
    await this.db.insertInto("enroll_tokens").values(token).execute();
  }

  async listEnrollTokens(): Promise<EnrollTokenRecord[]> {
    return this.db.selectFrom("enroll_tokens").selectAll().orderBy("createdAt").execute();
  }

  async findEnrollTokenByHash(hash: string): Promise<EnrollTokenRecord | undefined> {
    return this.db.selectFrom("enroll_tokens").selectAll().where("hash", "=", hash).executeTakeFirst();
  }

  async revokeEnrollToken(tokenId: string, at: string): Promise<EnrollTokenRecord | undefined> {
    await this.db
      .updateTable("enroll_tokens")
      .set({ revokedAt: at })
      .where("tokenId", "=", tokenId)
      .where("revokedAt", "is", null)
      .execute();
    return this.db.selectFrom("enroll_tokens").selectAll().where("tokenId", "=", tokenId).executeTakeFirst();
  }

  async listExecs(deviceId: string, limit = 50): Promise<ExecRecord[]> {
    return this.db
      .selectFrom("exec_history")
      .selectAll()
      .where("deviceId", "=", deviceId)
      .orderBy("requestedAt", "desc")
      .limit(limit)
      .execute();
  }

  async appendAudit(writes: AuditWrite[]): Promise<number[]> {
    // One transaction per batch: read the chain's head once, then hash and insert each entry in
    // order. Transactions on this store are serialised, so two batches can never chain to the same
    // head. (A PostgreSQL store needs a row lock on the head for the same guarantee across gateways.)
    if (writes.length === 0) return [];
    if (this.auditWriter) return this.auditWriter.append(writes);
    return this.db.transaction().execute(async (trx) => {
      const head = await trx
        .selectFrom("audit_events")
        .select(["seq", "hash"])
        .orderBy("seq", "desc")
        .limit(1)
        .executeTakeFirst();
      let seq = head?.seq ?? 0;
      let prevHash = head?.hash ?? GENESIS_HASH;
      const ids: number[] = [];
      for (const { event, exec } of writes) {
        if (exec) await trx.insertInto("exec_history").values(exec).execute();
        const detailsJson = JSON.stringify(event.details);
        seq += 1;
        const hash = auditEntryHash({ ...event, seq, prevHash, detailsJson });
        const { id } = await trx
          .insertInto("audit_events")
          .values({
            ts: event.ts,
            type: event.type,
            outcome: event.outcome,
            actor: event.actor,
            subject: event.subject,
            address: event.address,
            code: event.code,
            details: detailsJson,
            seq,
            prevHash,
            hash,
          })
          // RETURNING rather than insertId: PostgreSQL has no last-insert-id.
          .returning("id")
          .executeTakeFirstOrThrow();
        ids.push(id);
        prevHash = hash;
      }
      return ids;
    });
  }

  async listAudit(options: AuditQuery = {}): Promise<AuditEventRecord[]> {
    // Both orders walk the id (the rowid, or the subject index's rowid suffix) in its own order:
    // no sort, and a desc page stops after `limit` rows instead of reading the whole log.
    const filtered = (subject: string | undefined) => {
      let query = this.db.selectFrom("audit_events").selectAll();
      if (options.order === "desc") {
        if (options.beforeId !== undefined) query = query.where("id", "<", options.beforeId);
      } else query = query.where("id", ">", options.afterId ?? 0);
      if (subject !== undefined) query = query.where("subject", "=", subject);
      if (options.actor !== undefined) query = query.where("actor", "=", options.actor);
      const { type } = options;
      if (type !== undefined) {
        // A prefix is compared as a substring, not with LIKE, whose `_` and `%` are wildcards.
        // `device.` is everything under it; `device` is that type and everything under `device.`.
        const under = type.endsWith(".") ? type : `${type}.`;
        query = query.where((eb) => {
          const inside = eb(sql<string>`substr(type, 1, ${under.length})`, "=", under);
          return type === under ? inside : eb.or([eb("type", "=", type), inside]);
        });
      }
      return query;
    };
    let query;
    if (options.subject === undefined) query = filtered(undefined);
    else {
      // A device is the subject as `<id>` (device.approve) or `device:<id>` (session.open). Two
      // index walks merged by id (UNION ALL), not `IN`, whose rows SQLite would have to sort.
      const { subject } = options;
      const id = subject.startsWith("device:") ? subject.slice("device:".length) : subject;
      query = filtered(id).unionAll(filtered(`device:${id}`));
    }
    const rows = await query
      .orderBy("id", options.order === "desc" ? "desc" : "asc")
      .limit(options.limit ?? 100)
      .execute();
    return rows.map((r) => ({ ...r, detailsJson: r.details, details: parseDetails(r.details) }));
  }
}

/** Inserts, or updates a device that is not approved (see Store.upsertDevice). */
async function upsertDeviceIn(db: Kysely<Tables>, device: DeviceRecord): Promise<void> {
  await db
    .insertInto("devices")
    .values(row(device, DEVICE))
    .onConflict((oc) =>
      oc
        .column("deviceId")
        .doUpdateSet((eb) => ({
          name: eb.ref("excluded.name"),
          platform: eb.ref("excluded.platform"),
          address: eb.ref("excluded.address"),
          userCode: eb.ref("excluded.userCode"),
          status: eb.ref("excluded.status"),
          updatedAt: eb.ref("excluded.updatedAt"),
          publicKey: eb.ref("excluded.publicKey"),
          keyFingerprint: eb.ref("excluded.keyFingerprint"),
        }))
        // A registration racing an approval must not swap the key of the device just approved.
        .where("devices.status", "<>", "approved"),
    )
    .execute();
}

/** Unexpired pending registration requests at `now` (ISO-8601). */
/** The request a device waits on: its newest pending one (ties broken by request id). */
function latestPendingRequest(db: Kysely<Tables>, deviceId: string): Promise<RegistrationRecord | undefined> {
  return db
    .selectFrom("registration_requests")
    .selectAll()
    .where("deviceId", "=", deviceId)
    .where("status", "=", "pending")
    .orderBy("createdAt", "desc")
    .orderBy("requestId", "desc")
    .limit(1)
    .executeTakeFirst();
}

async function countPending(db: Kysely<Tables>, now: string): Promise<number> {
  const { count } = await db
    .selectFrom("registration_requests")
    .select((eb) => eb.fn.countAll().as("count"))
    .where("status", "=", "pending")
    .where("expiresAt", ">", now)
    .executeTakeFirstOrThrow();
  // PostgreSQL returns count(*) as a bigint string.
  return Number(count);
}

/**
 * The body of Store.recordSessionChanges, inside its transaction: the opens, then the ends (a
 * session may open and end in one batch), then the devices' last seen. Three statements whatever
 * the batch's size: each takes its rows as one JSON array (json_each), so nothing is built or
 * prepared per session.
 */
async function writeSessionChanges(
  trx: Transaction<Tables>,
  changes: SessionChange[],
  seen: { deviceId: string; lastSeen: string; address: string | null }[],
): Promise<void> {
  const opened: SessionRecord[] = [];
  const closed: Extract<SessionChange, { kind: "close" }>[] = [];
  for (const change of changes) {
    if (change.kind === "open") opened.push(change.session);
    else closed.push(change);
  }
  if (opened.length)
    await sql`INSERT INTO sessions (session_id, device_id, instance_id, address, connected_at, disconnected_at, close_code, close_reason)
      SELECT value->>'sessionId', value->>'deviceId', value->>'instanceId', value->>'address', value->>'connectedAt',
             value->>'disconnectedAt', value->>'closeCode', value->>'closeReason'
      FROM json_each(${JSON.stringify(opened)})`.execute(trx);
  // The first end wins: a late duplicate must not rewrite when and why the session ended.
  if (closed.length)
    await sql`UPDATE sessions SET disconnected_at = c.value->>'at', close_code = c.value->>'closeCode',
             close_reason = c.value->>'closeReason'
      FROM json_each(${JSON.stringify(closed)}) AS c
      WHERE sessions.session_id = c.value->>'sessionId' AND sessions.disconnected_at IS NULL`.execute(trx);
  // A session without a known address does not erase the last one seen.
  if (seen.length)
    await sql`UPDATE devices SET last_seen = d.value->>'lastSeen',
             address = coalesce(d.value->>'address', devices.address)
      FROM json_each(${JSON.stringify(seen)}) AS d
      WHERE devices.device_id = d.value->>'deviceId'`.execute(trx);
}

/** The body of Store.recordApproval, inside the caller's transaction (it throws to roll back). */
async function approveIn(trx: Kysely<Tables>, input: ApprovalInput): Promise<ApprovalResult> {
  const { deviceId, role, at } = input;
  if (input.certificate.deviceId !== deviceId) {
    throw new Error(`certificate ${input.certificate.serial} was issued for another device than ${deviceId}`);
  }
  const certificate = row(input.certificate, CERTIFICATE);
  // An approval by enroll token takes its use in the same commit: both happen, or neither.
  if (input.enrollTokenId !== undefined && !(await takeEnrollTokenUse(trx, input.enrollTokenId, at)))
    throw await enrollTokenUseRefused(trx, input.enrollTokenId, at);
  // Conditional on the state the caller decided from: an approval that raced a revocation or
  // denial must lose, never silently undo it.
  const expected = input.expectedStatus ?? "pending";
  const device = await trx
    .updateTable("devices")
    .set({
      status: "approved",
      role,
      approvedAt: at,
      updatedAt: at,
      statusReason: null,
      certFingerprint: certificate.fingerprint,
      certExpiresAt: certificate.notAfter,
    })
    .where("deviceId", "=", deviceId)
    .where("status", "=", expected)
    .returningAll()
    .executeTakeFirst();
  if (device === undefined) {
    const current = await trx
      .selectFrom("devices")
      .select("status")
      .where("deviceId", "=", deviceId)
      .executeTakeFirst();
    if (!current) throw new GatehouseError("not_found", `No device ${deviceId}.`);
    throw new GatehouseError(
      "invalid_request",
      `device ${deviceId} is ${current.status}, no longer ${expected}`,
    );
  }

  // Approving by device id approves the request the device is waiting on.
  let requestId = input.requestId;
  if (requestId === null) {
    const pending = await latestPendingRequest(trx, deviceId);
    if (pending === undefined) {
      throw new GatehouseError("not_found", `Device ${deviceId} has no pending registration.`);
    }
    requestId = pending.requestId;
  }
  const registration = await trx
    .updateTable("registration_requests")
    .set({ status: "approved", certificate: certificate.pem })
    .where("requestId", "=", requestId)
    .where("deviceId", "=", deviceId)
    .where("status", "=", "pending")
    // However the approval got here, a request past its expiry is never approved.
    .where("expiresAt", ">", at)
    .returningAll()
    .executeTakeFirst();
  if (registration === undefined) {
    const stale = await trx
      .selectFrom("registration_requests")
      .select(["status", "expiresAt"])
      .where("requestId", "=", requestId)
      .where("deviceId", "=", deviceId)
      .executeTakeFirst();
    if (stale && (stale.status === "expired" || (stale.status === "pending" && stale.expiresAt <= at)))
      throw new GatehouseError(
        "registration_expired",
        `the registration of ${deviceId} expired at ${stale.expiresAt}, before this approval at ${at}`,
      );
    throw new GatehouseError("not_found", `No registration ${requestId} for device ${deviceId}.`);
  }

  await trx.insertInto("certificates").values(certificate).execute();
  return { device, registration, certificate };
}

/** One statement: two nodes racing for the last use of an enroll token cannot both get it. */
async function takeEnrollTokenUse(db: Kysely<Tables>, tokenId: string, at: string): Promise<boolean> {
  const result = await db
    .updateTable("enroll_tokens")
    .set((eb) => ({ usesLeft: eb("usesLeft", "-", 1), lastUsedAt: at }))
    .where("tokenId", "=", tokenId)
    .where("usesLeft", ">", 0)
    .where("revokedAt", "is", null)
    .where("expiresAt", ">", at)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Why the use could not be taken (another registration took the last one, a revocation won). */
async function enrollTokenUseRefused(
  db: Kysely<Tables>,
  tokenId: string,
  at: string,
): Promise<GatehouseError> {
  const token = await db
    .selectFrom("enroll_tokens")
    .selectAll()
    .where("tokenId", "=", tokenId)
    .executeTakeFirst();
  if (!token) return enrollTokenRefusal("unknown");
  if (token.revokedAt) return enrollTokenRefusal("revoked", token);
  if (token.expiresAt <= at) return enrollTokenRefusal("expired", token);
  return enrollTokenRefusal("spent", token);
}

/** Opens (creating, owner-only) a SQLite database file; call migrate() before use. */
export async function openSqliteStore(file: string): Promise<Store> {
  if (file !== ":memory:") createPrivateFile(file);
  const sqlite = new Database(file);
  try {
    sqlite.pragma("busy_timeout = 5000");
    sqlite.pragma("journal_mode = WAL");
    // FULL: fsync the WAL on every commit, so an approval acknowledged to an admin survives kill -9
    // and power loss (NORMAL, the usual WAL pairing, may lose the last commits on power loss).
    sqlite.pragma("synchronous = FULL");
    sqlite.pragma("foreign_keys = ON");
  } catch (error) {
    sqlite.close();
    throw error;
  }
  const db = new Kysely<Tables>({
    dialect: new ImmediateSqliteDialect({ database: sqlite }),
    plugins: [new CamelCasePlugin()],
  });
  // A file's audit appends go through a writer thread with its own connection; an in-memory
  // database (tests) is private to this connection, so it keeps the in-thread path.
  return new KyselyStore(db, {
    scrubFreedPages: () => scrubSqliteFile(db),
    ...(file === ":memory:" ? {} : { auditWriter: new SqliteAuditWriter(file) }),
  });
}

/**
 * Transactions that take the write lock at BEGIN (BEGIN IMMEDIATE). The audit writer commits from
 * another connection at any moment; a deferred transaction that read before that commit could not
 * upgrade to a write afterwards (SQLITE_BUSY_SNAPSHOT, no retry), so a registration would fail.
 * Taking the lock first makes such a transaction wait for the writer's commit (busy_timeout) instead.
 * That wait blocks the event loop for about one of the writer's commits at most (measured: p99
 * ~11 ms with the writer committing back to back): while the loop waits it posts no new batch.
 * (Retrying asynchronously instead was tried: the loop then keeps feeding the writer, and such a
 * write waited up to ~200 ms at p99.)
 */
class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly settings: SqliteDialectConfig) {
    super(settings);
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.settings);
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

/**
 * Erases what deleted and overwritten rows leave behind: VACUUM rewrites the database into fresh
 * pages (free pages and the slack in used ones go), and a TRUNCATE checkpoint moves the result
 * from the WAL into the file and empties the WAL. Neither may run inside a transaction.
 */
async function scrubSqliteFile(db: Kysely<Tables>): Promise<void> {
  await sql`VACUUM`.execute(db);
  const { rows } = await sql<{ busy: number }>`PRAGMA wal_checkpoint(TRUNCATE)`.execute(db);
  if (rows[0]?.busy)
    throw new GatehouseError(
      "unavailable",
      "the database is busy: its write-ahead log could not be folded into the file",
      "Stop other processes that hold gatehouse.db open and start the gateway again.",
    );
}

/**
 * The database holds CSRs, certificates and the audit trail: owner-only. SQLite gives its -wal and
 * -shm files the mode of the database file, so creating this one 0600 covers them too.
 */
function createPrivateFile(file: string): void {
  try {
    fs.writeFileSync(file, "", { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}

/** Details that no longer parse (hand-edited) still list; `audit verify` says they were altered. */
function parseDetails(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { unparseable: text };
  }
}
