import { createHash, randomUUID } from "node:crypto";
import * as jose from "jose";
import { GatehouseError } from "../../protocol/errors.js";
import {
  CLOCK_LEEWAY_SECONDS,
  MAX_TOKEN_BYTES,
  typHeaderMismatch,
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
/**
 * One run of an instance: its id and when that run started (`startedAt` of its row in the
 * instances table, ISO 8601, written anew by every start).
 */
export interface InstanceRun {
  instanceId: string;
  startedAt: string;
}

/**
 * The audience of a relay token (RFC 7519 §4.1.3): one run of one instance,
 * `gatehouse-instance:<instanceId>@<startedAt>`. Only that instance takes it, and only until it
 * restarts: the ids of spent tokens are kept in its memory, so a token captured before a restart
 * must not be taken again after it.
 */
export const relayAudience = (run: InstanceRun) => `gatehouse-instance:${run.instanceId}@${run.startedAt}`;

/**
 * The hint of every refusal on the relay route: it is not an operator's door, and relay tokens
 * are made by the instances themselves, one per command. Clock-related refusals name the clocks.
 */
export function relayRefusalHint(code: string): string {
  if (code === "token_expired" || code === "token_not_yet_valid")
    return "An instance makes a relay token for each command, valid 30 s: check that the instances' clocks agree (NTP). Operators run commands with `gatehouse nodes exec` (POST /api/v1/nodes/:id/exec).";
  return "Only another instance of this gateway relays commands here, with a relay token it makes for each command; operators run commands with `gatehouse nodes exec` (POST /api/v1/nodes/:id/exec).";
}

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

/**
 * Signs a relay token (a JWT, RFC 7519) with the gateway's shared token signing key: `iss` the
 * sending instance, `aud` the target's current run (relayAudience), `exp` RELAY_TOKEN_TTL_SECONDS after
 * `now`, the operator (`sub`, `role`, `scope`, `pkind`, `cfp`: the credential's fingerprint, never
 * the credential) and `bh`: the SHA-256 of the body it authorises.
 */
export async function mintRelayToken(input: {
  signer: { kid: string; alg: SigningAlgorithm; privateKey: CryptoKey };
  from: string;
  /** The holder's current run, as the instances table shows it. */
  to: InstanceRun;
  principal: RelayedPrincipal;
  bodySha256: string;
  now: Date;
}): Promise<string> {
  const iat = Math.floor(input.now.getTime() / 1000);
  return new jose.SignJWT({
    role: input.principal.role,
    scope: input.principal.scopes.join(" "),
    pkind: input.principal.kind,
    cfp: input.principal.credentialFingerprint,
    bh: input.bodySha256,
  })
    .setProtectedHeader({ alg: input.signer.alg, kid: input.signer.kid, typ: RELAY_TOKEN_TYPE })
    .setIssuer(input.from)
    .setAudience(relayAudience(input.to))
    .setSubject(input.principal.subject)
    .setIssuedAt(iat)
    .setExpirationTime(iat + RELAY_TOKEN_TTL_SECONDS)
    .setJti(randomUUID())
    .sign(input.signer.privateKey);
}

const isScope = (value: string): value is Scope => (SCOPES as readonly string[]).includes(value);
const PRINCIPAL_KINDS = new Set<string>(["certificate", "access_token", "dashboard_session"]);
const invalid = (description: string) =>
  new GatehouseError("invalid_token", description, relayRefusalHint("invalid_token"));

/**
 * Verifies a relay token for instance `instanceId`: size and shape, an allow-listed algorithm
 * equal to the key's (the shared signing keys' ring: the kid must be ours), the signature, `typ`
 * RELAY_TOKEN_TYPE (a header parameter, RFC 8725 §3.11), `aud` this run of this instance
 * (relayAudience: a token made before the instance restarted is refused), `iss` another instance's id, times
 * with CLOCK_LEEWAY_SECONDS, a lifetime of at most MAX_RELAY_TOKEN_LIFETIME_SECONDS and claims of
 * the right types.
 * @param options.startedAt when this run of the instance started (its instances row).
 * @throws GatehouseError `invalid_token`, `unknown_key`, `token_expired`, `wrong_audience` (a
 *   token for another instance, or for an earlier run of this one), `token_not_yet_valid` — all
 *   401, with relayRefusalHint.
 */
export async function verifyRelayToken(
  token: string,
  options: { ring: KeyRing; instanceId: string; startedAt: string; now: Date },
): Promise<RelayClaims> {
  if (token.length > MAX_TOKEN_BYTES)
    throw invalid(`the relay token is larger than ${MAX_TOKEN_BYTES} bytes`);
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token))
    throw invalid("the relay token is not a compact JWS (header.payload.signature)");
  let payload: jose.JWTPayload;
  try {
    const entry = options.ring.keyForToken(token);
    ({ payload } = await jose.jwtVerify(token, entry.key, {
      algorithms: [entry.alg],
      audience: relayAudience(options),
      typ: RELAY_TOKEN_TYPE,
      clockTolerance: CLOCK_LEEWAY_SECONDS,
      currentDate: options.now,
      requiredClaims: ["iss", "aud", "sub", "exp", "iat", "jti"],
    }));
  } catch (error) {
    throw relayVerificationError(error, token, options.instanceId);
  }
  const { iss, sub, jti, exp, iat, role, scope, pkind, cfp, bh } = payload;
  if (exp! - iat! > MAX_RELAY_TOKEN_LIFETIME_SECONDS)
    throw invalid(
      `the relay token lives ${exp! - iat!} s; at most ${MAX_RELAY_TOKEN_LIFETIME_SECONDS} s is taken`,
    );
  if (iat! > options.now.getTime() / 1000 + CLOCK_LEEWAY_SECONDS)
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
    expiresAtMs: exp! * 1000,
  };
}

function relayVerificationError(error: unknown, token: string, instanceId: string): GatehouseError {
  if (error instanceof GatehouseError) return error;
  if (error instanceof jose.errors.JWTExpired)
    return new GatehouseError("token_expired", "the relay token expired");
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    if (error.claim === "typ") return invalid(typHeaderMismatch(token, RELAY_TOKEN_TYPE, "the relay token"));
    if (error.claim === "aud" && error.reason !== "missing")
      return new GatehouseError("wrong_audience", audienceMismatch(error.payload.aud, instanceId));
    if ((error.claim === "nbf" || error.claim === "iat") && error.reason === "check_failed")
      return new GatehouseError("token_not_yet_valid", `the relay token's ${error.claim} is in the future`);
    return invalid(
      `the relay token's ${error.claim} claim is ${error.reason === "missing" ? "missing" : "invalid"}`,
    );
  }
  if (error instanceof jose.errors.JWSSignatureVerificationFailed)
    return invalid("the relay token's signature does not verify");
  return invalid("the relay token is malformed");
}

/** Why a signed relay token's audience is not this run of this instance (the payload verified). */
function audienceMismatch(aud: unknown, instanceId: string): string {
  const prefix = `gatehouse-instance:${instanceId}@`;
  if (typeof aud === "string" && aud.startsWith(prefix))
    return `the relay token is for an earlier run of this instance (started ${aud.slice(prefix.length, prefix.length + 40)}); it has restarted since`;
  return "the relay token is for another instance";
}
