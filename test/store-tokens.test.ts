// The token tables (API keys, signing keys, refresh tokens) on both databases: the same answers,
// and a refresh token spent at most once even when two instances spend it at once.
import { describe, expect, it } from "vitest";
import type { ApiKeyRecord, RefreshTokenRecord, Store, TokenFamilyRecord } from "../src/store/index.js";
import { DIALECTS, eachDialectStore, type Dialect, type DialectStore } from "./fixtures/store-dialects.js";

const T0 = "2026-01-01T00:00:00.000Z";

const apiKey = (keyId: string): ApiKeyRecord => ({
  keyId,
  name: `key ${keyId}`,
  role: "operator",
  prefix: `p${keyId}`.padEnd(8, "x"),
  hash: `hash-${keyId}`,
  createdAt: T0,
  expiresAt: null,
  revokedAt: null,
  revokeReason: null,
  replacedBy: null,
  graceUntil: null,
  lastUsedAt: null,
});

const family = (familyId: string, apiKeyId: string | null): TokenFamilyRecord => ({
  familyId,
  subject: "key:k1",
  apiKeyId,
  deviceId: null,
  scope: "nodes:read",
  certThumbprint: null,
  createdAt: T0,
  revokedAt: null,
  revokeReason: null,
});

const refresh = (tokenHash: string, familyId: string): RefreshTokenRecord => ({
  tokenHash,
  familyId,
  createdAt: T0,
  expiresAt: "2026-02-01T00:00:00.000Z",
  usedAt: null,
});

for (const { dialect, skip } of DIALECTS)
  describe.skipIf(skip)(`${dialect} token tables`, () => tokensSuite(dialect));

function tokensSuite(dialect: Dialect): void {
  let database: DialectStore;
  let store: Store;
  eachDialectStore(dialect, (opened) => {
    database = opened;
    store = opened.store;
  });

  it("revokes a key with every family minted with it, and rotates one with a grace period", async () => {
    await store.tokens.createApiKey(apiKey("k1"));
    await store.tokens.createTokenFamily(family("f1", "k1"), refresh("h1", "f1"));
    expect((await store.tokens.findApiKeyByPrefix("pk1xxxxx"))?.keyId).toBe("k1");

    await store.tokens.rotateApiKey("k1", "2026-01-02T00:00:00.000Z", apiKey("k2"));
    expect(await store.tokens.getApiKey("k1")).toMatchObject({
      replacedBy: "k2",
      graceUntil: "2026-01-02T00:00:00.000Z",
    });

    const revoked = await store.tokens.revokeApiKey("k1", "2026-01-01T01:00:00.000Z", "leaked");
    expect(revoked).toMatchObject({ revokedAt: "2026-01-01T01:00:00.000Z", revokeReason: "leaked" });
    expect((await store.tokens.listRevokedFamilies(T0)).map((f) => f.familyId)).toEqual(["f1"]);
    expect((await store.tokens.listApiKeys()).map((k) => k.keyId)).toEqual(["k1", "k2"]);
  });

  it("spends a refresh token once, even when spent twice at once (on PostgreSQL by two instances)", async () => {
    await store.tokens.createTokenFamily(family("f1", null), refresh("h1", "f1"));
    // One SQLite file belongs to one gateway; two PostgreSQL stores are two instances.
    const other = dialect === "postgres" ? await database.open() : store;
    const uses = await Promise.all([
      store.tokens.useRefreshToken("h1", "2026-01-01T00:10:00.000Z", refresh("h2", "f1")),
      other.tokens.useRefreshToken("h1", "2026-01-01T00:10:00.000Z", refresh("h3", "f1")),
    ]);
    expect(uses.map((u) => u.outcome).sort()).toEqual(["reused", "used"]);
    expect((await store.tokens.findRefreshToken("h1"))?.token.usedAt).toBe("2026-01-01T00:10:00.000Z");
  });

  it("seals signing keys in place and erases what they replaced", async () => {
    await store.tokens.insertSigningKey({
      kid: "sk_1",
      alg: "ES256",
      sealedPrivateKey: "-----BEGIN PRIVATE KEY----- plaintext",
      publicJwk: "{}",
      createdAt: T0,
      verifyUntil: null,
    });
    await store.tokens.sealSigningKeys([
      { kid: "sk_1", plaintext: "-----BEGIN PRIVATE KEY----- plaintext", sealed: "sealed:v1" },
    ]);
    expect((await store.tokens.listSigningKeys()).map((k) => k.sealedPrivateKey)).toEqual(["sealed:v1"]);
  });
}
