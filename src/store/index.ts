export type * from "./types.js";
export type { Database } from "./migrations.js";
export { KyselyStore, openSqliteStore } from "./sqlite-store.js";
export type * from "./token-types.js";
