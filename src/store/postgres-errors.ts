/**
 * PostgreSQL failures a user can act on: which database (never its password) and the driver's
 * reason, as GatehouseError `unavailable` with a hint for the cause. One place decides which driver
 * errors mean "the database cannot be reached" (as opposed to a query the database refused, which
 * stays the driver's error for the caller to handle).
 */
import { GatehouseError } from "../protocol/errors.js";

/**
 * `postgres://user@host:port/db` for a connection URL: what messages and logs may show. The
 * password, query parameters (which may carry one) and anything unparseable never appear.
 * @throws GatehouseError `config_invalid` when `url` is not a postgres:// or postgresql:// URL.
 */
export function describePostgresUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new GatehouseError(
      "config_invalid",
      "store.url is not a URL",
      "Set store.url to a reference whose value is postgres://USER:PASSWORD@HOST:PORT/DATABASE.",
    );
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:")
    throw new GatehouseError(
      "config_invalid",
      `store.url has the scheme ${JSON.stringify(parsed.protocol.replace(/:$/, ""))}, not postgres`,
      "Set store.url to a reference whose value is postgres://USER:PASSWORD@HOST:PORT/DATABASE.",
    );
  const user = parsed.username ? `${decodeURIComponent(parsed.username)}@` : "";
  const host = parsed.hostname || "localhost";
  const port = parsed.port || "5432";
  const database =
    decodeURIComponent(parsed.pathname.replace(/^\//, "")) || user.replace(/@$/, "") || "postgres";
  return `postgres://${user}${host}:${port}/${database}`;
}

/** The password in `url`, to scrub from any text a driver produces (none: empty string). */
export function passwordOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return "";
  }
}

/** pg's message when a query's answer did not come within query_timeout. */
const QUERY_TIMEOUT_MESSAGE = /^Query read timeout/;

/** Node socket errors and PostgreSQL SQLSTATEs that mean the server is out of reach or refused us. */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "57P01", // admin_shutdown: the server is stopping (or restarting) and cut this connection
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now: starting up or shutting down
  "28P01", // invalid_password
  "28000", // invalid_authorization_specification: no such role, or pg_hba.conf refuses it
  "3D000", // invalid_catalog_name: no such database
]);

/** pg's errors without a code that still mean the connection is gone. */
const CONNECTION_MESSAGES = [
  /^Connection terminated/,
  QUERY_TIMEOUT_MESSAGE,
  /timeout exceeded when trying to connect/,
  /^Client has encountered a connection error/,
  /^Client was closed/,
];

/** Whether `error` is pg's query_timeout: the query got no answer in time (see postgres-store.ts). */
export function isQueryTimeout(error: unknown): boolean {
  const { message } = (error ?? {}) as { message?: unknown };
  return error instanceof Error && typeof message === "string" && QUERY_TIMEOUT_MESSAGE.test(message);
}

/** Whether `error` means the database cannot be reached (a retry later may work), not a refused query. */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof GatehouseError) return false;
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === "string" && (CONNECTION_CODES.has(code) || code.startsWith("08"))) return true;
  return typeof message === "string" && CONNECTION_MESSAGES.some((pattern) => pattern.test(message));
}

/** What to do about it, by cause. */
function hintFor(code: string | undefined, where: string): string {
  switch (code) {
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `The host name in store.url does not resolve: fix it (the database is ${where}).`;
    case "28P01":
    case "28000":
      return "PostgreSQL refused the user: check the user and password in store.url's secret, and pg_hba.conf on the server.";
    case "3D000":
      return "Create the database (createdb) or fix the database name in store.url.";
    case "57P01":
    case "57P02":
    case "57P03":
      return "PostgreSQL is stopping or starting: the gateway reconnects by itself; retry shortly.";
    default:
      return `Check that PostgreSQL is running and accepts connections at ${where} (pg_isready), and that store.url names it.`;
  }
}

/**
 * `error` from the driver as GatehouseError `unavailable`: `where` (describePostgresUrl) and the
 * driver's reason, with every occurrence of `password` removed; the driver error is kept as cause.
 */
export function databaseUnavailable(error: unknown, where: string, password = ""): GatehouseError {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  let reason = typeof message === "string" && message ? message : String(error);
  if (isQueryTimeout(error))
    reason = `no answer to a query in time (${reason}): is the database host reachable?`;
  if (password) reason = reason.split(password).join("***");
  const codeText = typeof code === "string" ? code : undefined;
  const failure = new GatehouseError(
    "unavailable",
    `PostgreSQL at ${where}: ${reason}${codeText && !reason.includes(codeText) ? ` (${codeText})` : ""}`,
    hintFor(codeText, where),
  );
  failure.cause = error;
  return failure;
}

/**
 * A migration the database refused (the first start creates the tables), as GatehouseError
 * `unavailable` naming `where`, the migration and the database's reason; a database out of reach
 * is already such an error and passes through.
 */
export function migrationRefused(error: unknown, where: string, password = ""): GatehouseError {
  if (error instanceof GatehouseError) return error;
  const cause = (error as { cause?: unknown }).cause;
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (isConnectionError(cause)) return databaseUnavailable(cause, where, password);
  let reason = error instanceof Error ? error.message : String(error);
  if (password) reason = reason.split(password).join("***");
  const failure = new GatehouseError(
    "unavailable",
    `PostgreSQL at ${where}: ${reason}`,
    code === "42501"
      ? "The user in store.url may not create tables there: make it the database's owner (ALTER DATABASE … OWNER TO …) or grant it CREATE on schema public, then start again."
      : "The gateway's tables could not be created or updated in that database: fix what the reason names, then start again.",
  );
  failure.cause = error;
  return failure;
}
