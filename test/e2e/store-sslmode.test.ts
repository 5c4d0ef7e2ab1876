/**
 * `gateway init --store` with a `sslmode=require` database URL, as an operator types it, with the
 * real CLI: the refusal names the database and the driver's reason, and nothing else reaches the
 * terminal (pg 8 printed a multi-line "SECURITY WARNING" about its sslmode aliases on stderr).
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanupAll, runCli, tempHome } from "./harness.js";
import { createTestDatabase, postgresAvailable } from "../fixtures/postgres.js";

describe.skipIf(!postgresAvailable())("a store URL with sslmode=require", () => {
  afterAll(() => cleanupAll());

  it("is refused unavailable, naming the database and that it has no TLS, with no warning", async () => {
    const database = await createTestDatabase();
    try {
      const url = `${database.url}${database.url.includes("?") ? "&" : "?"}sslmode=require`;
      const result = await runCli(
        ["gateway", "init", "--home", tempHome("sslmode"), "--store", "env://GATEHOUSE_DATABASE_URL"],
        {
          env: {
            ...process.env,
            GATEHOUSE_DATABASE_URL: url,
            GATEHOUSE_KEY_ENCRYPTION_KEY: "ab".repeat(32),
          },
        },
      );
      expect(result.code, result.stdout + result.stderr).toBe(1);
      expect(result.stderr).toMatch(
        /^✗ unavailable: PostgreSQL at postgres:\/\/\S+: The server does not support SSL connections/,
      );
      expect(result.stderr).not.toContain("SECURITY WARNING");
      expect(result.stderr).not.toContain("Warning:");
      // Two lines: the refusal and its hint.
      expect(result.stderr.trimEnd().split("\n")).toHaveLength(2);
    } finally {
      await database.drop();
    }
  });
});
