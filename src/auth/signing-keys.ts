import { createPrivateKey, createPublicKey } from "node:crypto";
import * as jose from "jose";
import type { TokenStore, SigningKeyRecord } from "../store/token-types.js";
import { KeyRing, verificationKeyFromJwk, type SigningAlgorithm } from "./jwt.js";
import { randomToken } from "./secrets.js";
import {
  isPlaintextPkcs8,
  isSealed,
  kekFileRemedy,
  notSealed,
  openPrivateKey,
  sealPrivateKey,
  sealedUnder,
  type KeyEncryptionKey,
  type KeyEncryptionKeySource,
} from "./key-encryption.js";
import { GatehouseError } from "../protocol/errors.js";

export interface ActiveSigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
}

/**
 * The gateway's token signing keys. One key signs; after a rotation the previous key keeps
 * verifying until the last token it signed has expired (its `verifyUntil`), so no token is
 * refused during a rotation. The ring that verification reads lives in memory.
 *
 * The private keys are stored sealed under a key-encryption key from `kekSource`, which lives
 * outside the database (auth/key-encryption.ts): a copy of the database alone cannot sign.
 */
export class SigningKeys {
  readonly ring = new KeyRing();
  private active: ActiveSigningKey | undefined;
  private publicJwks: jose.JWK[] = [];
  private kek: KeyEncryptionKey | undefined;
  /** Counts the keys put in use, so a re-read that a rotation here overtook is dropped. */
  private generation = 0;

  constructor(
    private readonly store: TokenStore,
    private readonly alg: SigningAlgorithm,
    private readonly now: () => Date,
    private readonly kekSource: KeyEncryptionKeySource,
    /** Told after a rotation is durable (the cluster's NOTIFY: the other instances re-read the ring). */
    private readonly publish: (change: { kind: "signing_keys" }) => void = () => undefined,
  ) {}

  /**
   * Loads the keys, seals any that an older version stored in the clear, makes the first one if
   * there is none, and drops the retired ones.
   * @throws GatehouseError `config_missing` when the key-encryption key the database is sealed
   *   under is missing; `config_invalid` when it is another key or a row does not open. Nothing
   *   is written before these checks pass.
   */
  async load(): Promise<void> {
    let records = await this.store.listSigningKeys();
    const kek = (this.kek ??= this.loadKek(records));
    // Every sealed key must open before anything is written: a wrong key changes nothing.
    const opened = new Map(
      records
        .filter((r) => isSealed(r.sealedPrivateKey))
        .map((r) => [r.kid, openPrivateKey(kek, r.kid, r.sealedPrivateKey)]),
    );
    const plaintext = records.filter((r) => !isSealed(r.sealedPrivateKey));
    // What is neither sealed nor a PEM was edited by hand: refused by name, never sealed. A PEM
    // beside sealed keys was too (a database from before sealing holds none sealed): sealing it
    // would make a key written by anyone who can write the database a signer.
    for (const r of plaintext)
      if (opened.size > 0 || !isPlaintextPkcs8(r.sealedPrivateKey)) throw notSealed(r.kid);
    if (plaintext.length > 0) {
      await this.store.sealSigningKeys(
        plaintext.map((r) => ({
          kid: r.kid,
          plaintext: r.sealedPrivateKey,
          sealed: sealPrivateKey(kek, r.kid, r.sealedPrivateKey),
        })),
      );
      for (const r of plaintext) opened.set(r.kid, r.sealedPrivateKey);
      records = await this.store.listSigningKeys();
    }
    const nowIso = this.now().toISOString();
    for (const record of records.filter((r) => r.verifyUntil !== null && r.verifyUntil <= nowIso)) {
      await this.store.deleteSigningKey(record.kid);
    }
    records = records.filter((r) => r.verifyUntil === null || r.verifyUntil > nowIso);
    if (!records.some((r) => r.verifyUntil === null)) {
      const created = await this.createKey();
      records.push(created.record);
      opened.set(created.record.kid, created.pem);
    }
    await this.use(records, kek, opened);
  }

  /**
   * Re-reads the keys another gateway instance rotated, writing nothing: no key made, sealed or
   * deleted here (the instance that rotated does that; two instances doing it at once would make
   * two signers). Keys past their `verifyUntil` leave the ring; without a signing key in the store
   * (a rotation half-way) the current signer stays. Every key is opened, as at `load`: a row
   * that does not open, or whose public key is not its private key's, leaves the ring as it was.
   * @throws GatehouseError `config_invalid` when a key does not open under this instance's KEK or
   *   its `publicJwk` does not match it.
   */
  async refresh(): Promise<void> {
    const kek = this.kek;
    if (!kek) throw new Error("signing keys are not loaded");
    const nowIso = this.now().toISOString();
    const generation = this.generation;
    const records = (await this.store.listSigningKeys()).filter(
      (r) => (r.verifyUntil === null || r.verifyUntil > nowIso) && isSealed(r.sealedPrivateKey),
    );
    if (!records.some((r) => r.verifyUntil === null)) return;
    await this.use(records, kek, new Map(), generation);
  }

  /**
   * Makes the newest key without `verifyUntil` the signer and every key in `records` the ring;
   * with `readAt`, only if no other keys were put in use since that generation (a rotation here
   * during a re-read is newer than what the re-read found). Each key of the ring is derived from
   * its opened private key, never taken from the row's `publicJwk` alone: whoever can write the
   * database but lacks the KEK cannot add a key that verifies.
   * @throws GatehouseError `config_invalid` when a key does not open or its `publicJwk` is not its.
   */
  private async use(
    records: SigningKeyRecord[],
    kek: KeyEncryptionKey,
    opened: Map<string, string>,
    readAt?: number,
  ) {
    const pems = new Map(
      records.map((r) => [r.kid, opened.get(r.kid) ?? openPrivateKey(kek, r.kid, r.sealedPrivateKey)]),
    );
    const signer = records.filter((r) => r.verifyUntil === null).at(-1)!;
    const active = {
      kid: signer.kid,
      alg: signer.alg as SigningAlgorithm,
      privateKey: (await jose.importPKCS8(pems.get(signer.kid)!, signer.alg)) as CryptoKey,
    };
    const publicJwks = records.map((r) => publicJwkOf(r, pems.get(r.kid)!));
    const ring = await Promise.all(publicJwks.map((jwk) => verificationKeyFromJwk(jwk)));
    if (readAt !== undefined && readAt !== this.generation) return;
    // Swapped together once everything is ready: no request sees a signer outside the ring.
    this.generation++;
    this.active = active;
    this.publicJwks = publicJwks;
    this.ring.set(ring);
  }

  /** The KEK; a new one is made only while no key is sealed yet (a fresh or an older database). */
  private loadKek(records: SigningKeyRecord[]): KeyEncryptionKey {
    const sealedUnderKek = records.map((r) => sealedUnder(r.sealedPrivateKey)).find((id) => id);
    const kek = this.kekSource.load(sealedUnderKek === undefined);
    if (!kek)
      throw new GatehouseError(
        "config_missing",
        `${this.kekSource.describe} is missing: the token signing keys in the database are sealed under that key-encryption key (${sealedUnderKek})`,
        `Give the gateway that key: ${this.kekSource.remedy ?? kekFileRemedy(this.kekSource.describe)}`,
      );
    return kek;
  }

  private async createKey(): Promise<{ record: SigningKeyRecord; pem: string }> {
    const kek = this.kek;
    if (!kek) throw new Error("signing keys are not loaded");
    const { privateKey, publicKey } = await jose.generateKeyPair(this.alg, { extractable: true });
    const kid = `sk_${randomToken(10)}`;
    const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg: this.alg, use: "sig" };
    const pem = await jose.exportPKCS8(privateKey);
    const record: SigningKeyRecord = {
      kid,
      alg: this.alg,
      sealedPrivateKey: sealPrivateKey(kek, kid, pem),
      publicJwk: JSON.stringify(jwk),
      createdAt: this.now().toISOString(),
      verifyUntil: null,
    };
    await this.store.insertSigningKey(record);
    return { record, pem };
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
    this.publish({ kind: "signing_keys" });
    return { kid: created.record.kid, previous, previousVerifyUntil: verifyUntil };
  }

  signer(): ActiveSigningKey {
    if (!this.active) throw new Error("signing keys are not loaded");
    return this.active;
  }

  jwks(): { keys: jose.JWK[] } {
    return { keys: this.publicJwks };
  }
}

/** The key parts of a public JWK (RFC 7517/7518/8037): what identifies the key, nothing else. */
const KEY_MEMBERS = ["kty", "crv", "x", "y"] as const;

/**
 * The public JWK of a signing key (RFC 7517), derived from its opened PKCS#8 private key `pem`,
 * with the row's kid and alg and `use: "sig"`.
 * @throws GatehouseError `config_invalid` when the row's `publicJwk` names another key, kid or
 *   alg than the private key sealed in that row (the table was written without the KEK).
 */
function publicJwkOf(record: SigningKeyRecord, pem: string): jose.JWK {
  const derived = createPublicKey(createPrivateKey(pem)).export({ format: "jwk" }) as jose.JWK;
  const jwk: jose.JWK = { ...derived, kid: record.kid, alg: record.alg, use: "sig" };
  const stored = parseJwk(record.publicJwk);
  const matches =
    stored !== undefined &&
    stored.kid === record.kid &&
    (stored.alg === undefined || stored.alg === record.alg) &&
    KEY_MEMBERS.every((member) => stored[member] === jwk[member]);
  if (!matches)
    throw new GatehouseError(
      "config_invalid",
      `the signing key ${record.kid} in the database has a public key that is not its sealed private key's: the signing_keys table was written without the key-encryption key, and that key is not trusted`,
      "Restore the database from a backup, or remove that row and rotate the signing key (`gatehouse rotate signing-key`).",
    );
  return jwk;
}

function parseJwk(text: string): jose.JWK | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null ? (value as jose.JWK) : undefined;
  } catch {
    return undefined;
  }
}
