import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import type { GatewayConfig } from "./schema.js";
import { isSecretReference, resolveSecret, type ResolveOptions, type VaultAccess } from "./secret-ref.js";
import { GatehouseError } from "../protocol/errors.js";

/** The secrets of a gateway's config, resolved: what start needs, never logged. */
export interface GatewaySecrets {
  /** The HMAC key for stored API-key and refresh-token hashes, when configured. */
  hashKey?: Buffer;
  /** The key-encryption key the token signing keys are sealed under in the database, when configured. */
  keyEncryptionKey?: Buffer;
  /** The PostgreSQL URL `store.url` names (with its password): for the store's opener only. */
  storeUrl?: string;
}

/** The Vault a config's vault:// references are read from. */
export function vaultAccess(config: Pick<GatewayConfig, "vault">): VaultAccess {
  const { address, token, caFile } = config.vault;
  let caPem: string | undefined;
  if (caFile) {
    try {
      caPem = readFileSync(caFile, "utf8");
    } catch (error) {
      throw new GatehouseError(
        "config_invalid",
        `vault.caFile: ${caFile} cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`,
        "Point vault.caFile at the PEM of your Vault's CA.",
      );
    }
  }
  return { ...(address ? { address } : {}), ...(token ? { token } : {}), ...(caPem ? { caPem } : {}) };
}

/** Shorter than this, a hash key is a placeholder or a password, not a key. */
export const MIN_HASH_KEY_LENGTH = 32;

/** Resolves every secret setting of a gateway config (at start). A failure names the reference. */
export async function resolveGatewaySecrets(
  config: GatewayConfig,
  options: Omit<ResolveOptions, "vault"> = {},
): Promise<GatewaySecrets> {
  const secrets: GatewaySecrets = {};
  const hashKey = await resolveKeySetting(config, "tokens.hashKey", config.tokens.hashKey, options);
  if (hashKey) secrets.hashKey = hashKey;
  const kek = await resolveKeySetting(
    config,
    "tokens.keyEncryptionKey",
    config.tokens.keyEncryptionKey,
    options,
  );
  if (kek) secrets.keyEncryptionKey = kek;
  if (config.store.kind === "postgres") {
    secrets.storeUrl = await resolveSecret(config.store.url, "store.url", {
      ...options,
      vault: vaultAccess(config),
    });
  }
  return secrets;
}

/**
 * A key given as a setting (a reference, or plaintext that doctor reports): at least
 * MIN_HASH_KEY_LENGTH characters, read as hex when it is hex (as the home's key files are written,
 * so moving a file's content behind a reference keeps every key valid), as UTF-8 otherwise.
 * @throws GatehouseError `config_invalid` naming the setting and reference when it cannot be
 *   resolved or is too short.
 */
async function resolveKeySetting(
  config: GatewayConfig,
  setting: string,
  reference: string | undefined,
  options: Omit<ResolveOptions, "vault">,
): Promise<Buffer | undefined> {
  if (!reference) return undefined;
  const value = await resolveSecret(reference, setting, { ...options, vault: vaultAccess(config) });
  if (value.length < MIN_HASH_KEY_LENGTH)
    throw new GatehouseError(
      "config_invalid",
      `${setting}: the secret${isSecretReference(reference) ? ` ${reference}` : ""} is ${value.length} characters; at least ${MIN_HASH_KEY_LENGTH} are needed`,
      "Use a random key: `openssl rand -hex 32`.",
    );
  return keySettingBytes(value);
}

/**
 * The bytes of a key setting's resolved text: hex when it is hex (as the home's key files are
 * written), UTF-8 otherwise.
 */
export function keySettingBytes(value: string): Buffer {
  return /^([0-9a-f]{2}){32,}$/i.test(value) ? Buffer.from(value, "hex") : Buffer.from(value, "utf8");
}

/** How a secret may be shown: its reference, or the first hex digits of its SHA-256. */
export function describeSecret(value: string): string {
  if (isSecretReference(value)) return value;
  return `sha256:${createHash("sha256").update(value).digest("hex").slice(0, 12)}… (plaintext)`;
}
