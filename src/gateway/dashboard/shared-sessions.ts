import { randomBytes } from "node:crypto";
import { scopesForRole } from "../../auth/roles.js";
import { GatehouseError } from "../../protocol/errors.js";
import type { DashboardSessionRecord, Store } from "../../store/types.js";
import {
  LOGIN_LINK_TTL_MS,
  MAX_SESSIONS,
  SESSION_IDLE_MS,
  SESSION_LIFETIME_MS,
  csrfTokenMatches,
  secretHash,
  type DashboardSession,
  type IssuedLink,
  type RedeemedLink,
} from "./sessions.js";

/** A spent or expired link is kept this long past its expiry, so a late visit hears why. */
const LINK_MEMORY_MS = 60 * 60 * 1000;
/** A session's last use is written at most this often, in milliseconds: a minute in 30 is noise. */
const TOUCH_EVERY_MS = 60_000;
/** Ended sessions and old links are deleted at most this often, in milliseconds. */
const PRUNE_EVERY_MS = 60_000;
/** Methods that change nothing (RFC 9110 §9.2.1), so need no CSRF token. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const RELOGIN_HINT = "Run `gatehouse dashboard` again for a new link.";

/**
 * Whether the credential that asked for a session's login link (`device:<id>`, `key:<keyId>`)
 * still holds; a session whose credential was revoked ends with it.
 */
export type CreatorCheck = (createdBy: string) => boolean;

/**
 * The dashboard's login links and cookie sessions in the store, for instances that share it: a
 * browser behind a load balancer reaches any of them, so a link made through one is redeemed
 * through another and a cookie opens its session on every one. The same rules as the in-memory
 * DashboardSessions (link TTL, single use, idle and absolute expiry, logout, at most MAX_SESSIONS),
 * the same secrets kept as sha256 hashes only, and one more: a session whose creating credential
 * was revoked ends, on every instance (each checks its own device and API-key caches, which
 * follow revocations made anywhere).
 */
export class SharedDashboardSessions {
  private prunedAt = 0;

  constructor(
    private readonly store: Store,
    private readonly now: () => Date,
    private readonly creatorValid: CreatorCheck,
  ) {}

  /**
   * A single-use login link for a session of `role`, valid for LOGIN_LINK_TTL_MS, stored by the
   * sha256 of its token.
   * @throws GatehouseError `unavailable` when the database cannot be reached.
   */
  async createLink(role: string, createdBy: string): Promise<IssuedLink> {
    await this.prune();
    const token = newSecret();
    const expiresAt = new Date(this.now().getTime() + LOGIN_LINK_TTL_MS);
    await this.store.putDashboardLink({
      linkHash: secretHash(token),
      role,
      createdBy,
      expiresAt: expiresAt.toISOString(),
      used: 0,
    });
    return { token, role, expiresAt };
  }

  /**
   * Spends a login link (in one statement: of two instances redeeming it at once, one opens the
   * session) and opens its session.
   * @throws GatehouseError `invalid_token` saying which: no token, already used, expired, not known.
   */
  async redeemLink(token: string | undefined): Promise<RedeemedLink> {
    if (!token) throw new GatehouseError("invalid_token", "This login link has no token.", RELOGIN_HINT);
    const hash = secretHash(token);
    const now = this.now();
    const link = await this.store.useDashboardLink(hash, now.toISOString());
    if (!link) {
      const known = await this.store.getDashboardLink(hash);
      if (!known)
        throw new GatehouseError(
          "invalid_token",
          "This login link is not known to this gateway.",
          RELOGIN_HINT,
        );
      if (known.used)
        throw new GatehouseError("invalid_token", "This login link was already used.", RELOGIN_HINT);
      throw new GatehouseError("invalid_token", "This login link expired.", RELOGIN_HINT);
    }
    const cookieValue = newSecret();
    const record: DashboardSessionRecord = {
      fingerprint: secretHash(cookieValue),
      role: link.role,
      createdBy: link.createdBy,
      csrfToken: newSecret(),
      createdAt: now.toISOString(),
      lastUsedAt: now.toISOString(),
    };
    await this.store.putDashboardSession(record, MAX_SESSIONS);
    return { cookieValue, session: sessionOf(record) };
  }

  /**
   * The live session a request's cookie value opens, its idle clock restarted (written at most
   * once a minute). A non-safe method must carry the session's CSRF token.
   * @throws GatehouseError `invalid_token` for a session unknown, ended, expired, or whose
   *   creating credential was revoked; `csrf_failed` for a missing or wrong token.
   */
  async authenticate(
    cookieValue: string,
    request: { method: string; csrfToken?: string | string[] },
  ): Promise<DashboardSession> {
    const session = await this.find(secretHash(cookieValue));
    if (!session) {
      throw new GatehouseError(
        "invalid_token",
        "The dashboard session ended, expired, or was not opened by this gateway.",
        "Run `gatehouse dashboard` for a new login link.",
      );
    }
    if (!SAFE_METHODS.has(request.method.toUpperCase()) && !csrfTokenMatches(session, request.csrfToken))
      throw new GatehouseError("csrf_failed");
    const now = this.now();
    if (now.getTime() - session.lastUsedAt.getTime() >= TOUCH_EVERY_MS) {
      await this.store.touchDashboardSession(session.fingerprint, now.toISOString());
      session.lastUsedAt = now;
    }
    return session;
  }

  /** The live session with this fingerprint, without counting it as used; an ended one is deleted. */
  async find(fingerprint: string): Promise<DashboardSession | undefined> {
    const record = await this.store.getDashboardSession(fingerprint);
    if (!record) return undefined;
    const session = sessionOf(record);
    if (this.idleExpiresAt(session) <= this.now() || !this.creatorValid(session.createdBy)) {
      await this.store.deleteDashboardSession(fingerprint);
      return undefined;
    }
    return session;
  }

  /** Ends a session (logout) on every instance. Returns whether it was live. */
  async end(fingerprint: string): Promise<boolean> {
    return (await this.find(fingerprint)) !== undefined && this.store.deleteDashboardSession(fingerprint);
  }

  /** When the session ends unless used again before: last use + SESSION_IDLE_MS, capped by its lifetime. */
  idleExpiresAt(session: DashboardSession): Date {
    return new Date(
      Math.min(session.lastUsedAt.getTime() + SESSION_IDLE_MS, this.expiresAt(session).getTime()),
    );
  }

  /** When the session ends whatever its use: login + SESSION_LIFETIME_MS. */
  expiresAt(session: DashboardSession): Date {
    return new Date(session.createdAt.getTime() + SESSION_LIFETIME_MS);
  }

  /** Deletes ended sessions and links past their memory, at most once a minute. */
  private async prune(): Promise<void> {
    const now = this.now().getTime();
    if (now - this.prunedAt < PRUNE_EVERY_MS) return;
    this.prunedAt = now;
    await this.store.deleteDashboardSessions({
      idleBefore: new Date(now - SESSION_IDLE_MS).toISOString(),
      createdBefore: new Date(now - SESSION_LIFETIME_MS).toISOString(),
    });
    await this.store.pruneDashboardLinks(new Date(now - LINK_MEMORY_MS).toISOString());
  }
}

/** 32 random bytes, base64url (RFC 4648 §5): a link token, cookie value or CSRF token. */
function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

function sessionOf(record: DashboardSessionRecord): DashboardSession {
  return {
    subject: `dashboard:${record.fingerprint.slice(0, 12)}`,
    fingerprint: record.fingerprint,
    role: record.role,
    scopes: scopesForRole(record.role),
    createdBy: record.createdBy,
    csrfToken: record.csrfToken,
    createdAt: new Date(record.createdAt),
    lastUsedAt: new Date(record.lastUsedAt),
  };
}

/**
 * The creator check of a gateway: a device's credential holds while the device is approved, an
 * API key's while it is not revoked; any other subject (none today) holds.
 */
export function creatorCheck(
  device: (deviceId: string) => { status: string } | undefined,
  apiKeyRevoked: (keyId: string) => boolean,
): CreatorCheck {
  return (createdBy) => {
    const [kind, id] = splitSubject(createdBy);
    if (kind === "device") return device(id)?.status === "approved";
    if (kind === "key") return !apiKeyRevoked(id);
    return true;
  };
}

function splitSubject(subject: string): [string, string] {
  const colon = subject.indexOf(":");
  return colon < 0 ? [subject, ""] : [subject.slice(0, colon), subject.slice(colon + 1)];
}
