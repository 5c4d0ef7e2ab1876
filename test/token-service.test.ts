/**
 * The token service (src/auth/token-service.ts) in process, over a real SQLite store: refresh
 * tokens bound to a certificate are not spent by a stranger, no refusal spends a refresh token, and
 * tokens minted from an API key never outlive the key. The clock is injected; nothing sleeps.
 */
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import * as jose from "jose";
import { KeyRing, verificationKeyFromJwk } from "../src/auth/jwt.js";
import { TokenService, type TokenResponse } from "../src/auth/token-service.js";
import { hashSecret } from "../src/auth/secrets.js";
import { scopesForRole, type Principal } from "../src/auth/roles.js";
import { openSqliteStore, type Store } from "../src/store/index.js";
import { GatehouseError, type ErrorCode } from "../src/protocol/errors.js";
import { refusal } from "./fixtures/refusal.js";

const START = new Date("2026-05-01T10:00:00Z");
const HOUR = 3_600_000;
const CERT = "thumbprint-of-the-node-certificate";
const pepper = Buffer.alloc(32, 7);

const keyPair = await jose.generateKeyPair("ES256", { extractable: true });
const ring = new KeyRing();
ring.set([await verificationKeyFromJwk({ ...(await jose.exportJWK(keyPair.publicKey)), kid: "sk_test" })]);
const signingKeys = {
  ring,
  signer: () => ({ kid: "sk_test", alg: "ES256" as const, privateKey: keyPair.privateKey }),
};

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

let clock: Date;
let deviceStatus: string;
let store: Store;
let file: string;
let service: TokenService;

beforeEach(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-tokens-"));
  dirs.push(dir);
  file = path.join(dir, "gatehouse.db");
  store = await openSqliteStore(file);
  await store.migrate();
  clock = START;
  deviceStatus = "approved";
  service = new TokenService({
    store: store.tokens,
    signingKeys,
    pepper,
    gatewayId: "gw_test",
    accessTtlMs: HOUR,
    refreshTtlMs: 30 * 24 * HOUR,
    devices: (id) => (id === "dev_1" ? { status: deviceStatus, role: "node", kind: "node" } : undefined),
    now: () => clock,
  });
  await service.load();
  return () => store.close();
});

const later = (ms: number) => (clock = new Date(clock.getTime() + ms));

/** The refresh token's row as the database holds it. */
function row(refreshToken: string): {
  usedAt: string | null;
  expiresAt: string;
  familyRevokedAt: string | null;
} {
  const db = new Database(file, { readonly: true });
  try {
    return db
      .prepare(
        `select r.used_at as usedAt, r.expires_at as expiresAt, f.revoked_at as familyRevokedAt
         from refresh_tokens r join token_families f on f.family_id = r.family_id
         where r.token_hash = ?`,
      )
      .get(hashSecret(pepper, refreshToken)) as never;
  } finally {
    db.close();
  }
}

async function expectRefused(work: Promise<unknown>, code: ErrorCode): Promise<GatehouseError> {
  const error = await refusal(work);
  expect(error.code).toBe(code);
  return error;
}

const nodePrincipal: Principal = {
  kind: "certificate",
  subject: "device:dev_1",
  deviceId: "dev_1",
  deviceKind: "node",
  role: "node",
  scopes: scopesForRole("node"),
  credentialFingerprint: "sha256:00",
};

const expOf = (tokens: TokenResponse) => jose.decodeJwt(tokens.access_token).exp! * 1000;

describe("a refresh token bound to a client certificate (RFC 8705)", () => {
  it("presented without its certificate, or with another, is refused, left unspent, and its holder still refreshes", async () => {
    const minted = await service.exchangeClientCertificate(nodePrincipal, CERT);

    for (const stranger of [undefined, "thumbprint-of-another-certificate"]) {
      const error = await expectRefused(service.refresh(minted.refresh_token, stranger), "invalid_token");
      expect(error.message).toContain("bound");
      expect(error.hint).toContain("certificate it was issued for");
    }
    expect(row(minted.refresh_token)).toMatchObject({ usedAt: null, familyRevokedAt: null });

    const refreshed = await service.refresh(minted.refresh_token, CERT);
    expect((await service.authenticateBearer(refreshed.access_token, CERT)).subject).toBe("device:dev_1");
    // The family lives on: its next token refreshes too.
    await service.refresh(refreshed.refresh_token, CERT);
  });

  it("an already used one presented without its certificate does not revoke the family", async () => {
    const minted = await service.exchangeClientCertificate(nodePrincipal, CERT);
    const refreshed = await service.refresh(minted.refresh_token, CERT);
    await expectRefused(service.refresh(minted.refresh_token, undefined), "invalid_token");
    expect(row(refreshed.refresh_token).familyRevokedAt).toBeNull();
    await service.refresh(refreshed.refresh_token, CERT);
    // Replayed by the certificate's holder it is reuse: the family goes.
    await expectRefused(service.refresh(minted.refresh_token, CERT), "refresh_token_reused");
    expect(row(refreshed.refresh_token).familyRevokedAt).not.toBeNull();
  });
});

describe("a refused refresh spends nothing", () => {
  it("a device no longer approved: refused, and the token is still unspent", async () => {
    const minted = await service.exchangeClientCertificate(nodePrincipal, CERT);
    deviceStatus = "revoked";
    await expectRefused(service.refresh(minted.refresh_token, CERT), "device_revoked");
    expect(row(minted.refresh_token).usedAt).toBeNull();
  });

  it("an expired refresh token, an expired API key, a revoked family: refused, unspent", async () => {
    const { secret } = await service.createApiKey({ name: "ci", role: "viewer", expiresInMs: 2 * HOUR });
    const minted = await service.exchangeApiKey(secret, undefined);
    later(3 * HOUR);
    await expectRefused(service.refresh(minted.refresh_token, undefined), "token_expired");
    expect(row(minted.refresh_token).usedAt).toBeNull();

    clock = START;
    const other = await service.exchangeApiKey(secret, undefined);
    const family = jose.decodeJwt(other.access_token).fam as string;
    await service.revokeFamily(family, "test");
    await expectRefused(service.refresh(other.refresh_token, undefined), "invalid_token");
    expect(row(other.refresh_token).usedAt).toBeNull();
  });
});

describe("tokens minted from an API key do not outlive it", () => {
  it("caps the access and refresh tokens at the key's expiry, at mint and at refresh", async () => {
    const { record, secret } = await service.createApiKey({
      name: "short",
      role: "viewer",
      expiresInMs: 10 * 60_000,
    });
    const keyEnd = new Date(record.expiresAt!).getTime();
    const minted = await service.exchangeApiKey(secret, undefined);
    expect(expOf(minted)).toBeLessThanOrEqual(keyEnd);
    expect(minted.expires_in).toBeLessThanOrEqual(600);
    expect(minted.expires_in).toBeGreaterThan(590);
    expect(new Date(row(minted.refresh_token).expiresAt).getTime()).toBeLessThanOrEqual(keyEnd);

    later(5 * 60_000);
    const refreshed = await service.refresh(minted.refresh_token, undefined);
    expect(expOf(refreshed)).toBeLessThanOrEqual(keyEnd);
    expect(refreshed.expires_in).toBeLessThanOrEqual(300);
    expect(new Date(row(refreshed.refresh_token).expiresAt).getTime()).toBeLessThanOrEqual(keyEnd);
  });

  it("refuses the key's tokens with token_expired once the key has expired, cached or not", async () => {
    const { record, secret } = await service.createApiKey({
      name: "short",
      role: "viewer",
      expiresInMs: 10 * 60_000,
    });
    const minted = await service.exchangeApiKey(secret, undefined);
    // Verified once while the key is good: the verdict is cached.
    await service.authenticateBearer(minted.access_token, undefined);
    // One second past the key's end: inside the 60 s clock leeway of the token's own exp.
    clock = new Date(new Date(record.expiresAt!).getTime() + 1000);
    await expectRefused(service.authenticateBearer(minted.access_token, undefined), "token_expired");
    await expectRefused(service.refresh(minted.refresh_token, undefined), "token_expired");
  });

  it("ends a rotated key's tokens with its grace period", async () => {
    const { secret } = await service.createApiKey({ name: "rotating", role: "viewer" });
    const minted = await service.exchangeApiKey(secret, undefined);
    const { previous } = await service.rotateApiKey(secret.slice(0, 12), 2 * 60_000);
    const graceEnd = new Date(previous.graceUntil!).getTime();
    const during = await service.exchangeApiKey(secret, undefined);
    expect(expOf(during)).toBeLessThanOrEqual(graceEnd);
    expect(new Date(row(during.refresh_token).expiresAt).getTime()).toBeLessThanOrEqual(graceEnd);
    clock = new Date(graceEnd + 1000);
    for (const tokens of [minted, during])
      await expectRefused(service.authenticateBearer(tokens.access_token, undefined), "token_expired");
  });

  it("refuses a revoked key's access and refresh tokens", async () => {
    const { secret } = await service.createApiKey({ name: "fired", role: "viewer" });
    const minted = await service.exchangeApiKey(secret, undefined);
    await service.authenticateBearer(minted.access_token, undefined);
    await service.revokeApiKey(secret.slice(0, 12), "left");
    await expectRefused(service.authenticateBearer(minted.access_token, undefined), "invalid_token");
    await expectRefused(service.refresh(minted.refresh_token, undefined), "invalid_token");
  });

  it("keeps the configured lifetime for a key that does not expire", async () => {
    const { secret } = await service.createApiKey({ name: "long", role: "viewer" });
    const minted = await service.exchangeApiKey(secret, undefined);
    expect(minted.expires_in).toBe(3600);
    expect(expOf(minted)).toBe(START.getTime() + HOUR);
  });
});
