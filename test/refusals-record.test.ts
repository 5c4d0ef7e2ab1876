import { describe, expect, it } from "vitest";
import type { FastifyRequest } from "fastify";
import { GatehouseError, ERROR_CATALOGUE } from "../src/protocol/errors.js";
import { authenticateDashboardSession } from "../src/gateway/authenticate.js";
import { DashboardSessions } from "../src/gateway/dashboard/sessions.js";
import type { GatewayContext } from "../src/gateway/context.js";
import { FailureLog, MAX_REFUSAL_TEXT, boundedText } from "../src/gateway/failures.js";
import { recordRefusal } from "../src/gateway/refusal-record.js";
import { refusalView } from "../src/gateway/routes/refusals.js";
import type { DeviceRecord } from "../src/store/types.js";

/** A fixed clock: every time below is read from it. */
const NOW = new Date("2026-03-01T10:00:00.000Z");
const now = () => NOW;

const KEY_FINGERPRINT = "sha256:" + "ab".repeat(32);
const DEVICES = new Map<string, DeviceRecord>([
  [
    "dev_laptop",
    { deviceId: "dev_laptop", name: "kitchen-laptop", keyFingerprint: KEY_FINGERPRINT } as DeviceRecord,
  ],
]);

/** Just the context recordRefusal and the route read: the failure log, the devices, the clock. */
function context(): GatewayContext & { failures: FailureLog } {
  return {
    failures: new FailureLog(undefined, now),
    devices: { get: (id: string) => DEVICES.get(id) },
    audit: { recordRefusal: () => undefined },
    now,
  } as unknown as GatewayContext & { failures: FailureLog };
}

/** A request as the refusal recorder reads it (the credential already named, as routes that read their own do). */
function request(route: string, credentialTried: FastifyRequest["credentialTried"]): FastifyRequest {
  return {
    // The caller's address is read from the socket (src/gateway/caller-address.ts).
    raw: { socket: { remoteAddress: "192.0.2.7" } },
    url: route,
    routeOptions: { url: route },
    headers: {},
    credentialTried,
    log: { warn: () => undefined },
  } as unknown as FastifyRequest;
}

/** The error `fn` throws. */
function refusal(fn: () => unknown): GatehouseError {
  try {
    fn();
  } catch (error) {
    if (error instanceof GatehouseError) return error;
    throw error;
  }
  throw new Error("no refusal");
}

describe("a recorded refusal says what its reply said", () => {
  it("a login link used twice is listed with its own description and `gatehouse dashboard`, not `gatehouse token`", async () => {
    const ctx = context();
    const sessions = new DashboardSessions(now);
    const { token } = await sessions.createLink("admin", "admin");
    await sessions.redeemLink(token);
    const error = await sessions.redeemLink(token).then(
      () => {
        throw new Error("no refusal");
      },
      (refused: GatehouseError) => refused,
    );
    recordRefusal(ctx, request("/dashboard/login", { credential: "login_link" }), error);

    const [shown] = ctx.failures.recent().map((failure) => refusalView(ctx, failure));
    expect(shown).toMatchObject({
      code: "invalid_token",
      description: "This login link was already used.",
      hint: "Run `gatehouse dashboard` again for a new link.",
    });
    expect(shown!.hint).not.toBe(ERROR_CATALOGUE.invalid_token.hint);
  });

  it("missing_credentials on /api/v1/dashboard/session points to `gatehouse dashboard`, not `node register`", () => {
    const ctx = context();
    const req = request("/api/v1/dashboard/session", { credential: "none" });
    const error = refusal(() => authenticateDashboardSession(ctx, req));
    recordRefusal(ctx, req, error);

    const [shown] = ctx.failures.recent().map((failure) => refusalView(ctx, failure));
    expect(shown!.code).toBe("missing_credentials");
    expect(shown!.hint).toContain("gatehouse dashboard");
    expect(shown!.hint).not.toContain("node register");
    expect(shown!.description).toBe(error.message);
  });

  it("names the device a certificate belongs to, with its key fingerprint prefix; an unknown id gets neither", () => {
    const ctx = context();
    const certificate = "sha256:0123456789ab";
    for (const deviceId of ["dev_laptop", "dev_gone"])
      recordRefusal(
        ctx,
        request("/api/v1/connect", {
          credential: "client-certificate",
          fingerprint: certificate,
          deviceId,
        } as never),
        new GatehouseError("device_revoked", `device ${deviceId} has been revoked`),
      );
    const [gone, laptop] = ctx.failures.recent().map((failure) => refusalView(ctx, failure));
    expect(laptop).toMatchObject({
      deviceId: "dev_laptop",
      deviceName: "kitchen-laptop",
      deviceKeyFingerprint: "sha256:abababababab",
      fingerprint: certificate,
      description: "device dev_laptop has been revoked",
    });
    expect(gone!.deviceId).toBe("dev_gone");
    expect(gone).not.toHaveProperty("deviceName");
    expect(gone).not.toHaveProperty("deviceKeyFingerprint");
  });

  it("keeps at most MAX_REFUSAL_TEXT characters of a description and a hint", () => {
    const ctx = context();
    recordRefusal(
      ctx,
      request("/api/v1/devices", { credential: "none" }),
      new GatehouseError("missing_credentials", "d".repeat(5000), "h".repeat(5000)),
    );
    const [kept] = ctx.failures.recent();
    expect(kept!.description).toHaveLength(MAX_REFUSAL_TEXT);
    expect(kept!.hint).toHaveLength(MAX_REFUSAL_TEXT);
    expect(kept!.description!.endsWith("…")).toBe(true);
    // A cut never leaves half of a surrogate pair behind.
    const emoji = boundedText("a".repeat(MAX_REFUSAL_TEXT - 2) + "😀😀", MAX_REFUSAL_TEXT);
    expect(emoji.length).toBeLessThanOrEqual(MAX_REFUSAL_TEXT);
    expect(() => encodeURIComponent(emoji)).not.toThrow();
  });

  it("the log says since when it has kept refusals (a restart empties it)", () => {
    expect(context().failures.since).toBe(NOW.toISOString());
  });

  it("an entry recorded without text falls back to the catalogue's", () => {
    const ctx = context();
    ctx.failures.record({
      at: NOW.toISOString(),
      code: "cert_untrusted",
      address: "x",
      route: "/",
      credential: "none",
    });
    const [shown] = ctx.failures.recent().map((failure) => refusalView(ctx, failure));
    expect(shown).toMatchObject({
      description: ERROR_CATALOGUE.cert_untrusted.description,
      hint: ERROR_CATALOGUE.cert_untrusted.hint,
    });
  });
});
