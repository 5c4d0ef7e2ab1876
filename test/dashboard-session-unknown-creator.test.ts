/**
 * Several instances share dashboard sessions in the database, but each caches the devices and API
 * keys it knows: a session whose creator this instance has not read yet (an admin made on another
 * instance a moment ago) is refused for the request, and the shared session is left as it is; it
 * answers again once the creator is known, and only a creator known revoked ends it.
 */
import { describe, expect, it } from "vitest";
import { DashboardSessions, creatorCheck, secretHash } from "../src/gateway/dashboard/sessions.js";
import { refusal } from "./fixtures/refusal.js";

const now = () => new Date("2026-03-01T12:00:00.000Z");

/** Sessions over memory storage whose creator check reads `devices` and `keys` (what a cache holds). */
function sessionsWith(
  devices: Map<string, { status: string }>,
  keys: Map<string, { revokedAt: string | null }>,
) {
  return new DashboardSessions(now, {
    creatorValid: creatorCheck(
      (id) => devices.get(id),
      (id) => keys.get(id),
    ),
  });
}

describe("a dashboard session whose creator this instance does not know yet", () => {
  it("is refused invalid_token but not deleted, answers once the device is known, ends once it is revoked", async () => {
    const devices = new Map<string, { status: string }>();
    const sessions = sessionsWith(devices, new Map());
    const link = await sessions.createLink("admin", "device:dev_admin2");
    const { cookieValue } = await sessions.redeemLink(link.token);

    const refused = await refusal(sessions.authenticate(cookieValue, { method: "GET" }));
    expect(refused.code).toBe("invalid_token");
    // Refused twice, and still there: the refusal changed nothing stored.
    await refusal(sessions.authenticate(cookieValue, { method: "GET" }));

    devices.set("dev_admin2", { status: "approved" });
    await expect(sessions.authenticate(cookieValue, { method: "GET" })).resolves.toMatchObject({
      createdBy: "device:dev_admin2",
    });

    devices.set("dev_admin2", { status: "revoked" });
    expect((await refusal(sessions.authenticate(cookieValue, { method: "GET" }))).code).toBe("invalid_token");
    // Revoked ends it for good: known approved again (it cannot be, but say it were), still gone.
    devices.set("dev_admin2", { status: "approved" });
    expect(await sessions.find(secretHash(cookieValue))).toBeUndefined();
  });

  it("the same for an API key: unknown is refused and kept, known is answered, revoked ends it", async () => {
    const keys = new Map<string, { revokedAt: string | null }>();
    const sessions = sessionsWith(new Map(), keys);
    const link = await sessions.createLink("operator", "key:key_new");
    const { cookieValue } = await sessions.redeemLink(link.token);

    expect((await refusal(sessions.authenticate(cookieValue, { method: "GET" }))).code).toBe("invalid_token");
    keys.set("key_new", { revokedAt: null });
    await expect(sessions.authenticate(cookieValue, { method: "GET" })).resolves.toMatchObject({
      createdBy: "key:key_new",
    });
    keys.set("key_new", { revokedAt: "2026-03-01T12:00:00.000Z" });
    expect((await refusal(sessions.authenticate(cookieValue, { method: "GET" }))).code).toBe("invalid_token");
    keys.set("key_new", { revokedAt: null });
    expect(await sessions.find(secretHash(cookieValue))).toBeUndefined();
  });
});
