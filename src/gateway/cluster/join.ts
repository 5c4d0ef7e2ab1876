/**
 * Homes of gateway instances that share one PostgreSQL database: `gateway init --store` (the first
 * instance, on an empty database) and `gateway join` (every other one). The shared state — the
 * gateway id, the CA, the token hash key and signing keys — lives in the database, sealed under the
 * key-encryption key; a home holds only its instance's own server key and certificate, its admin
 * credential, a copy of the CA certificate (public: `gateway info`, `doctor`) and gateway.json.
 */
import path from "node:path";
import { randomBytes } from "node:crypto";
import {
  GATEWAY_FILES,
  ensurePrivateDir,
  gatewayConfigSchema,
  resolveGatewaySecrets,
  writeFileAtomic,
  writeJsonAtomic,
  type GatewayConfig,
  type GatewayConfigInput,
} from "../../config/index.js";
import { dialUrlForListen } from "../../config/listen-url.js";
import { base32, type CertificateAuthority } from "../../pki/index.js";
import { GatehouseError } from "../../protocol/errors.js";
import { SigningKeys } from "../../auth/signing-keys.js";
import type { Store } from "../../store/types.js";
import { CHANGE_CHANNEL, encodeChange } from "./change-feed.js";
import {
  gatewayHomeExists,
  gatewayKekSource,
  registerCommandFor,
  serverSansFor,
  writeAdminCredentialTo,
  writeServerCertificate,
  type GatewayInitResult,
} from "../home.js";
import { openGatewayStore } from "../open-store.js";
import { describePostgresUrl } from "../../store/postgres-errors.js";
import { createSharedState, loadSharedCa, readSharedGateway } from "./shared-material.js";
import type { KeyEncryptionKey } from "../../auth/key-encryption.js";

/** Where `--key-encryption-key` points when it is not given. */
export const DEFAULT_KEK_REFERENCE = "env://GATEHOUSE_KEY_ENCRYPTION_KEY";

export interface ClusterHomeOptions {
  /** `store.url`: a secret reference (env://, file://, op://, vault://) or a postgres:// URL. */
  store: string;
  /** `tokens.keyEncryptionKey`: a secret reference (default DEFAULT_KEK_REFERENCE). */
  keyEncryptionKey?: string;
  listen?: string;
  name?: string;
  sans?: string[];
  now?: Date;
  /** Where env:// references are read (default: this process's environment). */
  env?: NodeJS.ProcessEnv;
}

/**
 * `gateway init --store REF`: the first instance of a gateway whose state lives in PostgreSQL.
 * On an empty database: migrates it, makes the gateway id, the CA and the token hash key (sealed)
 * and the first signing key there, then this home (server certificate, admin credential whose
 * device row is in the database, gateway.json with `store`, `tokens.keyEncryptionKey` and
 * `cluster.instanceId`). The database is written first: if the home then fails, `gateway join`
 * makes a home for it.
 * @throws GatehouseError `invalid_request` when the home exists or the database holds a gateway
 *   (use `gateway join`); `config_invalid` naming a reference that does not resolve or a key that
 *   is too short; `unavailable` when the database cannot be reached.
 */
export async function initClusterGatewayHome(
  home: string,
  options: ClusterHomeOptions,
): Promise<GatewayInitResult> {
  refuseExistingHome(home);
  const now = options.now ?? new Date();
  const gatewayId = "gw_" + base32(randomBytes(10));
  const name = options.name ?? "gatehouse";
  return withClusterStore(home, options, gatewayId, async ({ store, kek, config, describeStore }) => {
    const ca = await createSharedState(
      store,
      kek,
      { gatewayId, name },
      { now, hashKeyConfigured: false, describeStore },
    );
    // The first signing key is made here, once, rather than by whichever instances start first.
    await new SigningKeys(store.tokens, config.tokens.algorithm, () => now, fixedKek(kek)).load();
    return writeInstanceHome(home, store, ca, config, { gatewayId, name, now, adminName: "admin" });
  });
}

/**
 * `gateway join --store REF --listen HOST:PORT`: the home of another instance of the gateway the
 * database holds: its gateway id and CA, a new `cluster.instanceId`, its own server certificate
 * from the shared CA and a new admin credential (device `admin (gi_…)`).
 * @throws GatehouseError `not_found` when the database holds no gateway (run `gateway init
 *   --store` first); `config_invalid` when the key-encryption key is not the one the CA was
 *   sealed under; `invalid_request` when the home exists; `unavailable` for an unreachable database.
 */
export async function joinClusterGatewayHome(
  home: string,
  options: ClusterHomeOptions,
): Promise<GatewayInitResult> {
  refuseExistingHome(home);
  const now = options.now ?? new Date();
  return withClusterStore(home, options, "gw_joining", async ({ store, kek, config, describeStore }) => {
    const shared = await readSharedGateway(store);
    if (!shared)
      throw new GatehouseError(
        "not_found",
        `the database ${describeStore} holds no gateway yet`,
        "Run `gatehouse gateway init --store REF` for the first instance, then `gateway join` for the others.",
      );
    const ca = await loadSharedCa(store, kek, describeStore);
    const joined = { ...config, gatewayId: shared.gatewayId, name: options.name ?? shared.name };
    const made = await writeInstanceHome(home, store, ca, joined, {
      gatewayId: shared.gatewayId,
      name: joined.name,
      now,
      adminName: `admin (${config.cluster.instanceId})`,
    });
    // The running instances cache the devices they accept: told of the new admin, they re-read it
    // and accept its certificate at once. A notice lost here is made good by their periodic
    // catch-up (RECONCILE_EVERY_MS), so it does not fail a home that is made.
    await store
      .notify(
        CHANGE_CHANNEL,
        encodeChange(config.cluster.instanceId ?? "gateway join", {
          kind: "device",
          deviceId: made.adminDeviceId,
        }),
      )
      .catch(() => undefined);
    return made;
  });
}

function refuseExistingHome(home: string): void {
  if (gatewayHomeExists(home))
    throw new GatehouseError(
      "invalid_request",
      `${path.join(home, GATEWAY_FILES.config)} already exists; gateway init never overwrites a home`,
      "Use another --home, or remove the old home if you really mean to start over.",
    );
}

interface ClusterStoreAccess {
  store: Store;
  kek: KeyEncryptionKey;
  /** The config this instance's gateway.json will hold (gatewayId still a placeholder for join). */
  config: GatewayConfig;
  /** `postgres://user@host:port/db`, for messages. */
  describeStore: string;
}

/**
 * Resolves `--store` and `--key-encryption-key` as a start would, opens and migrates the
 * database, and runs `work` with it; the store is closed whatever happens.
 */
async function withClusterStore(
  home: string,
  options: ClusterHomeOptions,
  gatewayId: string,
  work: (access: ClusterStoreAccess) => Promise<GatewayInitResult>,
): Promise<GatewayInitResult> {
  const input: GatewayConfigInput = {
    gatewayId,
    name: options.name ?? "gatehouse",
    listen: options.listen ?? "127.0.0.1:18789",
    sans: options.sans ?? [],
    store: { kind: "postgres", url: options.store },
    tokens: { keyEncryptionKey: options.keyEncryptionKey ?? DEFAULT_KEK_REFERENCE },
    cluster: { instanceId: "gi_" + base32(randomBytes(10)) },
  };
  const parsed = gatewayConfigSchema.safeParse(input);
  if (!parsed.success)
    throw new GatehouseError(
      "invalid_request",
      `${parsed.error.issues[0]?.path.join(".") ?? "options"}: ${parsed.error.issues[0]?.message ?? "invalid"}`,
    );
  const config = parsed.data;
  const secrets = await resolveGatewaySecrets(config, options.env ? { env: options.env } : {}).catch(
    (error: unknown) => {
      throw withKekHint(error);
    },
  );
  const kek = gatewayKekSource(home, config, secrets).load(false);
  if (!kek) throw new GatehouseError("config_invalid", "tokens.keyEncryptionKey did not resolve");
  const store = await openGatewayStore(home, config, secrets);
  try {
    await store.migrate();
    return await work({ store, kek, config, describeStore: describePostgresUrl(secrets.storeUrl ?? "") });
  } finally {
    await store.close();
  }
}

/** A missing key-encryption key is named with how to make one. */
function withKekHint(error: unknown): unknown {
  if (!(error instanceof GatehouseError) || !error.message.startsWith("tokens.keyEncryptionKey"))
    return error;
  return new GatehouseError(
    error.code,
    error.message,
    `${error.hint} Every instance needs the same key: make one with \`openssl rand -hex 32\` and keep it where each instance reads it.`,
  );
}

function fixedKek(kek: KeyEncryptionKey) {
  return { describe: kek.source, remedy: kek.remedy, load: () => kek };
}

/**
 * This instance's files: a copy of the CA certificate, its server certificate, its admin
 * credential (device row in `store`) and gateway.json, written last (it marks the home as made).
 */
async function writeInstanceHome(
  home: string,
  store: Store,
  ca: CertificateAuthority,
  config: GatewayConfig,
  { gatewayId, name, now, adminName }: { gatewayId: string; name: string; now: Date; adminName: string },
): Promise<GatewayInitResult> {
  const { listen, sans } = config;
  ensurePrivateDir(home);
  ensurePrivateDir(path.join(home, GATEWAY_FILES.pkiDir));
  ensurePrivateDir(path.join(home, GATEWAY_FILES.adminDir));
  writeFileAtomic(path.join(home, GATEWAY_FILES.caCert), ca.certPem, 0o644);
  await writeServerCertificate(home, ca, serverSansFor(listen, sans), now, config.certificates.serverTtl);
  const url = dialUrlForListen(listen);
  const admin = await writeAdminCredentialTo(store, home, ca, { url, gatewayId, now, name: adminName });
  const written: GatewayConfigInput = {
    gatewayId,
    name,
    listen,
    sans,
    store: config.store.kind === "postgres" ? { kind: "postgres", url: config.store.url } : config.store,
    tokens: { keyEncryptionKey: config.tokens.keyEncryptionKey },
    cluster: { instanceId: config.cluster.instanceId },
  };
  writeJsonAtomic(path.join(home, GATEWAY_FILES.config), written, 0o600);
  return {
    home,
    gatewayId,
    instanceId: config.cluster.instanceId,
    caFingerprint: ca.fingerprint,
    listen,
    url,
    adminDeviceId: admin.deviceId,
    registerCommand: registerCommandFor(listen, sans, ca.fingerprint),
  };
}
