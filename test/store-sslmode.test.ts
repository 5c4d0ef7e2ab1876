/**
 * What Gatehouse means by `sslmode` in store.url (src/store/postgres-url.ts): every libpq mode but
 * `disable` is TLS with the server verified, said to the driver as `verify-full` so that `pg` 8
 * prints no "SECURITY WARNING" and a later `pg` cannot weaken it; a value that is no libpq mode is
 * config_invalid. And against a real PostgreSQL (the tests' server, which has no TLS): a
 * `sslmode=require` URL is refused `unavailable` saying the server has no TLS, with no warning.
 */
import { describe, expect, it } from "vitest";
import { driverConnectionString } from "../src/store/postgres-url.js";
import { openPostgresStore } from "../src/store/index.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { createTestDatabase, postgresAvailable } from "./fixtures/postgres.js";

const BASE = "postgres://gatehouse:s3cret%2Fpw@db.lan:5433/gatehouse";

describe("sslmode in store.url", () => {
  it.each(["allow", "prefer", "require", "verify-ca"])("%s is run as verify-full", (mode) => {
    expect(driverConnectionString(`${BASE}?sslmode=${mode}`)).toBe(`${BASE}?sslmode=verify-full`);
  });

  it("verify-full, disable, no sslmode and the driver's own libpq switch are left as written", () => {
    for (const url of [
      `${BASE}?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem`,
      `${BASE}?sslmode=disable`,
      BASE,
      `${BASE}?application_name=x`,
      `${BASE}?uselibpqcompat=true&sslmode=require`,
    ])
      expect(driverConnectionString(url)).toBe(url);
  });

  it("keeps the other parameters, and the user and password byte for byte", () => {
    expect(
      driverConnectionString(`${BASE}?sslrootcert=%2Fetc%2Fca.pem&sslmode=require&connect_timeout=5`),
    ).toBe(`${BASE}?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full&connect_timeout=5`);
  });

  it("a value that is not a libpq mode is config_invalid, naming the modes and never the URL", () => {
    for (const mode of ["bogus", "no-verify", "REQUIRE"]) {
      const error = (() => {
        try {
          driverConnectionString(`${BASE}?sslmode=${mode}`);
        } catch (caught) {
          return caught;
        }
      })();
      expect(error).toBeInstanceOf(GatehouseError);
      expect(error).toMatchObject({ code: "config_invalid" });
      expect((error as GatehouseError).message).toContain(`sslmode="${mode}"`);
      expect((error as GatehouseError).hint).toContain("verify-full");
      expect((error as GatehouseError).message + (error as GatehouseError).hint).not.toContain("s3cret");
    }
  });
});

describe.skipIf(!postgresAvailable())(
  "a sslmode=require store.url against a real PostgreSQL without TLS",
  () => {
    it("is refused unavailable saying the server has no TLS, and the driver warns nothing", async () => {
      const database = await createTestDatabase();
      const warnings: string[] = [];
      const onWarning = (warning: Error) => warnings.push(warning.message);
      process.on("warning", onWarning);
      try {
        const url = `${database.url}${database.url.includes("?") ? "&" : "?"}sslmode=require`;
        const refused = await openPostgresStore(url).catch((error: unknown) => error);
        expect(refused).toBeInstanceOf(GatehouseError);
        expect(refused).toMatchObject({ code: "unavailable" });
        expect((refused as GatehouseError).message).toContain("does not support SSL");
        // process.emitWarning delivers on the next tick.
        await new Promise((resolve) => setImmediate(resolve));
        expect(warnings.filter((message) => message.includes("SECURITY WARNING"))).toEqual([]);
      } finally {
        process.off("warning", onWarning);
        await database.drop();
      }
    });
  },
);
