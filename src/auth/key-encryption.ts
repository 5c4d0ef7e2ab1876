/**
 * Private key material at rest in the database: sealed with AES-256-GCM (NIST SP 800-38D, through
 * node:crypto) under a key-encryption key (KEK) that lives outside the database — a file of the
 * home, or a secret reference. A copy of the database alone then holds nothing that can sign.
 *
 * A sealed value is one line of text: `ghsk1.<kekId>.<iv>.<ciphertext>.<tag>` (base64url parts).
 * The additional authenticated data binds it to its row (`ghsk1.<kekId>.<kid>`), so a sealed key
 * moved to another row, or a kek id edited, fails to open rather than signing under another kid.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";

const VERSION = "ghsk1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A key-encryption key, ready to use, with its public id and where it came from (for messages). */
export interface KeyEncryptionKey {
  /** `kek_` + 12 hex digits, derived one-way from the secret: safe to print and to store. */
  readonly id: string;
  /** Where the secret came from, as a user names it: a file path or `tokens.keyEncryptionKey (REF)`. */
  readonly source: string;
  /**
   * How a user gives the gateway the right key, as the end of a sentence: restore the file from
   * the home's backup (kekFileRemedy), or make the setting's reference hold it (kekSettingRemedy).
   */
  readonly remedy: string;
  readonly key: Buffer;
}

/** The remedy for a key that lives in a file of the home: its backup, or the setting instead. */
export function kekFileRemedy(file: string): string {
  return `restore ${file} from the home's backup (a copy of the database never carries it), or set tokens.keyEncryptionKey to the reference that holds it.`;
}

/**
 * The remedy for a key from tokens.keyEncryptionKey (`setting`: `tokens.keyEncryptionKey (REF)`):
 * there is no file of it anywhere, so it names the setting and its reference.
 */
export function kekSettingRemedy(setting: string): string {
  return `make ${setting} hold the key the database was sealed under (every instance of the gateway reads the same one), or point tokens.keyEncryptionKey at the reference that holds it.`;
}

/** Where a gateway's key-encryption key comes from: a file of the home, or a secret reference. */
export interface KeyEncryptionKeySource {
  /** The file or the setting and reference, as a user names it in a message. */
  readonly describe: string;
  /** How to give the gateway the key (KeyEncryptionKey.remedy); a file's (kekFileRemedy) if absent. */
  readonly remedy?: string;
  /**
   * The key; when it does not exist yet, a new one if `create` (only while nothing is sealed under
   * any key), otherwise undefined.
   */
  load(create: boolean): KeyEncryptionKey | undefined;
}

/**
 * Derives the AES-256 key and its id from the secret bytes with HKDF-SHA-256 (RFC 5869), so any
 * secret of 32 bytes or more serves, and the id reveals nothing of the key. `source` names where
 * the secret came from; `remedy` how to give the right one (default: the file `source` names).
 */
export function keyEncryptionKey(
  secret: Buffer,
  source: string,
  remedy: string = kekFileRemedy(source),
): KeyEncryptionKey {
  const derive = (info: string, length: number) =>
    Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), info, length));
  return {
    id: `kek_${derive("gatehouse key-encryption key id v1", 6).toString("hex")}`,
    source,
    remedy,
    key: derive("gatehouse signing-key encryption v1", 32),
  };
}

/** The PEM label of a PKCS#8 private key (RFC 7468 §10): what databases before 0006 held. */
const PKCS8_PEM_LABEL = "PRIVATE KEY";

/** Whether a stored value is an unsealed PKCS#8 PEM, as a database from before sealing holds. */
export function isPlaintextPkcs8(value: string): boolean {
  return value.startsWith(`-----BEGIN ${PKCS8_PEM_LABEL}-----`);
}

/** A stored value that is neither sealed nor left from before sealing: edited by hand. */
export function notSealed(kid: string): GatehouseError {
  return new GatehouseError(
    "config_invalid",
    `the signing key ${kid} in the database is not a sealed key`,
    "The signing_keys table was edited by hand: restore the database from a backup.",
  );
}

/** Whether a stored value is sealed (rather than the plaintext PEM that databases before 0006 held). */
export function isSealed(value: string): boolean {
  return value.startsWith(`${VERSION}.`);
}

/** The id of the KEK a sealed value needs, or undefined for a value that is not sealed. */
export function sealedUnder(value: string): string | undefined {
  return isSealed(value) ? value.split(".")[1] : undefined;
}

function additionalData(kekId: string, kid: string): Buffer {
  return Buffer.from(`${VERSION}.${kekId}.${kid}`, "utf8");
}

/** Seals a private key (PKCS#8 PEM) for the row `kid`. */
export function sealPrivateKey(kek: KeyEncryptionKey, kid: string, pem: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", kek.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(kek.id, kid));
  const plaintext = Buffer.from(pem, "utf8");
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  plaintext.fill(0);
  return [VERSION, kek.id, iv, ciphertext, cipher.getAuthTag()]
    .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
    .join(".");
}

/**
 * Opens a sealed private key of row `kid`, giving its PKCS#8 PEM.
 * @throws GatehouseError `config_invalid` when the value was sealed under another KEK, was altered,
 *   or belongs to another row; the description names the key, the KEKs and where this one came from.
 */
export function openPrivateKey(kek: KeyEncryptionKey, kid: string, sealed: string): string {
  const parts = sealed.split(".");
  const [version = "", kekId = "", ivText = "", ciphertextText = "", tagText = ""] = parts;
  const iv = Buffer.from(ivText, "base64url");
  const ciphertext = Buffer.from(ciphertextText, "base64url");
  const tag = Buffer.from(tagText, "base64url");
  if (parts.length !== 5 || version !== VERSION || iv.length !== IV_BYTES || tag.length !== TAG_BYTES)
    throw notSealed(kid);
  if (kekId !== kek.id)
    throw new GatehouseError(
      "config_invalid",
      `the signing key ${kid} in the database is sealed under key-encryption key ${kekId}, but ${kek.source} holds ${kek.id}`,
      `Give the gateway the key-encryption key the database was sealed under (${kekId}): ${kek.remedy}`,
    );
  try {
    const decipher = createDecipheriv("aes-256-gcm", kek.key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(additionalData(kekId, kid));
    decipher.setAuthTag(tag);
    const plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    const pem = plaintext.toString("utf8");
    plaintext.fill(0);
    return pem;
  } catch {
    throw new GatehouseError(
      "config_invalid",
      `the signing key ${kid} in the database does not open with ${kek.source} (${kek.id}): it was altered or moved from another row`,
      "Restore the database from a backup, or rotate the signing key after removing the damaged row.",
    );
  }
}
