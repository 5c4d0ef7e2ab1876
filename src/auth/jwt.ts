import * as jose from "jose";
import { GatehouseError } from "../protocol/errors.js";

/** The only JWS algorithms this gateway signs or accepts. ES256 by default; EdDSA when configured. */
export const ALLOWED_ALGORITHMS = ["ES256", "EdDSA"] as const;
export type SigningAlgorithm = (typeof ALLOWED_ALGORITHMS)[number];

/** Distinct accepted token headers a KeyRing remembers (ours: one per signing key). */
const MAX_KNOWN_HEADERS = 64;

/** Anything larger is refused before it is parsed: ours are about 600 bytes. */
export const MAX_TOKEN_BYTES = 8 * 1024;

export const CLOCK_LEEWAY_SECONDS = 60;

export interface VerificationKey {
  kid: string;
  alg: SigningAlgorithm;
  key: CryptoKey;
}

/**
 * The keys a verifier trusts, by kid. Only the gateway's own keys go in here: a `kid` is looked
 * up nowhere else, and `jku`, `x5u`, `jwk` and `x5c` headers are never read, let alone fetched.
 */
export class KeyRing {
  private readonly keys = new Map<string, VerificationKey>();
  /**
   * Keys by the exact text of an encoded protected header that {@link selectKey} accepted: every
   * token a key signs carries the same header, so the header is decoded and checked once per key,
   * not once per token. Only accepted headers go in, and at most {@link MAX_KNOWN_HEADERS}.
   */
  private readonly byHeader = new Map<string, VerificationKey>();

  set(entries: VerificationKey[]): void {
    this.keys.clear();
    this.byHeader.clear();
    for (const entry of entries) this.keys.set(entry.kid, entry);
  }

  /**
   * The key for a compact JWS, chosen by its protected header (see {@link selectKey}).
   * @param token a compact JWS that passed {@link checkShape}.
   * @throws GatehouseError `invalid_token` (algorithm not allowed or not the key's, malformed
   *   header) or `unknown_key` (no kid, or a kid this gateway does not have).
   */
  keyForToken(token: string): VerificationKey {
    const encodedHeader = token.slice(0, token.indexOf("."));
    const known = this.byHeader.get(encodedHeader);
    if (known) return known;
    let header: jose.ProtectedHeaderParameters;
    try {
      header = jose.decodeProtectedHeader(token);
    } catch {
      throw invalid("the token's header is not a JSON object in base64url");
    }
    const entry = selectKey(this, header);
    if (this.byHeader.size >= MAX_KNOWN_HEADERS) this.byHeader.clear();
    this.byHeader.set(encodedHeader, entry);
    return entry;
  }

  get(kid: string): VerificationKey | undefined {
    return this.keys.get(kid);
  }

  kids(): string[] {
    return [...this.keys.keys()];
  }
}

/**
 * Imports a public JWK as a verification key, refusing keys that are not for signatures (`use`
 * other than `sig`, `key_ops` without `verify`) or of an algorithm outside the allow-list.
 */
export async function verificationKeyFromJwk(jwk: jose.JWK): Promise<VerificationKey> {
  if (!jwk.kid) throw new GatehouseError("invalid_request", "a verification key needs a kid");
  if (jwk.use !== undefined && jwk.use !== "sig") {
    throw new GatehouseError("invalid_request", `key ${jwk.kid} is for "${jwk.use}", not signatures`);
  }
  if (jwk.key_ops !== undefined && !jwk.key_ops.includes("verify")) {
    throw new GatehouseError("invalid_request", `key ${jwk.kid} does not allow verify`);
  }
  const alg = algorithmForJwk(jwk);
  if (!alg) throw new GatehouseError("invalid_request", `key ${jwk.kid} is not an allowed signing key`);
  // Only the public half is imported, for verifying. `use` and `key_ops` were checked above and are
  // dropped: a private JWK's usual key_ops ["sign", "verify"] would make WebCrypto refuse the public key.
  const { d: _private, key_ops: _ops, use: _use, ...publicJwk } = jwk;
  const key = (await jose.importJWK({ ...publicJwk, alg }, alg)) as CryptoKey;
  return { kid: jwk.kid, alg, key };
}

function algorithmForJwk(jwk: jose.JWK): SigningAlgorithm | undefined {
  if (jwk.kty === "EC" && jwk.crv === "P-256" && (jwk.alg === undefined || jwk.alg === "ES256"))
    return "ES256";
  if (
    jwk.kty === "OKP" &&
    jwk.crv === "Ed25519" &&
    (jwk.alg === undefined || jwk.alg === "EdDSA" || jwk.alg === "Ed25519")
  ) {
    return "EdDSA";
  }
  return undefined;
}

const invalid = (description: string) => new GatehouseError("invalid_token", description);
/** The JOSE `typ` of an access token (RFC 9068 §2.1). */
const ACCESS_TOKEN_TYPE = "at+jwt";

/** Cheap structural checks before any parsing: size, three base64url parts. */
function checkShape(token: string): void {
  if (token.length > MAX_TOKEN_BYTES) throw invalid(`the token is larger than ${MAX_TOKEN_BYTES} bytes`);
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
    throw invalid("the token is not a compact JWS (header.payload.signature)");
  }
}

/**
 * Chooses the key for a token from its protected header: the algorithm must be allow-listed and
 * equal to the key's own, and the kid must be one of ours. Everything else in the header is ignored.
 */
function selectKey(ring: KeyRing, header: jose.JWSHeaderParameters): VerificationKey {
  const alg = header.alg;
  if (typeof alg !== "string" || !(ALLOWED_ALGORITHMS as readonly string[]).includes(alg)) {
    throw invalid(
      `the algorithm ${JSON.stringify(alg)} is not allowed (only ${ALLOWED_ALGORITHMS.join(", ")})`,
    );
  }
  if (typeof header.kid !== "string") throw new GatehouseError("unknown_key", "the token names no key (kid)");
  const entry = ring.get(header.kid);
  if (!entry)
    throw new GatehouseError(
      "unknown_key",
      `the token is signed by key ${JSON.stringify(header.kid.slice(0, 64))}, which this gateway does not have`,
    );
  if (entry.alg !== alg)
    throw invalid(`the token's algorithm ${alg} does not match key ${entry.kid} (${entry.alg})`);
  return entry;
}

/** What a `typ` header parameter names, for the descriptions of tokens sent to the wrong place. */
const TOKEN_TYPES: Record<string, string> = { [ACCESS_TOKEN_TYPE]: "an access token" };

/**
 * Describes a token whose `typ` header parameter (RFC 7515 §4.1.9; explicit typing, RFC 8725
 * §3.11) is not `expected`. jose reports it as a failed claim, but `typ` is in the protected
 * header, and what it holds says which kind of token was sent where another is due. The header is
 * read without trust: only for the message, after the signature verified.
 * @param noun how the description names the token ("the token", "the relay token").
 */
export function typHeaderMismatch(token: string | undefined, expected: string, noun: string): string {
  let typ: unknown;
  try {
    typ = token === undefined ? undefined : jose.decodeProtectedHeader(token).typ;
  } catch {
    typ = undefined;
  }
  const found =
    typeof typ === "string"
      ? `is ${JSON.stringify(typ.slice(0, 64))}${TOKEN_TYPES[typ.toLowerCase()] ? ` (${TOKEN_TYPES[typ.toLowerCase()]})` : ""}`
      : "is missing";
  return `${noun}'s typ header parameter ${found}, not ${JSON.stringify(expected)}`;
}

function mapJoseError(error: unknown, token?: string): GatehouseError {
  if (error instanceof GatehouseError) return error;
  if (error instanceof jose.errors.JWTExpired)
    return new GatehouseError("token_expired", `the token expired (${error.reason})`);
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    if (error.claim === "typ") return invalid(typHeaderMismatch(token, ACCESS_TOKEN_TYPE, "the token"));
    // A missing iss or aud is a malformed token, not one minted for another gateway.
    if ((error.claim === "aud" || error.claim === "iss") && error.reason !== "missing") {
      return new GatehouseError("wrong_audience", `the token's ${error.claim} is not this gateway`);
    }
    if ((error.claim === "nbf" || error.claim === "iat") && error.reason === "check_failed") {
      return new GatehouseError("token_not_yet_valid", `the token's ${error.claim} is in the future`);
    }
    return invalid(
      `the token's ${error.claim} claim is ${error.reason === "missing" ? "missing" : "invalid"}`,
    );
  }
  if (error instanceof jose.errors.JWSSignatureVerificationFailed)
    return invalid("the token's signature does not verify");
  if (error instanceof jose.errors.JOSEError) return invalid(`the token is malformed (${error.code})`);
  return invalid("the token is malformed");
}

/** The signature layer alone: shape, allow-listed algorithm, our kid, a valid signature. */
export async function verifyJwsSignature(
  token: string,
  ring: KeyRing,
): Promise<{ payload: Uint8Array; kid: string }> {
  checkShape(token);
  let kid = "";
  try {
    const result = await jose.compactVerify(
      token,
      (header) => {
        const entry = selectKey(ring, header);
        kid = entry.kid;
        return entry.key;
      },
      { algorithms: [...ALLOWED_ALGORITHMS] },
    );
    return { payload: result.payload, kid };
  } catch (error) {
    throw mapJoseError(error);
  }
}

export interface AccessTokenClaims extends jose.JWTPayload {
  sub: string;
  scope: string;
  jti: string;
  exp: number;
  iat: number;
  /** The refresh-token family the token came from, so revoking a family stops its access tokens. */
  fam?: string;
  cnf?: { "x5t#S256": string };
}

export interface VerifyOptions {
  ring: KeyRing;
  issuer: string;
  audience: string;
  now: Date;
  leewaySeconds?: number;
}

const REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti", "scope"];

/**
 * Full access-token verification (RFC 9068 profile of RFC 7519): the signature layer (shape,
 * allow-listed algorithm equal to the key's, one of our kids, a valid signature), then the required
 * claims, issuer, audience, `typ`, and times with `leewaySeconds` (default 60 s).
 * @returns the claims and the kid of the key that verified them.
 * @throws GatehouseError `invalid_token`, `unknown_key`, `wrong_audience`, `token_expired`,
 *   `token_not_yet_valid`.
 */
export async function verifyAccessToken(
  token: string,
  options: VerifyOptions,
): Promise<{ claims: AccessTokenClaims; kid: string }> {
  checkShape(token);
  try {
    // The key is chosen before jose runs (by the header's text, cached on the ring), so jose gets
    // the key itself rather than a resolver: one await less per token.
    const entry = options.ring.keyForToken(token);
    const { payload } = await jose.jwtVerify(token, entry.key, {
      // The key's own algorithm (one of the allow-listed ones), and the RFC 9068 §4 `typ`.
      algorithms: [entry.alg],
      issuer: options.issuer,
      audience: options.audience,
      clockTolerance: options.leewaySeconds ?? CLOCK_LEEWAY_SECONDS,
      currentDate: options.now,
      requiredClaims: REQUIRED_CLAIMS,
      typ: ACCESS_TOKEN_TYPE,
    });
    const kid = entry.kid;
    if (
      typeof payload.scope !== "string" ||
      typeof payload.sub !== "string" ||
      typeof payload.jti !== "string"
    ) {
      throw invalid("the token's sub, scope or jti is not a string");
    }
    if (
      payload.iat !== undefined &&
      payload.iat > options.now.getTime() / 1000 + (options.leewaySeconds ?? CLOCK_LEEWAY_SECONDS)
    ) {
      throw new GatehouseError("token_not_yet_valid", "the token was issued in the future");
    }
    return { claims: payload as AccessTokenClaims, kid };
  } catch (error) {
    const mapped = mapJoseError(error, token);
    if (mapped.code === "unknown_key")
      return Promise.reject(explainForeignToken(token, options.audience) ?? mapped);
    throw mapped;
  }
}

/**
 * A token signed by a key we do not have is most often one minted by another gateway: if its
 * (unverified) audience says so, name that, since it tells the user what to fix.
 */
function explainForeignToken(token: string, audience: string): GatehouseError | undefined {
  try {
    const claims = jose.decodeJwt(token);
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (claims.aud !== undefined && !aud.includes(audience)) {
      return new GatehouseError(
        "wrong_audience",
        `the token was minted for ${String(aud[0]).slice(0, 64)}, not this gateway (${audience})`,
      );
    }
  } catch {
    return undefined;
  }
  return undefined;
}

export interface SignAccessTokenInput {
  key: { kid: string; alg: SigningAlgorithm; privateKey: CryptoKey };
  issuer: string;
  audience: string;
  subject: string;
  scope: string;
  now: Date;
  ttlSeconds: number;
  jti: string;
  family?: string;
  /** The role the scopes came from, for people reading the token; scopes decide. */
  role?: string;
  certThumbprint?: string;
}

export async function signAccessToken(input: SignAccessTokenInput): Promise<string> {
  const iat = Math.floor(input.now.getTime() / 1000);
  const claims: jose.JWTPayload = { scope: input.scope };
  if (input.family) claims.fam = input.family;
  if (input.role) claims.role = input.role;
  if (input.certThumbprint) claims.cnf = { "x5t#S256": input.certThumbprint };
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg: input.key.alg, kid: input.key.kid, typ: ACCESS_TOKEN_TYPE })
    .setIssuer(input.issuer)
    .setAudience(input.audience)
    .setSubject(input.subject)
    .setIssuedAt(iat)
    .setExpirationTime(iat + input.ttlSeconds)
    .setJti(input.jti)
    .sign(input.key.privateKey);
}
