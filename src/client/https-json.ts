import https from "node:https";
import { GatehouseError, isErrorCode, type ErrorCode } from "../protocol/errors.js";
import { NTP_HINT, explainTimeValidity, isTimeValidityError, timeValidityMeaning } from "./clock-skew.js";
import { sanMismatch } from "./san-mismatch.js";

export interface TlsClientOptions {
  ca: string;
  key?: string;
  cert?: string;
}

export interface JsonResponse<T = unknown> {
  status: number;
  body: T;
}

/**
 * Network failures below HTTP, named with the catalogue's codes. A certificate outside its
 * validity period is `clock_skew` (requestJson confirms it against the gateway's clock: see
 * explainTimeValidity).
 */
export function networkErrorCode(error: NodeJS.ErrnoException): ErrorCode {
  if (isTimeValidityError(error)) return "clock_skew";
  switch (error.code) {
    case "ECONNREFUSED":
      return "connection_refused";
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
      return "dns_failed";
    case "ETIMEDOUT":
    case "ESOCKETTIMEDOUT":
    case "ECONNABORTED":
      return "connection_timeout";
    // Node checks the name only after the chain verified against our CAs: the right gateway.
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return "san_mismatch";
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "CERT_SIGNATURE_FAILURE":
    case "INVALID_PURPOSE":
    case "CERT_UNTRUSTED":
    case "CERT_REJECTED":
      return "ca_mismatch";
    default:
      return "connection_failed";
  }
}

/** What a TLS verification failure means for "is this our gateway?", in words. */
const TLS_MEANING: Record<string, string> = {
  INVALID_PURPOSE:
    "the server's certificate is from the pinned CA but is not a server certificate (a node's client certificate?): this is not the gateway",
};

export function describeNetworkError(url: string, error: NodeJS.ErrnoException): GatehouseError {
  const code = networkErrorCode(error);
  if (code === "clock_skew") {
    return new GatehouseError(
      code,
      `${url}: ${timeValidityMeaning(error.code!)} (${error.code}); this machine's clock says ${new Date().toISOString()}`,
      NTP_HINT,
    );
  }
  if (code === "san_mismatch") {
    // tls.checkServerIdentity's error carries the certificate it judged.
    const peer = (error as { cert?: { subjectaltname?: string } }).cert;
    return sanMismatch(url, peer?.subjectaltname);
  }
  const meaning = error.code ? TLS_MEANING[error.code] : undefined;
  return new GatehouseError(
    code,
    `${url}: ${meaning ? `${meaning} (${error.code})` : `${error.code ?? "error"}: ${error.message}`}`,
  );
}

/**
 * One HTTPS JSON request. The server is verified against the given CA only (never the system
 * store): this client talks to one gateway whose CA it has pinned. Error bodies from the gateway
 * become GatehouseErrors with the gateway's code, description and hint; a certificate outside its
 * validity period is named by the gateway's clock (`clock_skew` with the skew, see
 * explainTimeValidity).
 */
export function requestJson<T = unknown>(
  url: string,
  options: {
    method?: string;
    body?: unknown;
    tls: TlsClientOptions;
    timeoutMs?: number;
    headers?: Record<string, string>;
  },
): Promise<JsonResponse<T>> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {
        method: options.method ?? (payload ? "POST" : "GET"),
        ca: options.tls.ca,
        key: options.tls.key,
        cert: options.tls.cert,
        headers: {
          accept: "application/json",
          ...options.headers,
          ...(payload
            ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
            : {}),
        },
        timeout: options.timeoutMs ?? 10_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            reject(
              new GatehouseError(
                "not_a_gateway",
                `${url} answered HTTP ${response.statusCode} with a body that is not JSON`,
              ),
            );
            return;
          }
          const status = response.statusCode ?? 0;
          if ((status === 413 || status === 431) && !isErrorCode((body as { error?: unknown })?.error)) {
            // Node's own limits answer before the gateway's code runs: name them all the same.
            reject(
              new GatehouseError(
                "payload_too_large",
                `${url}: HTTP ${status}: the request or its headers are too large`,
              ),
            );
            return;
          }
          if (status >= 400) {
            reject(GatehouseError.fromBody(body, status >= 500 ? "unavailable" : "invalid_request"));
            return;
          }
          resolve({ status, body: body as T });
        });
        response.on("error", reject);
      },
    );
    request.on("timeout", () => {
      request.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" }));
    });
    request.on("error", (error: NodeJS.ErrnoException) => {
      if (error instanceof GatehouseError) reject(error);
      else if (isTimeValidityError(error))
        void explainTimeValidity(new URL(url).origin, error, options.tls.ca, options.timeoutMs).then(reject);
      else reject(describeNetworkError(url, error));
    });
    request.end(payload);
  });
}
