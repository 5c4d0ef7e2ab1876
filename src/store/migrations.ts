/**
 * The schema, as Kysely migrations kept in code so the built CLI carries them (no files on disk to
 * ship or lose). The same migrations serve SQLite and PostgreSQL: text and integer columns only,
 * timestamps as ISO-8601 text (which sorts correctly as text), booleans as integers; a migration
 * asks which dialect it runs on only where the two cannot share one statement (the audit id).
 */
import { GENESIS_HASH, auditEntryHash } from "../audit/chain.js";
import { GatehouseError } from "../protocol/errors.js";
import { Migrator, type Generated, type Kysely, type Migration, type MigrationProvider } from "kysely";
import type {
  AuditEventInput,
  CertificateRecord,
  DashboardLinkRecord,
  DashboardSessionRecord,
  DeviceRecord,
  EnrollTokenRecord,
  ExecRecord,
  InstanceRecord,
  RegistrationRecord,
  SessionRecord,
  SharedMaterialRecord,
} from "./types.js";
import type { ApiKeyRecord, RefreshTokenRecord, SigningKeyRecord, TokenFamilyRecord } from "./token-types.js";

/**
 * Table shapes as the store sees them through CamelCasePlugin: camelCase here, snake_case in SQL.
 * Table names are already snake_case, which the plugin leaves untouched.
 */
export interface Database {
  devices: DeviceRecord;
  registration_requests: RegistrationRecord;
  certificates: CertificateRecord;
  sessions: SessionRecord;
  audit_events: Omit<AuditEventInput, "details"> & {
    id: Generated<number>;
    details: string;
    seq: number;
    prevHash: string;
    hash: string;
  };
  api_keys: ApiKeyRecord;
  exec_history: ExecRecord;
  enroll_tokens: EnrollTokenRecord;
  signing_keys: SigningKeyRecord;
  token_families: TokenFamilyRecord;
  refresh_tokens: RefreshTokenRecord;
  gateway_instances: InstanceRecord;
  shared_material: SharedMaterialRecord;
  rate_windows: { key: string; windowStart: string; count: number };
  spent_challenges: { nonce: string; expiresAt: string };
  dashboard_links: DashboardLinkRecord;
  dashboard_sessions: DashboardSessionRecord;
}

/** The database a migration runs on. */
export type MigrationDialect = "sqlite" | "postgres";

// Migrations take Kysely<any>: they must keep working after Database changes shape.
/* eslint-disable @typescript-eslint/no-explicit-any */
const initial = (dialect: MigrationDialect): Migration => ({
  async up(db: Kysely<any>) {
    await db.schema
      .createTable("devices")
      .addColumn("device_id", "text", (c) => c.primaryKey())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("platform", "text")
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("public_key", "text", (c) => c.notNull())
      .addColumn("key_fingerprint", "text", (c) => c.notNull())
      .addColumn("user_code", "text")
      .addColumn("address", "text")
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("updated_at", "text", (c) => c.notNull())
      .addColumn("approved_at", "text")
      .addColumn("revoked_at", "text")
      .addColumn("status_reason", "text")
      .addColumn("last_seen", "text")
      .addColumn("cert_fingerprint", "text")
      .addColumn("cert_expires_at", "text")
      .execute();

    await db.schema
      .createTable("registration_requests")
      .addColumn("request_id", "text", (c) => c.primaryKey())
      .addColumn("device_id", "text", (c) => c.notNull().references("devices.device_id"))
      .addColumn("user_code", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("csr", "text", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("platform", "text")
      .addColumn("address", "text")
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("expires_at", "text", (c) => c.notNull())
      .addColumn("certificate", "text")
      .addColumn("reason", "text")
      .execute();
    await db.schema
      .createIndex("registration_requests_user_code_idx")
      .on("registration_requests")
      .column("user_code")
      .execute();
    await db.schema
      .createIndex("registration_requests_device_status_idx")
      .on("registration_requests")
      .columns(["device_id", "status"])
      .execute();

    await db.schema
      .createTable("certificates")
      .addColumn("serial", "text", (c) => c.primaryKey())
      .addColumn("device_id", "text", (c) => c.notNull().references("devices.device_id"))
      .addColumn("fingerprint", "text", (c) => c.notNull())
      .addColumn("not_before", "text", (c) => c.notNull())
      .addColumn("not_after", "text", (c) => c.notNull())
      .addColumn("issued_at", "text", (c) => c.notNull())
      .addColumn("pem", "text", (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex("certificates_device_id_idx")
      .on("certificates")
      .column("device_id")
      .execute();

    await db.schema
      .createTable("sessions")
      .addColumn("session_id", "text", (c) => c.primaryKey())
      .addColumn("device_id", "text", (c) => c.notNull().references("devices.device_id"))
      .addColumn("address", "text")
      .addColumn("connected_at", "text", (c) => c.notNull())
      .addColumn("disconnected_at", "text")
      .addColumn("close_code", "integer")
      .addColumn("close_reason", "text")
      .execute();
    await db.schema.createIndex("sessions_device_id_idx").on("sessions").column("device_id").execute();

    // Ids are never reused after deletes: readers page with afterId. SQLite needs AUTOINCREMENT
    // for that; PostgreSQL's identity column (a sequence) never goes back.
    await db.schema
      .createTable("audit_events")
      .addColumn("id", "integer", (c) =>
        dialect === "postgres"
          ? c.primaryKey().generatedByDefaultAsIdentity()
          : c.primaryKey().autoIncrement(),
      )
      .addColumn("ts", "text", (c) => c.notNull())
      .addColumn("type", "text", (c) => c.notNull())
      .addColumn("outcome", "text", (c) => c.notNull())
      .addColumn("actor", "text")
      .addColumn("subject", "text")
      .addColumn("address", "text")
      .addColumn("code", "text")
      .addColumn("details", "text", (c) => c.notNull().defaultTo("{}"))
      .execute();
    await db.schema.createIndex("audit_events_subject_idx").on("audit_events").column("subject").execute();
  },

  async down(db: Kysely<any>) {
    for (const table of ["audit_events", "sessions", "certificates", "registration_requests", "devices"]) {
      await db.schema.dropTable(table).execute();
    }
  },
});

const tokens: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable("api_keys")
      .addColumn("key_id", "text", (c) => c.primaryKey())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("prefix", "text", (c) => c.notNull().unique())
      .addColumn("hash", "text", (c) => c.notNull())
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("expires_at", "text")
      .addColumn("revoked_at", "text")
      .addColumn("revoke_reason", "text")
      .addColumn("replaced_by", "text")
      .addColumn("grace_until", "text")
      .addColumn("last_used_at", "text")
      .execute();

    await db.schema
      .createTable("signing_keys")
      .addColumn("kid", "text", (c) => c.primaryKey())
      .addColumn("alg", "text", (c) => c.notNull())
      .addColumn("private_key_pem", "text", (c) => c.notNull())
      .addColumn("public_jwk", "text", (c) => c.notNull())
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("verify_until", "text")
      .execute();

    await db.schema
      .createTable("token_families")
      .addColumn("family_id", "text", (c) => c.primaryKey())
      .addColumn("subject", "text", (c) => c.notNull())
      .addColumn("api_key_id", "text", (c) => c.references("api_keys.key_id"))
      .addColumn("device_id", "text")
      .addColumn("scope", "text", (c) => c.notNull())
      .addColumn("cert_thumbprint", "text")
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("revoked_at", "text")
      .addColumn("revoke_reason", "text")
      .execute();
    await db.schema
      .createIndex("token_families_api_key_idx")
      .on("token_families")
      .column("api_key_id")
      .execute();

    await db.schema
      .createTable("refresh_tokens")
      .addColumn("token_hash", "text", (c) => c.primaryKey())
      .addColumn("family_id", "text", (c) => c.notNull().references("token_families.family_id"))
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("expires_at", "text", (c) => c.notNull())
      .addColumn("used_at", "text")
      .execute();
    await db.schema
      .createIndex("refresh_tokens_family_idx")
      .on("refresh_tokens")
      .column("family_id")
      .execute();
  },

  async down(db: Kysely<any>) {
    for (const table of ["refresh_tokens", "token_families", "signing_keys", "api_keys"]) {
      await db.schema.dropTable(table).execute();
    }
  },
};

const auditChain: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable("audit_events").addColumn("seq", "integer").execute();
    await db.schema.alterTable("audit_events").addColumn("prev_hash", "text").execute();
    await db.schema.alterTable("audit_events").addColumn("hash", "text").execute();
    // Entries written before the chain existed are chained now, in their order.
    const rows = await db.selectFrom("audit_events").selectAll().orderBy("id").execute();
    let prevHash = GENESIS_HASH;
    let seq = 0;
    for (const row of rows) {
      seq += 1;
      const hash = auditEntryHash({
        seq,
        prevHash,
        ts: row.ts,
        type: row.type,
        outcome: row.outcome,
        actor: row.actor,
        subject: row.subject,
        address: row.address,
        code: row.code,
        detailsJson: row.details,
      });
      await db
        .updateTable("audit_events")
        .set({ seq, prev_hash: prevHash, hash })
        .where("id", "=", row.id)
        .execute();
      prevHash = hash;
    }
    await db.schema.createIndex("audit_events_seq_idx").on("audit_events").column("seq").unique().execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropIndex("audit_events_seq_idx").execute();
    for (const column of ["hash", "prev_hash", "seq"])
      await db.schema.alterTable("audit_events").dropColumn(column).execute();
  },
};

const execHistory: Migration = {
  async up(db: Kysely<any>) {
    // No foreign key to devices: sessions opened with an API key's token run commands too.
    await db.schema
      .createTable("exec_history")
      .addColumn("exec_id", "text", (c) => c.primaryKey())
      .addColumn("device_id", "text", (c) => c.notNull())
      .addColumn("requested_by", "text", (c) => c.notNull())
      .addColumn("command", "text", (c) => c.notNull())
      .addColumn("args", "text", (c) => c.notNull())
      .addColumn("requested_at", "text", (c) => c.notNull())
      .addColumn("finished_at", "text")
      .addColumn("outcome", "text", (c) => c.notNull())
      .addColumn("exit_code", "integer")
      .addColumn("duration_ms", "integer")
      .addColumn("stdout_bytes", "integer", (c) => c.notNull())
      .addColumn("stderr_bytes", "integer", (c) => c.notNull())
      .addColumn("code", "text")
      .execute();
    await db.schema
      .createIndex("exec_history_device_idx")
      .on("exec_history")
      .columns(["device_id", "requested_at"])
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable("exec_history").execute();
  },
};

const enrollTokens: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable("enroll_tokens")
      .addColumn("token_id", "text", (c) => c.primaryKey())
      .addColumn("hash", "text", (c) => c.notNull().unique())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("name_prefix", "text")
      .addColumn("uses_total", "integer", (c) => c.notNull())
      .addColumn("uses_left", "integer", (c) => c.notNull())
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("expires_at", "text", (c) => c.notNull())
      .addColumn("revoked_at", "text")
      .addColumn("source", "text", (c) => c.notNull())
      .addColumn("last_used_at", "text")
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable("enroll_tokens").execute();
  },
};

const sealedSigningKeys: Migration = {
  async up(db: Kysely<any>) {
    // The column holds the key sealed under a key-encryption key that lives outside the database.
    // Rows written before this migration hold a PEM until the gateway's start seals them in place
    // (SigningKeys.load): the key-encryption key is not the store's to know.
    await db.schema
      .alterTable("signing_keys")
      .renameColumn("private_key_pem", "sealed_private_key")
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema
      .alterTable("signing_keys")
      .renameColumn("sealed_private_key", "private_key_pem")
      .execute();
  },
};

const severalInstances: Migration = {
  async up(db: Kysely<any>) {
    // Several gateway instances on one database: who is alive and where (exec relay), the key
    // material no single home holds, and rate-limit windows every instance counts in.
    await db.schema
      .createTable("gateway_instances")
      .addColumn("instance_id", "text", (c) => c.primaryKey())
      .addColumn("url", "text", (c) => c.notNull())
      .addColumn("listen", "text", (c) => c.notNull())
      .addColumn("started_at", "text", (c) => c.notNull())
      .addColumn("heartbeat_at", "text", (c) => c.notNull())
      .addColumn("stopped_at", "text")
      .execute();
    await db.schema
      .createTable("shared_material")
      .addColumn("name", "text", (c) => c.primaryKey())
      .addColumn("value", "text", (c) => c.notNull())
      .addColumn("sealed", "integer", (c) => c.notNull())
      .addColumn("updated_at", "text", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("rate_windows")
      .addColumn("key", "text", (c) => c.notNull())
      .addColumn("window_start", "text", (c) => c.notNull())
      .addColumn("count", "integer", (c) => c.notNull())
      .addPrimaryKeyConstraint("rate_windows_pk", ["key", "window_start"])
      .execute();
    await db.schema.alterTable("sessions").addColumn("instance_id", "text").execute();
    // Open sessions per instance: a start closes its own, a live instance closes a dead one's.
    await db.schema
      .createIndex("sessions_instance_open_idx")
      .on("sessions")
      .columns(["instance_id", "disconnected_at"])
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropIndex("sessions_instance_open_idx").execute();
    await db.schema.alterTable("sessions").dropColumn("instance_id").execute();
    for (const table of ["rate_windows", "shared_material", "gateway_instances"])
      await db.schema.dropTable(table).execute();
  },
};

const sharedEphemera: Migration = {
  async up(db: Kysely<any>) {
    // What one instance alone kept in memory and several must share (a browser or a node behind a
    // load balancer reaches any of them): spent re-issue challenges, dashboard login links and
    // dashboard sessions. Secrets only as sha256 hashes; every row has an end after which it goes.
    await db.schema
      .createTable("spent_challenges")
      .addColumn("nonce", "text", (c) => c.primaryKey())
      .addColumn("expires_at", "text", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("dashboard_links")
      .addColumn("link_hash", "text", (c) => c.primaryKey())
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("created_by", "text", (c) => c.notNull())
      .addColumn("expires_at", "text", (c) => c.notNull())
      .addColumn("used", "integer", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("dashboard_sessions")
      .addColumn("fingerprint", "text", (c) => c.primaryKey())
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("created_by", "text", (c) => c.notNull())
      .addColumn("csrf_token", "text", (c) => c.notNull())
      .addColumn("created_at", "text", (c) => c.notNull())
      .addColumn("last_used_at", "text", (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<any>) {
    for (const table of ["dashboard_sessions", "dashboard_links", "spent_challenges"])
      await db.schema.dropTable(table).execute();
  },
};

const migrations = (dialect: MigrationDialect): Record<string, Migration> => ({
  "0001_initial": initial(dialect),
  "0002_tokens": tokens,
  "0003_audit_chain": auditChain,
  "0004_exec_history": execHistory,
  "0005_enroll_tokens": enrollTokens,
  "0006_sealed_signing_keys": sealedSigningKeys,
  "0007_several_instances": severalInstances,
  "0008_shared_ephemera": sharedEphemera,
});

/**
 * Brings the schema to the latest version; a no-op when it already is. On PostgreSQL, Kysely's
 * Migrator holds an advisory lock meanwhile, so instances starting together migrate once.
 * @throws Error naming the migration that failed, with the database's reason.
 */
export async function migrateToLatest(db: Kysely<any>, dialect: MigrationDialect = "sqlite"): Promise<void> {
  const provider: MigrationProvider = { getMigrations: () => Promise.resolve(migrations(dialect)) };
  // Without plugins, so the migrations' snake_case names reach SQL exactly as written.
  const migrator = new Migrator({ db: db.withoutPlugins(), provider });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    // A database out of reach is already named, with a hint (postgres-errors.ts).
    if (error instanceof GatehouseError) throw error;
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    throw new Error(`store migration ${failed ?? "(setup)"} failed: ${describe(error)}`, { cause: error });
  }
}
/* eslint-enable @typescript-eslint/no-explicit-any */

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
