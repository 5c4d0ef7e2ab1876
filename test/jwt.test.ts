/**
 * Access-token verification (src/auth/jwt.ts): a good token verifies, and each known way of forging,
 * replaying or confusing a JWT is refused with its catalogue code. Every clock is fixed; nothing
 * sleeps and nothing touches the network.
 */
import { describe, it, expect, vi, afterEach } from "vitest";
import { randomBytes } from "node:crypto";
import * as jose from "jose";
import {
  KeyRing,
  MAX_TOKEN_BYTES,
  signAccessToken,
  verificationKeyFromJwk,
  verifyAccessToken,
  verifyJwsSignature,
  type SignAccessTokenInput,
  type SigningAlgorithm,
} from "../src/auth/jwt.js";
import { GatehouseError } from "../src/protocol/errors.js";

const NOW = new Date("2026-03-01T12:00:00Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);
const ISSUER = "https://gw-a.example:8443";
const AUDIENCE = "gw-a";
const TTL = 300;
const at = (secondsFromNow: number): Date => new Date(NOW.getTime() + secondsFromNow * 1000);

interface TestKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

async function makeKey(kid: string, alg: SigningAlgorithm): Promise<TestKey> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg === "EdDSA" ? "Ed25519" : alg, {
    extractable: true,
  });
  return { kid, alg, privateKey, publicKey };
}

/** Goes through verificationKeyFromJwk, as keys loaded from config would. */
async function ringOf(...keys: TestKey[]): Promise<KeyRing> {
  const ring = new KeyRing();
  const entries = [];
  for (const key of keys) {
    entries.push(await verificationKeyFromJwk({ ...(await jose.exportJWK(key.publicKey)), kid: key.kid }));
  }
  ring.set(entries);
  return ring;
}

const ours = await makeKey("k1", "ES256");
const ourEd = await makeKey("ed1", "EdDSA");
const attacker = await makeKey("attacker-1", "ES256");
const otherGateway = await makeKey("gw-b-k1", "ES256");
const ring = await ringOf(ours, ourEd);

const options = (now: Date = NOW) => ({ ring, issuer: ISSUER, audience: AUDIENCE, now });

function sign(overrides: Partial<SignAccessTokenInput> = {}): Promise<string> {
  return signAccessToken({
    key: ours,
    issuer: ISSUER,
    audience: AUDIENCE,
    subject: "device:dev-42",
    scope: "nodes:read exec",
    now: NOW,
    ttlSeconds: TTL,
    jti: "jti-0001",
    ...overrides,
  });
}

/** The claims signAccessToken would write, for tokens built by hand. */
const goodClaims = (): jose.JWTPayload => ({
  iss: ISSUER,
  aud: AUDIENCE,
  sub: "device:dev-42",
  scope: "nodes:read exec",
  jti: "jti-0001",
  iat: NOW_S,
  exp: NOW_S + TTL,
});

/** Signs arbitrary claims and header with jose itself, for tokens signAccessToken would never make. */
function signRaw(
  claims: jose.JWTPayload,
  key: CryptoKey | Uint8Array = ours.privateKey,
  header: jose.JWTHeaderParameters = { alg: "ES256", kid: "k1", typ: "at+jwt" },
): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader(header).sign(key);
}

const b64url = (value: unknown): string =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

async function expectCode(promise: Promise<unknown>, code: string, text?: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GatehouseError);
  expect((error as GatehouseError).code).toBe(code);
  if (text) expect((error as GatehouseError).message).toMatch(text);
}

/** Both layers must refuse a forgery: the signature layer alone, and full verification. */
async function expectRefusedEverywhere(token: string, code: string, text?: RegExp): Promise<void> {
  await expectCode(verifyJwsSignature(token, ring), code, text);
  await expectCode(verifyAccessToken(token, options()), code, text);
}

// jose would also refuse most of these, since a key of the wrong type cannot verify; the messages
// check that our own allow-list and alg-equals-key rules are what refuses them.
const NOT_ALLOWED = /not.allowed/i;
const ALG_MISMATCH = /does not match key/;

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a good token", () => {
  it("verifies and returns its claims and kid", async () => {
    const token = await sign({ certThumbprint: "tp-abc", family: "fam-1" });
    const { claims, kid } = await verifyAccessToken(token, options(at(10)));
    expect(kid).toBe("k1");
    expect(claims).toMatchObject({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: "device:dev-42",
      scope: "nodes:read exec",
      jti: "jti-0001",
      fam: "fam-1",
      iat: NOW_S,
      exp: NOW_S + TTL,
      cnf: { "x5t#S256": "tp-abc" },
    });
  });

  it("has no cnf when no certificate thumbprint is given", async () => {
    const { claims } = await verifyAccessToken(await sign(), options());
    expect(claims.cnf).toBeUndefined();
    expect(claims.fam).toBeUndefined();
  });

  it("passes the signature layer alone", async () => {
    const { payload, kid } = await verifyJwsSignature(await sign(), ring);
    expect(kid).toBe("k1");
    expect(JSON.parse(new TextDecoder().decode(payload))).toMatchObject({ jti: "jti-0001" });
  });

  it("signs compact tokens well under the size limit", async () => {
    const token = await sign({ certThumbprint: "x".repeat(43), family: "fam-1" });
    expect(token.length).toBeLessThan(MAX_TOKEN_BYTES / 4);
  });
});

describe("algorithm confusion", () => {
  it('refuses alg "none" with an empty signature', async () => {
    for (const alg of ["none", "None", "NONE"]) {
      const token = `${b64url({ alg, kid: "k1", typ: "at+jwt" })}.${b64url(goodClaims())}.`;
      await expectRefusedEverywhere(token, "invalid_token");
    }
  });

  it('refuses alg "none" with a fake signature', async () => {
    const token = `${b64url({ alg: "none", kid: "k1", typ: "at+jwt" })}.${b64url(goodClaims())}.${b64url("sig")}`;
    await expectRefusedEverywhere(token, "invalid_token", NOT_ALLOWED);
  });

  it("refuses a token without an alg", async () => {
    const token = `${b64url({ kid: "k1", typ: "at+jwt" })}.${b64url(goodClaims())}.${b64url("sig")}`;
    await expectRefusedEverywhere(token, "invalid_token");
  });

  // The classic confusion: a verifier that takes the alg from the header would check an HMAC keyed
  // with our public key, which anyone can compute.
  it("refuses HS256 whose secret is our public key (PEM, DER, JWK JSON)", async () => {
    const pem = await jose.exportSPKI(ours.publicKey);
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    const jwkJson = JSON.stringify(await jose.exportJWK(ours.publicKey));
    const secrets = [new TextEncoder().encode(pem), new Uint8Array(der), new TextEncoder().encode(jwkJson)];
    for (const secret of secrets) {
      const token = await signRaw(goodClaims(), secret, { alg: "HS256", kid: "k1", typ: "at+jwt" });
      await expectRefusedEverywhere(token, "invalid_token", NOT_ALLOWED);
    }
  });

  it("refuses a token whose alg does not match the key's (EdDSA header, ES256 key)", async () => {
    const token = await signRaw(goodClaims(), ourEd.privateKey, { alg: "EdDSA", kid: "k1", typ: "at+jwt" });
    await expectRefusedEverywhere(token, "invalid_token", ALG_MISMATCH);
  });
});

describe("keys", () => {
  it("refuses a token from another gateway as wrong_audience (it names the audience)", async () => {
    const token = await sign({ key: otherGateway, issuer: "https://gw-b.example:8443", audience: "gw-b" });
    await expectCode(verifyAccessToken(token, options()), "wrong_audience", /gw-b/);
  });

  it("refuses another gateway's key with our audience as unknown_key", async () => {
    const token = await sign({ key: otherGateway });
    await expectCode(verifyAccessToken(token, options()), "unknown_key");
  });

  it("refuses an unknown kid, even with a signature by our own key", async () => {
    const token = await sign({ key: { ...ours, kid: "k9" } });
    await expectRefusedEverywhere(token, "unknown_key");
  });

  it("refuses a token without a kid", async () => {
    const token = await signRaw(goodClaims(), ours.privateKey, { alg: "ES256", typ: "at+jwt" });
    await expectRefusedEverywhere(token, "unknown_key");
  });

  it("refuses our kid on a token signed by an attacker's key", async () => {
    const token = await sign({ key: { ...attacker, kid: "k1" } });
    await expectRefusedEverywhere(token, "invalid_token");
  });

  describe("never follows key references in the header", () => {
    const attackerJwk = async (): Promise<jose.JWK> => ({
      ...(await jose.exportJWK(attacker.publicKey)),
      kid: attacker.kid,
    });
    // Port 1 on loopback: a fetch would fail fast rather than hang, so the fetch spy is the real check.
    const headers = async (): Promise<Record<string, jose.JWTHeaderParameters>> => ({
      jku: { alg: "ES256", kid: attacker.kid, typ: "at+jwt", jku: "http://127.0.0.1:1/jwks.json" },
      x5u: { alg: "ES256", kid: attacker.kid, typ: "at+jwt", x5u: "http://127.0.0.1:1/cert.pem" },
      jwk: { alg: "ES256", kid: attacker.kid, typ: "at+jwt", jwk: await attackerJwk() },
    });

    for (const name of ["jku", "x5u", "jwk"]) {
      it(`refuses a ${name} header naming the attacker's key, without fetching`, async () => {
        const fetchSpy = vi.spyOn(globalThis, "fetch");
        const header = (await headers())[name]!;
        const token = await signRaw(goodClaims(), attacker.privateKey, header);
        await expectRefusedEverywhere(token, "unknown_key");
        expect(fetchSpy).not.toHaveBeenCalled();
      });
    }

    it("refuses an embedded attacker jwk under our kid as a bad signature", async () => {
      const token = await signRaw(goodClaims(), attacker.privateKey, {
        alg: "ES256",
        kid: "k1",
        typ: "at+jwt",
        jwk: { ...(await jose.exportJWK(attacker.publicKey)), kid: "k1" },
      });
      await expectRefusedEverywhere(token, "invalid_token");
    });
  });
});

describe("integrity", () => {
  it("refuses a tampered payload", async () => {
    const [header, payload, signature] = (await sign()).split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString()) as jose.JWTPayload;
    for (const change of [{ scope: "admin" }, { sub: "device:someone-else" }, { exp: NOW_S + 86_400 }]) {
      const tampered = `${header}.${b64url({ ...claims, ...change })}.${signature}`;
      await expectRefusedEverywhere(tampered, "invalid_token");
    }
  });

  it("refuses a tampered header", async () => {
    const [, payload, signature] = (await sign()).split(".");
    const tampered = `${b64url({ alg: "ES256", kid: "k1", typ: "at+jwt", x: 1 })}.${payload}.${signature}`;
    await expectRefusedEverywhere(tampered, "invalid_token");
  });

  it("refuses a token of 1 MB before parsing it, even with a good signature", async () => {
    const token = await sign({ scope: "x".repeat(1024 * 1024) });
    const started = performance.now();
    await expectCode(verifyJwsSignature(token, ring), "invalid_token", /larger than/);
    await expectCode(verifyAccessToken(token, options()), "invalid_token", /larger than/);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it("refuses junk: random bytes and base64url, empty, too few or too many parts", async () => {
    const junk = [
      "",
      "a.b",
      "a.b.c",
      "..",
      "a..c",
      ".b.c",
      "a.b.c.d",
      "a.b.c.",
      `${b64url("{}")}.${b64url("{}")}.`,
      `${b64url("{}")}.${b64url("{}")}.${b64url("sig")}`,
      `${b64url("[]")}.${b64url("{}")}.${b64url("sig")}`,
      `${b64url("null")}.${b64url("{}")}.${b64url("sig")}`,
    ];
    for (let i = 0; i < 20; i++) {
      junk.push(randomBytes(32 + i).toString("latin1"));
      junk.push(randomBytes(64 + i).toString("base64url"));
      junk.push([1, 2, 3].map((n) => randomBytes(n * 16 + i).toString("base64url")).join("."));
    }
    for (const token of junk) {
      await expect(
        expectRefusedEverywhere(token, "invalid_token"),
        JSON.stringify(token),
      ).resolves.toBeUndefined();
    }
  });
});

describe("time", () => {
  it("refuses an expired token (beyond the 60 s leeway)", async () => {
    const token = await sign();
    await expectCode(verifyAccessToken(token, options(at(TTL + 61))), "token_expired");
    await expectCode(verifyAccessToken(token, options(at(TTL + 3600))), "token_expired");
  });

  it("accepts a token expired by only 30 s (leeway)", async () => {
    const { claims } = await verifyAccessToken(await sign(), options(at(TTL + 30)));
    expect(claims.jti).toBe("jti-0001");
  });

  it("honours a custom leeway", async () => {
    const token = await sign();
    await expectCode(
      verifyAccessToken(token, { ...options(at(TTL + 30)), leewaySeconds: 0 }),
      "token_expired",
    );
  });

  it("refuses a token whose nbf is beyond the leeway, and accepts one within it", async () => {
    const early = await signRaw({ ...goodClaims(), nbf: NOW_S + 120 });
    await expectCode(verifyAccessToken(early, options()), "token_not_yet_valid");
    const slightlyEarly = await signRaw({ ...goodClaims(), nbf: NOW_S + 30 });
    await expect(verifyAccessToken(slightlyEarly, options())).resolves.toBeDefined();
  });

  it("refuses a token issued far in the future", async () => {
    // Minted by a gateway whose clock is an hour ahead: exp is then also in the future.
    const token = await sign({ now: at(3600) });
    await expectCode(verifyAccessToken(token, options()), "token_not_yet_valid");
    const slightlyAhead = await sign({ now: at(30) });
    await expect(verifyAccessToken(slightlyAhead, options())).resolves.toBeDefined();
  });
});

describe("claims", () => {
  it("refuses tokens missing a required claim", async () => {
    for (const claim of ["jti", "scope", "sub", "exp", "iat"]) {
      const claims = goodClaims();
      delete claims[claim];
      await expectCode(
        verifyAccessToken(await signRaw(claims), options()),
        "invalid_token",
        new RegExp(claim),
      );
    }
  });

  // A token with no iss or aud was never minted by a gateway: malformed, not "another gateway's".
  it("refuses tokens missing iss or aud as invalid_token", async () => {
    for (const claim of ["iss", "aud"]) {
      const claims = goodClaims();
      delete claims[claim];
      await expectCode(
        verifyAccessToken(await signRaw(claims), options()),
        "invalid_token",
        new RegExp(claim),
      );
    }
  });

  it("refuses sub, scope or jti that are not strings", async () => {
    const changes: Record<string, unknown>[] = [{ scope: ["admin"] }, { jti: 7 }, { sub: { id: 1 } }];
    for (const change of changes) {
      // Wrongly typed on purpose: JWTPayload would not let us write a numeric jti.
      const token = await signRaw({ ...goodClaims(), ...change } as jose.JWTPayload);
      await expectCode(verifyAccessToken(token, options()), "invalid_token");
    }
  });

  it("refuses a wrong aud", async () => {
    await expectCode(verifyAccessToken(await sign({ audience: "gw-b" }), options()), "wrong_audience");
  });

  it("refuses a wrong iss", async () => {
    const token = await sign({ issuer: "https://gw-b.example:8443" });
    await expectCode(verifyAccessToken(token, options()), "wrong_audience");
  });

  // Another kind of JWT signed by the same key (an ID token, say) must not pass as an access token.
  it("refuses a token without typ at+jwt", async () => {
    for (const typ of ["JWT", undefined]) {
      const token = await signRaw(goodClaims(), ours.privateKey, { alg: "ES256", kid: "k1", typ });
      await expectCode(verifyAccessToken(token, options()), "invalid_token");
    }
  });
});

describe("EdDSA", () => {
  it("verifies an EdDSA token with an Ed25519 key", async () => {
    const token = await sign({ key: ourEd, certThumbprint: "tp-ed" });
    expect(JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString())).toMatchObject({
      alg: "EdDSA",
      kid: "ed1",
    });
    const { claims, kid } = await verifyAccessToken(token, options());
    expect(kid).toBe("ed1");
    expect(claims).toMatchObject({ sub: "device:dev-42", jti: "jti-0001", cnf: { "x5t#S256": "tp-ed" } });
  });

  it("refuses an ES256-labelled token under the Ed25519 key's kid, even with a genuine Ed25519 signature", async () => {
    const signingInput = `${b64url({ alg: "ES256", kid: "ed1", typ: "at+jwt" })}.${b64url(goodClaims())}`;
    const signature = await crypto.subtle.sign(
      "Ed25519",
      ourEd.privateKey,
      new TextEncoder().encode(signingInput),
    );
    const token = `${signingInput}.${Buffer.from(signature).toString("base64url")}`;
    await expectRefusedEverywhere(token, "invalid_token", ALG_MISMATCH);
  });
});

describe("verificationKeyFromJwk", () => {
  const publicJwk = async (): Promise<jose.JWK> => ({ ...(await jose.exportJWK(ours.publicKey)), kid: "k1" });

  it("imports a P-256 signing key as ES256, with use sig and key_ops verify", async () => {
    const entry = await verificationKeyFromJwk({ ...(await publicJwk()), use: "sig", key_ops: ["verify"] });
    expect(entry).toMatchObject({ kid: "k1", alg: "ES256" });
    expect(entry.key.type).toBe("public");
  });

  it("imports only the public half of a private JWK, whatever its key_ops", async () => {
    const privateJwk = { ...(await jose.exportJWK(ours.privateKey)), kid: "k1" };
    for (const extra of [{}, { key_ops: ["sign", "verify"] }]) {
      const entry = await verificationKeyFromJwk({ ...privateJwk, ...extra });
      expect(entry.key.type).toBe("public");
      const keyRing = new KeyRing();
      keyRing.set([entry]);
      await expect(verifyJwsSignature(await sign(), keyRing)).resolves.toMatchObject({ kid: "k1" });
    }
  });

  it("refuses an encryption key (use enc)", async () => {
    await expectCode(verificationKeyFromJwk({ ...(await publicJwk()), use: "enc" }), "invalid_request");
  });

  it('refuses key_ops ["encrypt"]', async () => {
    await expectCode(
      verificationKeyFromJwk({ ...(await publicJwk()), key_ops: ["encrypt"] }),
      "invalid_request",
    );
  });

  it("refuses an RSA key", async () => {
    const { publicKey } = await jose.generateKeyPair("RS256", { extractable: true });
    const jwk = { ...(await jose.exportJWK(publicKey)), kid: "rsa-1" };
    await expectCode(verificationKeyFromJwk(jwk), "invalid_request");
    await expectCode(verificationKeyFromJwk({ ...jwk, alg: "RS256", use: "sig" }), "invalid_request");
  });

  it("refuses an oct (HMAC) key", async () => {
    const jwk: jose.JWK = {
      kty: "oct",
      k: b64url("0123456789abcdef0123456789abcdef"),
      kid: "hs-1",
      alg: "HS256",
    };
    await expectCode(verificationKeyFromJwk(jwk), "invalid_request");
  });

  it("refuses other curves and a mislabelled alg", async () => {
    const { publicKey } = await jose.generateKeyPair("ES384", { extractable: true });
    await expectCode(
      verificationKeyFromJwk({ ...(await jose.exportJWK(publicKey)), kid: "p384" }),
      "invalid_request",
    );
    await expectCode(verificationKeyFromJwk({ ...(await publicJwk()), alg: "ES384" }), "invalid_request");
  });

  it("refuses a key without a kid", async () => {
    await expectCode(verificationKeyFromJwk(await jose.exportJWK(ours.publicKey)), "invalid_request");
  });
});
