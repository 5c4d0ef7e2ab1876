import * as jose from "jose";
import type { TokenStore, SigningKeyRecord } from "../store/token-types.js";
import { KeyRing, verificationKeyFromJwk, type SigningAlgorithm } from "./jwt.js";
import { randomToken } from "./secrets.js";

export interface ActiveSigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
}

/**
 * The gateway's token signing keys. One key signs; after a rotation the previous key keeps
 * verifying until the last token it signed has expired (its `verifyUntil`), so no token is
 * refused during a rotation. The ring that verification reads lives in memory.
 */
export class SigningKeys {
  readonly ring = new KeyRing();
  private active: ActiveSigningKey | undefined;
  private publicJwks: jose.JWK[] = [];

  constructor(
    private readonly store: TokenStore,
    private readonly alg: SigningAlgorithm,
    private readonly now: () => Date,
  ) {}

  /** Loads the keys, makes the first one if there is none, and drops the retired ones. */
  async load(): Promise<void> {
    let records = await this.store.listSigningKeys();
    const nowIso = this.now().toISOString();
    for (const record of records.filter((r) => r.verifyUntil !== null && r.verifyUntil <= nowIso)) {
      await this.store.deleteSigningKey(record.kid);
    }
    records = records.filter((r) => r.verifyUntil === null || r.verifyUntil > nowIso);
    if (!records.some((r) => r.verifyUntil === null)) {
      records.push(await this.createKey());
    }
    const signer = records.filter((r) => r.verifyUntil === null).at(-1)!;
    this.active = {
      kid: signer.kid,
      alg: signer.alg as SigningAlgorithm,
      privateKey: (await jose.importPKCS8(signer.privateKeyPem, signer.alg)) as CryptoKey,
    };
    this.publicJwks = records.map((r) => JSON.parse(r.publicJwk) as jose.JWK);
    this.ring.set(await Promise.all(this.publicJwks.map((jwk) => verificationKeyFromJwk(jwk))));
  }

  private async createKey(): Promise<SigningKeyRecord> {
    const { privateKey, publicKey } = await jose.generateKeyPair(this.alg, { extractable: true });
    const kid = `sk_${randomToken(10)}`;
    const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg: this.alg, use: "sig" };
    const record: SigningKeyRecord = {
      kid,
      alg: this.alg,
      privateKeyPem: await jose.exportPKCS8(privateKey),
      publicJwk: JSON.stringify(jwk),
      createdAt: this.now().toISOString(),
      verifyUntil: null,
    };
    await this.store.insertSigningKey(record);
    return record;
  }

  /** A new key signs from now on; the old ones verify for `overlapMs` more (the token lifetime). */
  async rotate(overlapMs: number): Promise<{ kid: string; previous: string[]; previousVerifyUntil: string }> {
    const verifyUntil = new Date(this.now().getTime() + overlapMs).toISOString();
    const previous = (await this.store.listSigningKeys())
      .filter((r) => r.verifyUntil === null)
      .map((r) => r.kid);
    for (const kid of previous) await this.store.setSigningKeyVerifyUntil(kid, verifyUntil);
    const created = await this.createKey();
    await this.load();
    return { kid: created.kid, previous, previousVerifyUntil: verifyUntil };
  }

  signer(): ActiveSigningKey {
    if (!this.active) throw new Error("signing keys are not loaded");
    return this.active;
  }

  jwks(): { keys: jose.JWK[] } {
    return { keys: this.publicJwks };
  }
}
