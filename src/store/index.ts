export type * from "./types.js";
export type { Database } from "./migrations.js";
export { KyselyStore } from "./kysely-store.js";
export { openSqliteStore, sqliteDialect } from "./sqlite-store.js";
export { DEFAULT_POOL_SIZE, openPostgresStore, postgresDialect } from "./postgres-store.js";
export type { PostgresStoreLogger } from "./postgres-store.js";
export { describePostgresUrl } from "./postgres-errors.js";
export type { StoreDialect } from "./store-dialect.js";
export type * from "./token-types.js";
