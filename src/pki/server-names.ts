import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";

/** The names every server certificate carries, so a gateway is always reachable on loopback. */
export const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"] as const;

/**
 * A name as certificates compare it (RFC 6125 §6.4.1, RFC 5280 §4.2.1.6): DNS names without case
 * or a final dot, IPv6 addresses in their shortest form (0:0:0:0:0:0:0:1 and ::1 are one address).
 */
export function canonicalName(name: string): string {
  const bare = name.replace(/^\[|\]$/g, "");
  if (isIP(bare) === 6) return new URL(`http://[${bare}]`).hostname.replace(/^\[|\]$/g, "");
  if (isIP(bare) === 4) return bare;
  return bare.toLowerCase().replace(/\.$/, "");
}

/** The names a server certificate for `sans` covers: loopback always, then the extra names, deduplicated. */
export function serverCertificateNames(sans: readonly string[]): string[] {
  return [...new Set([...LOOPBACK_NAMES, ...sans].map(canonicalName))];
}

/** The DNS names and IP addresses in a certificate's subjectAltName, canonical. */
export function namesInCertificate(pem: string): string[] {
  const san = new X509Certificate(pem).subjectAltName ?? "";
  return san
    .split(", ")
    .map((entry) => /^(?:DNS|IP Address):(.+)$/.exec(entry)?.[1])
    .filter((name): name is string => name !== undefined)
    .map(canonicalName);
}

/** Whether two lists hold the same names, in any order and spelling. */
export function sameNames(a: readonly string[], b: readonly string[]): boolean {
  const left = new Set(a.map(canonicalName));
  const right = new Set(b.map(canonicalName));
  return left.size === right.size && [...left].every((name) => right.has(name));
}

/** Whether a name reaches only this machine (localhost, 127.0.0.0/8, ::1). */
export function isLoopbackName(name: string): boolean {
  const canonical = canonicalName(name);
  return (
    canonical === "localhost" ||
    canonical.endsWith(".localhost") ||
    canonical === "::1" ||
    /^127\./.test(canonical)
  );
}
