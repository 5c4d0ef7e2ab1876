import path from "node:path";
import type { Logger } from "pino";
import { GATEWAY_FILES, type GatewayConfig, type GatewaySecrets } from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { openPostgresStore, openSqliteStore } from "../store/index.js";
import type { Store } from "../store/types.js";

/**
 * The store gateway.json's `store` names: `gatehouse.db` in the home (sqlite, the default), or the
 * PostgreSQL database `secrets.storeUrl` (resolved from `store.url`) that several instances share.
 * Not migrated yet: the caller runs `migrate()`.
 * @throws GatehouseError `config_invalid` when a postgres store lacks `cluster.instanceId` or its
 *   URL was not resolved; `unavailable` (from the opener) when the database cannot be reached,
 *   naming `postgres://user@host:port/db` and the driver's reason, never the password.
 */
export async function openGatewayStore(
  home: string,
  config: Pick<GatewayConfig, "store" | "cluster">,
  secrets: Pick<GatewaySecrets, "storeUrl">,
  logger?: Logger,
): Promise<Store> {
  if (config.store.kind === "sqlite") return openSqliteStore(path.join(home, GATEWAY_FILES.database));
  if (!config.cluster.instanceId)
    throw new GatehouseError(
      "config_invalid",
      `${path.join(home, GATEWAY_FILES.config)}: store.kind is postgres, but cluster.instanceId is not set`,
      "Make the home of each instance with `gatehouse gateway init --store REF` (the first) or `gatehouse gateway join --store REF --listen HOST:PORT` (the others): they write it.",
    );
  if (!secrets.storeUrl)
    throw new GatehouseError("config_invalid", "store.url was not resolved", "Set store.url to a reference.");
  return openPostgresStore(secrets.storeUrl, {
    poolSize: config.store.poolSize,
    ...(logger ? { logger } : {}),
  });
}
