import path from "node:path";
import {
  GATEWAY_FILES,
  keySettingBytes,
  resolveSecret,
  vaultAccess,
  type GatewayConfig,
  type GatewaySecrets,
} from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { gatewayKekSource } from "../gateway/home.js";
import { openGatewayStore } from "../gateway/open-store.js";
import { describePostgresUrl } from "../store/postgres-errors.js";
import { loadSharedCa, readSharedGateway } from "../gateway/cluster/shared-material.js";
import type { Store } from "../store/types.js";
import type { Finding } from "./findings.js";

/** A thrown value as a finding: a catalogue error as it is, anything else as its message. */
function failed(check: string, error: unknown, fallbackHint: string): Finding {
  const named = error instanceof GatehouseError ? error : undefined;
  return {
    severity: "error",
    check,
    message: named ? `${named.code}: ${named.message}` : String((error as Error)?.message ?? error),
    fix: named?.hint ?? fallbackHint,
  };
}

/**
 * A postgres store, as a start would meet it: the key-encryption key is set, the database answers
 * (named as `postgres://user@host:port/db`, never with its password), it holds this gateway, and
 * the shared CA key opens with the key. Read only: nothing is migrated or written. Solo homes
 * (sqlite) get no finding here.
 */
export async function checkGatewayStore(
  home: string,
  config: GatewayConfig,
  env: NodeJS.ProcessEnv,
): Promise<Finding[]> {
  if (config.store.kind !== "postgres") return [];
  const file = path.join(home, GATEWAY_FILES.config);
  // A reference that does not resolve is named by the secret-reference check: the database is
  // still checked when only the key-encryption key is missing, and the other way round.
  const resolve = (setting: string | undefined) =>
    setting
      ? resolveSecret(setting, "", { env, vault: vaultAccess(config) }).catch(() => undefined)
      : undefined;
  const storeUrl = await resolve(config.store.url);
  if (storeUrl === undefined) return [];
  const kekSecret = await resolve(config.tokens.keyEncryptionKey);
  const secrets: GatewaySecrets = {
    storeUrl,
    ...(kekSecret !== undefined ? { keyEncryptionKey: keySettingBytes(kekSecret) } : {}),
  };
  const findings: Finding[] = [];
  let kek;
  if (!config.tokens.keyEncryptionKey || kekSecret !== undefined)
    try {
      kek = gatewayKekSource(home, config, secrets).load(false);
    } catch (error) {
      findings.push({ ...failed("store-key", error, ""), file });
    }
  let store: Store | undefined;
  let describe = "store.url";
  let check = "store";
  try {
    describe = describePostgresUrl(secrets.storeUrl ?? "");
    store = await openGatewayStore(home, config, secrets);
    const shared = await readSharedGateway(store);
    if (!shared) {
      findings.push({
        severity: "error",
        check: "store",
        file,
        message: `the database ${describe} answers but holds no gateway`,
        fix: "Make the first instance with `gatehouse gateway init --store REF`, or point store.url at the database it used.",
      });
      return findings;
    }
    if (shared.gatewayId !== config.gatewayId) {
      findings.push({
        severity: "error",
        check: "store",
        file,
        message: `the database ${describe} holds gateway ${shared.gatewayId}, but gateway.json says ${config.gatewayId}`,
        fix: "Point store.url at this gateway's database, or make this home again with `gatehouse gateway join`.",
      });
      return findings;
    }
    findings.push({
      severity: "ok",
      check: "store",
      file,
      message: `the database ${describe} answers and holds gateway ${shared.gatewayId}`,
    });
    if (kek) {
      check = "store-key";
      await loadSharedCa(store, kek, describe);
      findings.push({
        severity: "ok",
        check: "store-key",
        file,
        message: `the shared CA key opens with ${kek.source} (${kek.id})`,
      });
    }
  } catch (error) {
    // The driver's own errors (a query refused after the connection) are named with the database.
    const named =
      error instanceof GatehouseError
        ? error
        : new GatehouseError(
            "unavailable",
            `the database ${describe} cannot be read: ${(error as Error)?.message ?? String(error)}`,
            `Check that PostgreSQL runs at ${describe} and that store.url names the right user, password and database.`,
          );
    findings.push({ ...failed(check, named, ""), file });
  } finally {
    await store?.close().catch(() => undefined);
  }
  return findings;
}
