import { GatehouseError, type ErrorCode } from "../protocol/errors.js";

/**
 * Where the credential an admin command (or `node test-connection`) presents came from.
 * Precedence, highest first: the `--token` flag, the `GATEHOUSE_TOKEN` variable, then the home's
 * certificate (the admin credential in `admin/`, else a node's device certificate). The `token` command presents the
 * file it was given instead. `next` names what would be used if this source were dropped.
 */
export type CredentialSource =
  | { kind: "token-flag"; next?: string }
  | { kind: "token-variable"; next?: string }
  | { kind: "api-key-file"; file: string }
  | { kind: "refresh-token-file"; file: string }
  | { kind: "admin-certificate"; file: string }
  | { kind: "device-certificate"; file: string }
  | { kind: "none" };

/** Where the gateway's URL came from, so that a URL that went stale can be found and fixed. */
export type UrlSource =
  | { kind: "flag" }
  /** A gateway home: `listen` in its gateway.json, the one source of truth for its address. */
  | { kind: "listen"; file: string; listen: string }
  /** `gatewayUrl` in admin/gateway.json: a copy of the admin credential away from its gateway. */
  | { kind: "admin-copy"; file: string }
  /** `gatewayUrl` in a node's node.json. */
  | { kind: "node-config"; file: string };

/** Refusals of a credential: the errors whose fix is "use another credential". */
const CREDENTIAL_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "missing_credentials",
  "invalid_token",
  "token_expired",
  "token_not_yet_valid",
  "wrong_audience",
  "unknown_key",
  "cert_untrusted",
  "cert_expired",
  "device_pending",
  "device_denied",
  "device_revoked",
  "insufficient_scope",
  "refresh_token_reused",
]);

/** Failures to reach the gateway at a URL: the errors whose fix may be "the URL is wrong". */
const UNREACHABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "connection_refused",
  "connection_timeout",
  "connection_failed",
  "dns_failed",
  "not_a_gateway",
  "ca_mismatch",
  "san_mismatch",
]);

const FRESH_TOKEN = "`gatehouse token --api-key-file FILE`";

/** The credential in words, as an error description ends: "the access token in the GATEHOUSE_TOKEN variable". */
export function describeCredential(source: CredentialSource): string {
  switch (source.kind) {
    case "token-flag":
      return `the access token given with the --token flag${source.next ? `, which takes precedence over ${source.next}` : ""}`;
    case "token-variable":
      return `the access token in the GATEHOUSE_TOKEN variable${source.next ? `, which takes precedence over ${source.next}` : ""}`;
    case "api-key-file":
      return `the API key in ${source.file} (--api-key-file)`;
    case "refresh-token-file":
      return `the refresh token in ${source.file} (--refresh-token-file)`;
    case "admin-certificate":
      return `the admin certificate in ${source.file}`;
    case "device-certificate":
      return `the device certificate in ${source.file} (a node's own credential)`;
    case "none":
      return "no credential (no --token, no GATEHOUSE_TOKEN, and no certificate in this home)";
  }
}

/** How to stop using a credential, or what to use instead. */
function howToStop(source: CredentialSource): string {
  switch (source.kind) {
    case "token-flag":
      return source.next
        ? `drop --token to use ${source.next}, or pass a fresh token (${FRESH_TOKEN})`
        : `pass a fresh token to --token (${FRESH_TOKEN})`;
    case "token-variable":
      return source.next
        ? `unset GATEHOUSE_TOKEN to use ${source.next}, or put a fresh token in it (${FRESH_TOKEN})`
        : `unset GATEHOUSE_TOKEN, or put a fresh token in it (${FRESH_TOKEN}); this home holds no certificate to fall back to`;
    case "api-key-file":
      return "give --api-key-file a current key: `gatehouse keys list` shows which keys are revoked or expired, `gatehouse keys create` makes a new one";
    case "refresh-token-file":
      return `a refresh token is used once: get a new pair with ${FRESH_TOKEN} and keep the refresh token it returns`;
    case "admin-certificate":
      return "copy admin/ again from the gateway's home (after a CA rotation it holds a re-issued certificate), or pass --token / set GATEHOUSE_TOKEN to use a token instead";
    case "device-certificate":
      return "run admin commands with the gateway's home (--home), a copy of its admin/ folder, or a token (--token, GATEHOUSE_TOKEN)";
    case "none":
      return "pass --token, set GATEHOUSE_TOKEN, or use a home that holds an admin credential (--home)";
  }
}

/** The URL's origin in words: "listen in /gw/gateway.json". */
export function describeUrlSource(source: UrlSource): string {
  switch (source.kind) {
    case "flag":
      return "the --gateway flag";
    case "listen":
      return `listen ${source.listen} in ${source.file}`;
    case "admin-copy":
      return `gatewayUrl in ${source.file}`;
    case "node-config":
      return `gatewayUrl in ${source.file}`;
  }
}

/** What to do when the gateway does not answer where the URL says. */
function urlFix(source: UrlSource): string {
  switch (source.kind) {
    case "flag":
      return "Check the URL given to --gateway.";
    case "listen":
      return "This home's gateway is not running there: start it (`gatehouse gateway start`); a gateway started with --listen for one run is reached with --gateway URL.";
    case "admin-copy":
      return `If the gateway's listen address changed, write its new URL into gatewayUrl in ${source.file} (\`gatehouse gateway info\` on the gateway shows it), or pass --gateway URL; otherwise start the gateway.`;
    case "node-config":
      return `If the gateway moved, fix gatewayUrl in ${source.file}, or pass --gateway URL; otherwise start the gateway.`;
  }
}

/**
 * An admin command's failure, with its origin named: a refused credential says which credential
 * it was and how to stop using it; a gateway that does not answer says where its URL came from.
 * Anything else is returned as it is.
 */
export function nameFailure(error: unknown, credential: CredentialSource, url: UrlSource): unknown {
  if (!(error instanceof GatehouseError)) return error;
  if (CREDENTIAL_REFUSALS.has(error.code)) return nameCredentialRefusal(error, credential);
  if (UNREACHABLE.has(error.code))
    return retold(
      error,
      `${error.message} (the URL is from ${describeUrlSource(url)})`,
      error.code === "connection_refused" ||
        error.code === "connection_timeout" ||
        error.code === "dns_failed"
        ? urlFix(url)
        : error.hint,
    );
  return error;
}

/**
 * A refusal of a credential, retold to say which credential it was and how to stop using it (as
 * {@link nameFailure} does for a credential refusal); any other error is returned as it is.
 */
export function nameCredentialRefusal(error: unknown, credential: CredentialSource): unknown {
  if (!(error instanceof GatehouseError) || !CREDENTIAL_REFUSALS.has(error.code)) return error;
  return retold(
    error,
    `${error.message}; the credential was ${describeCredential(credential)}`,
    `${error.hint} To stop using it: ${howToStop(credential)}.`,
  );
}

function retold(error: GatehouseError, description: string, hint: string): GatehouseError {
  const named = new GatehouseError(error.code, description, hint);
  if (error.retryAfterSeconds !== undefined) named.retryAfterSeconds = error.retryAfterSeconds;
  return named;
}
