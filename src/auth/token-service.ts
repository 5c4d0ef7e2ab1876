import { createHash, randomBytes } from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";
import type { TokenStore, ApiKeyRecord } from "../store/token-types.js";
import { verifyAccessToken, signAccessToken, CLOCK_LEEWAY_SECONDS, type AccessTokenClaims } from "./jwt.js";
import type { SigningKeys } from "./signing-keys.js";
import { apiKeyPrefix, apiKeyLabel, checkApiKey, checkApiKeyState, generateApiKey } from "./api-keys.js";
import { hashSecret, randomToken } from "./secrets.js";
import { isKnownRole, scopesForRole, scopesFromString, type Principal } from "./roles.js";
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
  signingKeys: SigningKeys;
  pepper: Buffer;
  gatewayId: string;
  accessTtlMs: number;
  refreshTtlMs: number;
  devices: DeviceLookup;
  now: () => Date;
}

/** RFC 8705 certificate thumbprint: base64url SHA-256 of the DER certificate. */
export function certificateThumbprint(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("base64url");
}

/** A token's fingerprint for logs: enough to correlate, useless to replay. */
export function tokenFingerprint(token: string): string {
  return "sha256:" + createHash("sha256").update(token).digest("hex");
}

const MAX_CACHED_TOKENS = 50_000;

/**
 * Access tokens, refresh tokens and API keys. Verification is the hot path and reads memory
 * only: the signing-key ring, a cache of tokens already verified (kept until they expire, cleared
 * on any revocation), the API keys and the revoked token families.
 */
export class TokenService {
  private readonly verified = new Map<string, AccessTokenClaims>();
  private readonly apiKeys = new Map<string, ApiKeyRecord>();
  private readonly revokedFamilies = new Set<string>();

  constructor(private readonly options: TokenServiceOptions) {}

  async load(): Promise<void> {
    this.apiKeys.clear();
    for (const key of await this.options.store.listApiKeys()) this.apiKeys.set(key.keyId, key);
    const since = new Date(this.options.now().getTime() - this.options.refreshTtlMs).toISOString();
    for (const family of await this.options.store.listRevokedFamilies(since))
      this.revokedFamilies.add(family.familyId);
    this.verified.clear();
  }

  /** Called after anything is revoked or rotated: cached verdicts must be made again. */
  private forgetVerified(): void {
    this.verified.clear();
  }

  // Bearer access tokens --------------------------------------------------------------------

  async authenticateBearer(token: string, peerThumbprint: string | undefined): Promise<Principal> {
    const now = this.options.now();
    let claims = this.verified.get(token);
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
    return this.principalFromClaims(claims, token, peerThumbprint);
  }

  private principalFromClaims(
    claims: AccessTokenClaims,
    token: string,
    peerThumbprint: string | undefined,
  ): Principal {
    if (claims.fam && this.revokedFamilies.has(claims.fam)) {
      throw new GatehouseError("invalid_token", "the token's family was revoked");
    }
    const bound = claims.cnf?.["x5t#S256"];
    if (bound !== undefined && bound !== peerThumbprint) {
      throw new GatehouseError(
        "invalid_token",
        "the token is bound to a client certificate (RFC 8705) and this connection presents another one",
        "Send the token over the mutual-TLS connection with the certificate it was issued for.",
      );
    }
    const principal: Principal = {
      kind: "access_token",
      subject: claims.sub,
      role: typeof claims.role === "string" ? claims.role : "token",
      scopes: scopesFromString(claims.scope),
      credentialFingerprint: tokenFingerprint(token),
      expiresAt: new Date(claims.exp * 1000),
    };
    if (claims.sub.startsWith("key:")) {
      const key = this.apiKeys.get(claims.sub.slice(4));
      if (!key) throw new GatehouseError("invalid_token", "the token's API key no longer exists");
      if (key.revokedAt)
        throw new GatehouseError("invalid_token", `API key ${apiKeyLabel(key.prefix)} was revoked`);
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
    this.options.store.updateApiKey(key.keyId, { lastUsedAt: now.toISOString() }).catch(() => undefined);
    return this.startFamily(
      {
        subject: `key:${key.keyId}`,
        apiKeyId: key.keyId,
        deviceId: null,
        role,
        certThumbprint: peerThumbprint ?? null,
      },
      now,
    );
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
  ): Promise<TokenResponse> {
    const familyId = `fam_${randomToken(12)}`;
    const refresh = REFRESH_TOKEN_PREFIX + randomToken(30);
    const scope = scopesForRole(input.role).join(" ");
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
      this.refreshRecord(refresh, familyId, now),
    );
    return this.respond(input.subject, input.role, scope, familyId, input.certThumbprint, refresh, now);
  }

  private refreshRecord(refresh: string, familyId: string, now: Date) {
    return {
      tokenHash: hashSecret(this.options.pepper, refresh),
      familyId,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + this.options.refreshTtlMs).toISOString(),
      usedAt: null,
    };
  }

  private async respond(
    subject: string,
    role: string,
    scope: string,
    familyId: string,
    certThumbprint: string | null,
    refresh: string,
    now: Date,
  ): Promise<TokenResponse> {
    const ttlSeconds = Math.round(this.options.accessTtlMs / 1000);
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
   * refresh_token grant: single use, rotated each time. A token presented a second time means it
   * leaked (or a client raced itself): the whole family is revoked (RFC 9700 reuse detection).
   */
  async refresh(refreshToken: string, peerThumbprint: string | undefined): Promise<TokenResponse> {
    const now = this.options.now();
    if (!refreshToken.startsWith(REFRESH_TOKEN_PREFIX) || refreshToken.length > 256) {
      throw new GatehouseError("invalid_token", "the refresh token is malformed");
    }
    const use = await this.options.store.useRefreshToken(
      hashSecret(this.options.pepper, refreshToken),
      now.toISOString(),
    );
    if (use.outcome === "unknown")
      throw new GatehouseError("invalid_token", "the refresh token is not known");
    const { family, token } = use;
    if (use.outcome === "reused") {
      await this.revokeFamily(family.familyId, "refresh token reused");
      throw new GatehouseError("refresh_token_reused");
    }
    if (family.revokedAt || this.revokedFamilies.has(family.familyId)) {
      throw new GatehouseError(
        "invalid_token",
        `the refresh token's family was revoked (${family.revokeReason ?? "revoked"})`,
      );
    }
    if (token.expiresAt <= now.toISOString())
      throw new GatehouseError("token_expired", "the refresh token expired");
    if (family.certThumbprint && family.certThumbprint !== peerThumbprint) {
      throw new GatehouseError("invalid_token", "the refresh token is bound to another client certificate");
    }
    if (family.apiKeyId) {
      const key = this.apiKeys.get(family.apiKeyId);
      if (!key) throw new GatehouseError("invalid_token", "the refresh token's API key no longer exists");
      checkApiKeyState(key, now);
    }
    if (family.deviceId) {
      const device = this.options.devices(family.deviceId);
      if (device?.status !== "approved")
        throw new GatehouseError("device_revoked", `device ${family.deviceId} is no longer approved`);
    }
    const [role = "", scope = ""] = family.scope.split("|");
    const next = REFRESH_TOKEN_PREFIX + randomToken(30);
    await this.options.store.insertRefreshToken(this.refreshRecord(next, family.familyId, now));
    return this.respond(family.subject, role, scope, family.familyId, family.certThumbprint, next, now);
  }

  async revokeFamily(familyId: string, reason: string): Promise<void> {
    await this.options.store.revokeTokenFamily(familyId, this.options.now().toISOString(), reason);
    this.revokedFamilies.add(familyId);
    this.forgetVerified();
  }

  // API keys --------------------------------------------------------------------------------

  async createApiKey(input: {
    name: string;
    role: string;
    expiresInMs?: number;
  }): Promise<{ record: ApiKeyRecord; secret: string }> {
    if (!isKnownRole(input.role))
      throw new GatehouseError("invalid_request", `unknown role ${JSON.stringify(input.role)}`);
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
    this.apiKeys.set(record.keyId, record);
    return { record, secret };
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
    if (updated) this.apiKeys.set(updated.keyId, updated);
    // Families minted with the key were revoked in the same transaction; mirror that in memory.
    const since = new Date(0).toISOString();
    for (const family of await this.options.store.listRevokedFamilies(since))
      this.revokedFamilies.add(family.familyId);
    this.forgetVerified();
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
    this.apiKeys.set(old.keyId, previous);
    this.apiKeys.set(record.keyId, record);
    this.forgetVerified();
    return { record, secret, previous };
  }
}
