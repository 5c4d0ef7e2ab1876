import { rawHeaderValues } from "./raw-headers.js";
import type { FastifyRequest } from "fastify";
import { GatehouseError } from "../protocol/errors.js";

/**
 * The one parser of the `Authorization` header. Whatever a client sends there is either one of the
 * credentials below or an `invalid_request` naming what is wrong: no input reaches a decoder that
 * could throw anything else (the old Basic parser gave a 500 for `id:%`).
 */
export type AuthorizationCredentials =
  { scheme: "bearer"; token: string } | { scheme: "basic"; clientId: string; clientSecret: string };

// RFC 9110 §11.2: auth-scheme is a token, credentials are token68 (we take no auth-params).
const SCHEME_AND_CREDENTIALS = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?: +(.*))?$/s;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** A Basic credential is an id and a secret of at most 512 characters (the token endpoint's limit). */
const MAX_BASIC_CHARACTERS = 2048;
const hasControlCharacter = (value: string) =>
  [...value].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

const refuse = (description: string) =>
  new GatehouseError(
    "invalid_request",
    description,
    "Send one header `Authorization: Bearer <access token>`, or `Basic` with the client id and API key on the token endpoint.",
  );

/**
 * Parses the values of every `Authorization` header line of a request (RFC 9110 §11.6.2).
 * Returns undefined when there is none, `bearer` (RFC 6750 §2.1) or `basic` (RFC 7617, with the
 * id and secret form-urlencoded as RFC 6749 §2.3.1 requires). Throws `invalid_request` for more
 * than one header, an empty one, an unknown scheme, or credentials that do not decode.
 */
export function parseAuthorization(values: readonly string[]): AuthorizationCredentials | undefined {
  if (values.length === 0) return undefined;
  if (values.length > 1) throw refuse(`the request has ${values.length} Authorization headers; send one`);
  const header = values[0]!.replace(/^[ \t]+|[ \t]+$/g, "");
  if (header === "") throw refuse("the Authorization header is empty");
  const match = SCHEME_AND_CREDENTIALS.exec(header);
  if (!match) throw refuse("the Authorization header is not `<scheme> <credentials>`");
  const scheme = match[1]!;
  const credentials = match[2] ?? "";
  switch (scheme.toLowerCase()) {
    case "bearer":
      if (!TOKEN68.test(credentials))
        throw refuse(
          credentials === ""
            ? "the Authorization header has no token after Bearer"
            : "the bearer token has characters no token has (RFC 6750 §2.1)",
        );
      return { scheme: "bearer", token: credentials };
    case "basic":
      return parseBasic(credentials);
    default:
      throw refuse(`the Authorization scheme ${scheme.slice(0, 32)} is not supported`);
  }
}

function parseBasic(credentials: string): AuthorizationCredentials {
  if (credentials === "") throw refuse("the Authorization header has no credentials after Basic");
  if (credentials.length > MAX_BASIC_CHARACTERS)
    throw refuse(`the Basic credentials are longer than ${MAX_BASIC_CHARACTERS} characters`);
  const bytes = Buffer.from(credentials, "base64");
  // Node's decoder skips what is not base64: only a value that encodes back to itself is base64.
  if (!BASE64.test(credentials) || bytes.toString("base64") !== credentials)
    throw refuse("the Basic credentials are not base64 (RFC 7617)");
  let decoded: string;
  try {
    decoded = strictUtf8.decode(bytes);
  } catch {
    throw refuse("the Basic credentials are not UTF-8 text (RFC 7617)");
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) throw refuse("the Basic credentials must be client_id:client_secret (RFC 7617)");
  const clientId = formDecode(decoded.slice(0, colon), "client id");
  const clientSecret = formDecode(decoded.slice(colon + 1), "client secret");
  if (clientSecret === "") throw refuse("the Basic credentials have an empty client secret");
  return { scheme: "basic", clientId, clientSecret };
}

/** application/x-www-form-urlencoded decoding of one Basic part (RFC 6749 §2.3.1, Appendix B). */
function formDecode(part: string, what: string): string {
  let value: string;
  try {
    value = decodeURIComponent(part.replace(/\+/g, " "));
  } catch {
    throw refuse(`the ${what} in the Basic credentials is not valid percent-encoding (RFC 6749 §2.3.1)`);
  }
  if (hasControlCharacter(value)) throw refuse(`the ${what} in the Basic credentials has control characters`);
  return value;
}

/**
 * Every `Authorization` line the client sent, in order. Node keeps only the first of duplicate
 * Authorization headers in `request.headers`; the raw list shows them all, so duplicates are refused
 * rather than silently choosing one.
 */
export function authorizationValues(request: FastifyRequest): string[] {
  return rawHeaderValues(request.raw.rawHeaders, "authorization");
}

/** The request's Authorization credentials; see parseAuthorization for what is refused. */
export function requestAuthorization(request: FastifyRequest): AuthorizationCredentials | undefined {
  return parseAuthorization(authorizationValues(request));
}
