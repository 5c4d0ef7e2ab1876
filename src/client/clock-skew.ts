import https from "node:https";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { ERROR_CATALOGUE, GatehouseError } from "../protocol/errors.js";
import type { HealthResponse } from "../protocol/messages.js";

/**
 * Clock skew between this machine and its gateway: measuring it, and naming the TLS failures it
 * causes. A certificate is judged by the clock of whoever checks it, so a node whose clock is
 * minutes off sees the gateway's certificate as "not yet valid" or "expired" although nothing is
 * wrong with it. Such a failure is only called `clock_skew` once the gateway's own clock (its
 * `/health` time) says so.
 */

/** How far apart the clocks may be before it is a fault: the gateway's token leeway, in ms. */
export const SKEW_TOLERANCE_MS = 60_000;

/**
 * TLS failures that mean "outside its validity period, by someone's clock": OpenSSL's verify
 * results for the gateway's chain (X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED),
 * and the gateway's TLS alert refusing this node's certificate as expired (RFC 8446 §6.2,
 * certificate_expired).
 */
const TIME_VALIDITY = new Set([
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED",
]);

/** What each time-validity failure means, for a description. */
const MEANING: Record<string, string> = {
  CERT_NOT_YET_VALID: "the gateway's certificate is not valid yet by this machine's clock",
  CERT_HAS_EXPIRED: "the gateway's certificate has expired by this machine's clock",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: "the gateway refused this node's certificate as expired",
};

/** Whether a network error is a certificate found outside its validity period (see TIME_VALIDITY). */
export function isTimeValidityError(error: { code?: string } | undefined): boolean {
  return error?.code !== undefined && TIME_VALIDITY.has(error.code);
}

/** What a time-validity failure means in words, e.g. "the gateway's certificate is not valid yet …". */
export function timeValidityMeaning(code: string): string {
  return MEANING[code] ?? "a certificate is outside its validity period";
}

/** The fix for a clock that is off (the catalogue's hint for `clock_skew`). */
export const NTP_HINT: string = ERROR_CATALOGUE.clock_skew.hint;

/** The gateway's clock as seen from here. */
export interface GatewayClock {
  /** Gateway time minus local time, in ms: positive when this machine's clock is behind. */
  skewMs: number;
  /** The gateway's time when it answered. */
  gatewayTime: Date;
  /** The gateway's `/health` answer, when it gave one (else the time is its HTTP Date header). */
  health?: HealthResponse;
}

/** "600.2 s behind the gateway's" or "12.0 s ahead of the gateway's", for a skew in ms. */
export function describeSkew(skewMs: number): string {
  return `this machine's clock is ${(Math.abs(skewMs) / 1000).toFixed(1)} s ${
    skewMs > 0 ? "behind" : "ahead of"
  } the gateway's`;
}

/** `clock_skew` with the measurement and what it broke, so callers can show or use them. */
export class ClockSkewError extends GatehouseError {
  constructor(
    readonly clock: GatewayClock,
    /** What failed because of the skew, e.g. "the gateway's certificate is not valid yet … (CERT_NOT_YET_VALID)". */
    readonly failure: string,
  ) {
    super(
      "clock_skew",
      `${describeSkew(clock.skewMs)} (gateway ${clock.gatewayTime.toISOString()}); ${failure}; certificates and tokens allow ${SKEW_TOLERANCE_MS / 1000} s`,
      NTP_HINT,
    );
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Whether the server's chain leads to one of the trusted CAs and its leaf names the host, with
 * every check of a verified connection except the dates (RFC 5280 §6.1.3 signatures and issuer
 * names, RFC 6125 name). OpenSSL has judged the chain already (`authorizationError`), but reports
 * only one failure: a chain that is both foreign and out of date must not pass as out of date.
 */
function vouchedForIgnoringDates(socket: tls.TLSSocket, caPem: string, host: string): boolean {
  const trusted = (caPem.match(PEM_CERTIFICATE) ?? []).map((pem) => new X509Certificate(pem));
  const presented: X509Certificate[] = [];
  let peer: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (peer?.raw && !presented.some((cert) => cert.raw.equals(peer!.raw))) {
    presented.push(new X509Certificate(peer.raw));
    peer = peer.issuerCertificate;
  }
  const [leaf] = presented;
  if (!leaf || tls.checkServerIdentity(host, socket.getPeerCertificate())) return false;
  const signs = (issuer: X509Certificate, cert: X509Certificate) =>
    issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  // Up the presented chain (at most its length) until a trusted CA signs the current certificate.
  let current = leaf;
  for (let step = 0; step <= presented.length; step++) {
    if (trusted.some((ca) => signs(ca, current))) return true;
    const next = presented.find((cert) => cert !== current && signs(cert, current));
    if (!next) return false;
    current = next;
  }
  return false;
}

/**
 * Reads the gateway's clock from `GET /health` (its `time`; else the HTTP `Date` header) over a
 * connection that trusts only the given CA bundle but tolerates certificate dates, so that it
 * works exactly when a skewed clock makes every verified connection fail. The skew is measured
 * against the midpoint of the request (NTP's estimate, RFC 5905 §8, with the gateway's one time).
 *
 * @param origin the gateway's `https://HOST:PORT`.
 * @param caPem the CA bundle (PEM) this node trusts.
 * @returns the gateway's clock, or undefined when it cannot be read (no answer, not our gateway).
 */
export function readGatewayClock(
  origin: string,
  caPem: string,
  timeoutMs = 5000,
): Promise<GatewayClock | undefined> {
  const url = new URL("/health", origin);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve) => {
    const sentAt = Date.now();
    const request = https.get(
      url,
      { ca: caPem, rejectUnauthorized: false, timeout: timeoutMs, agent: false },
      (response) => {
        const socket = response.socket as tls.TLSSocket;
        const error = socket.authorizationError as unknown as string | undefined;
        if (!socket.authorized && !(error && TIME_VALIDITY.has(error))) {
          response.destroy();
          resolve(undefined);
          return;
        }
        if (!vouchedForIgnoringDates(socket, caPem, host)) {
          response.destroy();
          resolve(undefined);
          return;
        }
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", () => resolve(undefined));
        response.on("end", () => {
          const receivedAt = Date.now();
          let health: HealthResponse | undefined;
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Partial<HealthResponse>;
            if (body.service === "gatehouse" && typeof body.time === "string")
              health = body as HealthResponse;
          } catch {
            health = undefined;
          }
          // The Date header has whole seconds: its middle is half a second on.
          const time = health
            ? new Date(health.time).getTime()
            : new Date(response.headers.date ?? "").getTime() + 500;
          if (!Number.isFinite(time)) {
            resolve(undefined);
            return;
          }
          const midpoint = (sentAt + receivedAt) / 2;
          resolve({ skewMs: time - midpoint, gatewayTime: new Date(time), ...(health ? { health } : {}) });
        });
      },
    );
    request.on("timeout", () => request.destroy());
    request.on("error", () => resolve(undefined));
  });
}

/**
 * Names a time-validity TLS failure (isTimeValidityError) by the gateway's clock:
 * - the clocks differ by more than SKEW_TOLERANCE_MS: `clock_skew` (a ClockSkewError) with the
 *   skew, what it broke, and NTP_HINT;
 * - they agree: the certificate really is out of date, by the gateway's clock too: the gateway's
 *   server certificate (`connection_failed`), or this node's (`cert_expired`);
 * - the gateway's clock cannot be read: `clock_skew` without a figure, naming the local time.
 *
 * @param origin the gateway's `https://HOST:PORT`; @param error the failed request's error;
 * @param caPem the CA bundle the request trusted.
 */
export async function explainTimeValidity(
  origin: string,
  error: NodeJS.ErrnoException,
  caPem: string,
  timeoutMs = 5000,
): Promise<GatehouseError> {
  const code = error.code ?? "CERT_HAS_EXPIRED";
  const meaning = `${timeValidityMeaning(code)} (${code})`;
  const clock = await readGatewayClock(origin, caPem, timeoutMs);
  if (!clock) {
    return new GatehouseError(
      "clock_skew",
      `${origin}: ${meaning}; this machine's clock says ${new Date().toISOString()}, and the gateway's clock could not be read to compare`,
      NTP_HINT,
    );
  }
  if (Math.abs(clock.skewMs) > SKEW_TOLERANCE_MS) {
    return new ClockSkewError(clock, meaning);
  }
  if (code === "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED") {
    return new GatehouseError(
      "cert_expired",
      `${origin}: the gateway refused this node's certificate as expired, and the clocks agree (${describeSkew(clock.skewMs)})`,
    );
  }
  return new GatehouseError(
    "connection_failed",
    `${origin}: ${meaning}, and by the gateway's clock too (${describeSkew(clock.skewMs)}): the gateway's own server certificate is out of date`,
    "Check the gateway's clock and its log: the gateway renews its server certificate at 2/3 of its life, so an out-of-date one means that stopped.",
  );
}
