import { createRequire } from "node:module";

// Read from package.json so the version never drifts; works from src/ (tsx) and dist/ alike.
const require = createRequire(import.meta.url);
export const GATEHOUSE_VERSION: string = (require("../../package.json") as { version: string }).version;
