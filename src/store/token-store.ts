import type { Kysely } from "kysely";
import type { Database as Tables } from "./migrations.js";
import type {
  ApiKeyRecord,
  RefreshTokenRecord,
  RefreshUse,
  SigningKeyRecord,
  TokenFamilyRecord,
  TokenStore,
} from "./token-types.js";

/** The token tables over Kysely; portable SQL only, like KyselyStore. */
export class KyselyTokenStore implements TokenStore {
  /**
   * @param scrubFreedPages makes the bytes of deleted and overwritten rows unreadable in the
   *   database's files; the dialect's opener supplies it (for SQLite: VACUUM, then a truncating
   *   WAL checkpoint).
   */
  constructor(
    private readonly db: Kysely<Tables>,
    private readonly scrubFreedPages: () => Promise<void> = () => Promise.resolve(),
  ) {}

  async createApiKey(key: ApiKeyRecord): Promise<void> {
    await this.db.insertInto("api_keys").values(key).execute();
  }

  async getApiKey(keyId: string): Promise<ApiKeyRecord | undefined> {
    return this.db.selectFrom("api_keys").selectAll().where("keyId", "=", keyId).executeTakeFirst();
  }

  async findApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | undefined> {
    return this.db.selectFrom("api_keys").selectAll().where("prefix", "=", prefix).executeTakeFirst();
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    // The id breaks ties, so both databases list keys made in one millisecond alike.
    return this.db.selectFrom("api_keys").selectAll().orderBy("createdAt").orderBy("keyId").execute();
  }

  async updateApiKey(
    keyId: string,
    patch: Partial<Omit<ApiKeyRecord, "keyId">>,
  ): Promise<ApiKeyRecord | undefined> {
    const { keyId: _ignored, ...values } = patch as Partial<ApiKeyRecord>;
    if (Object.keys(values).length === 0) return this.getApiKey(keyId);
    return this.db
      .updateTable("api_keys")
      .set(values)
      .where("keyId", "=", keyId)
      .returningAll()
      .executeTakeFirst();
  }

  async revokeApiKey(keyId: string, at: string, reason: string | null): Promise<ApiKeyRecord | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const key = await trx
        .updateTable("api_keys")
        .set({ revokedAt: at, revokeReason: reason })
        .where("keyId", "=", keyId)
        .returningAll()
        .executeTakeFirst();
      if (!key) return undefined;
      await trx
        .updateTable("token_families")
        .set({ revokedAt: at, revokeReason: "api key revoked" })
        .where("apiKeyId", "=", keyId)
        .where("revokedAt", "is", null)
        .execute();
      return key;
    });
  }

  async rotateApiKey(oldKeyId: string, graceUntil: string, replacement: ApiKeyRecord): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto("api_keys").values(replacement).execute();
      await trx
        .updateTable("api_keys")
        .set({ replacedBy: replacement.keyId, graceUntil })
        .where("keyId", "=", oldKeyId)
        .execute();
    });
  }

  async insertSigningKey(key: SigningKeyRecord): Promise<void> {
    await this.db.insertInto("signing_keys").values(key).execute();
  }

  async listSigningKeys(): Promise<SigningKeyRecord[]> {
    return this.db.selectFrom("signing_keys").selectAll().orderBy("createdAt").orderBy("kid").execute();
  }

  async setSigningKeyVerifyUntil(kid: string, verifyUntil: string): Promise<void> {
    await this.db.updateTable("signing_keys").set({ verifyUntil }).where("kid", "=", kid).execute();
  }

  async deleteSigningKey(kid: string): Promise<void> {
    await this.db.deleteFrom("signing_keys").where("kid", "=", kid).execute();
  }

  async sealSigningKeys(updates: { kid: string; plaintext: string; sealed: string }[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      for (const { kid, plaintext, sealed } of updates)
        await trx
          .updateTable("signing_keys")
          .set({ sealedPrivateKey: sealed })
          .where("kid", "=", kid)
          .where("sealedPrivateKey", "=", plaintext)
          .execute();
    });
    await this.scrubFreedPages();
  }

  async createTokenFamily(family: TokenFamilyRecord, first: RefreshTokenRecord): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto("token_families").values(family).execute();
      await trx.insertInto("refresh_tokens").values(first).execute();
    });
  }

  async findRefreshToken(
    tokenHash: string,
  ): Promise<{ token: RefreshTokenRecord; family: TokenFamilyRecord } | undefined> {
    const token = await this.db
      .selectFrom("refresh_tokens")
      .selectAll()
      .where("tokenHash", "=", tokenHash)
      .executeTakeFirst();
    if (!token) return undefined;
    const family = await this.db
      .selectFrom("token_families")
      .selectAll()
      .where("familyId", "=", token.familyId)
      .executeTakeFirstOrThrow();
    return { token, family };
  }

  async useRefreshToken(tokenHash: string, at: string, next: RefreshTokenRecord): Promise<RefreshUse> {
    return this.db.transaction().execute(async (trx) => {
      const token = await trx
        .selectFrom("refresh_tokens")
        .selectAll()
        .where("tokenHash", "=", tokenHash)
        .executeTakeFirst();
      if (!token) return { outcome: "unknown" as const };
      const family = await trx
        .selectFrom("token_families")
        .selectAll()
        .where("familyId", "=", token.familyId)
        .executeTakeFirstOrThrow();
      if (token.usedAt !== null) return { outcome: "reused" as const, token, family };
      if (family.revokedAt !== null) return { outcome: "revoked" as const, token, family };
      // The conditional UPDATE is the single-use guarantee: of two concurrent uses only one
      // matches `used_at IS NULL`.
      const spent = await trx
        .updateTable("refresh_tokens")
        .set({ usedAt: at })
        .where("tokenHash", "=", tokenHash)
        .where("usedAt", "is", null)
        .returningAll()
        .executeTakeFirst();
      if (!spent) return { outcome: "reused" as const, token, family };
      // Spent and succeeded together: a crash between them cannot leave a client without a token.
      await trx.insertInto("refresh_tokens").values(next).execute();
      return { outcome: "used" as const, token: spent, family };
    });
  }

  async insertRefreshToken(token: RefreshTokenRecord): Promise<void> {
    await this.db.insertInto("refresh_tokens").values(token).execute();
  }

  async revokeTokenFamily(familyId: string, at: string, reason: string): Promise<void> {
    await this.db
      .updateTable("token_families")
      .set({ revokedAt: at, revokeReason: reason })
      .where("familyId", "=", familyId)
      .where("revokedAt", "is", null)
      .execute();
  }

  async listRevokedFamilies(since: string): Promise<TokenFamilyRecord[]> {
    return this.db.selectFrom("token_families").selectAll().where("revokedAt", ">=", since).execute();
  }
}
