import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One PostgreSQL server for the whole run (skipped when PostgreSQL is not installed).
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end tests start real gateways and nodes as child processes: keep files in parallel
    // but bounded, the machines have two cores.
    maxWorkers: 2,
  },
});
