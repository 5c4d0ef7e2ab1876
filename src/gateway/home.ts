import { existsSync, mkdirSync, readFileSync, chmodSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import {
  GATEWAY_FILES,
  ensurePrivateDir,
  isSecretReference,
  readJsonFile,
  writeFileAtomic,
  writeJsonAtomic,
  type GatewayConfig,
  type GatewayConfigInput,
  type GatewaySecrets,
} from "../config/index.js";
import {
  base32,
  canonicalName,
  createCertificateAuthority,
  exportPrivateKeyPem,
  generateKeyPair,
  issueClientCertificate,
  issueServerCertificate,
  spkiOf,
  identityOfSpki,
  type CertificateAuthority,
} from "../pki/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { dialUrlForListen } from "../config/listen-url.js";
import { keyEncryptionKey, kekSettingRemedy, type KeyEncryptionKeySource } from "../auth/key-encryption.js";
import { openSqliteStore } from "../store/index.js";
import type { Store } from "../store/types.js";

export interface GatewayInitOptions {
  listen?: string;
  name?: string;
  sans?: string[];
  now?: Date;
}

export interface GatewayInitResult {
  home: string;
  gatewayId: string;
  /** This instance's `cluster.instanceId` (homes made by `gateway init --store` and `gateway join`). */
  instanceId?: string;
  caFingerprint: string;
  listen: string;
  url: string;
  adminDeviceId: string;
  registerCommand: string;
}

/** The names the server certificate carries besides localhost and loopback: --san, and a specific listen host. */
export function serverSansFor(listen: string, sans: string[]): string[] {
  const listenHost = /^(.*):\d+$/.exec(listen)?.[1] ?? "";
  const names = [...sans];
  if (listenHost && !["0.0.0.0", "[::]", "localhost", "127.0.0.1"].includes(listenHost)) {
    names.push(listenHost.replace(/^\[|\]$/g, ""));
  }
  return names;
}

export function gatewayHomeExists(home: string): boolean {
  return existsSync(path.join(home, GATEWAY_FILES.config));
}

/**
 * `gateway init`: the CA, the server certificate, the admin credential (a client certificate of
 * role admin), the config and the database. Refuses to touch an existing home.
 */
export async function initGatewayHome(
  home: string,
  options: GatewayInitOptions = {},
): Promise<GatewayInitResult> {
  if (gatewayHomeExists(home)) {
    throw new GatehouseError(
      "invalid_request",
      `${path.join(home, GATEWAY_FILES.config)} already exists; gateway init never overwrites a home`,
      "Use another --home, or remove the old home if you really mean to start over.",
    );
  }
  const now = options.now ?? new Date();
  const gatewayId = "gw_" + base32(randomBytes(10));
  const listen = options.listen ?? "127.0.0.1:18789";
  const sans = options.sans ?? [];
  const name = options.name ?? "gatehouse";

  ensurePrivateDir(home);
  ensurePrivateDir(path.join(home, GATEWAY_FILES.pkiDir));
  ensurePrivateDir(path.join(home, GATEWAY_FILES.adminDir));

  const ca = await createCertificateAuthority({
    commonName: `Gatehouse CA ${gatewayId}`,
    now,
    validityDays: 3650,
  });
  writeFileAtomic(path.join(home, GATEWAY_FILES.caKey), ca.keyPem, 0o600);
  writeFileAtomic(path.join(home, GATEWAY_FILES.caCert), ca.certPem, 0o644);

  await writeServerCertificate(home, ca, serverSansFor(listen, sans), now, 365 * 86_400_000);

  const admin = await writeAdminCredential(home, ca, dialUrlForListen(listen), gatewayId, now);

  // Written last: gateway.json is what marks a home as made, so a failed init can be run again.
  const config: GatewayConfigInput = { gatewayId, name, listen, sans };
  writeJsonAtomic(path.join(home, GATEWAY_FILES.config), config, 0o600);

  return {
    home,
    gatewayId,
    caFingerprint: ca.fingerprint,
    listen,
    url: dialUrlForListen(listen),
    adminDeviceId: admin.deviceId,
    registerCommand: registerCommandFor(listen, sans, ca.fingerprint),
  };
}

/**
 * The line an operator runs on a node's machine: the URL a node on another machine uses (the
 * first extra name when the gateway listens beyond loopback) and the CA fingerprint to pin.
 */
export function registerCommandFor(listen: string, sans: string[], caFingerprint: string): string {
  const listenHost = /^(.*):\d+$/.exec(listen)?.[1] ?? "";
  const nodeUrl =
    sans[0] && !/^(127\.|localhost)/.test(listenHost)
      ? `https://${sans[0].includes(":") ? `[${sans[0]}]` : sans[0]}:${listen.split(":").pop()}`
      : dialUrlForListen(listen);
  return `gatehouse node register --gateway ${nodeUrl} --ca-fingerprint ${caFingerprint} --name NAME`;
}

export async function writeServerCertificate(
  home: string,
  ca: CertificateAuthority,
  sans: string[],
  now: Date,
  ttlMs: number,
) {
  const keys = await generateKeyPair();
  const issued = await issueServerCertificate(ca, { publicKey: keys.publicKey, sans, now, ttlMs });
  writeFileAtomic(
    path.join(home, GATEWAY_FILES.serverKey),
    await exportPrivateKeyPem(keys.privateKey),
    0o600,
  );
  writeFileAtomic(path.join(home, GATEWAY_FILES.serverCert), issued.pem, 0o644);
  return issued;
}

/**
 * The admin credential in this home's database (gatehouse.db, made here): see writeAdminCredentialTo.
 */
async function writeAdminCredential(
  home: string,
  ca: CertificateAuthority,
  url: string,
  gatewayId: string,
  now: Date,
) {
  const store = await openSqliteStore(path.join(home, GATEWAY_FILES.database));
  try {
    await store.migrate();
    const identity = await writeAdminCredentialTo(store, home, ca, { url, gatewayId, now, name: "admin" });
    chmodSync(path.join(home, GATEWAY_FILES.database), 0o600);
    return identity;
  } finally {
    await store.close();
  }
}

/**
 * The admin credential: a key, a client certificate of role admin, the CA and where to reach the
 * gateway, in admin/ of the home; and its device, approved from birth, in `store` (this home's
 * database, or the one several instances share).
 * @returns the admin device's identity (its device id).
 */
export async function writeAdminCredentialTo(
  store: Store,
  home: string,
  ca: CertificateAuthority,
  { url, gatewayId, now, name }: { url: string; gatewayId: string; now: Date; name: string },
) {
  const keys = await generateKeyPair();
  const identity = identityOfSpki(await spkiOf(keys.publicKey));
  const issued = await issueClientCertificate(ca, {
    publicKey: keys.publicKey,
    deviceId: identity.deviceId,
    now,
    ttlMs: 365 * 86_400_000,
  });
  const adminDir = path.join(home, GATEWAY_FILES.adminDir);
  mkdirSync(adminDir, { recursive: true, mode: 0o700 });
  writeFileAtomic(path.join(home, GATEWAY_FILES.adminKey), await exportPrivateKeyPem(keys.privateKey), 0o600);
  writeFileAtomic(path.join(home, GATEWAY_FILES.adminCert), issued.pem, 0o600);
  writeFileAtomic(path.join(home, GATEWAY_FILES.adminCa), ca.certPem, 0o644);
  writeJsonAtomic(path.join(home, GATEWAY_FILES.adminGateway), {
    gatewayUrl: url,
    gatewayId,
    caFingerprint: ca.fingerprint,
  });

  const at = now.toISOString();
  const certificate = {
    serial: issued.serial,
    deviceId: identity.deviceId,
    fingerprint: issued.fingerprint,
    notBefore: issued.notBefore.toISOString(),
    notAfter: issued.notAfter.toISOString(),
    issuedAt: at,
    pem: issued.pem,
  };
  // The admin is approved from birth: it has no registration request to approve.
  await store.upsertDevice({
    deviceId: identity.deviceId,
    kind: "operator",
    name,
    platform: null,
    status: "approved",
    role: "admin",
    publicKey: Buffer.from(identity.spki).toString("base64"),
    keyFingerprint: identity.keyFingerprint,
    userCode: null,
    address: null,
    createdAt: at,
    updatedAt: at,
    approvedAt: at,
    revokedAt: null,
    statusReason: null,
    lastSeen: null,
    certFingerprint: issued.fingerprint,
    certExpiresAt: certificate.notAfter,
  });
  await store.insertCertificate(certificate);
  return identity;
}

/** The pepper for stored API-key and refresh-token hashes; made on first use (0600). */
export function loadOrCreatePepper(home: string): Buffer {
  return readHomeKey(home, GATEWAY_FILES.tokenPepper, true) as Buffer;
}

/**
 * Where the token signing keys' key-encryption key comes from: tokens.keyEncryptionKey when it is
 * configured (resolved at start into `configured`), else pki/signing-keys.kek in the home, made at
 * the first start — never while the database holds keys sealed under another one.
 */
export function signingKeyKekSource(
  home: string,
  reference: string | undefined,
  configured: Buffer | undefined,
): KeyEncryptionKeySource {
  if (reference && configured) {
    const describe = `tokens.keyEncryptionKey (${isSecretReference(reference) ? reference : "plaintext in gateway.json"})`;
    // No file holds this key: a message names the setting and its reference, never a backup file.
    const remedy = kekSettingRemedy(describe);
    return { describe, remedy, load: () => keyEncryptionKey(configured, describe, remedy) };
  }
  const describe = path.join(home, GATEWAY_FILES.signingKeyKek);
  return {
    describe,
    load: (create) => {
      const secret = readHomeKey(home, GATEWAY_FILES.signingKeyKek, create);
      return secret && keyEncryptionKey(secret, describe);
    },
  };
}

/**
 * The key-encryption key a gateway's private material is sealed under: for a postgres store only
 * tokens.keyEncryptionKey (every instance must hold the same key, and a file of one home cannot
 * be that), else as signingKeyKekSource says.
 * @throws GatehouseError `config_invalid` naming the setting when a postgres store has none.
 */
export function gatewayKekSource(
  home: string,
  config: Pick<GatewayConfig, "store" | "tokens">,
  secrets: Pick<GatewaySecrets, "keyEncryptionKey">,
): KeyEncryptionKeySource {
  if (config.store.kind === "postgres" && !(config.tokens.keyEncryptionKey && secrets.keyEncryptionKey))
    throw new GatehouseError(
      "config_invalid",
      `${path.join(home, GATEWAY_FILES.config)}: store.kind is postgres, and tokens.keyEncryptionKey is not set: the CA and signing keys in the shared database are sealed under it`,
      'Set tokens.keyEncryptionKey to a reference every instance can read (e.g. "env://GATEHOUSE_KEY_ENCRYPTION_KEY"), holding the key `gateway init --store` used; a new one is made with `openssl rand -hex 32`.',
    );
  return signingKeyKekSource(home, config.tokens.keyEncryptionKey, secrets.keyEncryptionKey);
}

/**
 * A random key of 32 bytes kept as hex in a file of the home (0600): made when missing if
 * `create`, otherwise undefined when missing.
 * @throws GatehouseError `config_invalid` naming the file when it holds no key of 32 bytes or more.
 */
function readHomeKey(home: string, relative: string, create: boolean): Buffer | undefined {
  const file = path.join(home, relative);
  if (!existsSync(file)) {
    if (!create) return undefined;
    writeFileAtomic(file, randomBytes(32).toString("hex") + "\n", 0o600);
  }
  const text = readFileSync(file, "utf8").trim();
  if (!/^([0-9a-f]{2}){32,}$/i.test(text))
    throw new GatehouseError(
      "config_invalid",
      `${file} is not a key: it must hold 64 or more hex digits`,
      "Restore the file from the home's backup; it was damaged or replaced.",
    );
  return Buffer.from(text, "hex");
}

/**
 * `gateway add-name`: adds names (DNS names or addresses) to `sans` in gateway.json, leaving the
 * rest of the file as it is. The server certificate is re-issued with them when the gateway next
 * starts (TlsState re-issues whenever the configured names differ from the certificate's).
 * @returns the names added (ones already configured, in any spelling, are skipped) and the new `sans`.
 * @throws GatehouseError `config_missing` / `config_invalid` when gateway.json is absent or not an object.
 */
export function addServerNames(home: string, names: string[]): { added: string[]; sans: string[] } {
  const file = path.join(home, GATEWAY_FILES.config);
  const config = readJsonFile(file);
  if (!config || typeof config !== "object" || Array.isArray(config))
    throw new GatehouseError("config_invalid", `${file} is not a JSON object`);
  const input = config as Record<string, unknown>;
  const sans = Array.isArray(input.sans)
    ? input.sans.filter((name): name is string => typeof name === "string")
    : [];
  const have = new Set(sans.map(canonicalName));
  const added: string[] = [];
  for (const name of names) {
    if (have.has(canonicalName(name))) continue;
    have.add(canonicalName(name));
    added.push(name);
  }
  if (added.length) writeJsonAtomic(file, { ...input, sans: [...sans, ...added] }, 0o600);
  return { added, sans: [...sans, ...added] };
}
