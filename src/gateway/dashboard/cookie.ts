import { parse, serialize } from "cookie";
import type { FastifyRequest } from "fastify";

/**
 * The session cookie's name. The `__Host-` prefix (RFC 6265bis §4.1.3.2) makes a browser accept it
 * only when Secure, Path=/ and no Domain: no sibling host or plain-HTTP page can plant one.
 */
export const SESSION_COOKIE = "__Host-gatehouse-session";

/**
 * The value of the session cookie a request sends (RFC 6265 §5.4 `Cookie` header), or undefined
 * when it sends no Cookie header or none of that name. The header is parsed only when present;
 * a malformed header never throws (it simply names no session cookie), and an empty value counts
 * as a cookie presented (it is refused as unknown, not skipped).
 */
export function sessionCookieValue(request: FastifyRequest): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== "string" || header.length === 0) return undefined;
  // Keep the value as sent: the session value is base64url, so no decoding is ever needed.
  return parse(header, { decode: (value) => value })[SESSION_COOKIE];
}

/** `Set-Cookie` for a new session: HttpOnly, Secure, SameSite=Strict, Path=/, a session cookie. */
export function sessionSetCookie(value: string): string {
  return serialize(SESSION_COOKIE, value, { httpOnly: true, secure: true, sameSite: "strict", path: "/" });
}

/** `Set-Cookie` that removes the session cookie (Max-Age=0), as logout sends it. */
export function clearedSessionCookie(): string {
  return serialize(SESSION_COOKIE, "", {
    httpOnly: true,
    secure: true,
    sameSite: "strict",
    path: "/",
    maxAge: 0,
  });
}
