/**
 * Lifetimes of seconds, so that renewals, expiries and CA rotations happen inside an end-to-end test.
 *
 * This is the one place the tests put second-scale lifetimes into `gateway.json`: when the config
 * stops accepting them, only this file changes. Every credential here is renewed at 2/3 of its life
 * (the node's `renewalTime`, the gateway's server-certificate upkeep, the agent's token refresh),
 * so a renewal has 1/3 of the life to complete before anything expires. The lifetimes are chosen
 * so that third is several seconds: a renewal is one request inside a running process, which takes
 * well under a second even on two cores shared with other test files and CPU-bound processes.
 *
 * The config refuses lifetimes under a minute unless GATEHOUSE_ALLOW_SHORT_LIFETIMES=1 is in the
 * environment of every process that reads the gateway's config (the gateway warns at start, and
 * `doctor` and `config explain` report it). `shortLifetimes` sets it in this test file's process,
 * whose children (the gateway, the CLI) inherit it; no other test file sets it.
 */

import { SHORT_LIFETIMES_VARIABLE } from "../../src/config/duration.js";

/** A client certificate's life: renewed every 8 s, with 4 s to spare. */
export const CLIENT_CERT_SECONDS = 12;
/** The gateway's server certificate: renewed every 10 s, with 5 s to spare. */
export const SERVER_CERT_SECONDS = 15;
/** An access token: refreshed every 8 s, with 4 s to spare. */
export const ACCESS_TOKEN_SECONDS = 12;

/** How long after issue a credential of this life is renewed (2/3 of it), in seconds. */
export function renewalAfter(lifeSeconds: number): number {
  return (lifeSeconds * 2) / 3;
}

export interface ShortLifetimes {
  clientCert?: number;
  serverCert?: number;
  accessToken?: number;
  /** How long a registration waits for approval before it expires (`enroll.pendingTtl`). */
  pendingRegistration?: number;
}

/**
 * A `configure` function for `startTestGateway` that sets the given lifetimes (seconds) in
 * gateway.json: `certificates.clientTtl`, `certificates.serverTtl`, `tokens.accessTtl`,
 * `enroll.pendingTtl`; and allows them, by setting GATEHOUSE_ALLOW_SHORT_LIFETIMES=1 for this
 * process and its children.
 */
export function shortLifetimes(lifetimes: ShortLifetimes): (config: Record<string, unknown>) => void {
  process.env[SHORT_LIFETIMES_VARIABLE] = "1";
  return (config) => {
    const certificates = { ...(config.certificates as Record<string, unknown> | undefined) };
    if (lifetimes.clientCert !== undefined) certificates.clientTtl = `${lifetimes.clientCert}s`;
    if (lifetimes.serverCert !== undefined) certificates.serverTtl = `${lifetimes.serverCert}s`;
    if (Object.keys(certificates).length > 0) config.certificates = certificates;
    if (lifetimes.accessToken !== undefined) {
      config.tokens = {
        ...(config.tokens as Record<string, unknown> | undefined),
        accessTtl: `${lifetimes.accessToken}s`,
      };
    }
    if (lifetimes.pendingRegistration !== undefined) {
      config.enroll = {
        ...(config.enroll as Record<string, unknown> | undefined),
        pendingTtl: `${lifetimes.pendingRegistration}s`,
      };
    }
  };
}
