/**
 * The Store over Kysely, one class for both databases. It speaks only portable SQL (ON CONFLICT,
 * RETURNING, plain UPDATE/SELECT); the little that differs between SQLite and PostgreSQL (locks
 * across instances, JSON batch statements, NOTIFY, erasing freed pages, the audit writer thread)
 * sits behind the StoreDialect hooks its opener gives it (sqlite-store.ts, postgres-store.ts).
 */
import { sql } from "kysely";
import type { Kysely } from "kysely";
import { GENESIS_HASH, auditEntryHash } from "../audit/chain.js";
import { DEVICE, REGISTRATION, CERTIFICATE, SESSION, patch, row } from "./columns.js";
import { migrateToLatest, type Database as Tables } from "./migrations.js";
import { approveIn, countPending, latestPendingRequest, upsertDeviceIn } from "./registration-queries.js";
import { sessionBatch, type StoreDialect } from "./store-dialect.js";
import { KyselyTokenStore } from "./token-store.js";
import type { TokenStore } from "./token-types.js";
import type {
  AuditQuery,
  ApprovalInput,
  ApprovalResult,
  AuditWrite,
  AuditEventRecord,
  CertificateRecord,
  DashboardLinkRecord,
  DashboardSessionRecord,
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

export class KyselyStore implements Store {
  readonly tokens: TokenStore;
  readonly dialect: "sqlite" | "postgres";

  /**
   * @param db a Kysely with CamelCasePlugin over either database.
   * @param hooks what the database does its own way (see StoreDialect).
   */
  constructor(
    private readonly db: Kysely<Tables>,
    private readonly hooks: StoreDialect,
  ) {
    this.dialect = hooks.name;
    this.tokens = new KyselyTokenStore(db, () => hooks.scrubFreedPages());
  }

  async migrate(): Promise<void> {
    try {
      await migrateToLatest(this.db, this.dialect);
    } catch (error) {
      throw this.hooks.migrationFailure?.(error) ?? error;
    }
  }

  async close(): Promise<void> {
    await this.hooks.auditWriter?.close();
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
    // In id order: two instances touching the same devices wait for each other, never deadlock.
    const ordered = [...seen].sort((a, b) =>
      a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0,
    );
    await this.db.transaction().execute(async (trx) => {
      for (const { deviceId, lastSeen, address } of ordered) {
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
    // The count and the inserts share one transaction, serialised against every other registration
    // that counts (on SQLite by the one writer, on PostgreSQL by a lock every instance takes), so
    // two registrations can never both see room for the last place.
    return this.db.transaction().execute(async (trx): Promise<RegistrationOutcome> => {
      if (maxPending !== undefined || reusePending) await this.hooks.serialise(trx, "registrations");
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
    await this.hooks.recordSessionChanges(sessionBatch(changes, seen));
  }

  async closeAllOpenSessions(
    at: string,
    reason: string,
    instanceId?: string,
    connectedBefore?: string,
  ): Promise<number> {
    let query = this.db
      .updateTable("sessions")
      .set({ disconnectedAt: at, closeReason: reason })
      .where("disconnectedAt", "is", null);
    if (instanceId !== undefined) query = query.where("instanceId", "=", instanceId);
    // Times are all toISOString's fixed format, so the text comparison is the time order.
    if (connectedBefore !== undefined) query = query.where("connectedAt", "<=", connectedBefore);
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

  // what several instances share instead of keeping it in memory

  async spendChallenge(nonce: string, expiresAt: string): Promise<boolean> {
    // RETURNING tells whether this statement wrote the row (DO NOTHING returns none).
    const written = await this.db
      .insertInto("spent_challenges")
      .values({ nonce, expiresAt })
      .onConflict((oc) => oc.column("nonce").doNothing())
      .returning("nonce")
      .executeTakeFirst();
    return written !== undefined;
  }

  async pruneSpentChallenges(before: string): Promise<number> {
    const result = await this.db
      .deleteFrom("spent_challenges")
      .where("expiresAt", "<", before)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async putDashboardLink(link: DashboardLinkRecord): Promise<void> {
    await this.db.insertInto("dashboard_links").values(link).execute();
  }

  async getDashboardLink(linkHash: string): Promise<DashboardLinkRecord | undefined> {
    return this.db
      .selectFrom("dashboard_links")
      .selectAll()
      .where("linkHash", "=", linkHash)
      .executeTakeFirst();
  }

  async useDashboardLink(linkHash: string, now: string): Promise<DashboardLinkRecord | undefined> {
    return this.db
      .updateTable("dashboard_links")
      .set({ used: 1 })
      .where("linkHash", "=", linkHash)
      .where("used", "=", 0)
      .where("expiresAt", ">", now)
      .returningAll()
      .executeTakeFirst();
  }

  async pruneDashboardLinks(before: string): Promise<number> {
    const result = await this.db
      .deleteFrom("dashboard_links")
      .where("expiresAt", "<", before)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async putDashboardSession(session: DashboardSessionRecord, keep: number): Promise<void> {
    await this.db.insertInto("dashboard_sessions").values(session).execute();
    // LIMIT before OFFSET: SQLite takes no OFFSET alone.
    await this.db
      .deleteFrom("dashboard_sessions")
      .where(
        "fingerprint",
        "in",
        this.db
          .selectFrom("dashboard_sessions")
          .select("fingerprint")
          .orderBy("createdAt", "desc")
          .orderBy("fingerprint")
          .limit(1_000_000_000)
          .offset(keep),
      )
      .execute();
  }

  async getDashboardSession(fingerprint: string): Promise<DashboardSessionRecord | undefined> {
    return this.db
      .selectFrom("dashboard_sessions")
      .selectAll()
      .where("fingerprint", "=", fingerprint)
      .executeTakeFirst();
  }

  async touchDashboardSession(fingerprint: string, lastUsedAt: string): Promise<void> {
    await this.db
      .updateTable("dashboard_sessions")
      .set({ lastUsedAt })
      .where("fingerprint", "=", fingerprint)
      .where("lastUsedAt", "<", lastUsedAt)
      .execute();
  }

  async deleteDashboardSession(fingerprint: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom("dashboard_sessions")
      .where("fingerprint", "=", fingerprint)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async deleteDashboardSessions(match: {
    idleBefore?: string;
    createdBefore?: string;
    createdBy?: string;
  }): Promise<number> {
    const { idleBefore, createdBefore, createdBy } = match;
    if (idleBefore === undefined && createdBefore === undefined && createdBy === undefined) return 0;
    const result = await this.db
      .deleteFrom("dashboard_sessions")
      .where((eb) =>
        eb.or([
          ...(idleBefore === undefined ? [] : [eb("lastUsedAt", "<", idleBefore)]),
          ...(createdBefore === undefined ? [] : [eb("createdAt", "<", createdBefore)]),
          ...(createdBy === undefined ? [] : [eb("createdBy", "=", createdBy)]),
        ]),
      )
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.hooks.notify(channel, payload);
  }

  // audit

  async createEnrollToken(token: EnrollTokenRecord): Promise<void> {
    await this.db.insertInto("enroll_tokens").values(token).execute();
  }

  async listEnrollTokens(): Promise<EnrollTokenRecord[]> {
    return this.db.selectFrom("enroll_tokens").selectAll().orderBy("createdAt").orderBy("tokenId").execute();
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
      .orderBy("execId", "desc")
      .limit(limit)
      .execute();
  }

  async appendAudit(writes: AuditWrite[]): Promise<number[]> {
    // One transaction per batch: read the chain's head once, then hash and insert each entry in
    // order. The head is serialised (one writer on SQLite, a lock every instance takes on
    // PostgreSQL), so two batches, from one instance or two, can never chain to the same head.
    if (writes.length === 0) return [];
    if (this.hooks.auditWriter) return this.hooks.auditWriter.append(writes);
    return this.db.transaction().execute(async (trx) => {
      await this.hooks.serialise(trx, "audit_head");
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

/** Details that no longer parse (hand-edited) still list; `audit verify` says they were altered. */
function parseDetails(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { unparseable: text };
  }
}
