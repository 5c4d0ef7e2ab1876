/**
 * What Gatehouse means by `sslmode` in a store URL, whatever the driver's version means by it.
 *
 * libpq (PostgreSQL docs, "SSL Support", table "SSL Mode Descriptions") has six modes, and only
 * `verify-full` both encrypts and checks that the server is the one named. `pg` 8 treats `prefer`,
 * `require` and `verify-ca` as aliases of `verify-full`, prints a multi-line "SECURITY WARNING"
 * on stderr for each process that uses them, and announces libpq's weaker meanings for pg 9.
 * Gatehouse's shared database holds the sealed keys, the audit chain and every credential's state,
 * so it keeps the strict reading on purpose and says so: every mode but `disable` is TLS with the
 * server's certificate verified (against `sslrootcert`, else the system's CAs) and its name
 * checked. The URL handed to the driver says `verify-full` itself, so nothing is printed and a
 * later driver cannot weaken it. `uselibpqcompat=true` (the driver's own switch to libpq's
 * meanings) is left to the driver, as the operator asked.
 */
import { GatehouseError } from "../protocol/errors.js";

/** libpq's modes that Gatehouse runs as `verify-full` (TLS, certificate and name verified). */
const VERIFIED_MODES = new Set(["allow", "prefer", "require", "verify-ca", "verify-full"]);

/**
 * The connection string to give `pg` for a store URL: `sslmode` of a libpq mode other than
 * `disable` becomes `verify-full` (see above); what comes before the query (user, password,
 * host, database) is left byte for byte. URLs without `sslmode` (no TLS, as `pg` does) or with
 * `uselibpqcompat=true` are returned as they are.
 * @throws GatehouseError `config_invalid` for an `sslmode` that is not one of libpq's modes (pg 8
 *   would take any value as "TLS"), naming the accepted ones; the value is shown, never the URL.
 */
export function driverConnectionString(url: string): string {
  const queryAt = url.indexOf("?");
  if (queryAt < 0) return url;
  const query = new URLSearchParams(url.slice(queryAt + 1).replace(/#.*$/, ""));
  const modes = query.getAll("sslmode");
  if (modes.length === 0 || query.get("uselibpqcompat") === "true") return url;
  for (const mode of modes)
    if (mode !== "disable" && !VERIFIED_MODES.has(mode))
      throw new GatehouseError(
        "config_invalid",
        `store.url has sslmode=${JSON.stringify(mode.slice(0, 32))}, which is not a libpq SSL mode`,
        "Use sslmode=verify-full (add sslrootcert=/path/to/ca.pem when the server's certificate is from a private CA) or sslmode=disable; Gatehouse verifies the server's certificate and name for every mode but disable.",
      );
  // The query alone is rewritten (pg reads it with URLSearchParams too); the part before it, with
  // the password, is kept as written.
  const rewritten = new URLSearchParams(
    [...query].map(([key, value]) => [key, key === "sslmode" && value !== "disable" ? "verify-full" : value]),
  );
  const fragment = /#.*$/.exec(url.slice(queryAt))?.[0] ?? "";
  return `${url.slice(0, queryAt)}?${rewritten.toString()}${fragment}`;
}
