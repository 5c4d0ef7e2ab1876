/**
 * A running instance told `{"kind":"signing_keys"}` re-reads the signing keys, and trusts only
 * those its key-encryption key opens: a row inserted by someone who can write the database (and
 * NOTIFY) but lacks the key is refused and logged, and a token signed by that key is refused. A
 * real instance on a real PostgreSQL server (test/fixtures/cluster.ts).
 */
import { randomBytes } from "node:crypto";
import * as jose from "jose";
import pg from "pg";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { signAccessToken, verifyAccessToken } from "../src/auth/jwt.js";
import { CHANGE_CHANNEL, encodeChange } from "../src/gateway/cluster/change-feed.js";
import { changeFeedsListening, createTestCluster, eventually, type TestCluster } from "./fixtures/cluster.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import { freePort } from "./e2e/harness.js";

const clusters: TestCluster[] = [];
afterAll(async () => {
  for (const cluster of clusters.splice(0)) await cluster.close();
});

describe("a signing key row injected into the shared database and announced", () => {
  it.skipIf(!postgresAvailable())(
    "is refused and logged by the running instance, and a token it signed is refused",
    async () => {
      const cluster = await createTestCluster("injected-key-", { a: `127.0.0.1:${await freePort()}` });
      clusters.push(cluster);
      const lines: string[] = [];
      const logger = pino({ level: "error" }, { write: (line: string) => void lines.push(line) });
      const a = await cluster.start("a", { logger });
      await changeFeedsListening(a);
      const ring = a.ctx.signingKeys.ring;

      const kid = "sk_injected";
      const { privateKey, publicKey } = await jose.generateKeyPair("ES256", { extractable: true });
      const publicJwk = { ...(await jose.exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
      const kekId = (await sealedKekIdOf(cluster)) ?? "kek_000000000000";
      const forgedSeal = ["ghsk1", kekId, randomBytes(12), randomBytes(120), randomBytes(16)]
        .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
        .join(".");
      const client = new pg.Client({ connectionString: cluster.databaseUrl });
      await client.connect();
      try {
        await client.query(
          "INSERT INTO signing_keys (kid, alg, sealed_private_key, public_jwk, created_at, verify_until) VALUES ($1, 'ES256', $2, $3, $4, $5)",
          [kid, forgedSeal, JSON.stringify(publicJwk), new Date().toISOString(), "2099-01-01T00:00:00.000Z"],
        );
        await client.query("SELECT pg_notify($1, $2)", [
          CHANGE_CHANNEL,
          encodeChange("gi_attacker0000000000", { kind: "signing_keys" }),
        ]);
      } finally {
        await client.end();
      }

      // Either outcome ends the wait: the refusal logged, or (the fault) the key in the ring.
      await eventually(
        () =>
          lines.some((line) => line.includes(kid)) ||
          a.ctx.signingKeys.jwks().keys.some((k) => k.kid === kid),
        "the instance to handle the signing_keys notice",
      );
      const token = await signAccessToken({
        key: { kid, alg: "ES256", privateKey: privateKey as CryptoKey },
        issuer: a.url,
        audience: "any",
        subject: "dev_attacker",
        scope: "admin",
        now: new Date(),
        ttlSeconds: 300,
        jti: "jti_attacker",
      });
      await expect(
        verifyAccessToken(token, { ring, issuer: a.url, audience: "any", now: new Date() }),
      ).rejects.toMatchObject({
        code: "unknown_key",
      });
      expect(a.ctx.signingKeys.jwks().keys.map((k) => k.kid)).not.toContain(kid);
      // Logged by name, never with key material.
      expect(lines.join("\n")).toContain(`the signing key ${kid} in the database does not open`);
      expect(lines.join("\n")).not.toContain("PRIVATE KEY");
    },
    120_000,
  );
});

/** The id of the key-encryption key the shared rows are sealed under (public: part of each value). */
async function sealedKekIdOf(cluster: TestCluster): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: cluster.databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ value: string }>(
      "SELECT sealed_private_key AS value FROM signing_keys LIMIT 1",
    );
    return rows[0]?.value.split(".")[1];
  } finally {
    await client.end();
  }
}
