export * from "./paths.js";
export * from "./schema.js";
export * from "./duration.js";
export * from "./load.js";
export * from "./files.js";
