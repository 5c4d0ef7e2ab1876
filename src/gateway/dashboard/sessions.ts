import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { scopesForRole, type Principal, type Scope } from "../../auth/roles.js";
import { GatehouseError } from "../../protocol/errors.js";

/** How long a login link can be redeemed, in milliseconds (5 minutes). */
export const LOGIN_LINK_TTL_MS = 5 * 60 * 1000;
/** A session unused for this long ends, in milliseconds (30 minutes). */
export const SESSION_IDLE_MS = 30 * 60 * 1000;
/** A session ends this long after its login whatever its use, in milliseconds (12 hours). */
export const SESSION_LIFETIME_MS = 12 * 60 * 60 * 1000;
/** Live sessions kept at most; a new login past it ends the oldest one. */
export const MAX_SESSIONS = 200;
/** Links kept at most; a new link past it forgets the oldest one. */
export const MAX_LINKS = 200;
/** A spent or expired link is remembered this long past its expiry, so a late visit hears why. */
const LINK_MEMORY_MS = 60 * 60 * 1000;

/** Methods that change nothing (RFC 9110 §9.2.1), so need no CSRF token. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

const RELOGIN_HINT = "Run `gatehouse dashboard` again for a new link.";

/** A dashboard session as the gateway keeps it: never the cookie value, only its sha256. */
export interface DashboardSession {
  /** `dashboard:<12 hex of sha256(cookie value)>`: the audit actor of everything it does. */
  subject: string;
  /** sha256 (hex) of the cookie value: the key it is found by, and its credential fingerprint. */
  fingerprint: string;
  role: string;
  scopes: readonly Scope[];
  /** Subject of the credential that asked for the login link. */
  createdBy: string;
  /** The synchronizer token (OWASP CSRF cheat sheet) every non-safe request must echo. */
  csrfToken: string;
  createdAt: Date;
  lastUsedAt: Date;
}

interface LoginLink {
  role: string;
  createdBy: string;
  expiresAt: Date;
  used: boolean;
}

/** A new login link: the token goes into `/dashboard/login?token=…`; only its hash is kept. */
export interface IssuedLink {
  token: string;
  role: string;
  expiresAt: Date;
}

/** A redeemed link: the cookie value to set (once, never kept) and the session it opens. */
export interface RedeemedLink {
  cookieValue: string;
  session: DashboardSession;
}

/** 32 random bytes, base64url (RFC 4648 §5): a link token, cookie value or CSRF token. */
function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** sha256 of a secret as hex: what the gateway stores and compares instead of the secret. */
export function secretHash(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/**
 * The dashboard's login links and cookie sessions, in memory (a gateway restart ends them all).
 * Pure logic over an injected clock: the HTTP plugin sets and reads the cookie (RFC 6265), this
 * class decides what a link or cookie value is worth. Secrets are stored as sha256 hashes only, like
 * refresh tokens: a memory dump yields no usable credential.
 */
export class DashboardSessions {
  private readonly links = new Map<string, LoginLink>();
  /** By sha256 of the cookie value, oldest login first (Map keeps insertion order). */
  private readonly sessions = new Map<string, DashboardSession>();

  constructor(private readonly now: () => Date) {}

  /**
   * A single-use login link for a session of `role`, valid for LOGIN_LINK_TTL_MS.
   * @param createdBy subject of the credential that asked (the audit actor of the login).
   */
  createLink(role: string, createdBy: string): IssuedLink {
    this.forgetStaleLinks();
    const token = newSecret();
    const expiresAt = new Date(this.now().getTime() + LOGIN_LINK_TTL_MS);
    this.links.set(secretHash(token), { role, createdBy, expiresAt, used: false });
    while (this.links.size > MAX_LINKS) this.links.delete(this.links.keys().next().value as string);
    return { token, role, expiresAt };
  }

  /**
   * Spends a login link and opens its session (ending the oldest one past MAX_SESSIONS).
   * @throws GatehouseError `invalid_token` whose description says which: no token (missing or
   *   empty), already used, expired, or not known (also for a malformed token).
   */
  redeemLink(token: string | undefined): RedeemedLink {
    // A link cut short (no `token=` at all, or an empty one) is told so, not called unknown.
    if (!token) throw new GatehouseError("invalid_token", "This login link has no token.", RELOGIN_HINT);
    const link = this.links.get(secretHash(token));
    if (!link)
      throw new GatehouseError(
        "invalid_token",
        "This login link is not known to this gateway.",
        RELOGIN_HINT,
      );
    if (link.used)
      throw new GatehouseError("invalid_token", "This login link was already used.", RELOGIN_HINT);
    const now = this.now();
    if (link.expiresAt <= now)
      throw new GatehouseError("invalid_token", "This login link expired.", RELOGIN_HINT);
    // Kept, marked used, until it would have expired: a second visit is told it was used.
    link.used = true;

    this.forgetEndedSessions();
    const cookieValue = newSecret();
    const fingerprint = secretHash(cookieValue);
    const session: DashboardSession = {
      subject: `dashboard:${fingerprint.slice(0, 12)}`,
      fingerprint,
      role: link.role,
      scopes: scopesForRole(link.role),
      createdBy: link.createdBy,
      csrfToken: newSecret(),
      createdAt: now,
      lastUsedAt: now,
    };
    this.sessions.set(fingerprint, session);
    while (this.sessions.size > MAX_SESSIONS)
      this.sessions.delete(this.sessions.keys().next().value as string);
    return { cookieValue, session };
  }

  /**
   * The live session a request's cookie value opens, its idle clock restarted. A request whose
   * method is not safe (RFC 9110 §9.2.1: anything but GET, HEAD, OPTIONS) must carry the session's
   * CSRF token (its `X-CSRF-Token` header) as well.
   * @throws GatehouseError `invalid_token` for a value that is unknown, ended (logout), idle for
   *   SESSION_IDLE_MS or older than SESSION_LIFETIME_MS; `csrf_failed` for a missing or wrong token
   *   (a refused request does not restart the idle clock).
   */
  authenticate(
    cookieValue: string,
    request: { method: string; csrfToken?: string | string[] },
  ): DashboardSession {
    const session = this.find(secretHash(cookieValue));
    if (!session) {
      throw new GatehouseError(
        "invalid_token",
        "The dashboard session ended, expired, or was not opened by this gateway (a restart ends every dashboard session).",
        "Run `gatehouse dashboard` for a new login link.",
      );
    }
    if (!SAFE_METHODS.has(request.method.toUpperCase()) && !csrfTokenMatches(session, request.csrfToken))
      throw new GatehouseError("csrf_failed");
    session.lastUsedAt = this.now();
    return session;
  }

  /** The live session with this fingerprint, without counting it as used (a keepalive check). */
  find(fingerprint: string): DashboardSession | undefined {
    const session = this.sessions.get(fingerprint);
    if (!session) return undefined;
    if (this.ended(session, this.now())) {
      this.sessions.delete(fingerprint);
      return undefined;
    }
    return session;
  }

  /** Ends a session (logout). Returns whether it was live. */
  end(fingerprint: string): boolean {
    return this.find(fingerprint) !== undefined && this.sessions.delete(fingerprint);
  }

  /** Live sessions right now. */
  get size(): number {
    this.forgetEndedSessions();
    return this.sessions.size;
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

  private ended(session: DashboardSession, now: Date): boolean {
    return this.idleExpiresAt(session) <= now;
  }

  private forgetEndedSessions(): void {
    const now = this.now();
    for (const [key, session] of this.sessions) if (this.ended(session, now)) this.sessions.delete(key);
  }

  private forgetStaleLinks(): void {
    const now = this.now();
    for (const [key, link] of this.links)
      if (link.expiresAt.getTime() + LINK_MEMORY_MS <= now.getTime()) this.links.delete(key);
  }
}

/**
 * Whether a request's `X-CSRF-Token` header is the session's synchronizer token (OWASP CSRF
 * cheat sheet), compared in constant time (`crypto.timingSafeEqual`). A missing header, a repeated
 * one or one of another length is simply false.
 */
export function csrfTokenMatches(session: DashboardSession, header: string | string[] | undefined): boolean {
  if (typeof header !== "string") return false;
  const sent = Buffer.from(header, "utf8");
  const expected = Buffer.from(session.csrfToken, "utf8");
  return sent.length === expected.length && timingSafeEqual(sent, expected);
}

/** The principal of a request authenticated by a dashboard session's cookie. */
export function dashboardPrincipal(session: DashboardSession, expiresAt: Date): Principal {
  return {
    kind: "dashboard_session",
    subject: session.subject,
    role: session.role,
    scopes: session.scopes,
    credentialFingerprint: session.fingerprint,
    expiresAt,
    onBehalfOf: session.createdBy,
  };
}
