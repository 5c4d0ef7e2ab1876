/**
 * Relay tokens (src/gateway/cluster/relay-token.ts): what one instance signs to have another run a
 * command for an operator. A good token verifies for its target alone; every confusion with an
 * access token, another instance, another key or a long lifetime is refused with a 401 code.
 * Clocks are fixed; nothing sleeps.
 */
import { describe, expect, it } from "vitest";
import * as jose from "jose";
import { signAccessToken, verifyAccessToken } from "../src/auth/jwt.js";
import {
  mintRelayToken,
  relayBodyHash,
  verifyRelayToken,
  RELAY_TOKEN_TYPE,
} from "../src/gateway/cluster/relay-token.js";
import { RELAY_OPERATOR, relaySigningKey, ringOf } from "./fixtures/relay.js";

const NOW = new Date("2026-03-01T12:00:00Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);
const SENDER = "gi_aaaaaaaaaaaaaaaa";
const HOLDER = "gi_bbbbbbbbbbbbbbbb";
const THIRD = "gi_cccccccccccccccc";
/** When the holder's current run started (its instances row). */
const STARTED = "2026-03-01T11:00:00.000Z";
const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);

const makeKey = relaySigningKey;
const shared = await makeKey("sk_shared");
const foreign = await makeKey("sk_foreign");
const ring = await ringOf(shared);

const operator = RELAY_OPERATOR;
const body = JSON.stringify({ deviceId: "dev_x", command: "uptime", args: [], timeoutMs: 1000 });

const mint = (overrides: Partial<Parameters<typeof mintRelayToken>[0]> = {}) =>
  mintRelayToken({
    signer: shared,
    from: SENDER,
    to: { instanceId: HOLDER, startedAt: STARTED },
    principal: operator,
    bodySha256: relayBodyHash(body),
    now: NOW,
    ...overrides,
  });

/** A token with chosen header and claims, signed by `key` (for the shapes mint never makes). */
function forge(claims: jose.JWTPayload, header: Partial<jose.JWTHeaderParameters> = {}, key = shared) {
  return new jose.SignJWT({
    iss: SENDER,
    aud: `gatehouse-instance:${HOLDER}@${STARTED}`,
    sub: operator.subject,
    iat: NOW_S,
    exp: NOW_S + 30,
    jti: "j1",
    role: "operator",
    scope: operator.scopes.join(" "),
    pkind: "access_token",
    cfp: operator.credentialFingerprint,
    bh: relayBodyHash(body),
    ...claims,
  })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: RELAY_TOKEN_TYPE, ...header })
    .sign(key.privateKey);
}

const verify = (token: string, instanceId = HOLDER, now = NOW, startedAt = STARTED) =>
  verifyRelayToken(token, { ring, instanceId, startedAt, now });

describe("a relay token", () => {
  it("verifies at its target and carries the operator, the sender and the body's hash", async () => {
    const claims = await verify(await mint());
    expect(claims.via).toBe(SENDER);
    expect(claims.principal).toEqual(operator);
    expect(claims.bodySha256).toBe(relayBodyHash(body));
    expect(claims.expiresAtMs).toBe((NOW_S + 30) * 1000);
  });

  it("is refused by any other instance (wrong_audience)", async () => {
    await expect(verify(await mint(), THIRD)).rejects.toMatchObject({ code: "wrong_audience", status: 401 });
  });

  it("is refused once expired, with no more than the clock leeway", async () => {
    const token = await mint();
    await expect(verify(token, HOLDER, at(30 + 59))).resolves.toBeDefined();
    await expect(verify(token, HOLDER, at(30 + 61))).rejects.toMatchObject({ code: "token_expired" });
  });

  it("living longer than 60 s is refused, whoever signed it", async () => {
    await expect(verify(await forge({ exp: NOW_S + 3600 }))).rejects.toMatchObject({ code: "invalid_token" });
  });

  it("signed by a key this gateway does not have is refused (unknown_key)", async () => {
    await expect(verify(await forge({}, {}, foreign))).rejects.toMatchObject({ code: "unknown_key" });
  });

  it("issued by the holder itself, or by something that is not an instance, is refused", async () => {
    await expect(verify(await forge({ iss: HOLDER }))).rejects.toMatchObject({ code: "invalid_token" });
    await expect(verify(await forge({ iss: "https://gw.example" }))).rejects.toMatchObject({
      code: "invalid_token",
    });
  });

  it("with a scope that is not one of ours, or a missing body hash, is refused", async () => {
    await expect(verify(await forge({ scope: "node:execute root" }))).rejects.toMatchObject({
      code: "invalid_token",
    });
    await expect(verify(await forge({ bh: undefined }))).rejects.toMatchObject({ code: "invalid_token" });
  });

  it("an operator's access token (typ at+jwt) is no relay token, even with the relay's audience", async () => {
    const access = await signAccessToken({
      key: shared,
      issuer: SENDER,
      audience: `gatehouse-instance:${HOLDER}`,
      subject: operator.subject,
      scope: "node:execute",
      now: NOW,
      ttlSeconds: 30,
      jti: "a1",
    });
    await expect(verify(access)).rejects.toMatchObject({ code: "invalid_token", status: 401 });
  });

  it("is no access token: the gateway's API refuses it", async () => {
    const token = await mint();
    await expect(
      verifyAccessToken(token, { ring, issuer: "gw_1", audience: "gw_1", now: NOW }),
    ).rejects.toMatchObject({ status: 401 });
  });

  it("with alg none or HS256 is refused", async () => {
    const [, payload] = (await mint()).split(".");
    const none = `${Buffer.from(JSON.stringify({ alg: "none", kid: shared.kid, typ: RELAY_TOKEN_TYPE })).toString("base64url")}.${payload}.`;
    await expect(verify(none)).rejects.toMatchObject({ code: "invalid_token" });
    const hs = await new jose.SignJWT({ iss: SENDER, aud: `gatehouse-instance:${HOLDER}` })
      .setProtectedHeader({ alg: "HS256", kid: shared.kid, typ: RELAY_TOKEN_TYPE })
      .sign(new Uint8Array(32));
    await expect(verify(hs)).rejects.toMatchObject({ code: "invalid_token" });
  });
});
