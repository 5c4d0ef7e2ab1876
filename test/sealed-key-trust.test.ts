/**
 * What the database says about keys is trusted only as far as the sealed keys vouch for it: a
 * signing_keys row written by someone who can write the database but lacks the key-encryption key
 * (a new row, or another public key on an existing one) never verifies a token, and a CA
 * certificate swapped beside the sealed CA key stops the start. Both stores (the rows are the
 * Store's), PostgreSQL against a real server when installed (test/fixtures/postgres.ts).
 */
import { randomBytes } from "node:crypto";
import * as jose from "jose";
import { describe, expect, it } from "vitest";
import { keyEncryptionKey, type KeyEncryptionKey } from "../src/auth/key-encryption.js";
import { SigningKeys } from "../src/auth/signing-keys.js";
import { signAccessToken, verifyAccessToken, type SigningAlgorithm } from "../src/auth/jwt.js";
import { SHARED_MATERIAL, createSharedState, loadSharedCa } from "../src/gateway/cluster/shared-material.js";
import { createCertificateAuthority, loadCertificateAuthority } from "../src/pki/index.js";
import type { Store } from "../src/store/index.js";
import { DIALECTS, eachDialectStore, type DialectStore } from "./fixtures/store-dialects.js";
import { refusal } from "./fixtures/refusal.js";

const NOW = new Date("2026-11-30T12:00:00Z");
const ISSUER = "https://gatehouse.test";
const AUDIENCE = "gw_trust";

const signingKeys = (store: Store, kek: KeyEncryptionKey) =>
  new SigningKeys(store.tokens, "ES256", () => NOW, { describe: kek.source, load: () => kek });

/** An access token signed with `key`, as an attacker holding that private key would make one. */
const tokenSignedBy = (key: { kid: string; alg: SigningAlgorithm; privateKey: CryptoKey }) =>
  signAccessToken({
    key,
    issuer: ISSUER,
    audience: AUDIENCE,
    subject: "dev_attacker",
    scope: "admin",
    now: NOW,
    ttlSeconds: 300,
    jti: "jti_attacker",
  });

const verifyWith = (keys: SigningKeys, token: string) =>
  verifyAccessToken(token, { ring: keys.ring, issuer: ISSUER, audience: AUDIENCE, now: NOW });

/** A key pair the attacker made, and its public JWK as the signing_keys column holds one. */
async function attackerKey(kid: string) {
  const { privateKey, publicKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const publicJwk = JSON.stringify({ ...(await jose.exportJWK(publicKey)), kid, alg: "ES256", use: "sig" });
  return { privateKey: privateKey as CryptoKey, publicJwk };
}

/** A value that starts as a sealed key does, under the right KEK id, but was never sealed with it. */
const forgedSeal = (kek: KeyEncryptionKey) =>
  ["ghsk1", kek.id, randomBytes(12), randomBytes(120), randomBytes(16)]
    .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
    .join(".");

describe.each(DIALECTS)("keys the database vouches for on $dialect", ({ dialect, skip }) => {
  let db: DialectStore;
  eachDialectStore(dialect, (opened) => {
    db = opened;
  });
  const kek = keyEncryptionKey(randomBytes(32), "tokens.keyEncryptionKey (env://KEK)");

  it.skipIf(skip)(
    "a signing key row inserted without the KEK, then announced, verifies no token: the re-read is refused",
    async () => {
      const first = signingKeys(db.store, kek);
      await first.load();
      const other = signingKeys(await db.open(), kek);
      await other.load();
      const genuine = await tokenSignedBy(first.signer());

      const evil = await attackerKey("sk_injected");
      await db.store.tokens.insertSigningKey({
        kid: "sk_injected",
        alg: "ES256",
        sealedPrivateKey: forgedSeal(kek),
        publicJwk: evil.publicJwk,
        createdAt: NOW.toISOString(),
        verifyUntil: new Date(NOW.getTime() + 86_400_000).toISOString(),
      });

      // What the instance does on the NOTIFY {"kind":"signing_keys"}.
      const refused = await refusal(other.refresh());
      expect(refused.code).toBe("config_invalid");
      expect(refused.message).toContain("sk_injected");
      const forged = await tokenSignedBy({ kid: "sk_injected", alg: "ES256", privateKey: evil.privateKey });
      expect((await refusal(verifyWith(other, forged))).code).toBe("unknown_key");
      expect(other.jwks().keys.map((key) => key.kid)).not.toContain("sk_injected");
      // The ring it had stays: the gateway's own tokens still verify.
      expect((await verifyWith(other, genuine)).kid).toBe(first.signer().kid);
      // A start on that database refuses too, rather than trusting the row.
      expect((await refusal(signingKeys(await db.open(), kek).load())).code).toBe("config_invalid");
    },
  );

  it.skipIf(skip)(
    "a signing key row whose public key was replaced verifies no token signed by the replacement",
    async () => {
      const first = signingKeys(db.store, kek);
      await first.load();
      const other = signingKeys(await db.open(), kek);
      await other.load();
      const genuine = await tokenSignedBy(first.signer());
      const kid = first.signer().kid;

      const [row] = await db.store.tokens.listSigningKeys();
      const evil = await attackerKey(kid);
      await db.store.tokens.deleteSigningKey(kid);
      await db.store.tokens.insertSigningKey({ ...row!, publicJwk: evil.publicJwk });

      const refused = await refusal(other.refresh());
      expect(refused.code).toBe("config_invalid");
      expect(refused.message).toContain(kid);
      const forged = await tokenSignedBy({ kid, alg: "ES256", privateKey: evil.privateKey });
      expect((await refusal(verifyWith(other, forged))).code).toBe("invalid_token");
      expect((await verifyWith(other, genuine)).kid).toBe(kid);

      // A start verifies with the key the sealed row holds, or refuses: never the column's.
      const restarted = signingKeys(await db.open(), kek);
      expect((await refusal(restarted.load())).code).toBe("config_invalid");
      expect((await refusal(verifyWith(restarted, forged))).code).toBe("unknown_key");
    },
  );

  it.skipIf(skip)(
    "a private key in the clear beside sealed ones is refused at start and never sealed",
    async () => {
      await signingKeys(db.store, kek).load();
      const { privateKey, publicKey } = await jose.generateKeyPair("ES256", { extractable: true });
      const kid = "sk_plain";
      await db.store.tokens.insertSigningKey({
        kid,
        alg: "ES256",
        sealedPrivateKey: await jose.exportPKCS8(privateKey),
        publicJwk: JSON.stringify({ ...(await jose.exportJWK(publicKey)), kid, alg: "ES256", use: "sig" }),
        createdAt: NOW.toISOString(),
        verifyUntil: null,
      });
      const before = await db.store.tokens.listSigningKeys();

      const refused = await refusal(signingKeys(await db.open(), kek).load());
      expect(refused.code).toBe("config_invalid");
      expect(refused.message).toContain(kid);
      expect(await db.store.tokens.listSigningKeys()).toEqual(before);
    },
  );

  it.skipIf(skip)("a CA certificate swapped beside the sealed CA key stops the start by name", async () => {
    await createSharedState(
      db.store,
      kek,
      { gatewayId: "gw_trust", name: "gatehouse" },
      { now: NOW, hashKeyConfigured: false, describeStore: "postgres://gh@db:5432/gh" },
    );
    await loadSharedCa(db.store, kek, "postgres://gh@db:5432/gh");
    const other = await createCertificateAuthority({ commonName: "Another CA", now: NOW, validityDays: 30 });
    await db.store.putSharedMaterial({
      name: SHARED_MATERIAL.caCert,
      value: other.certPem,
      sealed: 0,
      updatedAt: NOW.toISOString(),
    });

    const refused = await refusal(loadSharedCa(db.store, kek, "postgres://gh@db:5432/gh"));
    expect(refused.code).toBe("config_invalid");
    expect(refused.message).toContain(SHARED_MATERIAL.caCert);
    expect(refused.message).toContain(SHARED_MATERIAL.caKey);
    expect(refused.message).not.toContain("PRIVATE KEY");
  });
});

describe("a CA certificate and key loaded as a pair", () => {
  it("are refused when the certificate is another CA's, naming both", async () => {
    const ours = await createCertificateAuthority({ commonName: "Ours", now: NOW, validityDays: 30 });
    const theirs = await createCertificateAuthority({ commonName: "Theirs", now: NOW, validityDays: 30 });
    const refused = await refusal(
      loadCertificateAuthority(theirs.certPem, ours.keyPem, { cert: "/home/ca.pem", key: "/home/ca.key" }),
    );
    expect(refused.code).toBe("config_invalid");
    expect(refused.message).toContain("/home/ca.pem");
    expect(refused.message).toContain("/home/ca.key");
    const loaded = await loadCertificateAuthority(ours.certPem, ours.keyPem);
    expect(loaded.fingerprint).toBe(ours.fingerprint);
  });
});
