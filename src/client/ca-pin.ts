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

/**
 * Accepts a presented chain only if it contains the CA with the pinned fingerprint and the
 * server certificate is signed by that CA. Returns that CA for all later, fully verified TLS.
 */
export function checkPinnedChain(
  host: string,
  presented: PresentedChain,
  pinnedFingerprint: string,
): PinnedCa {
  const [leaf] = presented.chain;
  if (!leaf) throw new GatehouseError("not_a_gateway", `${host} presented no certificate`);
  const match = presented.chain.find((raw) => sha256Fingerprint(raw) === pinnedFingerprint);
  if (!match) {
    const seen = presented.chain.map((raw) => sha256Fingerprint(raw));
    throw new GatehouseError(
      "ca_mismatch",
      `the server at ${host} does not chain to the pinned CA ${pinnedFingerprint}; it presented ${seen.join(" <- ")}`,
      "Something else answers on that port (another gateway, or another TLS service): check the URL and the fingerprint that `gatehouse gateway init` printed.",
    );
  }
  const ca = new X509Certificate(match);
  const leafCert = new X509Certificate(leaf);
  if (!ca.ca || !(leafCert.checkIssued(ca) && leafCert.verify(ca.publicKey))) {
    throw new GatehouseError(
      "ca_mismatch",
      `the server certificate at ${host} is not signed by the pinned CA ${pinnedFingerprint}`,
    );
  }
  return { caPem: ca.toString(), caFingerprint: pinnedFingerprint };
}

/**
 * Trust on first use, done right: before anything is sent, read the chain the server presents
 * and accept it only if it holds the pinned CA.
 */
export async function fetchPinnedCa(
  gatewayUrl: string,
  pinnedFingerprint: string,
  timeoutMs = 10_000,
): Promise<PinnedCa> {
  const presented = await readPresentedChain(gatewayUrl, timeoutMs);
  return checkPinnedChain(new URL(gatewayUrl).host, presented, pinnedFingerprint);
}
