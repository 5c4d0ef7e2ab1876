import { describe, expect, it } from "vitest";
import {
  DashboardSessions,
  LOGIN_LINK_TTL_MS,
  MAX_SESSIONS,
  SESSION_IDLE_MS,
  SESSION_LIFETIME_MS,
  csrfTokenMatches,
  secretHash,
} from "../src/gateway/dashboard/sessions.js";
import { MemoryDashboardStorage } from "../src/gateway/dashboard/memory-storage.js";
import { refusal } from "./fixtures/refusal.js";

/** A clock that moves only when told. */
function fixedClock(start = "2026-01-01T00:00:00Z") {
  let at = new Date(start).getTime();
  return {
    now: () => new Date(at),
    advance(ms: number) {
      at += ms;
    },
  };
}

const GET = { method: "GET" };

/** Sessions in memory, with the storage to count what it keeps. */
function memorySessions(now: () => Date) {
  const storage = new MemoryDashboardStorage();
  return { sessions: new DashboardSessions(now, { storage }), storage };
}

async function loggedIn(clock = fixedClock(), role = "admin") {
  const { sessions, storage } = memorySessions(clock.now);
  const link = await sessions.createLink(role, "device:admin");
  const { cookieValue, session } = await sessions.redeemLink(link.token);
  return { clock, sessions, storage, cookieValue, session };
}

describe("dashboard login links", () => {
  it("a link opens one session of its role, with a subject from the cookie's hash", async () => {
    const { session, cookieValue } = await loggedIn(fixedClock(), "viewer");
    expect(session.role).toBe("viewer");
    expect(session.scopes).toEqual(["node:status", "devices:read"]);
    expect(session.createdBy).toBe("device:admin");
    expect(session.subject).toBe(`dashboard:${secretHash(cookieValue).slice(0, 12)}`);
    expect(Buffer.from(cookieValue, "base64url")).toHaveLength(32);
    expect(Buffer.from(session.csrfToken, "base64url")).toHaveLength(32);
  });

  it("a link is single use: the second visit is told it was already used", async () => {
    const clock = fixedClock();
    const { sessions, storage } = memorySessions(clock.now);
    const { token } = await sessions.createLink("admin", "device:admin");
    await sessions.redeemLink(token);
    const error = await refusal(() => sessions.redeemLink(token));
    expect(error.code).toBe("invalid_token");
    expect(error.message).toBe("This login link was already used.");
    expect(error.hint).toBe("Run `gatehouse dashboard` again for a new link.");
    expect(storage.size).toBe(1);
  });

  it("a link expires after 5 minutes", async () => {
    const clock = fixedClock();
    const { sessions } = memorySessions(clock.now);
    const early = await sessions.createLink("admin", "device:admin");
    const late = await sessions.createLink("admin", "device:admin");
    expect(early.expiresAt.getTime() - clock.now().getTime()).toBe(LOGIN_LINK_TTL_MS);
    clock.advance(LOGIN_LINK_TTL_MS - 1);
    await sessions.redeemLink(early.token);
    clock.advance(1);
    expect((await refusal(() => sessions.redeemLink(late.token))).message).toBe("This login link expired.");
    // Another link asked for later does not make the expired one unknown.
    await sessions.createLink("admin", "device:admin");
    expect((await refusal(() => sessions.redeemLink(late.token))).message).toBe("This login link expired.");
  });

  it("an unknown token is not known to this gateway", async () => {
    const { sessions } = memorySessions(fixedClock().now);
    for (const token of ["nope", "x".repeat(10_000)])
      expect((await refusal(() => sessions.redeemLink(token))).message).toBe(
        "This login link is not known to this gateway.",
      );
  });

  it("an empty or missing token is a link with no token", async () => {
    const { sessions } = memorySessions(fixedClock().now);
    for (const token of ["", undefined])
      expect((await refusal(() => sessions.redeemLink(token))).message).toBe("This login link has no token.");
  });
});

describe("dashboard sessions", () => {
  it("a session used within 30 minutes lives on; idle for 30 minutes it ends", async () => {
    const { clock, sessions, storage, cookieValue } = await loggedIn();
    clock.advance(SESSION_IDLE_MS - 1);
    expect((await sessions.authenticate(cookieValue, GET)).role).toBe("admin");
    clock.advance(SESSION_IDLE_MS - 1);
    const session = await sessions.authenticate(cookieValue, GET);
    expect(sessions.idleExpiresAt(session).getTime()).toBe(clock.now().getTime() + SESSION_IDLE_MS);
    clock.advance(SESSION_IDLE_MS);
    const error = await refusal(() => sessions.authenticate(cookieValue, GET));
    expect(error.code).toBe("invalid_token");
    expect(error.message).toMatch(/dashboard session ended, expired/);
    expect(storage.size).toBe(0);
  });

  it("a session ends 12 hours after its login however often it is used", async () => {
    const { clock, sessions, cookieValue, session } = await loggedIn();
    expect(sessions.expiresAt(session).getTime() - clock.now().getTime()).toBe(SESSION_LIFETIME_MS);
    for (let elapsed = 0; elapsed + 20 * 60 * 1000 < SESSION_LIFETIME_MS; elapsed += 20 * 60 * 1000) {
      clock.advance(20 * 60 * 1000);
      await sessions.authenticate(cookieValue, GET);
    }
    // 20 minutes after its last use (not idle), exactly 12 hours after its login.
    clock.advance(20 * 60 * 1000);
    expect((await refusal(() => sessions.authenticate(cookieValue, GET))).code).toBe("invalid_token");
  });

  it("the idle deadline never passes the absolute one", async () => {
    const { clock, sessions, cookieValue } = await loggedIn();
    const step = 20 * 60 * 1000;
    for (let elapsed = step; elapsed < SESSION_LIFETIME_MS - 60_000; elapsed += step) {
      clock.advance(step);
      await sessions.authenticate(cookieValue, GET);
    }
    clock.advance(
      SESSION_LIFETIME_MS - 60_000 - (clock.now().getTime() - new Date("2026-01-01T00:00:00Z").getTime()),
    );
    const session = await sessions.authenticate(cookieValue, GET);
    expect(sessions.idleExpiresAt(session)).toEqual(sessions.expiresAt(session));
    clock.advance(60_000);
    expect((await refusal(() => sessions.authenticate(cookieValue, GET))).code).toBe("invalid_token");
  });

  it(`past ${MAX_SESSIONS} live sessions the oldest ends`, async () => {
    const clock = fixedClock();
    const { sessions, storage } = memorySessions(clock.now);
    const cookies: string[] = [];
    for (let i = 0; i <= MAX_SESSIONS; i++) {
      const { token } = await sessions.createLink("viewer", "device:admin");
      cookies.push((await sessions.redeemLink(token)).cookieValue);
    }
    expect(storage.size).toBe(MAX_SESSIONS);
    expect((await refusal(() => sessions.authenticate(cookies[0]!, GET))).code).toBe("invalid_token");
    expect((await sessions.authenticate(cookies[1]!, GET)).role).toBe("viewer");
    expect((await sessions.authenticate(cookies[MAX_SESSIONS]!, GET)).role).toBe("viewer");
  });

  it("logout ends the session; its cookie opens nothing afterwards", async () => {
    const { sessions, cookieValue, session } = await loggedIn();
    expect(await sessions.end(session.fingerprint)).toBe(true);
    expect((await refusal(() => sessions.authenticate(cookieValue, GET))).code).toBe("invalid_token");
    expect(await sessions.end(session.fingerprint)).toBe(false);
  });

  it("the session is kept by the cookie's hash, never by its value", async () => {
    const { sessions, cookieValue, session } = await loggedIn();
    expect(JSON.stringify([...Object.values(session)])).not.toContain(cookieValue);
    expect(await sessions.find(secretHash(cookieValue))).toEqual(session);
    expect(await sessions.find(cookieValue)).toBeUndefined();
  });
});

describe("CSRF (synchronizer token)", () => {
  it("a POST with the session's token passes; GET, HEAD and OPTIONS need none", async () => {
    const { sessions, cookieValue, session } = await loggedIn();
    expect(
      await sessions.authenticate(cookieValue, { method: "POST", csrfToken: session.csrfToken }),
    ).toEqual(session);
    for (const method of ["GET", "HEAD", "OPTIONS", "get"])
      expect(await sessions.authenticate(cookieValue, { method })).toEqual(session);
  });

  it("a missing, wrong, shorter, longer or repeated token is refused with csrf_failed", async () => {
    const { clock, sessions, cookieValue, session } = await loggedIn();
    const wrong = Buffer.alloc(32, 7).toString("base64url");
    const tokens = [undefined, "", wrong, session.csrfToken.slice(1), session.csrfToken + "A"];
    for (const csrfToken of [...tokens, [session.csrfToken, session.csrfToken]]) {
      for (const method of ["POST", "DELETE", "PUT", "PATCH"]) {
        const request = csrfToken === undefined ? { method } : { method, csrfToken };
        const error = await refusal(() => sessions.authenticate(cookieValue, request));
        expect(error.code).toBe("csrf_failed");
        expect(error.status).toBe(403);
      }
    }
    // A refused request does not keep the session alive.
    const before = sessions.idleExpiresAt(session).getTime();
    clock.advance(1000);
    await refusal(() => sessions.authenticate(cookieValue, { method: "POST" }));
    expect(sessions.idleExpiresAt(session).getTime()).toBe(before);
  });

  it("csrfTokenMatches compares whole equal-length tokens only", async () => {
    const { session } = await loggedIn();
    expect(csrfTokenMatches(session, session.csrfToken)).toBe(true);
    expect(csrfTokenMatches(session, undefined)).toBe(false);
    expect(csrfTokenMatches(session, session.csrfToken.toUpperCase())).toBe(
      session.csrfToken === session.csrfToken.toUpperCase(),
    );
    expect(csrfTokenMatches(session, "é".repeat(22))).toBe(false);
  });
});
