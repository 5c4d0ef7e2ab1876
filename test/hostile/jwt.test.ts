/**
 * Bearer tokens: random text, random three-part tokens, a valid access token mutated byte by byte
 * or claim by claim, forged tokens (alg none, HS256 keyed with the public key, the real kid on an
 * outsider's key, embedded jwk/jku headers) and huge ones. None may pass; each answer is a
 * catalogue error, and a refusal leaves the store as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import * as jose from "jose";
import { junkString, mutateBytes } from "./arbitraries.js";
import {
  expectCatalogueError,
  runs,
  startHostileGateway,
  watchSession,
  type HostileGateway,
  upgradeWith,
  type Reply,
} from "./harness.js";

let gateway: HostileGateway;
let watcher: Awaited<ReturnType<typeof watchSession>>;
let validToken: string;
let header: Record<string, unknown>;
let claims: Record<string, unknown>;
let jwk: jose.JWK;
let outsiderKey: CryptoKey;
let outsiderEd: CryptoKey;

const b64 = (value: Uint8Array | string) => jose.base64url.encode(value);
const json64 = (value: unknown) => b64(JSON.stringify(value));

beforeAll(async () => {
  gateway = await startHostileGateway();
  watcher = await watchSession(gateway, "jwt-watcher");
  const key = await gateway.adminCall({
    path: "/api/v1/keys",
    body: JSON.stringify({ name: "jwt-admin", role: "admin" }),
  });
  const apiKey = (key.json as { apiKey: string }).apiKey;
  const token = await gateway.call({
    path: "/api/v1/auth/token",
    body: JSON.stringify({ grant_type: "client_credentials", client_secret: apiKey }),
  });
  validToken = (token.json as { access_token: string }).access_token;
  const [h, p] = validToken.split(".");
  header = JSON.parse(Buffer.from(h!, "base64url").toString()) as Record<string, unknown>;
  claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
  const jwks = await gateway.call({ path: "/.well-known/jwks.json" });
  jwk = (jwks.json as { keys: jose.JWK[] }).keys[0]!;
  outsiderKey = (await jose.generateKeyPair("ES256", { extractable: true })).privateKey;
  outsiderEd = (await jose.generateKeyPair("EdDSA")).privateKey;
});

afterAll(async () => {
  watcher?.close();
  await gateway?.close();
});

/** The routes a bearer token reaches: validate, a scoped read, and an admin write. */
const TARGETS = [
  { method: "GET", path: "/api/v1/auth/validate" },
  { method: "GET", path: "/api/v1/devices" },
  { method: "POST", path: "/api/v1/keys", body: '{"name":"jwt-forged","role":"admin"}' },
];

async function presentEverywhere(token: string): Promise<void> {
  for (const target of TARGETS) {
    const before = await gateway.snapshot();
    const reply: Reply = await gateway.call({
      method: target.method,
      path: target.path,
      ...(target.body ? { body: target.body } : {}),
      headers: { authorization: `Bearer ${token}` },
    });
    expectCatalogueError(
      reply,
      `${target.method} ${target.path} token=${JSON.stringify(token.slice(0, 160))}`,
    );
    expect(reply.status, "a forged or broken token is refused").toBeGreaterThanOrEqual(400);
    expect(await gateway.snapshot(), "stored state after a refusal").toBe(before);
  }
}

const segment = fc.oneof(
  fc
    .base64String({ maxLength: 200 })
    .map((s) => s.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")),
  fc.jsonValue({ maxDepth: 2 }).map((v) => json64(v)),
  fc.constantFrom("", "e30", "bnVsbA", "eyJhbGciOiJub25lIn0", "!!", "=="),
);

const tokenCharacters = fc.string({
  maxLength: 200,
  unit: fc.constantFrom(..."ABCXYZabcxyz0189-_.=+/~ ".split("")),
});

describe("hostile bearer tokens", () => {
  it("random text and random three-part tokens are refused with a catalogue error", async () => {
    const token = fc.oneof(
      tokenCharacters.filter((s) => /^\S+$/.test(s)),
      fc.tuple(segment, segment, segment).map((parts) => parts.join(".")),
      fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join(".")),
      junkString(60)
        .map((s) => s.replace(/[^\x21-\x7e\x80-\xff]/g, ""))
        .filter((s) => s.length > 0),
    );
    await fc.assert(fc.asyncProperty(token, presentEverywhere), runs(120));
  });

  it("a valid token mutated byte by byte, or with its claims or header changed, is refused", async () => {
    const mutated = fc.oneof(
      fc.nat({ max: 2 }).chain((which) => {
        const parts = validToken.split(".");
        return mutateBytes(Buffer.from(parts[which]!, "base64url"))
          .filter((bytes) => bytes.length > 0 || which === 2)
          .map((bytes) => {
            const copy = [...parts];
            copy[which] = b64(bytes);
            return copy.join(".");
          });
      }),
      fc
        .record(
          {
            sub: junkString(20),
            scope: fc.constantFrom("admin", "keys:write devices:write", "*"),
            role: fc.constantFrom("admin", "root"),
            exp: fc.integer({ min: 0, max: 2 ** 40 }),
            nbf: fc.integer({ min: 0, max: 2 ** 40 }),
            aud: fc.constantFrom("gw_other", "", "*"),
            iss: junkString(10),
          },
          { requiredKeys: [] },
        )
        .filter((changes) => Object.keys(changes).length > 0)
        .map((changes) => {
          const [h, , s] = validToken.split(".");
          return `${h}.${json64({ ...claims, ...changes })}.${s}`;
        }),
      fc
        .record(
          {
            alg: fc.constantFrom("none", "None", "HS256", "RS256", "ES384", "EdDSA", "PS256", ""),
            kid: fc.oneof(junkString(20), fc.constantFrom("../../etc/passwd", "", "0")),
            typ: fc.constantFrom("JWT", "at+jwt", ""),
            crit: fc.constant(["exp"]),
            b64: fc.constant(false),
          },
          { requiredKeys: [] },
        )
        .filter((changes) => Object.keys(changes).length > 0)
        .map((changes) => {
          const [, p, s] = validToken.split(".");
          return `${json64({ ...header, ...changes })}.${p}.${s}`;
        }),
      fc.constantFrom(
        validToken.split(".").slice(0, 2).join(".") + ".",
        validToken.split(".").slice(0, 2).join("."),
        validToken + ".",
        validToken.split(".").reverse().join("."),
        validToken.replace(/\./g, ".."),
      ),
    );
    await fc.assert(fc.asyncProperty(mutated, presentEverywhere), runs(150));
  });

  it("forged signatures (alg none, HS256 with the public key, an outsider's key with the real kid) are refused", async () => {
    const forged = fc
      .record({
        kind: fc.constantFrom(
          "none",
          "hs256-jwk",
          "hs256-x",
          "outsider-es256",
          "outsider-eddsa",
          "embedded-jwk",
          "jku",
        ),
        kid: fc.oneof(fc.constant(String(jwk.kid)), junkString(12)),
        scope: fc.constantFrom(String(claims.scope ?? "admin"), "admin keys:write"),
      })
      .map(async ({ kind, kid, scope }) => {
        const payload = { ...claims, scope };
        const sign = async (alg: string, key: CryptoKey | Uint8Array, extra: Record<string, unknown> = {}) =>
          new jose.SignJWT(payload).setProtectedHeader({ alg, kid, ...extra }).sign(key);
        switch (kind) {
          case "none":
            return `${json64({ alg: "none", kid })}.${json64(payload)}.`;
          case "hs256-jwk":
            return sign("HS256", new TextEncoder().encode(JSON.stringify(jwk)));
          case "hs256-x":
            return sign("HS256", Buffer.from(String(jwk.x), "base64url"));
          case "outsider-es256":
            return sign("ES256", outsiderKey);
          case "outsider-eddsa":
            return sign("EdDSA", outsiderEd);
          case "embedded-jwk":
            return sign("ES256", outsiderKey, {
              jwk: await jose.exportJWK(outsiderKey).then(({ d: _d, ...pub }) => pub),
            });
          default:
            return sign("ES256", outsiderKey, {
              jku: "https://127.0.0.1:1/jwks.json",
              x5u: "https://127.0.0.1:1/x",
            });
        }
      });
    await fc.assert(
      fc.asyncProperty(forged, async (tokenPromise) => presentEverywhere(await tokenPromise)),
      runs(100),
    );
  });

  it("huge tokens are refused with a catalogue error, not a framework's answer", async () => {
    const huge = fc
      .tuple(fc.integer({ min: 4_000, max: 40_000 }), fc.constantFrom("a", ".", "eyJ"))
      .map(([n, unit]) => `${validToken}${unit.repeat(Math.ceil(n / unit.length))}`);
    await fc.assert(fc.asyncProperty(huge, presentEverywhere), runs(30));
  });

  it("a broken token on the node session upgrade is refused with the catalogue's body", async () => {
    const token = fc.oneof(
      tokenCharacters.filter((s) => /^\S+$/.test(s)),
      fc.nat({ max: 2 }).chain((which) => {
        const parts = validToken.split(".");
        return mutateBytes(Buffer.from(parts[which]!, "base64url")).map((bytes) => {
          const copy = [...parts];
          copy[which] = b64(bytes);
          return copy.join(".");
        });
      }),
    );
    await fc.assert(
      fc.asyncProperty(token, async (value) => {
        const reply = await upgradeWith(gateway, { authorization: `Bearer ${value}` });
        expectCatalogueError(reply, `connect token=${JSON.stringify(value.slice(0, 120))}`);
      }),
      runs(60),
    );
  });

  it("after the run: a node session opened before it is still up and answering", async () => {
    await watcher.expectStillUp();
  });
});
