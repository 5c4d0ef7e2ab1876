/**
 * One class holds the dashboard sessions' rules whichever storage keeps them: this process's
 * memory (a gateway alone), a SQLite store, a PostgreSQL store (several instances). The same
 * links, expiries, cap, logout and creator revocation on each, and only hashes kept.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DashboardSessions,
  LOGIN_LINK_TTL_MS,
  MAX_SESSIONS,
  SESSION_IDLE_MS,
  SESSION_LIFETIME_MS,
  STORE_POLICY,
  secretHash,
  type DashboardStorage,
} from "../src/gateway/dashboard/sessions.js";
import { MemoryDashboardStorage } from "../src/gateway/dashboard/memory-storage.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import { openDialectStore, type Dialect } from "./fixtures/store-dialects.js";
import { refusal } from "./fixtures/refusal.js";

interface Kept {
  storage: DashboardStorage;
  /** Whether the storage is a store (the policy then writes a last use at most once a minute). */
  shared: boolean;
  close(): Promise<void>;
}

/** A store of `dialect` as the storage: a fresh database, closed and removed afterwards. */
const storeStorage = (dialect: Dialect) => async (): Promise<Kept> => {
  const opened = await openDialectStore(dialect);
  return { storage: opened.store, shared: true, close: () => opened.close() };
};

const storages: [string, () => Promise<Kept>][] = [
  ["memory", async () => ({ storage: new MemoryDashboardStorage(), shared: false, close: async () => {} })],
  ["a SQLite store", storeStorage("sqlite")],
];
if (postgresAvailable()) storages.push(["a PostgreSQL store", storeStorage("postgres")]);

const GET = { method: "GET" };

describe.each(storages)("dashboard sessions kept in %s", (_name, open) => {
  let kept: Kept;
  let at = Date.parse("2026-01-01T00:00:00Z");
  const now = () => new Date(at);
  const revoked = new Set<string>();
  let sessions: DashboardSessions;

  beforeAll(async () => {
    kept = await open();
    sessions = new DashboardSessions(now, {
      storage: kept.storage,
      ...(kept.shared ? { policy: STORE_POLICY } : {}),
      creatorValid: (createdBy) => !revoked.has(createdBy),
    });
  }, 60_000);

  afterAll(async () => {
    await kept?.close();
  });

  async function login(createdBy = "device:admin") {
    const link = await sessions.createLink("admin", createdBy);
    return { link, ...(await sessions.redeemLink(link.token)) };
  }

  it("a link opens one session, once, within 5 minutes; only hashes are kept", async () => {
    const { link, cookieValue, session } = await login();
    expect((await refusal(() => sessions.redeemLink(link.token))).message).toBe(
      "This login link was already used.",
    );
    expect(await kept.storage.getDashboardLink(link.token)).toBeUndefined();
    expect(await kept.storage.getDashboardSession(cookieValue)).toBeUndefined();
    expect(JSON.stringify(await kept.storage.getDashboardSession(session.fingerprint))).not.toContain(
      cookieValue,
    );
    expect(session.fingerprint).toBe(secretHash(cookieValue));

    const late = await sessions.createLink("admin", "device:admin");
    at += LOGIN_LINK_TTL_MS;
    expect((await refusal(() => sessions.redeemLink(late.token))).message).toBe("This login link expired.");
    expect((await refusal(() => sessions.redeemLink("nope"))).message).toBe(
      "This login link is not known to this gateway.",
    );
  });

  it("a session lives while used, ends idle after 30 minutes and 12 hours after its login", async () => {
    const { cookieValue } = await login();
    at += SESSION_IDLE_MS - 1;
    await sessions.authenticate(cookieValue, GET);
    at += SESSION_IDLE_MS - 1;
    await sessions.authenticate(cookieValue, GET);
    at += SESSION_IDLE_MS;
    expect((await refusal(() => sessions.authenticate(cookieValue, GET))).code).toBe("invalid_token");

    const { cookieValue: busy } = await login();
    const step = 20 * 60 * 1000;
    for (let used = step; used < SESSION_LIFETIME_MS; used += step) {
      at += step;
      await sessions.authenticate(busy, GET);
    }
    at += step;
    expect((await refusal(() => sessions.authenticate(busy, GET))).code).toBe("invalid_token");
  });

  it("logout ends a session, and so does the revocation of the credential that asked for its link", async () => {
    const { session, cookieValue } = await login();
    expect(await sessions.end(session.fingerprint)).toBe(true);
    expect((await refusal(() => sessions.authenticate(cookieValue, GET))).code).toBe("invalid_token");
    expect(await sessions.end(session.fingerprint)).toBe(false);

    const byKey = await login("key:key_leaving");
    const byOther = await login("key:key_staying");
    revoked.add("key:key_leaving");
    expect((await refusal(() => sessions.authenticate(byKey.cookieValue, GET))).code).toBe("invalid_token");
    expect(await sessions.find(byKey.session.fingerprint)).toBeUndefined();
    expect((await sessions.authenticate(byOther.cookieValue, GET)).createdBy).toBe("key:key_staying");
  });

  it(`past ${MAX_SESSIONS} sessions the oldest login ends`, async () => {
    const cookies: string[] = [];
    for (let i = 0; i <= MAX_SESSIONS; i++) {
      at += 1;
      cookies.push((await login()).cookieValue);
    }
    expect((await refusal(() => sessions.authenticate(cookies[0]!, GET))).code).toBe("invalid_token");
    expect((await sessions.authenticate(cookies[1]!, GET)).role).toBe("admin");
    expect((await sessions.authenticate(cookies[MAX_SESSIONS]!, GET)).role).toBe("admin");
  }, 60_000);
});
