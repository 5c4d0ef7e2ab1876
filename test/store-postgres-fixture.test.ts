import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabase, postgresAvailable } from "./fixtures/postgres.js";

describe.skipIf(!postgresAvailable())("PostgreSQL test fixture", () => {
  const drops: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const drop of drops) await drop();
  });

  it("gives each caller its own empty database on the shared server", async () => {
    const a = await createTestDatabase();
    const b = await createTestDatabase();
    drops.push(a.drop, b.drop);
    expect(a.url).not.toBe(b.url);
    const client = new pg.Client({ connectionString: a.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: string }>(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
      );
      expect(rows[0]?.n).toBe("0");
    } finally {
      await client.end();
    }
  });
});

describe.skipIf(!postgresAvailable())("a private PostgreSQL server", () => {
  it("keeps its data across a restart and leaves nothing behind when closed", async () => {
    const { startPostgresServer } = await import("./fixtures/postgres.js");
    const fs = await import("node:fs");
    const server = await startPostgresServer();
    try {
      const query = async (text: string) => {
        const client = new pg.Client({ connectionString: server.url });
        await client.connect();
        try {
          return (await client.query<{ v: string }>(text)).rows;
        } finally {
          await client.end();
        }
      };
      await query("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before restart')");
      await server.restart();
      expect(await query("SELECT v FROM kept")).toEqual([{ v: "before restart" }]);
      await server.stop();
      await expect(query("SELECT 1")).rejects.toThrow(/ECONNREFUSED/);
      await server.start();
      expect(await query("SELECT v FROM kept")).toEqual([{ v: "before restart" }]);
    } finally {
      await server.close();
    }
    expect(fs.existsSync(server.dataDir)).toBe(false);
  });
});
