/**
 * The gateway's business counters against the services that move them, on a real gateway (real
 * SQLite, an injected clock): every registration outcome, the pending cap's refusal, each kind of
 * certificate issued, revocations (a second revocation of the same thing is not counted) and
 * token verifications by cache hit, miss or refusal. Read from a scrape, as an operator reads them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import type { Principal } from "../src/auth/roles.js";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { createCsr, generateKeyPair } from "../src/pki/index.js";
import { parseScrape, seriesValues, type Scrape } from "./metrics-scrape.js";

const MINUTE = 60_000;
let dir: string;
let gateway: RunningGateway;
/** The gateway's clock. */
let at = Date.now();

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-metrics-life-"));
  const home = path.join(dir, "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  gateway = await startGateway(home, {
    logger: pino({ level: "silent" }),
    flags: { enroll: { maxPending: 2, pendingTtl: "15m" } },
    now: () => new Date(at),
  });
});

afterAll(async () => {
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function scrape(): Promise<Scrape> {
  return parseScrape(await gateway.ctx.metrics.render());
}

/** How much each business counter moved while `act` ran (counters that did not move are left out). */
async function movedBy(act: () => Promise<unknown>): Promise<Record<string, number>> {
  const was = seriesValues(await scrape(), "gatehouse_");
  await act();
  const changes: Record<string, number> = {};
  for (const [key, now] of seriesValues(await scrape(), "gatehouse_")) {
    if (!/_total\{/.test(key) || key.startsWith("gatehouse_audit_") || key.startsWith("gatehouse_tls_"))
      continue;
    const delta = now - (was.get(key) ?? 0);
    if (delta !== 0) changes[key] = delta;
  }
  return changes;
}

async function enroll(name: string, keys?: CryptoKeyPair) {
  const pair = keys ?? (await generateKeyPair());
  const csr = await createCsr(pair, name);
  return { keys: pair, reply: await gateway.ctx.registrations.enroll({ csr, name }, "127.0.0.1") };
}

const registrations = (outcome: string) => `gatehouse_registrations_total{"outcome":"${outcome}"}`;
const certificates = (kind: string) => `gatehouse_certificates_issued_total{"kind":"${kind}"}`;
const revocations = (kind: string) => `gatehouse_revocations_total{"kind":"${kind}"}`;
const verifications = (result: string) => `gatehouse_token_verifications_total{"result":"${result}"}`;

describe("business counters", () => {
  it("count registrations by outcome: pending, refused at the cap and for a bad request, denied, expired, approved", async () => {
    let a!: Awaited<ReturnType<typeof enroll>>;
    let b!: Awaited<ReturnType<typeof enroll>>;
    expect(
      await movedBy(async () => {
        a = await enroll("life-a");
        b = await enroll("life-b");
      }),
    ).toEqual({ [registrations("pending")]: 2 });

    // The pending cap (2) is full: the third is refused, and counted as a refused registration.
    expect(
      await movedBy(() => expect(enroll("life-c")).rejects.toMatchObject({ code: "rate_limited" })),
    ).toEqual({ [registrations("refused")]: 1 });
    // A request that is not a CSR is refused too.
    expect(
      await movedBy(() =>
        expect(gateway.ctx.registrations.enroll({ csr: "not a csr", name: "x" }, null)).rejects.toBeDefined(),
      ),
    ).toEqual({ [registrations("refused")]: 1 });

    expect(await movedBy(() => gateway.ctx.registrations.deny(b.reply.userCode, undefined, "admin"))).toEqual(
      {
        [registrations("denied")]: 1,
      },
    );

    // Past its 15 minutes, the pending request expires when it is next looked at; once.
    at += 16 * MINUTE;
    expect(
      await movedBy(async () => {
        expect((await gateway.ctx.registrations.status(a.reply.requestId)).status).toBe("expired");
        await gateway.ctx.registrations.status(a.reply.requestId);
      }),
    ).toEqual({ [registrations("expired")]: 1 });

    let d!: Awaited<ReturnType<typeof enroll>>;
    expect(
      await movedBy(async () => {
        d = await enroll("life-d");
        await gateway.ctx.registrations.approve(d.reply.userCode, "node", "admin");
      }),
    ).toEqual({
      [registrations("pending")]: 1,
      [registrations("approved")]: 1,
      [certificates("initial")]: 1,
    });

    // The same approved key registering again gets a fresh certificate at once: a re-issue.
    expect(await movedBy(() => enroll("life-d", d.keys))).toEqual({
      [registrations("approved")]: 1,
      [certificates("reissue")]: 1,
    });

    // A renewal over the device's certificate.
    const principal: Principal = {
      kind: "certificate",
      subject: `device:${d.reply.deviceId}`,
      deviceId: d.reply.deviceId,
      role: "node",
      scopes: ["node:connect"],
      credentialFingerprint: "sha256:test",
    };
    const csr = await createCsr(d.keys, "life-d");
    expect(await movedBy(() => gateway.ctx.certificates.renew(principal, csr, "127.0.0.1"))).toEqual({
      [certificates("renewal")]: 1,
    });

    // Revoked once: counted once, however often an admin repeats it.
    expect(
      await movedBy(async () => {
        await gateway.ctx.registrations.revoke(d.reply.deviceId, undefined, "admin");
        await gateway.ctx.registrations.revoke(d.reply.deviceId, undefined, "admin");
      }),
    ).toEqual({ [revocations("device")]: 1 });
  });

  it("count revocations of API keys and enroll tokens, once each", async () => {
    const { record } = await gateway.ctx.tokens.createApiKey({ name: "life-key", role: "viewer" });
    expect(
      await movedBy(async () => {
        await gateway.ctx.tokens.revokeApiKey(record.keyId, null);
        await gateway.ctx.tokens.revokeApiKey(record.keyId, null);
      }),
    ).toEqual({ [revocations("api_key")]: 1 });

    const { record: token } = await gateway.ctx.enrollTokens.create(
      { name: "life-token", role: "node", uses: 1, expiresInMs: 60 * MINUTE },
      "admin",
    );
    expect(
      await movedBy(async () => {
        await gateway.ctx.enrollTokens.revoke(token.tokenId, "admin");
        at += 1000;
        await gateway.ctx.enrollTokens.revoke(token.tokenId, "admin");
      }),
    ).toEqual({ [revocations("enroll_token")]: 1 });
  });

  it("count token verifications: a first sight (cache miss), a second (cache hit), a refusal", async () => {
    const { secret } = await gateway.ctx.tokens.createApiKey({ name: "life-reader", role: "viewer" });
    const { access_token } = await gateway.ctx.tokens.exchangeApiKey(secret, undefined);
    expect(
      await movedBy(async () => {
        await gateway.ctx.tokens.authenticateBearer(access_token, undefined);
        await gateway.ctx.tokens.authenticateBearer(access_token, undefined);
        await expect(gateway.ctx.tokens.authenticateBearer("not-a-token", undefined)).rejects.toMatchObject({
          code: "invalid_token",
        });
      }),
    ).toEqual({
      [verifications("cache_miss")]: 1,
      [verifications("cache_hit")]: 1,
      [verifications("refused")]: 1,
    });
  });
});
