/**
 * Relay tokens (src/gateway/cluster/relay-token.ts) and the relay's connections (exec-relay.ts):
 * tokens are standard JWTs (RFC 7515, RFC 7519; ES256 and EdDSA) that refuse every forgery, and a
 * burst of relays to one holder reuses its TLS connections instead of paying a handshake per
 * command. Clocks are fixed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import * as jose from "jose";
import { pino } from "pino";
import { ExecRelay } from "../src/gateway/cluster/exec-relay.js";
import {
  mintRelayToken,
  relayBodyHash,
  verifyRelayToken,
  RELAY_TOKEN_TYPE,
  type RelayedPrincipal,
} from "../src/gateway/cluster/relay-token.js";
import type { GatewayContext } from "../src/gateway/context.js";
import type { ExecResponse } from "../src/protocol/messages.js";
import type { InstanceRecord } from "../src/store/types.js";
import {
  heldSession,
  instanceAt,
  relayHolderTls,
  relaySigningKey,
  ringOf,
  startRelayHolder,
} from "./fixtures/relay.js";

const NOW = new Date("2026-03-01T12:00:00Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);
const SENDER = "gi_aaaaaaaaaaaaaaaa";
const HOLDER = "gi_bbbbbbbbbbbbbbbb";
const STARTED = "2026-03-01T11:00:00.000Z";
const AUDIENCE = `gatehouse-instance:${HOLDER}@${STARTED}`;

const makeKey = relaySigningKey;
const es256 = await makeKey("sk_es", "ES256");
const ed25519 = await makeKey("sk_ed", "EdDSA");
/** Another key that claims the shared key's kid: its signatures must not verify. */
const impostor = await makeKey("sk_es", "ES256");
const ring = await ringOf(es256, ed25519);

const operator: RelayedPrincipal = {
  kind: "certificate",
  subject: "admin",
  role: "admin",
  scopes: ["node:status", "node:execute"],
  credentialFingerprint: "sha256:0123456789ab",
};
const body = JSON.stringify({ deviceId: "dev_x", command: "status", args: [], timeoutMs: 5000 });
const mint = (signer: typeof es256 = es256) =>
  mintRelayToken({
    signer,
    from: SENDER,
    to: { instanceId: HOLDER, startedAt: STARTED },
    principal: operator,
    bodySha256: relayBodyHash(body),
    now: NOW,
  });
const verify = (token: string) =>
  verifyRelayToken(token, { ring, instanceId: HOLDER, startedAt: STARTED, now: NOW });

/** A token with chosen header and claims, signed by jose with `key`. */
function forge(
  claims: jose.JWTPayload,
  header: Partial<jose.JWTHeaderParameters> = {},
  key = es256,
  options: jose.SignOptions = {},
) {
  return new jose.SignJWT({
    iss: SENDER,
    aud: AUDIENCE,
    sub: operator.subject,
    iat: NOW_S,
    exp: NOW_S + 30,
    jti: "j1",
    role: operator.role,
    scope: operator.scopes.join(" "),
    pkind: operator.kind,
    cfp: operator.credentialFingerprint,
    bh: relayBodyHash(body),
    ...claims,
  })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: RELAY_TOKEN_TYPE, ...header })
    .sign(key.privateKey, options);
}

/** header.payload.signature with the payload replaced by `claims` (the signature kept). */
function withPayload(token: string, claims: unknown): string {
  const [header, , signature] = token.split(".");
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${signature}`;
}

describe("relay tokens", () => {
  it.each([
    ["ES256", es256],
    ["EdDSA", ed25519],
  ] as const)("are standard JWTs (%s): jose verifies ours, and ours verify", async (_alg, key) => {
    const token = await mint(key);
    const { payload, protectedHeader } = await jose.jwtVerify(token, key.publicKey, {
      algorithms: [key.alg],
      audience: AUDIENCE,
      issuer: SENDER,
      typ: RELAY_TOKEN_TYPE,
      currentDate: NOW,
    });
    expect(protectedHeader).toEqual({ alg: key.alg, kid: key.kid, typ: RELAY_TOKEN_TYPE });
    expect(payload).toMatchObject({ sub: "admin", bh: relayBodyHash(body), iat: NOW_S, exp: NOW_S + 30 });
    expect((await verify(token)).principal).toEqual(operator);
    expect((await verify(await forge({}, {}, key))).via).toBe(SENDER);
  });

  it("each carry their own id", async () => {
    const [one, two] = await Promise.all([verify(await mint()), verify(await mint())]);
    expect(one.jti).not.toBe(two.jti);
  });

  it("changed after signing, signed in DER form or by another key with our kid, are refused", async () => {
    const token = await mint();
    const claims = jose.decodeJwt(token);
    for (const forged of [
      withPayload(token, { ...claims, role: "admin", scope: "node:execute devices:write" }),
      withPayload(token, { ...claims, aud: `gatehouse-instance:gi_cccccccccccccccc` }),
      `${token.slice(0, token.lastIndexOf("."))}.${Buffer.from("0".repeat(72)).toString("base64url")}`,
      await forge({}, {}, impostor),
    ])
      await expect(verify(forged)).rejects.toMatchObject({ code: "invalid_token", status: 401 });
  });

  it("with an extension in crit, or another typ, are refused; an application/ prefix is taken", async () => {
    const extension = await forge({}, { crit: ["x-gh"], "x-gh": 1 }, es256, { crit: { "x-gh": true } });
    await expect(verify(extension)).rejects.toMatchObject({ code: "invalid_token" });
    await expect(verify(await forge({}, { typ: "JWT" }))).rejects.toMatchObject({ code: "invalid_token" });
    await expect(verify(await forge({}, { typ: `application/${RELAY_TOKEN_TYPE}` }))).resolves.toBeDefined();
  });

  it("read their times and audience as RFC 7519 says", async () => {
    await expect(verify(await forge({ nbf: NOW_S + 120 }))).rejects.toMatchObject({
      code: "token_not_yet_valid",
    });
    await expect(verify(await forge({ nbf: NOW_S - 5 }))).resolves.toBeDefined();
    await expect(verify(await forge({ aud: ["gatehouse-instance:gi_x", AUDIENCE] }))).resolves.toBeDefined();
    await expect(verify(await forge({ aud: ["gatehouse-instance:gi_x"] }))).rejects.toMatchObject({
      code: "wrong_audience",
    });
    await expect(verify(await forge({ aud: 7 as unknown as string }))).rejects.toMatchObject({
      status: 401,
    });
    await expect(verify(await forge({ exp: "soon" as unknown as number }))).rejects.toMatchObject({
      code: "invalid_token",
    });
    await expect(verify(await forge({ jti: undefined }))).rejects.toMatchObject({ code: "invalid_token" });
  });

  it("whose payload is not a JSON object are refused", async () => {
    const token = await mint();
    await expect(verify(withPayload(token, [1, 2]))).rejects.toMatchObject({ code: "invalid_token" });
  });
});

describe("a burst of relayed commands to one holder", () => {
  const logger = pino({ level: "silent" });
  const answer: ExecResponse = {
    execId: "exe_1",
    deviceId: "dev_x",
    command: "status",
    args: [],
    outcome: "completed",
    exitCode: 0,
    signal: null,
    stdout: "ok\n",
    stderr: "",
    durationMs: 1,
    truncated: false,
  };
  let app: FastifyInstance;
  let holder: InstanceRecord;
  let connections = 0;
  let runs = 0;
  let sender: ExecRelay;

  beforeAll(async () => {
    const tls = await relayHolderTls("speed CA");
    const ca = tls.ca;
    const holderRelay = new ExecRelay({
      store: { listOpenSessions: async () => [], listInstances: async () => [holder] },
      // The holder's own row: the relay tokens it takes name its run.
      cluster: { instanceId: HOLDER, liveInstances: () => [holder] },
      signer: () => es256,
      caPems: () => [ca.certPem],
      now: () => NOW,
      logger,
    });
    const ctx = {
      relay: holderRelay,
      signingKeys: { ring },
      now: () => NOW,
      exec: {
        run: async () => {
          runs++;
          return answer;
        },
      },
    } as unknown as GatewayContext;
    const started = await startRelayHolder(tls, ctx, {
      prepare: (holderApp) => holderApp.server.on("secureConnection", () => connections++),
    });
    app = started.app;
    const url = started.url;
    holder = instanceAt(HOLDER, url, STARTED, NOW.toISOString());
    sender = new ExecRelay({
      store: { listOpenSessions: async () => [], listInstances: async () => [holder] },
      cluster: { instanceId: SENDER, liveInstances: () => [holder] },
      signer: () => es256,
      caPems: () => [ca.certPem],
      now: () => NOW,
      logger,
    });
  });

  afterAll(async () => {
    sender?.close();
    await app?.close();
  });

  it("reuses the sender's TLS connections: one handshake per connection, not per command", async () => {
    const session = heldSession("s_x", "dev_x", HOLDER, NOW.toISOString());
    const request = { deviceId: "dev_x", command: "status", args: [], timeoutMs: 5000 };
    for (let i = 0; i < 20; i++)
      expect(await sender.send({ session, instance: holder }, operator, request)).toEqual(answer);
    expect(connections).toBe(1);
    const burst = await Promise.all(
      Array.from({ length: 8 }, () => sender.send({ session, instance: holder }, operator, request)),
    );
    expect(burst).toEqual(Array.from({ length: 8 }, () => answer));
    expect(runs).toBe(28);
    // At most one more connection per command in flight at once, whatever the number of commands.
    expect(connections).toBeLessThanOrEqual(8);
  });
});
