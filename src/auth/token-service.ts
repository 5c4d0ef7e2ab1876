import { createHash, randomBytes } from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";
import type { TokenStore, ApiKeyRecord, TokenFamilyRecord } from "../store/token-types.js";
import { verifyAccessToken, signAccessToken, CLOCK_LEEWAY_SECONDS, type AccessTokenClaims } from "./jwt.js";
import type { SigningKeys } from "./signing-keys.js";
import { apiKeyPrefix, apiKeyLabel, checkApiKey, checkApiKeyState, generateApiKey } from "./api-keys.js";
import { hashSecret, randomToken } from "./secrets.js";
import { requireKnownRole, scopesForRole, scopesFromString, type Principal } from "./roles.js";
import type { DeviceLookup } from "./client-cert.js";

export const REFRESH_TOKEN_PREFIX = "ghr_";

export interface TokenResponse {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
  scope: string;
}

export interface TokenServiceOptions {
  store: TokenStore;
  /** Only the verification ring and the active signer are used. */
  signingKeys: Pick<SigningKeys, "ring" | "signer">;
  pepper: Buffer;
  gatewayId: string;
  accessTtlMs: number;
  refreshTtlMs: number;
  devices: DeviceLookup;
  now: () => Date;
  /** Told of each verification's result and each API key revoked (the gateway's metrics); none by default. */
  metrics?: TokenMetrics;
  /**
   * Told of each API key and token family this service changed, once the change is durable (the
   * cluster's NOTIFY: the other gateway instances re-read it); nothing by default.
   */
  publish?: (change: TokenChange) => void;
}

/** An API key or token family changed here, for the other gateway instances to re-read. */
export type TokenChange = { kind: "api_key"; keyId: string } | { kind: "token_family"; familyId: string };

/** What the token service reports to the gateway's metrics (GatewayMetrics satisfies it). */
export interface TokenMetrics {
  tokenVerified(result: "cache_hit" | "cache_miss" | "refused"): void;
  revoked(kind: "api_key"): void;
}

const NO_METRICS: TokenMetrics = { tokenVerified: () => undefined, revoked: () => undefined };

/** A token's fingerprint for logs: enough to correlate, useless to replay. */
export function tokenFingerprint(token: string): string {
  return "sha256:" + createHash("sha256").update(token).digest("hex");
}

const MAX_CACHED_TOKENS = 50_000;

/**
 * RFC 8705 §3: a token bound to a client certificate is honoured only on a connection presenting
 * that certificate. Throws `invalid_token` (with a hint saying so) otherwise.
 */
function checkCertificateBinding(
  bound: string | null | undefined,
  peerThumbprint: string | undefined,
  what: string,
): void {
  if (bound === null || bound === undefined || bound === peerThumbprint) return;
  throw new GatehouseError(
    "invalid_token",
    `the ${what} is bound to a client certificate (RFC 8705) and this connection ${
      peerThumbprint ? "presents another one" : "presents none"
    }`,
    `Send the ${what} over the mutual-TLS connection with the certificate it was issued for.`,
  );
}

/**
 * When a credential stops being valid: an API key's expiry or the end of its rotation grace,
 * whichever is first; undefined when it never ends on its own.
 */
function apiKeyEnd(key: ApiKeyRecord): Date | undefined {
  const ends = [key.expiresAt, key.graceUntil].filter((end): end is string => end !== null).sort();
  return ends[0] === undefined ? undefined : new Date(ends[0]);
}

/**
 * Access tokens, refresh tokens and API keys. Verification is the hot path and reads memory
 * only: the signing-key ring, a cache of tokens already verified (kept until they expire, cleared
 * on any revocation), the API keys and the revoked token families.
 */
export class TokenService {
  private readonly verified = new Map<string, AccessTokenClaims>();
  private apiKeys = new Map<string, ApiKeyRecord>();
  /** The keys cached while a `load` reads the list, one map per load in flight. */
  private readonly keysWrittenDuringLoad = new Set<Map<string, ApiKeyRecord>>();
  private readonly revokedFamilies = new Set<string>();
  private readonly metrics: TokenMetrics;
  private readonly publish: (change: TokenChange) => void;

  constructor(private readonly options: TokenServiceOptions) {
    this.metrics = options.metrics ?? NO_METRICS;
    this.publish = options.publish ?? (() => undefined);
  }

  /**
   * Reads the API keys and the revoked families (at start, and again after another instance's
   * changes may have been missed). The key cache is swapped whole once read: requests meanwhile
   * see the old one, never an empty one.
   */
  async load(): Promise<void> {
    // Keys created, used or revoked here while the list is read are newer than the list.
    const during = new Map<string, ApiKeyRecord>();
    this.keysWrittenDuringLoad.add(during);
    let keys: ApiKeyRecord[];
    try {
      keys = await this.options.store.listApiKeys();
    } finally {
      this.keysWrittenDuringLoad.delete(during);
    }
    this.apiKeys = new Map([...keys, ...during.values()].map((key) => [key.keyId, key]));
    await this.refreshRevokedFamilies();
  }

  /** Caches an API key record (every write to the key cache goes through here). */
  private cacheKey(key: ApiKeyRecord): void {
    this.apiKeys.set(key.keyId, key);
    for (const during of this.keysWrittenDuringLoad) during.set(key.keyId, key);
  }

  /**
   * Re-reads one API key another instance changed (created, revoked, rotated); a revoked key's
   * families were revoked with it, so those are re-read too. Cached verdicts are dropped.
   */
  async refreshApiKey(keyId: string): Promise<void> {
    const key = await this.options.store.getApiKey(keyId);
    if (key) this.cacheKey(key);
    else this.apiKeys.delete(keyId);
    if (key?.revokedAt) await this.refreshRevokedFamilies();
    this.forgetVerified();
  }

  /** Re-reads the families revoked within a refresh token's life; cached verdicts are dropped. */
  async refreshRevokedFamilies(): Promise<void> {
    const since = new Date(this.options.now().getTime() - this.options.refreshTtlMs).toISOString();
    for (const family of await this.options.store.listRevokedFamilies(since))
      this.revokedFamilies.add(family.familyId);
    this.forgetVerified();
  }

  /** Called after anything is revoked or rotated: cached verdicts must be made again. */
  private forgetVerified(): void {
    this.verified.clear();
  }

  // Bearer access tokens --------------------------------------------------------------------

  /**
   * The principal a bearer access token (RFC 6750, a JWT per RFC 9068) stands for.
   * @throws GatehouseError `invalid_token`, `token_expired`, `device_revoked`, … (each counted as refused).
   */
  async authenticateBearer(token: string, peerThumbprint: string | undefined): Promise<Principal> {
    // One async step per token (the signature check on first sight), none on a cache hit's path
    // besides this function's own: the verify is the cost, nothing around it should add to it.
    const now = this.options.now();
    let claims = this.verified.get(token);
    const result = claims ? "cache_hit" : "cache_miss";
    try {
      if (claims && claims.exp + CLOCK_LEEWAY_SECONDS <= now.getTime() / 1000) {
        this.verified.delete(token);
        throw new GatehouseError("token_expired", "the token expired");
      }
      if (!claims) {
        ({ claims } = await verifyAccessToken(token, {
          ring: this.options.signingKeys.ring,
          issuer: this.options.gatewayId,
          audience: this.options.gatewayId,
          now,
        }));
        if (this.verified.size >= MAX_CACHED_TOKENS) this.verified.clear();
        this.verified.set(token, claims);
      }
      const principal = this.principalFromClaims(claims, token, peerThumbprint, now);
      this.metrics.tokenVerified(result);
      return principal;
    } catch (error) {
      this.metrics.tokenVerified("refused");
      throw error;
    }
  }

  private principalFromClaims(
    claims: AccessTokenClaims,
    token: string,
    peerThumbprint: string | undefined,
    now: Date,
  ): Principal {
    if (claims.fam && this.revokedFamilies.has(claims.fam)) {
      throw new GatehouseError("invalid_token", "the token's family was revoked");
    }
    checkCertificateBinding(claims.cnf?.["x5t#S256"], peerThumbprint, "token");
    let fingerprint: string | undefined;
    const principal: Principal = {
      kind: "access_token",
      subject: claims.sub,
      role: typeof claims.role === "string" ? claims.role : "token",
      scopes: scopesFromString(claims.scope),
      // Hashed when something reads it (a refusal's log line, a session's), not on every request.
      get credentialFingerprint() {
        return (fingerprint ??= tokenFingerprint(token));
      },
      expiresAt: new Date(claims.exp * 1000),
    };
    if (claims.sub.startsWith("key:")) {
      const key = this.apiKeys.get(claims.sub.slice(4));
      if (!key) throw new GatehouseError("invalid_token", "the token's API key no longer exists");
      // A token never outlives its key: revoked, expired or past its rotation grace, checked
      // here without clock leeway (the key's state is in memory, so this costs a Map lookup).
      checkApiKeyState(key, now);
      principal.apiKeyId = key.keyId;
    } else if (claims.sub.startsWith("device:")) {
      const deviceId = claims.sub.slice(7);
      const device = this.options.devices(deviceId);
      if (!device) throw new GatehouseError("invalid_token", `device ${deviceId} is not known`);
      if (device.status === "revoked")
        throw new GatehouseError("device_revoked", `device ${deviceId} has been revoked`);
      if (device.status !== "approved")
        throw new GatehouseError(
          `device_${device.status}` as "device_pending",
          `device ${deviceId} is ${device.status}`,
        );
      principal.deviceId = deviceId;
      principal.deviceKind = device.kind;
    }
    return principal;
  }

  // Grants ----------------------------------------------------------------------------------

  /** client_credentials with an API key. Over mTLS the tokens are bound to that certificate. */
  async exchangeApiKey(secret: string, peerThumbprint: string | undefined): Promise<TokenResponse> {
    const now = this.options.now();
    const prefix = apiKeyPrefix(secret);
    const record = prefix ? [...this.apiKeys.values()].find((k) => k.prefix === prefix) : undefined;
    const key = checkApiKey(record, secret, this.options.pepper, now);
    const role = key.role;
    await this.recordKeyUse(key, now);
    return this.startFamily(
      {
        subject: `key:${key.keyId}`,
        apiKeyId: key.keyId,
        deviceId: null,
        role,
        certThumbprint: peerThumbprint ?? null,
      },
      now,
      apiKeyEnd(key),
    );
  }

  /**
   * Records that an API key was just used: in the cache `keys list` reads (at once, so a listing
   * right after the use shows it) and in the store, before the grant answers (the grant writes
   * its token family there too, so this adds no new way to fail).
   */
  private async recordKeyUse(key: ApiKeyRecord, now: Date): Promise<void> {
    const lastUsedAt = now.toISOString();
    const cached = this.apiKeys.get(key.keyId);
    if (cached) this.cacheKey({ ...cached, lastUsedAt });
    await this.options.store.updateApiKey(key.keyId, { lastUsedAt });
  }

  /** client_credentials with the client certificate alone: a token for that device, bound to it. */
  async exchangeClientCertificate(principal: Principal, thumbprint: string): Promise<TokenResponse> {
    return this.startFamily(
      {
        subject: principal.subject,
        apiKeyId: null,
        deviceId: principal.deviceId ?? null,
        role: principal.role,
        certThumbprint: thumbprint,
      },
      this.options.now(),
      undefined,
    );
  }

  private async startFamily(
    input: {
      subject: string;
      apiKeyId: string | null;
      deviceId: string | null;
      role: string;
      certThumbprint: string | null;
    },
    now: Date,
    notAfter: Date | undefined,
  ): Promise<TokenResponse> {
    const familyId = `fam_${randomToken(12)}`;
    const refresh = REFRESH_TOKEN_PREFIX + randomToken(30);
    const scope = scopesForRole(input.role).join(" ");
    const accessTtlSeconds = this.accessTtlSeconds(now, notAfter);
    await this.options.store.createTokenFamily(
      {
        familyId,
        subject: input.subject,
        apiKeyId: input.apiKeyId,
        deviceId: input.deviceId,
        scope: `${input.role}|${scope}`,
        certThumbprint: input.certThumbprint,
        createdAt: now.toISOString(),
        revokedAt: null,
        revokeReason: null,
      },
      this.refreshRecord(refresh, familyId, now, notAfter),
    );
    return this.respond(
      input.subject,
      input.role,
      scope,
      familyId,
      input.certThumbprint,
      refresh,
      now,
      accessTtlSeconds,
    );
  }

  /** A refresh token's row: it lives `refreshTtl`, but never past `notAfter` (its credential's end). */
  private refreshRecord(refresh: string, familyId: string, now: Date, notAfter: Date | undefined) {
    const ends = now.getTime() + this.options.refreshTtlMs;
    return {
      tokenHash: hashSecret(this.options.pepper, refresh),
      familyId,
      createdAt: now.toISOString(),
      expiresAt: new Date(notAfter ? Math.min(ends, notAfter.getTime()) : ends).toISOString(),
      usedAt: null,
    };
  }

  /**
   * An access token's lifetime in whole seconds: `accessTtl`, cut so that `exp` (iat + ttl, both
   * whole seconds as signAccessToken writes them) is not after `notAfter`. Refuses with
   * `token_expired` when less than a second of the credential is left.
   */
  private accessTtlSeconds(now: Date, notAfter: Date | undefined): number {
    const ttl = Math.round(this.options.accessTtlMs / 1000);
    if (!notAfter) return ttl;
    const left = Math.floor(notAfter.getTime() / 1000) - Math.floor(now.getTime() / 1000);
    if (left <= 0)
      throw new GatehouseError("token_expired", `the credential expires at ${notAfter.toISOString()}`);
    return Math.min(ttl, left);
  }

  private async respond(
    subject: string,
    role: string,
    scope: string,
    familyId: string,
    certThumbprint: string | null,
    refresh: string,
    now: Date,
    ttlSeconds: number,
  ): Promise<TokenResponse> {
    const accessToken = await signAccessToken({
      key: this.options.signingKeys.signer(),
      issuer: this.options.gatewayId,
      audience: this.options.gatewayId,
      subject,
      scope,
      now,
      ttlSeconds,
      jti: randomBytes(12).toString("base64url"),
      family: familyId,
      role,
      ...(certThumbprint ? { certThumbprint } : {}),
    });
    return {
      access_token: accessToken,
      token_type: "Bearer",
      expires_in: ttlSeconds,
      refresh_token: refresh,
      scope,
    };
  }

  /**
   * refresh_token grant (RFC 6749 §6): single use, rotated each time. Every check that can refuse
   * comes before the token is spent, and spending it (with storing its successor) is the last,
   * atomic step, so a refusal changes nothing. The certificate binding is checked first: a token
   * presented without its certificate proves nothing, so it can neither be spent nor, by looking
   * reused, revoke its family (RFC 8705 §3). A token presented a second time by its holder means it
   * leaked (or a client raced itself): the whole family is revoked (RFC 9700 §4.14.2).
   * Errors: `invalid_token` (malformed, unknown, bound elsewhere, family or key revoked),
   * `refresh_token_reused`, `token_expired` (the token or its API key), `device_*`.
   */
  async refresh(refreshToken: string, peerThumbprint: string | undefined): Promise<TokenResponse> {
    const now = this.options.now();
    if (!refreshToken.startsWith(REFRESH_TOKEN_PREFIX) || refreshToken.length > 256) {
      throw new GatehouseError("invalid_token", "the refresh token is malformed");
    }
    const tokenHash = hashSecret(this.options.pepper, refreshToken);
    const found = await this.options.store.findRefreshToken(tokenHash);
    if (!found) throw new GatehouseError("invalid_token", "the refresh token is not known");
    const { family, token } = found;
    checkCertificateBinding(family.certThumbprint, peerThumbprint, "refresh token");
    if (token.usedAt !== null) return this.refuseReuse(family);
    this.checkFamilyLive(family);
    if (token.expiresAt <= now.toISOString())
      throw new GatehouseError("token_expired", "the refresh token expired");
    const notAfter = this.checkFamilyCredential(family, now);

    const [role = "", scope = ""] = family.scope.split("|");
    const accessTtlSeconds = this.accessTtlSeconds(now, notAfter);
    const next = REFRESH_TOKEN_PREFIX + randomToken(30);
    const use = await this.options.store.useRefreshToken(
      tokenHash,
      now.toISOString(),
      this.refreshRecord(next, family.familyId, now, notAfter),
    );
    // The outcomes below are races lost since the checks above: another use, or a revocation.
    if (use.outcome === "unknown")
      throw new GatehouseError("invalid_token", "the refresh token is not known");
    if (use.outcome === "reused") return this.refuseReuse(family);
    if (use.outcome === "revoked") this.checkFamilyLive(use.family);
    return this.respond(
      family.subject,
      role,
      scope,
      family.familyId,
      family.certThumbprint,
      next,
      now,
      accessTtlSeconds,
    );
  }

  private async refuseReuse(family: TokenFamilyRecord): Promise<never> {
    await this.revokeFamily(family.familyId, "refresh token reused");
    throw new GatehouseError("refresh_token_reused");
  }

  /** Throws `invalid_token` when the family was revoked (in the store or since, in memory). */
  private checkFamilyLive(family: TokenFamilyRecord): void {
    if (family.revokedAt || this.revokedFamilies.has(family.familyId)) {
      throw new GatehouseError(
        "invalid_token",
        `the refresh token's family was revoked (${family.revokeReason ?? "revoked"})`,
      );
    }
  }

  /**
   * The family's credential must still be good: its API key (returns the key's end, which caps
   * what is minted) or its device (must be approved). Memory only.
   */
  private checkFamilyCredential(family: TokenFamilyRecord, now: Date): Date | undefined {
    if (family.deviceId) {
      const device = this.options.devices(family.deviceId);
      if (device?.status !== "approved")
        throw new GatehouseError("device_revoked", `device ${family.deviceId} is no longer approved`);
    }
    if (!family.apiKeyId) return undefined;
    const key = this.apiKeys.get(family.apiKeyId);
    if (!key) throw new GatehouseError("invalid_token", "the refresh token's API key no longer exists");
    checkApiKeyState(key, now);
    return apiKeyEnd(key);
  }

  async revokeFamily(familyId: string, reason: string): Promise<void> {
    await this.options.store.revokeTokenFamily(familyId, this.options.now().toISOString(), reason);
    this.revokedFamilies.add(familyId);
    this.forgetVerified();
    this.publish({ kind: "token_family", familyId });
  }

  // API keys --------------------------------------------------------------------------------

  async createApiKey(input: {
    name: string;
    role: string;
    expiresInMs?: number;
  }): Promise<{ record: ApiKeyRecord; secret: string }> {
    requireKnownRole(input.role);
    const now = this.options.now();
    const { secret, prefix } = generateApiKey();
    const record: ApiKeyRecord = {
      keyId: `key_${prefix}`,
      name: input.name,
      role: input.role,
      prefix,
      hash: hashSecret(this.options.pepper, secret),
      createdAt: now.toISOString(),
      expiresAt: input.expiresInMs ? new Date(now.getTime() + input.expiresInMs).toISOString() : null,
      revokedAt: null,
      revokeReason: null,
      replacedBy: null,
      graceUntil: null,
      lastUsedAt: null,
    };
    await this.options.store.createApiKey(record);
    this.cacheKey(record);
    this.publish({ kind: "api_key", keyId: record.keyId });
    return { record, secret };
  }

  /** The cached API key with this id (`key_…`), or undefined: one lookup, no copy or sort. */
  apiKey(keyId: string): ApiKeyRecord | undefined {
    return this.apiKeys.get(keyId);
  }

  listApiKeys(): ApiKeyRecord[] {
    return [...this.apiKeys.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  findApiKey(idOrPrefix: string): ApiKeyRecord {
    const wanted = idOrPrefix.replace(/^ghk_/, "").replace(/^key_/, "");
    const key = this.apiKeys.get(`key_${wanted}`);
    if (!key)
      throw new GatehouseError(
        "not_found",
        `no API key ${JSON.stringify(idOrPrefix)}`,
        "`gatehouse keys list` shows the keys.",
      );
    return key;
  }

  async revokeApiKey(idOrPrefix: string, reason: string | null): Promise<ApiKeyRecord> {
    const key = this.findApiKey(idOrPrefix);
    const updated = await this.options.store.revokeApiKey(
      key.keyId,
      this.options.now().toISOString(),
      reason,
    );
    if (updated) this.cacheKey(updated);
    if (updated && !key.revokedAt) this.metrics.revoked("api_key");
    // Families minted with the key were revoked in the same transaction; mirror that in memory.
    const since = new Date(0).toISOString();
    for (const family of await this.options.store.listRevokedFamilies(since))
      this.revokedFamilies.add(family.familyId);
    this.forgetVerified();
    this.publish({ kind: "api_key", keyId: key.keyId });
    return updated ?? key;
  }

  /** A new key for the same name and role; the old one keeps working until the grace ends. */
  async rotateApiKey(
    idOrPrefix: string,
    graceMs: number,
  ): Promise<{ record: ApiKeyRecord; secret: string; previous: ApiKeyRecord }> {
    const old = this.findApiKey(idOrPrefix);
    if (old.revokedAt)
      throw new GatehouseError(
        "invalid_request",
        `API key ${apiKeyLabel(old.prefix)} is revoked; create a new one`,
      );
    const now = this.options.now();
    const { secret, prefix } = generateApiKey();
    const record: ApiKeyRecord = {
      ...old,
      keyId: `key_${prefix}`,
      prefix,
      hash: hashSecret(this.options.pepper, secret),
      createdAt: now.toISOString(),
      replacedBy: null,
      graceUntil: null,
      lastUsedAt: null,
    };
    const graceUntil = new Date(now.getTime() + graceMs).toISOString();
    await this.options.store.rotateApiKey(old.keyId, graceUntil, record);
    const previous = { ...old, replacedBy: record.keyId, graceUntil };
    this.cacheKey(previous);
    this.cacheKey(record);
    this.forgetVerified();
    this.publish({ kind: "api_key", keyId: old.keyId });
    this.publish({ kind: "api_key", keyId: record.keyId });
    return { record, secret, previous };
  }
}
