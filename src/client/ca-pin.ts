import https from "node:https";
import tls from "node:tls";
import { isIP } from "node:net";
import { X509Certificate } from "node:crypto";
import { GatehouseError, type ErrorCode } from "../protocol/errors.js";
import { sha256Fingerprint } from "../pki/fingerprint.js";
import { certificatesOfBundle, checkCaBundle } from "../pki/ca-rotation.js";
import type { CaBundleResponse, HealthResponse } from "../protocol/messages.js";
import { describeNetworkError } from "./https-json.js";
import { sanMismatch } from "./san-mismatch.js";

export interface PinnedCa {
  /** Every CA to trust (PEM bundle, the pinned one first): what ca.pem holds. */
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

/** Why a presented certificate is not our gateway's (or not for the name used). */
export type PinFailure = "foreign_ca" | "not_signed" | "not_server" | "name_not_covered";

/**
 * `ca_mismatch` (or `san_mismatch` for a name the certificate does not cover), with the reason,
 * so diagnostics can say more about a foreign CA.
 */
export class CaPinError extends GatehouseError {
  constructor(
    readonly reason: PinFailure,
    description: string,
    hint?: string,
    code: ErrorCode = "ca_mismatch",
  ) {
    super(code, description, hint);
  }
}

/**
 * Decides whether a presented chain is our gateway, the same three checks that every later,
 * fully verified TLS connection makes (RFC 5280 path, RFC 5280 4.2.1.12 EKU, RFC 6125 name):
 * the leaf is signed by one of the trusted CAs; it is a TLS server certificate (not a CA, and its
 * extended key usage names serverAuth: a node's client certificate from the same CA is not a
 * gateway); and it names the host of the gateway URL (`tls.checkServerIdentity`: DNS names, or IP
 * addresses for an address).
 *
 * @param gatewayUrl the URL the client was given (`https://HOST:PORT`).
 * @param trusted the CAs trusted (a checked bundle: checkCaBundle, or a node's ca.pem).
 * @returns the CA that signed the leaf.
 * @throws GatehouseError `not_a_gateway` when no certificate was presented; CaPinError
 *   `ca_mismatch` naming what was wrong, or `san_mismatch` when only the name is not covered.
 */
export function checkPresentedChain(
  gatewayUrl: string,
  presented: PresentedChain,
  trusted: X509Certificate[],
): X509Certificate {
  const url = new URL(gatewayUrl);
  const host = url.host;
  const [leaf] = presented.chain;
  if (!leaf) throw new GatehouseError("not_a_gateway", `${host} presented no certificate`);
  const leafCert = new X509Certificate(leaf);
  const trustedFingerprints = trusted.map((ca) => sha256Fingerprint(ca.raw));
  const issuer = trusted.find((ca) => ca.ca && leafCert.checkIssued(ca) && leafCert.verify(ca.publicKey));
  if (!issuer) {
    const seen = presented.chain.map((raw) => sha256Fingerprint(raw));
    const named = seen.find((fingerprint) => trustedFingerprints.includes(fingerprint));
    if (named) {
      throw new CaPinError(
        "not_signed",
        `the server certificate at ${host} is not signed by the trusted CA ${named} it names`,
      );
    }
    throw new CaPinError(
      "foreign_ca",
      `the server at ${host} does not chain to the trusted CA${trusted.length > 1 ? "s" : ""} ${trustedFingerprints.join(", ")}; it presented ${seen.join(" <- ")} (${describeLeaf(leafCert)})`,
      "Something else answers on that port (another gateway, or another TLS service): check the URL and the fingerprint that `gatehouse gateway init` printed.",
    );
  }
  // node:crypto's keyUsage lists the extended key usages (undefined when there are none).
  const purposes = leafCert.keyUsage ?? [];
  if (leafCert.ca || !purposes.includes(SERVER_AUTH)) {
    throw new CaPinError(
      "not_server",
      `the server at ${host} presented a certificate from the gateway's CA that is not a server certificate (${
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
    const named = sanMismatch(gatewayUrl, leafCert.subjectAltName);
    throw new CaPinError("name_not_covered", named.message, named.hint, "san_mismatch");
  }
  return issuer;
}

/** Subject and issuer of a certificate, on one line (what a person recognises: a proxy's public name). */
function describeLeaf(cert: X509Certificate): string {
  const oneLine = (name: string) => name.replace(/\n/g, ", ");
  return `certificate for ${oneLine(cert.subject)}, issued by ${oneLine(cert.issuer)}`;
}

/**
 * A GET whose answer is judged by its content, not by TLS: CA certificates and signed statements
 * verify themselves, and /health is only read to name what answers. Never sends a credential.
 * @returns the parsed JSON body, or undefined when there is none (any failure)
 */
function readUnverifiedJson<T>(url: string, timeoutMs: number): Promise<Partial<T> | undefined> {
  return new Promise((resolve) => {
    const request = https.get(url, { rejectUnauthorized: false, timeout: timeoutMs }, (response) => {
      let text = "";
      response.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        if (text.length > 256 * 1024) request.destroy();
      });
      response.on("end", () => {
        try {
          resolve(JSON.parse(text) as Partial<T>);
        } catch {
          resolve(undefined);
        }
      });
      response.on("error", () => resolve(undefined));
    });
    request.on("timeout", () => request.destroy());
    request.on("error", () => resolve(undefined));
  });
}

/**
 * A TLS server that is not signed by a trusted CA: say what it is. Asks its /health (without
 * trusting it): a Gatehouse gateway whose CAs include one we trust is our own gateway behind a
 * TLS-terminating proxy (which presents its own, often public, certificate); another Gatehouse
 * gateway is named by its id; anything else is something else on that port.
 */
export async function explainForeignChain(
  error: GatehouseError,
  gatewayUrl: string,
  trustedFingerprints: string[],
  timeoutMs = 10_000,
): Promise<GatehouseError> {
  const origin = new URL(gatewayUrl).origin;
  const health = await readUnverifiedJson<HealthResponse>(`${origin}/health`, timeoutMs);
  if (health?.service === "gatehouse") {
    const ours = health.caFingerprints?.some((fingerprint) => trustedFingerprints.includes(fingerprint));
    if (ours) {
      return new GatehouseError(
        "ca_mismatch",
        `${error.message}. Behind it answers this node's own gateway (${health.gatewayId}): a TLS-terminating proxy in front of it presents its own certificate, so the gateway's server certificate and the node's client certificate never meet`,
        "Make the proxy pass TLS through untouched (TCP passthrough: nginx `stream` with `ssl_preread`, HAProxy `mode tcp`, a Traefik TCP router with `passthrough`), or point the node at the gateway's own address. Where the proxy must terminate TLS, run the node on an API key (`apiKey` in node.json: a bearer token crosses the proxy) with the proxy's CA in its ca.pem.",
      );
    }
    const theirs = health.caFingerprints?.length
      ? `, CA ${health.caFingerprints.map((fingerprint) => fingerprint.slice(0, 19) + "…").join(", ")}`
      : "";
    return new GatehouseError(
      "ca_mismatch",
      `${error.message}. It is another Gatehouse gateway (${health.gatewayId}${theirs}) than the one whose CA is trusted here`,
      "Check the URL and the CA fingerprint: `gatehouse gateway info` on the right gateway prints both. For a registered node, point gatewayUrl in node.json at its own gateway, or register it with this one.",
    );
  }
  return new GatehouseError(
    "ca_mismatch",
    `${error.message}. It is not a Gatehouse gateway at all: something else answers on that port`,
    "Find what holds the port (a forgotten container or an old service: `ss -ltnp`), stop it, and start the gateway there.",
  );
}

/**
 * checkPresentedChain, and when the chain is foreign, explainForeignChain: one verdict on "is
 * this our gateway, reached by a name it holds?" for registration, diagnostics and the agent.
 * @returns the trusted CA that signed the server certificate
 */
export async function verifyPresentedChain(
  gatewayUrl: string,
  presented: PresentedChain,
  trusted: X509Certificate[],
  timeoutMs = 10_000,
): Promise<X509Certificate> {
  try {
    return checkPresentedChain(gatewayUrl, presented, trusted);
  } catch (error) {
    // A certificate from a trusted CA that is not a server certificate, or does not name this
    // host, is already described exactly; a foreign one may be a proxy or another gateway.
    if (error instanceof CaPinError && (error.reason === "foreign_ca" || error.reason === "not_signed"))
      throw await explainForeignChain(
        error,
        gatewayUrl,
        trusted.map((ca) => sha256Fingerprint(ca.raw)),
        timeoutMs,
      );
    throw error;
  }
}

/**
 * Trust on first use, done right, and the same during a CA rotation: before anything is sent, read
 * the chain the server presents and the CA bundle it publishes (GET /api/v1/ca); the bundle must
 * hold the pinned CA, which vouches for the rest (pki checkCaBundle: the previous CA hands over
 * to the new one, the new one names its predecessor), and the server certificate must be a
 * server certificate for this URL from one of them. Either CA of a rotation may be pinned.
 *
 * @param pinnedFingerprint `sha256:` + 64 hex digits
 * @returns the bundle to write as ca.pem and use for all later TLS
 * @throws GatehouseError `ca_mismatch` (foreign server, named: proxy, other gateway, other
 *   service; or a bundle the pin does not vouch for), `san_mismatch`, network codes
 */
export async function fetchGatewayTrust(
  gatewayUrl: string,
  pinnedFingerprint: string,
  timeoutMs = 10_000,
): Promise<PinnedCa> {
  const presented = await readPresentedChain(gatewayUrl, timeoutMs);
  const pinnedInChain = presented.chain.find((raw) => sha256Fingerprint(raw) === pinnedFingerprint);
  // A chain with the pinned CA is judged by it before the server is asked anything: a server
  // certificate that is not one, or not for this name, gets no request at all.
  if (pinnedInChain)
    await verifyPresentedChain(gatewayUrl, presented, [new X509Certificate(pinnedInChain)], timeoutMs);
  const published = await readUnverifiedJson<CaBundleResponse>(
    `${new URL(gatewayUrl).origin}/api/v1/ca`,
    timeoutMs,
  );
  // Without a published bundle, the pinned CA in the presented chain is all there is to go on.
  const bundle =
    typeof published?.caBundle === "string"
      ? published.caBundle
      : pinnedInChain
        ? new X509Certificate(pinnedInChain).toString()
        : "";
  const inBundle = certificatesOfBundle(bundle).some((ca) => sha256Fingerprint(ca.raw) === pinnedFingerprint);
  if (!inBundle) {
    // Nothing answering there vouches for the pinned CA: a foreign server, named as well as we can.
    const [leaf] = presented.chain;
    if (!leaf)
      throw new GatehouseError("not_a_gateway", `${new URL(gatewayUrl).host} presented no certificate`);
    const seen = presented.chain.map((raw) => sha256Fingerprint(raw));
    throw await explainForeignChain(
      new CaPinError(
        "foreign_ca",
        `the server at ${new URL(gatewayUrl).host} does not chain to the pinned CA ${pinnedFingerprint}; it presented ${seen.join(" <- ")} (${describeLeaf(new X509Certificate(leaf))})`,
      ),
      gatewayUrl,
      [pinnedFingerprint],
      timeoutMs,
    );
  }
  const trusted = checkCaBundle(bundle, pinnedFingerprint, published?.caRotation);
  await verifyPresentedChain(gatewayUrl, presented, trusted, timeoutMs);
  return {
    caPem: trusted.map((ca) => ca.toString().trimEnd() + "\n").join(""),
    caFingerprint: pinnedFingerprint,
  };
}
