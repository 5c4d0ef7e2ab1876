import { createHash, KeyObject, randomUUID, sign, verify } from "node:crypto";
import { GatehouseError } from "../../protocol/errors.js";
import {
  CLOCK_LEEWAY_SECONDS,
  MAX_TOKEN_BYTES,
  type KeyRing,
  type SigningAlgorithm,
} from "../../auth/jwt.js";
import { SCOPES, type Principal, type Scope } from "../../auth/roles.js";

/**
 * The JOSE `typ` of a relay token (RFC 8725 §3.11 explicit typing): an access token (`at+jwt`)
 * is never taken as a relay token, nor a relay token as an access token.
 */
export const RELAY_TOKEN_TYPE = "gatehouse-relay+jwt";
/** How long a relay token is valid: it is sent at once, over one TLS connection. */
export const RELAY_TOKEN_TTL_SECONDS = 30;
/** The longest lifetime (exp − iat) a holder accepts, whatever the sender says. */
export const MAX_RELAY_TOKEN_LIFETIME_SECONDS = 60;
/** The audience of a relay token for one instance: only that instance takes it. */
export const relayAudience = (instanceId: string) => `gatehouse-instance:${instanceId}`;

/** The operator a relayed command runs for, as the instance that authenticated them saw them. */
export type RelayedPrincipal = Pick<
  Principal,
  "kind" | "subject" | "role" | "scopes" | "credentialFingerprint"
>;

/** What a holder learns from a relay token that verified. */
export interface RelayClaims {
  /** The sending instance (`iss`). */
  via: string;
  principal: RelayedPrincipal;
  /** base64url SHA-256 of the exact request body bytes. */
  bodySha256: string;
  /** The token's id: a holder takes each one once. */
  jti: string;
  /** When the token expires, in ms since the epoch. */
  expiresAtMs: number;
}

/** base64url SHA-256 of a request body, as the `bh` claim carries it. */
export function relayBodyHash(body: Buffer | string): string {
  return createHash("sha256").update(body).digest("base64url");
}

// Why node:crypto and not jose here: a relay token is signed and verified once per relayed
// command, on both instances. jose goes through WebCrypto and its JWT builders: 140–380 µs of CPU
// to sign and 150–220 µs to verify an ES256 token (measured on this loaded 2-core machine);
// node:crypto's one-shot sign/verify on a KeyObject made once per key: 40–65 and 90–115 µs. The
// token is the same compact JWS (RFC 7515) either way: jose verifies ours and ours verifies
// jose's (test/cluster-relay-speed.test.ts).

/** KeyObjects of the signing keys' CryptoKeys, made once per key (the keys live as long as the ring). */
const keyObjects = new WeakMap<CryptoKey, KeyObject>();
function keyObject(key: CryptoKey): KeyObject {
  let made = keyObjects.get(key);
  if (!made) keyObjects.set(key, (made = KeyObject.from(key)));
  return made;
}

/**
 * JWS signature bytes (RFC 7518 §3.4: ES256 is R‖S, 64 bytes, not DER; RFC 8037: EdDSA over
 * Ed25519) over the JWS signing input.
 */
function jwsSign(alg: SigningAlgorithm, key: CryptoKey, input: Buffer): Buffer {
  return alg === "ES256"
    ? sign("sha256", input, { key: keyObject(key), dsaEncoding: "ieee-p1363" })
    : sign(null, input, keyObject(key));
}

function jwsVerify(alg: SigningAlgorithm, key: CryptoKey, input: Buffer, signature: Buffer): boolean {
  // Both algorithms' signatures are exactly 64 bytes; anything else is refused before verifying.
  if (signature.length !== 64) return false;
  return alg === "ES256"
    ? verify("sha256", input, { key: keyObject(key), dsaEncoding: "ieee-p1363" }, signature)
    : verify(null, input, keyObject(key), signature);
}

const base64url = (json: unknown) => Buffer.from(JSON.stringify(json)).toString("base64url");

/** Encoded protected headers by signing key: every token one key signs has the same header. */
const encodedHeaders = new Map<string, string>();

/**
 * Signs a relay token (a JWT, RFC 7519, as a compact JWS, RFC 7515) with the gateway's shared
 * token signing key: `iss` the sending instance, `aud` `gatehouse-instance:<target>`, `exp`
 * RELAY_TOKEN_TTL_SECONDS after `now`, the operator (`sub`, `role`, `scope`, `pkind`, `cfp`: the
 * credential's fingerprint, never the credential) and `bh`: the SHA-256 of the body it authorises.
 * Header `{alg, kid, typ: RELAY_TOKEN_TYPE}`.
 */
export async function mintRelayToken(input: {
  signer: { kid: string; alg: SigningAlgorithm; privateKey: CryptoKey };
  from: string;
  to: string;
  principal: RelayedPrincipal;
  bodySha256: string;
  now: Date;
}): Promise<string> {
  const { signer } = input;
  const headerKey = `${signer.alg} ${signer.kid}`;
  let header = encodedHeaders.get(headerKey);
  if (!header) {
    header = base64url({ alg: signer.alg, kid: signer.kid, typ: RELAY_TOKEN_TYPE });
    // Keys rotate rarely; a long-lived instance never keeps more than a handful.
    if (encodedHeaders.size >= 64) encodedHeaders.clear();
    encodedHeaders.set(headerKey, header);
  }
  const iat = Math.floor(input.now.getTime() / 1000);
  const payload = base64url({
    role: input.principal.role,
    scope: input.principal.scopes.join(" "),
    pkind: input.principal.kind,
    cfp: input.principal.credentialFingerprint,
    bh: input.bodySha256,
    iss: input.from,
    aud: relayAudience(input.to),
    sub: input.principal.subject,
    iat,
    exp: iat + RELAY_TOKEN_TTL_SECONDS,
    jti: randomUUID(),
  });
  const signingInput = `${header}.${payload}`;
  const signature = jwsSign(signer.alg, signer.privateKey, Buffer.from(signingInput, "ascii"));
  return `${signingInput}.${signature.toString("base64url")}`;
}

const isScope = (value: string): value is Scope => (SCOPES as readonly string[]).includes(value);
const PRINCIPAL_KINDS = new Set<string>(["certificate", "access_token", "dashboard_session"]);
const invalid = (description: string) =>
  new GatehouseError(
    "invalid_token",
    description,
    "Only another instance of this gateway relays commands here; operators use /api/v1/nodes/:id/exec.",
  );

/** Encoded protected headers already found to be relay token headers (typ, no crit, no b64). */
const relayHeaders = new Set<string>();

/**
 * `typ` must be RELAY_TOKEN_TYPE (compared as RFC 8725 §3.11 and jose do: case-insensitive, an
 * `application/` prefix ignored); `crit` and `b64` (RFC 7515 §4.1.11, RFC 7797) name extensions
 * this verifier does not implement, so a header carrying either is refused (RFC 7515 requires it).
 * The alg and kid were checked by the ring.
 */
function checkRelayHeader(encodedHeader: string): void {
  if (relayHeaders.has(encodedHeader)) return;
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(encodedHeader, "base64url").toString("utf8"));
  } catch {
    throw invalid("the relay token's header is not JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    throw invalid("the relay token's header is not a JSON object");
  const { typ, crit, b64 } = header as Record<string, unknown>;
  if (crit !== undefined || b64 !== undefined)
    throw invalid("the relay token's header names extensions (crit, b64) this gateway does not take");
  const normal = typeof typ === "string" ? typ.toLowerCase().replace(/^application\//, "") : undefined;
  if (normal !== RELAY_TOKEN_TYPE) throw invalid("the relay token's typ claim is invalid");
  if (relayHeaders.size >= 64) relayHeaders.clear();
  relayHeaders.add(encodedHeader);
}

const isNumericDate = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value);

/**
 * Verifies a relay token for instance `instanceId` (a compact JWS, RFC 7515, whose payload is a
 * JWT claims set, RFC 7519): size and shape, an allow-listed algorithm equal to the key's (the
 * shared signing keys' ring: the kid must be ours), `typ` RELAY_TOKEN_TYPE and no `crit`, the
 * signature, then the claims: `iss` `aud` `sub` `exp` `iat` `jti` present, `aud`
 * `gatehouse-instance:<instanceId>` (a string or an array holding it), `iss` another instance's
 * id, times (NumericDate seconds) with CLOCK_LEEWAY_SECONDS, `nbf` if present, a lifetime of at
 * most MAX_RELAY_TOKEN_LIFETIME_SECONDS and claims of the right types. Synchronous work (about
 * 115 µs for ES256); async for its callers' sake.
 * @throws GatehouseError `invalid_token`, `unknown_key`, `token_expired`, `wrong_audience` (a
 *   token for another instance), `token_not_yet_valid` — all 401.
 */
export async function verifyRelayToken(
  token: string,
  options: { ring: KeyRing; instanceId: string; now: Date },
): Promise<RelayClaims> {
  if (token.length > MAX_TOKEN_BYTES)
    throw invalid(`the relay token is larger than ${MAX_TOKEN_BYTES} bytes`);
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token))
    throw invalid("the relay token is not a compact JWS (header.payload.signature)");
  const headerEnd = token.indexOf(".");
  const payloadEnd = token.lastIndexOf(".");
  const entry = options.ring.keyForToken(token);
  checkRelayHeader(token.slice(0, headerEnd));
  const signingInput = Buffer.from(token.slice(0, payloadEnd), "ascii");
  if (!jwsVerify(entry.alg, entry.key, signingInput, Buffer.from(token.slice(payloadEnd + 1), "base64url")))
    throw invalid("the relay token's signature does not verify");

  let payload: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(
      Buffer.from(token.slice(headerEnd + 1, payloadEnd), "base64url").toString("utf8"),
    );
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not an object");
    payload = parsed as Record<string, unknown>;
  } catch {
    throw invalid("the relay token's payload is not a JSON object");
  }
  for (const claim of ["iss", "aud", "sub", "exp", "iat", "jti"])
    if (payload[claim] === undefined) throw invalid(`the relay token's ${claim} claim is missing`);
  const { iss, aud, sub, jti, exp, iat, nbf, role, scope, pkind, cfp, bh } = payload;
  const audience = relayAudience(options.instanceId);
  if (!(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) {
    if (typeof aud === "string" || (Array.isArray(aud) && aud.every((a) => typeof a === "string")))
      throw new GatehouseError("wrong_audience", "the relay token is for another instance");
    throw invalid("the relay token's aud claim is invalid");
  }
  if (!isNumericDate(iat)) throw invalid("the relay token's iat claim is invalid");
  if (!isNumericDate(exp)) throw invalid("the relay token's exp claim is invalid");
  if (nbf !== undefined && !isNumericDate(nbf)) throw invalid("the relay token's nbf claim is invalid");
  // As RFC 7519 §4.1.4/§4.1.5 and jose: whole seconds of the clock, with the leeway both ways.
  const nowSeconds = Math.floor(options.now.getTime() / 1000);
  if (nbf !== undefined && nbf > nowSeconds + CLOCK_LEEWAY_SECONDS)
    throw new GatehouseError("token_not_yet_valid", "the relay token's nbf is in the future");
  if (exp <= nowSeconds - CLOCK_LEEWAY_SECONDS)
    throw new GatehouseError("token_expired", "the relay token expired");
  if (exp - iat > MAX_RELAY_TOKEN_LIFETIME_SECONDS)
    throw invalid(
      `the relay token lives ${exp - iat} s; at most ${MAX_RELAY_TOKEN_LIFETIME_SECONDS} s is taken`,
    );
  if (iat > options.now.getTime() / 1000 + CLOCK_LEEWAY_SECONDS)
    throw new GatehouseError("token_not_yet_valid", "the relay token was issued in the future");
  if (typeof iss !== "string" || !/^gi_[a-z2-7]{16}$/i.test(iss) || iss === options.instanceId)
    throw invalid("the relay token's issuer is not another instance of this gateway");
  const scopes = typeof scope === "string" ? scope.split(" ").filter(Boolean) : undefined;
  if (
    typeof sub !== "string" ||
    typeof jti !== "string" ||
    typeof role !== "string" ||
    typeof cfp !== "string" ||
    typeof bh !== "string" ||
    typeof pkind !== "string" ||
    !PRINCIPAL_KINDS.has(pkind) ||
    !scopes?.every(isScope)
  )
    throw invalid("the relay token's claims are not of the expected types");
  return {
    via: iss,
    principal: {
      kind: pkind as RelayedPrincipal["kind"],
      subject: sub,
      role,
      scopes: scopes as Scope[],
      credentialFingerprint: cfp,
    },
    bodySha256: bh,
    jti,
    expiresAtMs: exp * 1000,
  };
}
