/** API keys, signing keys and refresh tokens: the durable half of token authentication. */
export interface ApiKeyRecord {
  keyId: string;
  name: string;
  role: string;
  /** The public 8-character part after `ghk_`: identifies the key in logs and lookups. */
  prefix: string;
  /** Keyed hash (HMAC-SHA-256) of the whole key; the key itself is never stored. */
  hash: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  revokeReason: string | null;
  /** Set when the key was rotated: the key that replaces it, and when this one stops. */
  replacedBy: string | null;
  graceUntil: string | null;
  lastUsedAt: string | null;
}

export interface SigningKeyRecord {
  kid: string;
  alg: string;
  /**
   * The private key, sealed under the key-encryption key (auth/key-encryption.ts): the database
   * never holds it in the clear. A database from before migration 0006 holds a PKCS#8 PEM here
   * until the gateway's next start seals it in place.
   */
  sealedPrivateKey: string;
  /** Public JWK as JSON text. */
  publicJwk: string;
  createdAt: string;
  /** After a rotation: the key verifies (but no longer signs) until this time, then retires. */
  verifyUntil: string | null;
}

export interface TokenFamilyRecord {
  familyId: string;
  subject: string;
  apiKeyId: string | null;
  deviceId: string | null;
  scope: string;
  /** x5t#S256 of the client certificate the family is bound to (RFC 8705), if any. */
  certThumbprint: string | null;
  createdAt: string;
  revokedAt: string | null;
  revokeReason: string | null;
}

export interface RefreshTokenRecord {
  tokenHash: string;
  familyId: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
}

export type RefreshUse =
  | { outcome: "unknown" }
  | { outcome: "used"; token: RefreshTokenRecord; family: TokenFamilyRecord }
  | { outcome: "reused"; token: RefreshTokenRecord; family: TokenFamilyRecord }
  /** The family was revoked before the token could be spent: nothing was written. */
  | { outcome: "revoked"; token: RefreshTokenRecord; family: TokenFamilyRecord };

export interface TokenStore {
  createApiKey(key: ApiKeyRecord): Promise<void>;
  getApiKey(keyId: string): Promise<ApiKeyRecord | undefined>;
  findApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | undefined>;
  listApiKeys(): Promise<ApiKeyRecord[]>;
  updateApiKey(keyId: string, patch: Partial<Omit<ApiKeyRecord, "keyId">>): Promise<ApiKeyRecord | undefined>;
  /** Revokes a key and, in the same transaction, every token family minted with it. */
  revokeApiKey(keyId: string, at: string, reason: string | null): Promise<ApiKeyRecord | undefined>;
  /** Inserts the new key and marks the old one replaced, ending at graceUntil, in one transaction. */
  rotateApiKey(oldKeyId: string, graceUntil: string, replacement: ApiKeyRecord): Promise<void>;

  insertSigningKey(key: SigningKeyRecord): Promise<void>;
  listSigningKeys(): Promise<SigningKeyRecord[]>;
  setSigningKeyVerifyUntil(kid: string, verifyUntil: string): Promise<void>;
  deleteSigningKey(kid: string): Promise<void>;
  /**
   * Replaces plaintext key material with its sealed form, in one transaction, each row only if it
   * still holds `plaintext`; then scrubs the freed bytes from the database file (SQLite: VACUUM and
   * a truncating WAL checkpoint), so a later copy of the file holds no trace of the plaintext.
   */
  sealSigningKeys(updates: { kid: string; plaintext: string; sealed: string }[]): Promise<void>;

  createTokenFamily(family: TokenFamilyRecord, first: RefreshTokenRecord): Promise<void>;
  /** A refresh token and its family, read without spending it (for the checks that may refuse). */
  findRefreshToken(
    tokenHash: string,
  ): Promise<{ token: RefreshTokenRecord; family: TokenFamilyRecord } | undefined>;
  /**
   * Spends a refresh token at most once and stores its successor, in one transaction: the first use
   * of a token of a live family marks it used and inserts `next`; a token already used reports
   * "reused" (the caller revokes the family); a revoked family reports "revoked". Only "used" writes.
   */
  useRefreshToken(tokenHash: string, at: string, next: RefreshTokenRecord): Promise<RefreshUse>;
  insertRefreshToken(token: RefreshTokenRecord): Promise<void>;
  revokeTokenFamily(familyId: string, at: string, reason: string): Promise<void>;
  /** Families revoked after `since` (the verifier keeps these in memory). */
  listRevokedFamilies(since: string): Promise<TokenFamilyRecord[]>;
}
