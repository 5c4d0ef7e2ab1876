/**
 * doctor's view of `proxyProtocol.trusted`: which peers must begin with a PROXY header, and the
 * traps. A trusted loopback address closes the connections of everything on this machine that
 * dials the gateway directly (the admin CLI, another instance's relay), since they send no header;
 * a list that covers every address closes every node's.
 */
import type { GatewayConfig } from "../config/schema.js";
import { trustedPeers } from "../gateway/proxy-listener.js";
import type { Finding } from "./findings.js";

const FIX_SOURCE =
  "Have the balancer connect from an address of its own (HAProxy: `source 127.0.0.10` on its server lines) and trust only that address.";

/** One finding when the PROXY protocol is on; none when it is off (the default). */
export function checkProxyProtocol(config: GatewayConfig): Finding | undefined {
  const { trusted } = config.proxyProtocol;
  if (trusted.length === 0) return undefined;
  const isTrusted = trustedPeers(trusted);
  const list = trusted.join(", ");
  if (isTrusted("192.0.2.1") && isTrusted("198.51.100.1") && isTrusted("203.0.113.1")) {
    return {
      severity: "warning",
      check: "proxy-protocol",
      message: `proxyProtocol.trusted (${list}) covers every address: a node or admin that connects without a balancer sends no PROXY header, and its connection is closed`,
      fix: "List only the balancers' addresses or their subnet.",
    };
  }
  if (isTrusted("127.0.0.1") || isTrusted("::1")) {
    return {
      severity: "warning",
      check: "proxy-protocol",
      message: `proxyProtocol.trusted (${list}) includes this machine's loopback: the admin CLI and other programs here that dial the gateway directly send no PROXY header, and their connections are closed`,
      fix: FIX_SOURCE,
    };
  }
  return {
    severity: "ok",
    check: "proxy-protocol",
    message: `connections from ${list} must begin with a PROXY header (v2 or v1), whose source address is the caller's`,
  };
}
