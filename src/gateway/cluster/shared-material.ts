/**
 * The key material every instance of one gateway needs when they share a PostgreSQL database and
 * no disk: the CA (certificate and key), the token hash key and which gateway this is. Private
 * items are sealed with AES-256-GCM under the key-encryption key (auth/key-encryption.ts, the
 * additional data bound to the item's name): a copy of the database alone can sign nothing.
 *
 * Rows of `shared_material` (see SharedMaterialRecord):
 *   cluster/gateway     `{"gatewayId", "name"}` (public): the gateway the instances are
 *   pki/ca.pem          the CA certificate (public)
 *   pki/ca.key          the CA key, PKCS#8 PEM (sealed)
 *   pki/token-hmac.key  the token hash key, 64 hex digits (sealed; absent when tokens.hashKey is set)
 */
import { randomBytes } from "node:crypto";
import {
  isSealed,
  openPrivateKey,
  sealPrivateKey,
  sealedUnder,
  type KeyEncryptionKey,
} from "../../auth/key-encryption.js";
import { GATEWAY_FILES } from "../../config/index.js";
import {
  createCertificateAuthority,
  loadCertificateAuthority,
  type CertificateAuthority,
} from "../../pki/index.js";
import { GatehouseError } from "../../protocol/errors.js";
import type { Store } from "../../store/types.js";

/** The names of the shared rows (the home files they stand for, where there is one). */
export const SHARED_MATERIAL = {
  gateway: "cluster/gateway",
  caCert: GATEWAY_FILES.caCert,
  caKey: GATEWAY_FILES.caKey,
  tokenHashKey: GATEWAY_FILES.tokenPepper,
} as const;

/** Which gateway the database holds: the id every instance shares (tokens' audience, the CA's name). */
export interface SharedGateway {
  gatewayId: string;
  name: string;
}

/**
 * Makes the shared state of a new gateway in an empty database: its id, a new CA (ECDSA P-256,
 * 10 years) and, unless `hashKeyConfigured`, a token hash key. The CA key is written first and
 * only if absent, so of two `gateway init --store` racing on one database exactly one goes on.
 * @returns the CA, to issue the first instance's server and admin certificates.
 * @throws GatehouseError `invalid_request` when the database holds a CA already (`gateway join`).
 */
export async function createSharedState(
  store: Store,
  kek: KeyEncryptionKey,
  gateway: SharedGateway,
  options: { now: Date; hashKeyConfigured: boolean; describeStore: string },
): Promise<CertificateAuthority & { keyPem: string }> {
  const existing = await store.getSharedMaterial(SHARED_MATERIAL.caKey);
  const ca = existing
    ? undefined
    : await createCertificateAuthority({
        commonName: `Gatehouse CA ${gateway.gatewayId}`,
        now: options.now,
        validityDays: 3650,
      });
  const at = options.now.toISOString();
  const claimed =
    ca !== undefined &&
    (await store.putSharedMaterial(
      {
        name: SHARED_MATERIAL.caKey,
        value: sealPrivateKey(kek, SHARED_MATERIAL.caKey, ca.keyPem),
        sealed: 1,
        updatedAt: at,
      },
      { onlyIfAbsent: true },
    ));
  if (!ca || !claimed) {
    const holder = await readSharedGateway(store);
    throw new GatehouseError(
      "invalid_request",
      `the database ${options.describeStore} holds a gateway already${holder ? ` (${holder.gatewayId})` : ""}`,
      "Use `gatehouse gateway join --store REF --listen HOST:PORT` to add an instance to it, or give gateway init an empty database.",
    );
  }
  await store.putSharedMaterial({
    name: SHARED_MATERIAL.caCert,
    value: ca.certPem,
    sealed: 0,
    updatedAt: at,
  });
  if (!options.hashKeyConfigured)
    await store.putSharedMaterial({
      name: SHARED_MATERIAL.tokenHashKey,
      value: sealPrivateKey(kek, SHARED_MATERIAL.tokenHashKey, randomBytes(32).toString("hex")),
      sealed: 1,
      updatedAt: at,
    });
  // Written last: a database with this row holds a whole gateway that `gateway join` can join.
  await store.putSharedMaterial({
    name: SHARED_MATERIAL.gateway,
    value: JSON.stringify(gateway),
    sealed: 0,
    updatedAt: at,
  });
  return ca;
}

/** The gateway the database holds, or undefined when `gateway init --store` has not finished there. */
export async function readSharedGateway(store: Store): Promise<SharedGateway | undefined> {
  const row = await store.getSharedMaterial(SHARED_MATERIAL.gateway);
  if (!row) return undefined;
  const parsed = JSON.parse(row.value) as Partial<SharedGateway>;
  if (typeof parsed.gatewayId !== "string")
    throw new GatehouseError(
      "config_invalid",
      `the shared_material row ${SHARED_MATERIAL.gateway} holds no gateway id`,
      "The table was edited by hand: restore the database from a backup.",
    );
  return { gatewayId: parsed.gatewayId, name: typeof parsed.name === "string" ? parsed.name : "gatehouse" };
}

/**
 * The shared CA, its key opened with `kek`.
 * @throws GatehouseError `not_found` when the database holds no CA (run `gateway init --store`);
 *   `config_invalid` when the key was sealed under another key-encryption key or was altered, or
 *   the certificate is not the key's (swapped by someone who can write the database).
 */
export async function loadSharedCa(
  store: Store,
  kek: KeyEncryptionKey,
  describeStore: string,
): Promise<CertificateAuthority> {
  const [cert, key] = await Promise.all([
    store.getSharedMaterial(SHARED_MATERIAL.caCert),
    store.getSharedMaterial(SHARED_MATERIAL.caKey),
  ]);
  if (!cert || !key)
    throw new GatehouseError(
      "not_found",
      `the database ${describeStore} holds no gateway CA`,
      "Run `gatehouse gateway init --store REF` once for the first instance, then `gateway join` for the others.",
    );
  // The certificate is public, so stored unsealed: it is trusted only as the sealed key's.
  return loadCertificateAuthority(cert.value, openShared(kek, key.name, key.value), {
    cert: `the shared_material row ${SHARED_MATERIAL.caCert} in ${describeStore}`,
    key: `the sealed CA key (${SHARED_MATERIAL.caKey})`,
  });
}

/**
 * The shared token hash key (the pepper of stored API-key and refresh-token hashes).
 * @throws GatehouseError `config_invalid` when it is missing (tokens.hashKey was set at init and
 *   has been removed since) or does not open with `kek`.
 */
export async function loadSharedHashKey(store: Store, kek: KeyEncryptionKey): Promise<Buffer> {
  const row = await store.getSharedMaterial(SHARED_MATERIAL.tokenHashKey);
  if (!row)
    throw new GatehouseError(
      "config_invalid",
      `the database holds no ${SHARED_MATERIAL.tokenHashKey}: this gateway was made with tokens.hashKey`,
      "Set tokens.hashKey in gateway.json to the reference every instance uses (as at `gateway init --store`).",
    );
  return Buffer.from(openShared(kek, row.name, row.value).trim(), "hex");
}

/**
 * Opens a sealed row, naming the row, the key-encryption keys and where this one came from when
 * it does not open (auth/key-encryption.ts speaks of signing keys; these rows are not).
 */
function openShared(kek: KeyEncryptionKey, name: string, value: string): string {
  const hint =
    "Give every instance the key-encryption key `gateway init --store` used: set tokens.keyEncryptionKey to the reference that holds it.";
  if (!isSealed(value))
    throw new GatehouseError(
      "config_invalid",
      `the shared_material row ${name} is not sealed`,
      "The table was edited by hand: restore the database from a backup.",
    );
  const under = sealedUnder(value);
  if (under !== kek.id)
    throw new GatehouseError(
      "config_invalid",
      `${name} in the database is sealed under key-encryption key ${under}, but ${kek.source} holds ${kek.id}`,
      hint,
    );
  try {
    return openPrivateKey(kek, name, value);
  } catch {
    throw new GatehouseError(
      "config_invalid",
      `${name} in the database does not open with ${kek.source} (${kek.id}): it was altered or moved from another row`,
      "Restore the database from a backup.",
    );
  }
}
