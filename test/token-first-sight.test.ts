/**
 * A token's first sight (TokenService.authenticateBearer → verifyAccessToken → jose) after the
 * work around the verify was trimmed: the key is chosen by the header's text (cached on the key
 * ring), jose's options are reused within a second of the clock, the token's fingerprint is hashed
 * only when read. Every refusal is still made, on first sight and on a cache hit, and a cached
 * header never outlives its key. The clock is injected; nothing sleeps.
 */
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHmac } from "node:crypto";
import * as jose from "jose";
import { KeyRing, signAccessToken, verificationKeyFromJwk } from "../src/auth/jwt.js";
import { TokenService, tokenFingerprint, type TokenMetrics } from "../src/auth/token-service.js";
import { openSqliteStore, type Store } from "../src/store/index.js";
import { GatehouseError, type ErrorCode } from "../src/protocol/errors.js";

const GATEWAY = "gw_first_sight";
const START = new Date("2026-05-01T10:00:00Z");
const HOUR = 3_600_000;
const THUMBPRINT = "thumbprint-of-the-node-certificate";

const keyPair = await jose.generateKeyPair("ES256", { extractable: true });
const otherPair = await jose.generateKeyPair("ES256", { extractable: true });
const publicJwk = await jose.exportJWK(keyPair.publicKey);
const signer = { kid: "sk_test", alg: "ES256" as const, privateKey: keyPair.privateKey };

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

let clock: Date;
let ring: KeyRing;
let store: Store;
let service: TokenService;
let counted: string[];

beforeEach(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-first-sight-"));
  dirs.push(dir);
  store = await openSqliteStore(path.join(dir, "gatehouse.db"));
  await store.migrate();
  clock = START;
  ring = new KeyRing();
  ring.set([await verificationKeyFromJwk({ ...publicJwk, kid: "sk_test" })]);
  counted = [];
  const metrics: TokenMetrics = {
    tokenVerified: (result) => void counted.push(result),
    revoked: () => undefined,
  };
  service = new TokenService({
    store: store.tokens,
    signingKeys: { ring, signer: () => signer },
    pepper: Buffer.alloc(32, 7),
    gatewayId: GATEWAY,
    accessTtlMs: HOUR,
    refreshTtlMs: 30 * 24 * HOUR,
    devices: (id) => (id === "dev_1" ? { status: "approved", role: "node", kind: "node" } : undefined),
    now: () => clock,
    metrics,
  });
  await service.load();
  return () => store.close();
});

let jtiCounter = 0;
/** A device token as the gateway mints it, with `overrides` for the refusal at hand. */
function mint(
  overrides: { audience?: string; issuer?: string; now?: Date; thumbprint?: string } = {},
): Promise<string> {
  return signAccessToken({
    key: signer,
    issuer: overrides.issuer ?? GATEWAY,
    audience: overrides.audience ?? GATEWAY,
    subject: "device:dev_1",
    scope: "node:connect",
    now: overrides.now ?? clock,
    ttlSeconds: 3600,
    jti: `jti_${++jtiCounter}`,
    ...(overrides.thumbprint ? { certThumbprint: overrides.thumbprint } : {}),
  });
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A token with a header and claims of our choosing and an ES256 signature by `privateKey`. */
async function signed(header: Record<string, unknown>, privateKey = keyPair.privateKey): Promise<string> {
  const now = Math.floor(clock.getTime() / 1000);
  return new jose.CompactSign(
    new TextEncoder().encode(
      JSON.stringify({
        iss: GATEWAY,
        aud: GATEWAY,
        sub: "device:dev_1",
        scope: "node:connect",
        iat: now,
        exp: now + 3600,
        jti: `jti_${++jtiCounter}`,
      }),
    ),
  )
    .setProtectedHeader(header as jose.CompactJWSHeaderParameters)
    .sign(privateKey);
}

async function refusal(token: string, thumbprint?: string): Promise<{ code: ErrorCode; message: string }> {
  const error = await service.authenticateBearer(token, thumbprint).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the token was accepted").toBeInstanceOf(GatehouseError);
  const { code, message } = error as GatehouseError;
  return { code, message };
}

describe("a token's first sight", () => {
  it("accepts the gateway's own token, then serves it from the cache; the fingerprint is the token's", async () => {
    const token = await mint();
    const first = await service.authenticateBearer(token, undefined);
    const again = await service.authenticateBearer(token, undefined);
    expect(first).toMatchObject({ kind: "access_token", subject: "device:dev_1", deviceId: "dev_1" });
    expect(first.scopes).toEqual(["node:connect"]);
    expect(again.subject).toBe("device:dev_1");
    expect(first.credentialFingerprint).toBe(tokenFingerprint(token));
    expect({ ...again }.credentialFingerprint).toBe(tokenFingerprint(token));
    expect(counted).toEqual(["cache_miss", "cache_hit"]);
  });

  it("refuses a token minted for another gateway (aud or iss) as wrong_audience", async () => {
    expect((await refusal(await mint({ audience: "gw_other" }))).code).toBe("wrong_audience");
    expect((await refusal(await mint({ issuer: "gw_other" }))).code).toBe("wrong_audience");
    expect(counted).toEqual(["refused", "refused"]);
  });

  it("refuses an expired token on first sight and once cached, with the clock moved on", async () => {
    const old = await mint({ now: new Date(START.getTime() - 2 * HOUR) });
    expect((await refusal(old)).code).toBe("token_expired");
    const token = await mint();
    await service.authenticateBearer(token, undefined);
    clock = new Date(START.getTime() + 2 * HOUR);
    expect((await refusal(token)).code).toBe("token_expired");
    // A token never seen, valid when the options of the last second were built: its own time counts.
    clock = START;
    const fresh = await mint();
    await service.authenticateBearer(await mint(), undefined);
    clock = new Date(START.getTime() + 2 * HOUR);
    expect((await refusal(fresh)).code).toBe("token_expired");
  });

  it("refuses a token issued in the future as token_not_yet_valid", async () => {
    const future = await mint({ now: new Date(START.getTime() + HOUR / 2) });
    expect((await refusal(future)).code).toBe("token_not_yet_valid");
  });

  it('refuses alg "none" and HS256 keyed with the public key, as invalid_token', async () => {
    const now = Math.floor(clock.getTime() / 1000);
    const claims = b64({
      iss: GATEWAY,
      aud: GATEWAY,
      sub: "device:dev_1",
      scope: "node:connect",
      iat: now,
      exp: now + 60,
      jti: "x",
    });
    const none = `${b64({ alg: "none", kid: "sk_test", typ: "at+jwt" })}.${claims}.`;
    expect((await refusal(none)).code).toBe("invalid_token");
    const noneSigned = `${b64({ alg: "none", kid: "sk_test", typ: "at+jwt" })}.${claims}.AAAA`;
    expect((await refusal(noneSigned)).code).toBe("invalid_token");
    const hsInput = `${b64({ alg: "HS256", kid: "sk_test", typ: "at+jwt" })}.${claims}`;
    const hs = `${hsInput}.${createHmac("sha256", JSON.stringify(publicJwk)).update(hsInput).digest("base64url")}`;
    const hsRefusal = await refusal(hs);
    expect(hsRefusal.code).toBe("invalid_token");
    expect(hsRefusal.message).toMatch(/HS256.*not allowed/);
  });

  it("refuses an algorithm that is allow-listed but not the key's (EdDSA header, ES256 key)", async () => {
    const token = await mint();
    const [, payload, signature] = token.split(".");
    const forged = `${b64({ alg: "EdDSA", kid: "sk_test", typ: "at+jwt" })}.${payload}.${signature}`;
    expect((await refusal(forged)).code).toBe("invalid_token");
  });

  it("refuses a bound token (cnf x5t#S256) on a connection without its certificate or with another", async () => {
    const token = await mint({ thumbprint: THUMBPRINT });
    expect((await refusal(token, undefined)).code).toBe("invalid_token");
    expect((await refusal(token, "another-thumbprint")).code).toBe("invalid_token");
    expect((await service.authenticateBearer(token, THUMBPRINT)).subject).toBe("device:dev_1");
    // Cached now: the binding is still checked on every request.
    expect((await refusal(token, "another-thumbprint")).code).toBe("invalid_token");
  });

  it("refuses an unknown kid as unknown_key, and a key's header once the key left the ring", async () => {
    expect((await refusal(await signed({ alg: "ES256", kid: "sk_nobody", typ: "at+jwt" }))).code).toBe(
      "unknown_key",
    );
    expect((await refusal(await signed({ alg: "ES256", typ: "at+jwt" }))).code).toBe("unknown_key");
    const before = await mint();
    await service.authenticateBearer(before, undefined); // the header is known now
    ring.set([
      await verificationKeyFromJwk({ ...(await jose.exportJWK(otherPair.publicKey)), kid: "sk_next" }),
    ]);
    const after = await mint(); // same header text, signed by a key the ring no longer holds
    expect((await refusal(after)).code).toBe("unknown_key");
  });

  it("checks the signature of every token whose header is already known", async () => {
    await service.authenticateBearer(await mint(), undefined);
    const [header, payload] = (await mint()).split(".");
    const byOtherKey = (
      await signed({ alg: "ES256", kid: "sk_test", typ: "at+jwt" }, otherPair.privateKey)
    ).split(".")[2];
    expect((await refusal(`${header}.${payload}.${byOtherKey}`)).code).toBe("invalid_token");
    const tampered = `${header}.${b64({ ...jose.decodeJwt(await mint()), scope: "admin" })}.${(await mint()).split(".")[2]}`;
    expect((await refusal(tampered)).code).toBe("invalid_token");
  });

  it("refuses a token without typ at+jwt (RFC 9068), and remembers at most 64 headers", async () => {
    expect((await refusal(await signed({ alg: "ES256", kid: "sk_test" }))).code).toBe("invalid_token");
    for (let i = 0; i < 100; i++) {
      const token = await signed({ alg: "ES256", kid: "sk_test", typ: "at+jwt", n: i } as Record<
        string,
        unknown
      >);
      expect((await service.authenticateBearer(token, undefined)).subject).toBe("device:dev_1");
    }
    expect((ring as unknown as { byHeader: Map<string, unknown> }).byHeader.size).toBeLessThanOrEqual(64);
  });
});
