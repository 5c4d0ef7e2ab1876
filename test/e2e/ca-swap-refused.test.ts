/**
 * A CA certificate swapped beside its key stops `gateway start` with `config_invalid` naming
 * both, rather than making the gateway trust client certificates another CA issued: the shared
 * `pki/ca.pem` row of a gateway on PostgreSQL (stored unsealed, since it is public), and the
 * home's pki/ca.pem of a gateway on SQLite. Real CLI processes, a real PostgreSQL server.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createCertificateAuthority } from "../../src/pki/index.js";
import { createTestCluster, type TestCluster } from "../fixtures/cluster.js";
import { postgresAvailable } from "../fixtures/postgres.js";
import { freePort, runCli, tempHome } from "./harness.js";

const clusters: TestCluster[] = [];
afterAll(async () => {
  for (const cluster of clusters.splice(0)) await cluster.close();
});

const anotherCa = () =>
  createCertificateAuthority({ commonName: "Another CA", now: new Date(), validityDays: 30 });

describe("a CA certificate that is not the CA key's", () => {
  it.skipIf(!postgresAvailable())(
    "in the shared database stops the instance's start, naming the row and the sealed key",
    async () => {
      const cluster = await createTestCluster("ca-swap-", { a: `127.0.0.1:${await freePort()}` });
      clusters.push(cluster);
      const client = new pg.Client({ connectionString: cluster.databaseUrl });
      await client.connect();
      try {
        await client.query("UPDATE shared_material SET value = $1 WHERE name = 'pki/ca.pem'", [
          (await anotherCa()).certPem,
        ]);
      } finally {
        await client.end();
      }

      const result = await runCli(["gateway", "start", "--home", cluster.home("a")], { timeoutMs: 90_000 });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("✗ config_invalid:");
      expect(result.stderr).toContain("pki/ca.pem");
      expect(result.stderr).toContain("pki/ca.key");
      expect(result.stderr).not.toContain("internal_error");
      expect(result.stderr).not.toContain("PRIVATE KEY");
    },
    // A start that does not refuse keeps serving: runCli's timeout then ends it, inside this one.
    150_000,
  );

  it("in a gateway home stops the start, naming the certificate file", async () => {
    const home = tempHome("ca-swap");
    const listen = `127.0.0.1:${await freePort()}`;
    const init = await runCli(["gateway", "init", "--home", home, "--listen", listen], { timeoutMs: 90_000 });
    expect(init.code).toBe(0);
    const caFile = path.join(home, "pki", "ca.pem");
    const swapped = (await anotherCa()).certPem;
    writeFileSync(caFile, swapped);

    const result = await runCli(["gateway", "start", "--home", home], { timeoutMs: 90_000 });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("✗ config_invalid:");
    expect(result.stderr).toContain(caFile);
    expect(result.stderr).not.toContain("internal_error");
    // Nothing was rewritten in its place: putting the certificate back is the whole repair.
    expect(readFileSync(caFile, "utf8")).toBe(swapped);
  }, 150_000);
});
