import { GatehouseError } from "./errors.js";

/** Why an enroll token cannot be used. */
export type EnrollTokenRefusal = "unknown" | "revoked" | "expired" | "spent";

/** What a refusal may say about a token the gateway knows (never its value or hash). */
export interface RefusedEnrollToken {
  tokenId: string;
  usesTotal: number;
  expiresAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

const NEW_TOKEN = "An admin makes a new one with `gatehouse enroll create`";
const BY_CODE = "or register without a token and have an admin approve the user code.";

/**
 * The one wording of every enroll-token refusal, wherever it is decided (the gateway's check
 * before a registration, or the store transaction that takes the use): what is wrong with the
 * token, and that a new one comes from `gatehouse enroll create`. The catalogue's default hints for
 * these codes are about access tokens (`gatehouse token`), which would send the user the wrong way.
 *
 * @param token the token's row when the gateway knows it (for "unknown", omit it).
 * @returns `token_expired` (naming when) for an expired token, otherwise `invalid_token`.
 */
export function enrollTokenRefusal(why: EnrollTokenRefusal, token?: RefusedEnrollToken): GatehouseError {
  const label = token ? `enroll token ${token.tokenId}` : "the enroll token";
  switch (why) {
    case "unknown":
      return new GatehouseError(
        "invalid_token",
        "the enroll token is not known to this gateway",
        `Check that the whole token was copied and that it is for this gateway. ${NEW_TOKEN}, ${BY_CODE}`,
      );
    case "revoked":
      return new GatehouseError(
        "invalid_token",
        `${label} was revoked${token?.revokedAt ? ` at ${token.revokedAt}` : ""}`,
        `${NEW_TOKEN}, ${BY_CODE}`,
      );
    case "expired":
      return new GatehouseError(
        "token_expired",
        `${label} expired${token ? ` at ${token.expiresAt}` : ""}`,
        `${NEW_TOKEN} (\`--expires\` sets how long it is valid), ${BY_CODE}`,
      );
    case "spent": {
      const last = token?.lastUsedAt ? `, last at ${token.lastUsedAt}` : "";
      return new GatehouseError(
        "invalid_token",
        token?.usesTotal === 1
          ? `${label} is single-use, already used${last}`
          : `${label} has no uses left (all ${token?.usesTotal ?? "its"} uses were taken${last})`,
        `${NEW_TOKEN} (\`--uses N\` lets one token register N nodes), ${BY_CODE}`,
      );
    }
  }
}
