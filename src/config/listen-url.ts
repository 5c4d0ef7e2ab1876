import { isIP } from "node:net";

/**
 * A listen address `HOST:PORT` split: the host without its IPv6 brackets (RFC 3986 §3.2.2), the
 * port as a number.
 * @throws TypeError when `listen` is not `HOST:PORT` (the config schema refuses such a value first).
 */
export function splitListen(listen: string): { host: string; port: number } {
  const match = /^(.*):(\d{1,5})$/.exec(listen);
  if (!match) throw new TypeError(`listen must be HOST:PORT, not ${JSON.stringify(listen)}`);
  return { host: (match[1] ?? "").replace(/^\[(.*)\]$/, "$1"), port: Number(match[2]) };
}

/** Which wildcard (all addresses of a family) a listen host is, if any. */
function wildcardOf(host: string): "ipv4" | "ipv6" | undefined {
  if (host === "" || host === "0.0.0.0") return "ipv4";
  // The WHATWG URL parser writes every IPv6 address in its shortest form: [::] for all zeros.
  if (isIP(host) === 6 && new URL(`https://[${host}]/`).hostname === "[::]") return "ipv6";
  return undefined;
}

/**
 * Why other instances of a gateway could not relay commands to one that listens on a wildcard
 * (`0.0.0.0:PORT`, `[::]:PORT`) without `cluster.advertiseUrl`: the URL made from `listen` is
 * this machine's loopback, which from any other machine is that machine itself.
 * @returns the warning (a sentence naming the URL the others would dial), or undefined when
 *   `advertiseUrl` is set or `listen` is bound to one address.
 */
export function advertiseUrlWarning(listen: string, advertiseUrl: string | undefined): string | undefined {
  if (advertiseUrl !== undefined || wildcardOf(splitListen(listen).host) === undefined) return undefined;
  return `listens on every address (${listen}) without cluster.advertiseUrl: the other instances would relay commands to ${dialUrlForListen(listen)}, which from another machine is that machine itself`;
}

/** The fix for advertiseUrlWarning, as doctor and the start's log say it. */
export const ADVERTISE_URL_FIX =
  'Set cluster.advertiseUrl in gateway.json to the https URL the other instances reach this one at (e.g. "https://10.0.0.12:18789"; the server certificate must name that host: `--san`), or listen on that one address.';

/**
 * The URL a client on the gateway's own machine dials to reach a gateway that listens on `listen`
 * (`HOST:PORT`, an IPv6 host in brackets as in RFC 3986 §3.2.2: `[::1]:18789`). A wildcard address
 * is not something to dial: `0.0.0.0` (and an empty host) becomes 127.0.0.1 and `[::]` (in any
 * spelling, such as `[0:0::0]`) becomes `[::1]`, addresses the server certificate always covers.
 * Any other host is dialled as written (a gateway bound to one address answers only there).
 * @returns `https://HOST:PORT`, with an IPv6 host in brackets (in its shortest form).
 * @throws TypeError when `listen` is not `HOST:PORT` (the config schema refuses such a value first).
 */
export function dialUrlForListen(listen: string): string {
  const { host, port } = splitListen(listen);
  const wildcard = wildcardOf(host);
  if (wildcard === "ipv4") return `https://127.0.0.1:${port}`;
  if (wildcard === "ipv6") return `https://[::1]:${port}`;
  if (isIP(host) === 6) return `https://${new URL(`https://[${host}]/`).hostname}:${port}`;
  return `https://${host}:${port}`;
}

/**
 * Whether a stored gateway URL (admin/gateway.json's `gatewayUrl`) can still reach a gateway that
 * listens on `listen`: an https URL with the same port, and, when the gateway is bound to one
 * address, the same host. Behind a wildcard any name may lead to it (a LAN name, an address), so
 * only the port is compared. Something that is not a URL reaches nothing.
 */
export function urlReachesListen(url: string, listen: string): boolean {
  let stored: URL;
  let dialled: URL;
  try {
    stored = new URL(url);
    dialled = new URL(dialUrlForListen(listen));
  } catch {
    return false;
  }
  const port = (u: URL) => u.port || "443";
  if (stored.protocol !== "https:" || port(stored) !== port(dialled)) return false;
  return wildcardOf(splitListen(listen).host) !== undefined || stored.hostname === dialled.hostname;
}
