// Once per test run: one shared PostgreSQL server for every test file that asks for a database
// (createTestDatabase in test/fixtures/postgres.ts), stopped and removed when the run ends. Its URL
// reaches the test workers, and the CLI processes they start, through the environment. A URL
// already in GATEHOUSE_TEST_POSTGRES_URL (a server of your own) is used as it is.
import { SHARED_URL_VARIABLE, postgresAvailable, startPostgresServer } from "./fixtures/postgres.js";
import type { PostgresServer } from "./fixtures/postgres.js";

let server: PostgresServer | undefined;

export async function setup(): Promise<void> {
  if (process.env[SHARED_URL_VARIABLE]) return;
  if (!postgresAvailable()) return;
  server = await startPostgresServer();
  process.env[SHARED_URL_VARIABLE] = server.url;
}

export async function teardown(): Promise<void> {
  if (server === undefined) return;
  delete process.env[SHARED_URL_VARIABLE];
  await server.close();
  server = undefined;
}
