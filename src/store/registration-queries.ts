/**
 * Registration and approval queries that run inside a caller's transaction (recordApproval,
 * recordRegistration): portable SQL, conditional on the state the caller decided from, so that a
 * race loses instead of undoing another writer's decision.
 */
import type { Kysely } from "kysely";
import { GatehouseError } from "../protocol/errors.js";
import { enrollTokenRefusal } from "../protocol/enroll-token-refusal.js";
import { CERTIFICATE, DEVICE, row } from "./columns.js";
import type { Database as Tables } from "./migrations.js";
import type { ApprovalInput, ApprovalResult, DeviceRecord, RegistrationRecord } from "./types.js";

/** Inserts, or updates a device that is not approved (see Store.upsertDevice). */
export async function upsertDeviceIn(db: Kysely<Tables>, device: DeviceRecord): Promise<void> {
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

/** The request a device waits on: its newest pending one (ties broken by request id). */
export function latestPendingRequest(
  db: Kysely<Tables>,
  deviceId: string,
): Promise<RegistrationRecord | undefined> {
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

/** Unexpired pending registration requests at `now` (ISO-8601). */
export async function countPending(db: Kysely<Tables>, now: string): Promise<number> {
  const { count } = await db
    .selectFrom("registration_requests")
    .select((eb) => eb.fn.countAll().as("count"))
    .where("status", "=", "pending")
    .where("expiresAt", ">", now)
    .executeTakeFirstOrThrow();
  // PostgreSQL returns count(*) as a bigint string.
  return Number(count);
}

/** The body of Store.recordApproval, inside the caller's transaction (it throws to roll back). */
export async function approveIn(trx: Kysely<Tables>, input: ApprovalInput): Promise<ApprovalResult> {
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
