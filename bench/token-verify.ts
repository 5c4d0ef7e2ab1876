/**
 * Access-token verifications per second on one core, in-process.
 *
 *   a1  TokenService.authenticateBearer, the same token again and again (its verified-token cache hits)
 *   a2  TokenService.authenticateBearer, a new token every time (cache misses: verifyAccessToken)
 *   b   bare jose.jwtVerify with the same public key (baseline: the library alone)
 *
 * Goal (issue 13): a token's first sight (a2) ≥ 0.95 of bare jose (b): the gateway's checks
 * around the verify (key choice, claims, audience, cnf binding, cache insert) cost next to nothing.
 *   c   node:crypto.verify of the JWS signature, synchronous (baseline: the ECDSA P-256 floor)
 */
import {
  createPublicKey,
  KeyObject,
  randomBytes,
  verify as cryptoVerify,
  type JsonWebKey as NodeJwk,
} from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as jose from "jose";
import { openSqliteStore } from "../src/store/index.js";
import { keyEncryptionKey } from "../src/auth/key-encryption.js";
import { SigningKeys } from "../src/auth/signing-keys.js";
import { TokenService } from "../src/auth/token-service.js";
import { signAccessToken } from "../src/auth/jwt.js";
import {
  log,
  measureInterleaved,
  now,
  ratio,
  timeSequential,
  type BenchResult,
  type BenchSettings,
  type Target,
} from "./lib.js";

/** Distinct tokens minted for the cache-miss measurement; a window stops early if it uses them all. */
const POOL_SIZE = 20_000;
/** Distinct signatures cycled through by the bare crypto.verify baseline. */
const PARSED_POOL_SIZE = 2_000;
const GATEWAY_ID = "gw_bench";

export async function run(settings: BenchSettings): Promise<BenchResult> {
  const started = now();
  const notes: string[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-tokens-"));
  const store = await openSqliteStore(path.join(dir, "bench.db"));
  try {
    await store.migrate();
    const clock = () => new Date();
    const kek = keyEncryptionKey(randomBytes(32), "the benchmark's key-encryption key");
    const signingKeys = new SigningKeys(store.tokens, "ES256", clock, {
      describe: kek.source,
      load: () => kek,
    });
    await signingKeys.load();
    const pepper = randomBytes(32);
    const newService = async () => {
      const service = new TokenService({
        store: store.tokens,
        signingKeys,
        pepper,
        gatewayId: GATEWAY_ID,
        accessTtlMs: 3600_000,
        refreshTtlMs: 30 * 86400_000,
        devices: () => undefined,
        now: clock,
      });
      await service.load();
      return service;
    };
    const tokens = await newService();
    const { secret } = await tokens.createApiKey({ name: "bench", role: "viewer" });
    const token = (await tokens.exchangeApiKey(secret, undefined)).access_token;

    // The cache-miss pool: tokens exactly like the gateway's (same subject, scope, family, role),
    // each with its own jti. Signed through the gateway's own signAccessToken and signing key.
    const claims = jose.decodeJwt(token);
    const mintStarted = now();
    const pool: string[] = [];
    const signer = signingKeys.signer();
    while (pool.length < POOL_SIZE) {
      const batch = Math.min(100, POOL_SIZE - pool.length);
      pool.push(
        ...(await Promise.all(
          Array.from({ length: batch }, () =>
            signAccessToken({
              key: signer,
              issuer: GATEWAY_ID,
              audience: GATEWAY_ID,
              subject: String(claims.sub),
              scope: String(claims.scope),
              now: new Date(),
              ttlSeconds: 3600,
              jti: randomBytes(12).toString("base64url"),
              ...(typeof claims.fam === "string" ? { family: claims.fam } : {}),
              ...(typeof claims.role === "string" ? { role: claims.role } : {}),
            }),
          ),
        )),
      );
    }
    log(`  minted ${pool.length} tokens in ${((now() - mintStarted) / 1000).toFixed(1)} s`);
    if (new Set(pool).size !== pool.length) throw new Error("the minted tokens are not all distinct");

    // The same public key for the baselines: the one the gateway's key ring verifies with.
    const header = jose.decodeProtectedHeader(token);
    const entry = signingKeys.ring.get(String(header.kid));
    if (!entry) throw new Error(`the key ring has no key ${String(header.kid)}`);
    const publicKey = entry.key;
    const keyObject: KeyObject = KeyObject.from(publicKey);
    if (keyObject.type !== "public") throw new Error("expected a public key");
    // Cross-check against the published JWKS, so the baselines cannot use some other key.
    const jwk = signingKeys.jwks().keys.find((k) => k.kid === header.kid);
    const fromJwks = createPublicKey({ key: jwk as NodeJwk, format: "jwk" });
    if (!fromJwks.equals(keyObject)) throw new Error("the ring's key is not the published one");

    const parsed = pool.slice(0, PARSED_POOL_SIZE).map((t) => {
      const lastDot = t.lastIndexOf(".");
      return {
        input: Buffer.from(t.slice(0, lastDot), "latin1"),
        signature: Buffer.from(t.slice(lastDot + 1), "base64url"),
      };
    });
    const joseOptions = { algorithms: ["ES256"], issuer: GATEWAY_ID, audience: GATEWAY_ID };
    const verifyBare = (i: number) => {
      const p = parsed[i % parsed.length]!;
      if (!cryptoVerify("sha256", p.input, { key: keyObject, dsaEncoding: "ieee-p1363" }, p.signature))
        throw new Error("crypto.verify refused a token the gateway signed");
    };

    // Sanity: every path accepts the tokens before anything is timed.
    await tokens.authenticateBearer(token, undefined);
    const checkService = await newService();
    const principal = await checkService.authenticateBearer(pool[0]!, undefined);
    if (!principal.apiKeyId) throw new Error("the minted token did not authenticate as the API key");
    await jose.jwtVerify(pool[0]!, publicKey, joseOptions);
    verifyBare(0);

    let exhausted = 0;
    const missWindow = async (ms: number) => {
      const service = await newService(); // an empty verified-token cache
      const sample = await timeSequential(
        (i) => (i < pool.length ? service.authenticateBearer(pool[i]!, undefined) : false),
        ms,
        pool.length,
      );
      if (sample.ops >= pool.length) exhausted++;
      return sample;
    };

    const targets: Target[] = [
      {
        label: "a1 authenticateBearer, same token (cache hit)",
        description:
          "TokenService.authenticateBearer(token, undefined), one token, verified-token cache hits",
        unit: "ops/s",
        warm: async () =>
          void (await timeSequential(() => tokens.authenticateBearer(token, undefined), settings.warmupMs)),
        sample: () => timeSequential(() => tokens.authenticateBearer(token, undefined), settings.durationMs),
      },
      {
        label: "a2 authenticateBearer, distinct tokens (cache miss)",
        description: `TokenService.authenticateBearer over ${POOL_SIZE} distinct tokens, each once, on a fresh TokenService (empty cache): full verifyAccessToken`,
        unit: "ops/s",
        warm: async () => void (await missWindow(settings.warmupMs)),
        sample: () => missWindow(settings.durationMs),
      },
      {
        label: "b jose.jwtVerify (baseline)",
        description:
          "jose.jwtVerify(token, publicKey, {algorithms:[ES256], issuer, audience}), same key, cycling the pool",
        unit: "ops/s",
        warm: async () =>
          void (await timeSequential(
            (i) => jose.jwtVerify(pool[i % pool.length]!, publicKey, joseOptions),
            settings.warmupMs,
          )),
        sample: () =>
          timeSequential(
            (i) => jose.jwtVerify(pool[i % pool.length]!, publicKey, joseOptions),
            settings.durationMs,
          ),
      },
      {
        label: "c crypto.verify (baseline)",
        description: `node:crypto.verify("sha256", signingInput, {key, dsaEncoding:"ieee-p1363"}, signature), synchronous, pre-split tokens (${PARSED_POOL_SIZE} distinct)`,
        unit: "ops/s",
        warm: async () => void (await timeSequential(verifyBare, settings.warmupMs)),
        sample: () => timeSequential(verifyBare, settings.durationMs),
      },
    ];
    const setupMs = now() - started;
    const [a1, a2, b, c] = await measureInterleaved(targets, settings, notes);
    if (exhausted)
      notes.push(
        `a2 used all ${POOL_SIZE} pre-minted tokens before the window ended in ${exhausted} window(s); those windows are shorter`,
      );
    notes.push(
      "a2 and b await WebCrypto (jose), whose verify runs on libuv's thread pool: one operation in flight at a time, " +
        "but the process CPU can exceed 1.0 core; c runs entirely on the main thread.",
    );
    return {
      name: "token-verify",
      title: "Access-token verification, in-process, one operation at a time",
      measurements: [a1!, a2!, b!, c!],
      ratios: [
        ratio("a1/b", "cache hit vs bare jose.jwtVerify", a1!, b!),
        ratio("a2/b", "gateway full verification (first sight) vs bare jose.jwtVerify", a2!, b!, {
          op: ">=",
          value: 0.95,
        }),
        ratio("a2/c", "gateway full verification vs bare crypto.verify", a2!, c!),
        ratio("b/c", "jose.jwtVerify vs bare crypto.verify", b!, c!),
      ],
      notes,
      setupMs,
      totalMs: now() - started,
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
