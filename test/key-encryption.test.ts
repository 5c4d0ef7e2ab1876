import { randomBytes } from "node:crypto";
import * as jose from "jose";
import { describe, expect, it } from "vitest";
import {
  isSealed,
  keyEncryptionKey,
  openPrivateKey,
  sealPrivateKey,
  sealedUnder,
} from "../src/auth/key-encryption.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { SigningKeys } from "../src/auth/signing-keys.js";
import { openSqliteStore } from "../src/store/index.js";

async function pkcs8(): Promise<string> {
  const { privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  return jose.exportPKCS8(privateKey);
}

function refusal(fn: () => unknown): GatehouseError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(GatehouseError);
    return error as GatehouseError;
  }
  throw new Error("expected a refusal");
}

describe("sealing private keys under a key-encryption key", () => {
  const kek = keyEncryptionKey(randomBytes(32), "pki/signing-keys.kek");

  it("seals a PEM into text that holds none of it, and opens it again", async () => {
    const pem = await pkcs8();
    const sealed = sealPrivateKey(kek, "sk_one", pem);
    expect(isSealed(sealed)).toBe(true);
    expect(isSealed(pem)).toBe(false);
    expect(sealedUnder(sealed)).toBe(kek.id);
    expect(sealed).not.toContain("PRIVATE KEY");
    const body = pem.split("\n").slice(1, -2).join("");
    expect(sealed).not.toContain(body.slice(10, 40));
    expect(openPrivateKey(kek, "sk_one", sealed)).toBe(pem);
    // A fresh IV each time: sealing twice gives two texts.
    expect(sealPrivateKey(kek, "sk_one", pem)).not.toBe(sealed);
  });

  it("refuses a sealed key moved to another row (the kid is authenticated)", async () => {
    const sealed = sealPrivateKey(kek, "sk_admin", await pkcs8());
    const error = refusal(() => openPrivateKey(kek, "sk_other", sealed));
    expect(error.code).toBe("config_invalid");
    expect(error.message).toContain("sk_other");
    expect(error.message).toContain("altered or moved");
  });

  it("refuses another key-encryption key, naming both ids and where this one came from", async () => {
    const sealed = sealPrivateKey(kek, "sk_one", await pkcs8());
    const other = keyEncryptionKey(randomBytes(32), "tokens.keyEncryptionKey (env://GH_KEK)");
    const error = refusal(() => openPrivateKey(other, "sk_one", sealed));
    expect(error.code).toBe("config_invalid");
    expect(error.message).toContain(kek.id);
    expect(error.message).toContain(other.id);
    expect(error.message).toContain("env://GH_KEK");
    // The kek id in the text is authenticated too: editing it to the other key's id does not help.
    const relabelled = sealed.replace(kek.id, other.id);
    expect(refusal(() => openPrivateKey(other, "sk_one", relabelled)).message).toContain("altered or moved");
  });

  it("refuses altered ciphertext and values that are not sealed", async () => {
    const sealed = sealPrivateKey(kek, "sk_one", await pkcs8());
    const parts = sealed.split(".");
    const ciphertext = Buffer.from(parts[3]!, "base64url");
    ciphertext[5]! ^= 1;
    parts[3] = ciphertext.toString("base64url");
    expect(refusal(() => openPrivateKey(kek, "sk_one", parts.join("."))).code).toBe("config_invalid");
    for (const bad of ["", "-----BEGIN PRIVATE KEY-----", "ghsk1.", "ghsk1.a.b.c", `${sealed}.x`])
      expect(refusal(() => openPrivateKey(kek, "sk_one", bad)).message).toContain("not a sealed key");
  });

  it("derives the same key from the same secret, whatever its source, and an id that is not the key", () => {
    const secret = randomBytes(32);
    const a = keyEncryptionKey(secret, "file");
    const b = keyEncryptionKey(Buffer.from(secret), "reference");
    expect(a.id).toBe(b.id);
    expect(a.key.equals(b.key)).toBe(true);
    expect(a.id).toMatch(/^kek_[0-9a-f]{12}$/);
    expect(secret.toString("hex")).not.toContain(a.id.slice(4));
    expect(a.key.equals(secret)).toBe(false);
  });
});

describe("SigningKeys over a store", () => {
  it("refuses by name a row that is neither sealed nor a PEM, and writes nothing", async () => {
    const store = await openSqliteStore(":memory:");
    await store.migrate();
    const kek = keyEncryptionKey(randomBytes(32), "pki/signing-keys.kek");
    const source = { describe: kek.source, load: () => kek };
    const row = {
      kid: "sk_edited",
      alg: "ES256",
      sealedPrivateKey: "edited by hand",
      publicJwk: "{}",
      createdAt: "2026-01-01T00:00:00.000Z",
      verifyUntil: null,
    };
    await store.tokens.insertSigningKey(row);
    const keys = new SigningKeys(store.tokens, "ES256", () => new Date(), source);
    const error = await keys.load().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatehouseError);
    expect((error as GatehouseError).message).toContain("sk_edited in the database is not a sealed key");
    expect(await store.tokens.listSigningKeys()).toEqual([row]);
    await store.close();
  });
});
