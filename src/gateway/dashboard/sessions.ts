import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { scopesForRole, type Principal, type Scope } from "../../auth/roles.js";
import { GatehouseError } from "../../protocol/errors.js";
import type { DashboardSessionRecord, Store } from "../../store/types.js";
import { MemoryDashboardStorage } from "./memory-storage.js";

/** How long a login link can be redeemed, in milliseconds (5 minutes). */
export const LOGIN_LINK_TTL_MS = 5 * 60 * 1000;
/** A session unused for this long ends, in milliseconds (30 minutes). */
export const SESSION_IDLE_MS = 30 * 60 * 1000;
/** A session ends this long after its login whatever its use, in milliseconds (12 hours). */
export const SESSION_LIFETIME_MS = 12 * 60 * 60 * 1000;
/** Live sessions kept at most; a new login past it ends the oldest one. */
export const MAX_SESSIONS = 200;
export { MAX_LINKS } from "./memory-storage.js";
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
  /** Subject of the credential that asked for the login link (`device:<id>`, `key:<keyId>`). */
  createdBy: string;
  /** The synchronizer token (OWASP CSRF cheat sheet) every non-safe request must echo. */
  csrfToken: string;
  createdAt: Date;
  lastUsedAt: Date;
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

/**
 * Where links and sessions are kept, by the sha256 of their secrets only: the store's dashboard
 * methods (store/types.ts, shared by several instances) or MemoryDashboardStorage (a gateway
 * alone). Keeping is all it does; every rule is DashboardSessions'.
 */
export type DashboardStorage = Pick<
  Store,
  | "putDashboardLink"
  | "getDashboardLink"
  | "useDashboardLink"
  | "pruneDashboardLinks"
  | "putDashboardSession"
  | "getDashboardSession"
  | "touchDashboardSession"
  | "deleteDashboardSession"
  | "deleteDashboardSessions"
>;

/**
 * Whether the credential that asked for a session's login link (`device:<id>`, `key:<keyId>`)
 * still holds: true, or false once revoked (the session ends with it), or "unknown" when this
 * instance has not read the credential yet (made on another instance a moment ago): the request is
 * refused but the session, shared by every instance, is left as it is.
 */
export type CreatorCheck = (createdBy: string) => boolean | "unknown";

/** How a storage is used: what differs between one process's memory and a shared database. */
export interface DashboardStoragePolicy {
  /**
   * Whether sessions outlive a restart of this gateway (the database's do): an unknown session is
   * then not explained by a restart.
   */
  survivesRestart: boolean;
  /** A session's last use is written at most this often, in milliseconds (0: at every use). */
  touchEveryMs: number;
  /** Ended sessions and old links are deleted at most this often, in milliseconds (0: every time). */
  pruneEveryMs: number;
}

/** In memory: every use and every forgotten session costs nothing to write. */
const MEMORY_POLICY: DashboardStoragePolicy = { survivesRestart: false, touchEveryMs: 0, pruneEveryMs: 0 };
/** In the shared store: a minute in 30 is noise, and not worth a write per request. */
export const STORE_POLICY: DashboardStoragePolicy = {
  survivesRestart: true,
  touchEveryMs: 60_000,
  pruneEveryMs: 60_000,
};

/** 32 random bytes, base64url (RFC 4648 §5): a link token, cookie value or CSRF token. */
function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** sha256 of a secret as hex: what the gateway stores and compares instead of the secret. */
export function secretHash(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/**
 * The dashboard's login links and cookie sessions: the one place their rules live (5-minute
 * single-use links, 30-minute idle and 12-hour absolute expiry, at most MAX_SESSIONS, logout, and
 * a session ending with the credential that asked for its link), over a storage that only keeps
 * them — this process's memory alone, the shared store with several instances (a browser behind a
 * load balancer reaches any of them). Pure logic over an injected clock: the HTTP plugin sets and
 * reads the cookie (RFC 6265), this class decides what a link or cookie value is worth. Secrets
 * are kept as sha256 hashes only, like refresh tokens: a memory or database dump yields no
 * usable credential.
 */
export class DashboardSessions {
  private readonly storage: DashboardStorage;
  private readonly policy: DashboardStoragePolicy;
  private readonly creatorValid: CreatorCheck;
  private prunedAt = Number.NEGATIVE_INFINITY;

  /**
   * @param options.storage where links and sessions are kept (default: this process's memory)
   * @param options.policy how that storage is used (default: memory's; STORE_POLICY for the store)
   * @param options.creatorValid whether a session's creating credential still holds (default: always)
   */
  constructor(
    private readonly now: () => Date,
    options: {
      storage?: DashboardStorage;
      policy?: DashboardStoragePolicy;
      creatorValid?: CreatorCheck;
    } = {},
  ) {
    this.storage = options.storage ?? new MemoryDashboardStorage();
    this.policy = options.policy ?? MEMORY_POLICY;
    this.creatorValid = options.creatorValid ?? (() => true);
  }

  /**
   * A single-use login link for a session of `role`, valid for LOGIN_LINK_TTL_MS.
   * @param createdBy subject of the credential that asked (the audit actor of the login).
   * @throws GatehouseError `unavailable` when a shared store cannot be reached.
   */
  async createLink(role: string, createdBy: string): Promise<IssuedLink> {
    await this.prune();
    const token = newSecret();
    const expiresAt = new Date(this.now().getTime() + LOGIN_LINK_TTL_MS);
    await this.storage.putDashboardLink({
      linkHash: secretHash(token),
      role,
      createdBy,
      expiresAt: expiresAt.toISOString(),
      used: 0,
    });
    return { token, role, expiresAt };
  }

  /**
   * Spends a login link (in one step of the storage: of two instances redeeming it at once, one
   * opens the session) and opens its session, ending the oldest one past MAX_SESSIONS.
   * @throws GatehouseError `invalid_token` whose description says which: no token (missing or
   *   empty), already used, expired, or not known (also for a malformed token).
   */
  async redeemLink(token: string | undefined): Promise<RedeemedLink> {
    // A link cut short (no `token=` at all, or an empty one) is told so, not called unknown.
    if (!token) throw new GatehouseError("invalid_token", "This login link has no token.", RELOGIN_HINT);
    const hash = secretHash(token);
    const now = this.now();
    // Kept, marked used, until it would have expired: a second visit is told it was used.
    const link = await this.storage.useDashboardLink(hash, now.toISOString());
    if (!link) {
      const known = await this.storage.getDashboardLink(hash);
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
    // Ended sessions go first, so they do not count against MAX_SESSIONS.
    await this.prune();
    const cookieValue = newSecret();
    const record: DashboardSessionRecord = {
      fingerprint: secretHash(cookieValue),
      role: link.role,
      createdBy: link.createdBy,
      csrfToken: newSecret(),
      createdAt: now.toISOString(),
      lastUsedAt: now.toISOString(),
    };
    await this.storage.putDashboardSession(record, MAX_SESSIONS);
    return { cookieValue, session: sessionOf(record) };
  }

  /**
   * The live session a request's cookie value opens, its idle clock restarted (written at most
   * once per the policy's touchEveryMs). A request whose method is not safe (RFC 9110 §9.2.1:
   * anything but GET, HEAD, OPTIONS) must carry the session's CSRF token (its `X-CSRF-Token`
   * header) as well.
   * @throws GatehouseError `invalid_token` for a value that is unknown, ended (logout), idle for
   *   SESSION_IDLE_MS, older than SESSION_LIFETIME_MS, or whose creating credential was revoked;
   *   `csrf_failed` for a missing or wrong token (a refused request does not restart the idle clock).
   */
  async authenticate(
    cookieValue: string,
    request: { method: string; csrfToken?: string | string[] },
  ): Promise<DashboardSession> {
    const session = await this.find(secretHash(cookieValue));
    if (!session) {
      throw new GatehouseError(
        "invalid_token",
        this.policy.survivesRestart
          ? "The dashboard session ended, expired, or was not opened by this gateway."
          : "The dashboard session ended, expired, or was not opened by this gateway (a restart ends every dashboard session).",
        "Run `gatehouse dashboard` for a new login link.",
      );
    }
    if (!SAFE_METHODS.has(request.method.toUpperCase()) && !csrfTokenMatches(session, request.csrfToken))
      throw new GatehouseError("csrf_failed");
    const now = this.now();
    if (now.getTime() - session.lastUsedAt.getTime() >= this.policy.touchEveryMs) {
      await this.storage.touchDashboardSession(session.fingerprint, now.toISOString());
      session.lastUsedAt = now;
    }
    return session;
  }

  /**
   * The live session with this fingerprint, without counting it as used (a keepalive check). One
   * that ended (idle, too old, or its creating credential revoked) is deleted; one whose creator
   * this instance does not know yet is not answered, and not deleted (a refusal changes nothing).
   */
  async find(fingerprint: string): Promise<DashboardSession | undefined> {
    const record = await this.storage.getDashboardSession(fingerprint);
    if (!record) return undefined;
    const session = sessionOf(record);
    const creator = this.creatorValid(session.createdBy);
    if (creator === "unknown") return undefined;
    if (this.idleExpiresAt(session) <= this.now() || !creator) {
      await this.storage.deleteDashboardSession(fingerprint);
      return undefined;
    }
    return session;
  }

  /** Ends a session (logout; on every instance when the storage is shared). Returns whether it was live. */
  async end(fingerprint: string): Promise<boolean> {
    return (await this.find(fingerprint)) !== undefined && this.storage.deleteDashboardSession(fingerprint);
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

  /** Deletes ended sessions and links past their memory, at most once per the policy's pruneEveryMs. */
  private async prune(): Promise<void> {
    const now = this.now().getTime();
    if (now - this.prunedAt < this.policy.pruneEveryMs) return;
    this.prunedAt = now;
    // Idle for SESSION_IDLE_MS or older than SESSION_LIFETIME_MS: exactly the sessions that ended.
    await this.storage.deleteDashboardSessions({
      idleBefore: new Date(now - SESSION_IDLE_MS + 1).toISOString(),
      createdBefore: new Date(now - SESSION_LIFETIME_MS + 1).toISOString(),
    });
    await this.storage.pruneDashboardLinks(new Date(now - LINK_MEMORY_MS + 1).toISOString());
  }
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
 * API key's while it is not revoked; a device or key this instance has not cached is "unknown"
 * (never taken for revoked: only a credential known revoked ends a shared session); any other
 * subject (none today) holds.
 * @param device the cached device of an id, undefined when not cached
 * @param apiKey the cached API key of an id (its `revokedAt` set once revoked), undefined when not cached
 */
export function creatorCheck(
  device: (deviceId: string) => { status: string } | undefined,
  apiKey: (keyId: string) => { revokedAt?: string | null } | undefined,
): CreatorCheck {
  return (createdBy) => {
    const colon = createdBy.indexOf(":");
    const [kind, id] = colon < 0 ? [createdBy, ""] : [createdBy.slice(0, colon), createdBy.slice(colon + 1)];
    if (kind === "device") {
      const record = device(id);
      return record ? record.status === "approved" : "unknown";
    }
    if (kind === "key") {
      const key = apiKey(id);
      return key ? !key.revokedAt : "unknown";
    }
    return true;
  };
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
