import tls from "node:tls";
import { isIP } from "node:net";
import { X509Certificate } from "node:crypto";
import { GatehouseError } from "../protocol/errors.js";
import { sha256Fingerprint } from "../pki/fingerprint.js";
import { describeNetworkError } from "./https-json.js";

export interface PinnedCa {
  caPem: string;
  caFingerprint: string;
}

export interface PresentedChain {
  /** DER certificates as the server sent them, leaf first. */
  chain: Buffer[];
}

/** Connects without trusting anything and returns the certificate chain the server presents. */
export function readPresentedChain(gatewayUrl: string, timeoutMs = 10_000): Promise<PresentedChain> {
  const url = new URL(gatewayUrl);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 443);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      servername: isIP(host) ? undefined : host,
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    socket.once("timeout", () => {
      socket.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" }));
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      // A server that answers but does not speak TLS (plain HTTP, say) fails the handshake.
      if (error.code === "EPROTO" || /wrong version number|packet length too long/i.test(error.message)) {
        reject(
          new GatehouseError(
            "not_a_gateway",
            `${url.host} answers, but not with TLS (${error.message.split("\n")[0]})`,
            "Another service holds the port (a plain HTTP server, a forgotten container?): stop it or fix the gateway URL.",
          ),
        );
        return;
      }
      reject(describeNetworkError(gatewayUrl, error));
    });
    socket.once("secureConnect", () => {
      const chain: Buffer[] = [];
      let cert = socket.getPeerCertificate(true);
      while (cert && cert.raw && !chain.some((raw) => raw.equals(cert.raw))) {
        chain.push(cert.raw);
        cert = cert.issuerCertificate;
      }
      socket.end();
      resolve({ chain });
    });
  });
}

/** Extended key usage "TLS server authentication" (RFC 5280, 4.2.1.12). */
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

/** Why a presented certificate is not our gateway's. */
export type PinFailure = "foreign_ca" | "not_signed" | "not_server" | "name_not_covered";

/** `ca_mismatch`, with the reason, so diagnostics can say more about a foreign CA. */
export class CaPinError extends GatehouseError {
  constructor(
    readonly reason: PinFailure,
    description: string,
    hint?: string,
  ) {
    super("ca_mismatch", description, hint);
  }
}

/**
 * Decides whether a presented chain is our gateway, the same three checks that every later,
 * fully verified TLS connection makes (RFC 5280 path, RFC 5280 4.2.1.12 EKU, RFC 6125 name):
 * the chain holds the CA with the pinned fingerprint and the leaf is signed by it; the leaf is a
 * TLS server certificate (not a CA, and its extended key usage names serverAuth: a node's client
 * certificate from the same CA is not a gateway); and the leaf names the host of the gateway URL
 * (`tls.checkServerIdentity`: DNS names, or IP addresses for an address).
 *
 * @param gatewayUrl the URL the client was given (`https://HOST:PORT`).
 * @returns the pinned CA as PEM, for all later TLS.
 * @throws GatehouseError `not_a_gateway` when no certificate was presented; CaPinError
 *   (`ca_mismatch`) naming what was wrong otherwise.
 */
export function checkPinnedChain(
  gatewayUrl: string,
  presented: PresentedChain,
  pinnedFingerprint: string,
): PinnedCa {
  const url = new URL(gatewayUrl);
  const host = url.host;
  const [leaf] = presented.chain;
  if (!leaf) throw new GatehouseError("not_a_gateway", `${host} presented no certificate`);
  const match = presented.chain.find((raw) => sha256Fingerprint(raw) === pinnedFingerprint);
  if (!match) {
    const seen = presented.chain.map((raw) => sha256Fingerprint(raw));
    throw new CaPinError(
      "foreign_ca",
      `the server at ${host} does not chain to the pinned CA ${pinnedFingerprint}; it presented ${seen.join(" <- ")}`,
      "Something else answers on that port (another gateway, or another TLS service): check the URL and the fingerprint that `gatehouse gateway init` printed.",
    );
  }
  const ca = new X509Certificate(match);
  const leafCert = new X509Certificate(leaf);
  if (!ca.ca || !(leafCert.checkIssued(ca) && leafCert.verify(ca.publicKey))) {
    throw new CaPinError(
      "not_signed",
      `the server certificate at ${host} is not signed by the pinned CA ${pinnedFingerprint}`,
    );
  }
  // node:crypto's keyUsage lists the extended key usages (undefined when there are none).
  const purposes = leafCert.keyUsage ?? [];
  if (leafCert.ca || !purposes.includes(SERVER_AUTH)) {
    throw new CaPinError(
      "not_server",
      `the server at ${host} presented a certificate from the pinned CA that is not a server certificate (${
        leafCert.ca ? "it is a CA certificate" : `extended key usage: ${purposes.join(", ") || "none"}`
      }; subject ${leafCert.subject.replace(/\n/g, ", ")}): something other than the gateway holds a key from its CA`,
      "Only the gateway presents a server certificate from its CA: check the URL, and find what answers on that port (a node's certificate served by another program?).",
    );
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const mismatch = tls.checkServerIdentity(hostname, {
    subject: {},
    subjectaltname: leafCert.subjectAltName ?? "",
  } as tls.PeerCertificate);
  if (mismatch) {
    throw new CaPinError(
      "name_not_covered",
      `the gateway's certificate at ${host} does not cover the name ${hostname} (it names ${leafCert.subjectAltName ?? "nothing"})`,
      "Use a gateway URL with a name the certificate holds, or re-create the gateway's certificate with that name (`gatehouse gateway init --san HOST`).",
    );
  }
  return { caPem: ca.toString(), caFingerprint: pinnedFingerprint };
}

/**
 * Trust on first use, done right: before anything is sent, read the chain the server presents
 * and accept it only if it is the pinned CA's server certificate for this URL (checkPinnedChain).
 */
export async function fetchPinnedCa(
  gatewayUrl: string,
  pinnedFingerprint: string,
  timeoutMs = 10_000,
): Promise<PinnedCa> {
  const presented = await readPresentedChain(gatewayUrl, timeoutMs);
  return checkPinnedChain(gatewayUrl, presented, pinnedFingerprint);
}
