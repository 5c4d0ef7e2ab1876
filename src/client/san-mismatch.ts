import { isIP } from "node:net";
import { GatehouseError } from "../protocol/errors.js";

/**
 * The names and addresses a certificate's subjectAltName extension holds (RFC 5280 4.2.1.6), as a
 * person writes them: `DNS:localhost, IP Address:0:0:0:0:0:0:0:1` becomes `localhost`, `::1`.
 * @param subjectAltName node:crypto's rendering (X509Certificate.subjectAltName, or a peer
 *   certificate's `subjectaltname`)
 */
export function namesCovered(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName.split(/,\s*/).flatMap((entry) => {
    const [kind, ...rest] = entry.split(":");
    const value = rest.join(":");
    if (kind === "DNS") return [value];
    if (kind === "IP Address") {
      if (!value.includes(":")) return [value];
      try {
        return [new URL(`http://[${value}]/`).hostname.replace(/^\[|\]$/g, "")];
      } catch {
        return [value];
      }
    }
    return [];
  });
}

/**
 * The right gateway (its certificate is from a trusted CA) reached by a name or address its server
 * certificate does not cover (RFC 6125): say which names it covers, which one was used, and how to
 * add it. Not "another gateway": that sends people hunting for an impostor that is not there.
 * @param gatewayUrl the URL the client used (`https://HOST:PORT`)
 * @param subjectAltName the server certificate's, as node:crypto renders it
 */
export function sanMismatch(gatewayUrl: string, subjectAltName: string | undefined): GatehouseError {
  const url = new URL(gatewayUrl);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const covered = namesCovered(subjectAltName);
  const example = covered[0] && new URL(gatewayUrl);
  if (example) example.hostname = covered[0]!.includes(":") ? `[${covered[0]}]` : covered[0]!;
  return new GatehouseError(
    "san_mismatch",
    `the gateway's certificate at ${url.host} is from its CA but does not cover ${host}, the ${
      isIP(host) ? "address" : "name"
    } used to reach it; it covers ${covered.join(", ") || "no name at all"}`,
    `On the gateway, add the ${isIP(host) ? "address" : "name"} to its server certificate: \`gatehouse gateway add-name ${host}\`, then restart the gateway; or use a name it covers${
      example ? ` (${example.origin})` : ""
    }.`,
  );
}
