import { isIP } from "node:net";

// One rule for the names a gateway's server certificate may carry, read by `gateway init --san`,
// `gateway add-name` and `sans` in gateway.json alike: a name let through here used to reach the
// certificate issuer and stop `gateway start` with internal_error (e.g. "300.1.1.1"), or make a
// certificate for an address no node can dial ("0.0.0.0").

/** A host name by RFC 1123 §2.1: dot-separated labels of letters, digits and inner hyphens. */
const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * Why `name` cannot be a name in the server certificate's subjectAltName (RFC 5280 §4.2.1.6: a
 * dNSName or an iPAddress), as the end of a sentence that starts with the name; `undefined` when
 * it can. Refused: anything that is neither an IP address nor an RFC 1123 host name; a URL or a
 * HOST:PORT (the name alone is wanted); an IPv6 address in brackets; the unspecified addresses
 * 0.0.0.0 and :: (a node cannot dial them); a dotted name whose last label is all digits, such as
 * 300.1.1.1 (no top-level domain is numeric, RFC 3696 §2, so it is a mistyped IPv4 address).
 */
export function serverNameProblem(name: string): string | undefined {
  if (name.includes("://")) {
    const host = hostOfUrl(name);
    return `is a URL: give only the host name or address${host ? ` (${host})` : ""}`;
  }
  if (/^\[.*\]$/.test(name) && isIP(name.slice(1, -1)) === 6)
    return `is an IPv6 address in brackets: give it without them (${name.slice(1, -1)})`;
  const family = isIP(name);
  if (family === 4)
    return name === "0.0.0.0" ? "is the wildcard address: give the address or name nodes dial" : undefined;
  if (family === 6)
    return new URL(`http://[${name}]`).hostname === "[::]"
      ? "is the wildcard address: give the address or name nodes dial"
      : undefined;
  const withPort = /^([^:]+):\d{1,5}$/.exec(name);
  if (withPort) return `has a port: give the name alone (${withPort[1]})`;
  if (!HOSTNAME.test(name)) return "is neither an IP address nor a host name";
  const labels = name.replace(/\.$/, "").split(".");
  if (labels.length > 1 && /^\d+$/.test(labels[labels.length - 1] ?? ""))
    return "is neither an IP address nor a host name (a name cannot end in a number; is it a mistyped IPv4 address?)";
  return undefined;
}

function hostOfUrl(value: string): string | undefined {
  try {
    return new URL(value).hostname.replace(/^\[|\]$/g, "") || undefined;
  } catch {
    return undefined;
  }
}
