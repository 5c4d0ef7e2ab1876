import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { GatehouseError } from "../protocol/errors.js";
import { sha256Fingerprint } from "../pki/fingerprint.js";
import { describeNetworkError } from "./https-json.js";

export interface PinnedCa {
  caPem: string;
  caFingerprint: string;
}

/**
 * Trust on first use, done right: before anything is sent, connect, read the chain the server
 * presents, and accept it only if it contains the CA whose fingerprint the admin gave us and the
 * server certificate is signed by that CA. Returns that CA for all later, fully verified TLS.
 */
export function fetchPinnedCa(
  gatewayUrl: string,
  pinnedFingerprint: string,
  timeoutMs = 10_000,
): Promise<PinnedCa> {
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
    socket.once("error", (error: NodeJS.ErrnoException) => reject(describeNetworkError(gatewayUrl, error)));
    socket.once("secureConnect", () => {
      const chain: Buffer[] = [];
      let cert = socket.getPeerCertificate(true);
      while (cert && cert.raw && !chain.some((raw) => raw.equals(cert.raw))) {
        chain.push(cert.raw);
        cert = cert.issuerCertificate;
      }
      socket.end();
      const leaf = chain[0];
      if (!leaf) {
        reject(new GatehouseError("not_a_gateway", `${gatewayUrl} presented no certificate`));
        return;
      }
      const match = chain.find((raw) => sha256Fingerprint(raw) === pinnedFingerprint);
      if (!match) {
        const seen = chain.map((raw) => sha256Fingerprint(raw));
        reject(
          new GatehouseError(
            "ca_mismatch",
            `the server at ${url.host} does not chain to the pinned CA ${pinnedFingerprint}; it presented ${seen.join(" <- ")}`,
            "Something else answers on that port (another gateway, or another TLS service): check the URL and the fingerprint that `gatehouse gateway init` printed.",
          ),
        );
        return;
      }
      const ca = new X509Certificate(match);
      const leafCert = new X509Certificate(leaf);
      if (!ca.ca || !(leafCert.checkIssued(ca) && leafCert.verify(ca.publicKey))) {
        reject(
          new GatehouseError(
            "ca_mismatch",
            `the server certificate at ${url.host} is not signed by the pinned CA ${pinnedFingerprint}`,
          ),
        );
        return;
      }
      resolve({ caPem: ca.toString(), caFingerprint: pinnedFingerprint });
    });
  });
}
