import { existsSync, readFileSync } from "node:fs";
import dns from "node:dns/promises";
import net from "node:net";
import path from "node:path";
import { createRequire } from "node:module";
import type WebSocketClass from "ws";
import { NODE_FILES, describeSecret, loadNodeConfig, resolveSecret, vaultAccess } from "../config/index.js";
import { AccessTokenSource } from "./access-tokens.js";
import { GatehouseError, isErrorCode, type ErrorCode } from "../protocol/errors.js";
import type { HealthResponse } from "../protocol/messages.js";
import { readPresentedChain, verifyPresentedChain } from "../client/ca-pin.js";
// Not the pki barrel: it loads @peculiar/x509, which a diagnosis has no use for (start-up time).
import { certificatesOfBundle } from "../pki/ca-rotation.js";
import { sha256Fingerprint } from "../pki/fingerprint.js";
import { describeNetworkError, requestJson, type TlsClientOptions } from "../client/https-json.js";
import { explainMissingCertificate, readRegistrationFile } from "./registration-state.js";
import { ClockSkewError, NTP_HINT, SKEW_TOLERANCE_MS, describeSkew } from "../client/clock-skew.js";
import { nameCredentialRefusal, type CredentialSource } from "../client/credential-source.js";

// ws is CommonJS: require() loads it as such, where an ESM import makes Node translate each of its
// files for ESM first; that took about a fifth of `node test-connection`'s start-up CPU.
const WebSocket = createRequire(import.meta.url)("ws") as typeof WebSocketClass;

export const LAYERS = [
  "config",
  "dns",
  "tcp",
  "tls",
  "http",
  "clock",
  "auth",
  "device",
  "websocket",
] as const;
export type Layer = (typeof LAYERS)[number];

export interface LayerResult {
  layer: Layer;
  ok: boolean;
  ms: number;
  detail: string;
  code?: ErrorCode;
  description?: string;
  hint?: string;
}

export interface TestConnectionResult {
  ok: boolean;
  home: string;
  gatewayUrl: string | null;
  totalMs: number;
  layers: LayerResult[];
  error: { layer: Layer; code: ErrorCode; description: string; hint: string } | null;
}

export interface TestConnectionOptions {
  gatewayUrl?: string;
  /** A bearer access token to test instead of the device certificate. */
  token?: string;
  /** Per layer; short, so that a dead port is named in seconds. */
  timeoutMs?: number;
  /** Clock skew tolerated before it is a failure (the gateway's token leeway). */
  maxSkewMs?: number;
  onLayer?: (result: LayerResult) => void;
}

class Stop extends Error {}

interface Credentials {
  ca: string;
  key?: string;
  cert?: string;
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) =>
      // eslint-disable-next-line no-restricted-syntax -- ms is `--timeout`, at most 10 minutes (the CLI checks)
      setTimeout(
        () => reject(new GatehouseError("connection_timeout", `${what} did not answer within ${ms} ms`)),
        ms,
      ).unref(),
    ),
  ]);
}

/**
 * Walks the layers between this node and its gateway in order and stops at the first failure,
 * naming its code and the fix: the half hour of guessing behind a bare WebSocket 1006, in seconds.
 */
export async function testConnection(
  home: string,
  options: TestConnectionOptions = {},
): Promise<TestConnectionResult> {
  const timeoutMs = options.timeoutMs ?? 3000;
  const started = performance.now();
  const layers: LayerResult[] = [];
  const result: TestConnectionResult = { ok: false, home, gatewayUrl: null, totalMs: 0, layers, error: null };

  const step = async <T>(layer: Layer, run: () => Promise<{ value: T; detail: string }>): Promise<T> => {
    const t0 = performance.now();
    try {
      const { value, detail } = await run();
      const entry: LayerResult = { layer, ok: true, ms: Math.round(performance.now() - t0), detail };
      layers.push(entry);
      options.onLayer?.(entry);
      return value;
    } catch (error) {
      const named =
        error instanceof GatehouseError
          ? error
          : new GatehouseError("connection_failed", error instanceof Error ? error.message : String(error));
      const entry: LayerResult = {
        layer,
        ok: false,
        ms: Math.round(performance.now() - t0),
        detail: named.message,
        code: named.code,
        description: named.message,
        hint: named.hint,
      };
      layers.push(entry);
      options.onLayer?.(entry);
      result.error = { layer, code: named.code, description: named.message, hint: named.hint };
      throw new Stop();
    }
  };

  try {
    const { config, credentials, registration, apiKey } = await step("config", async () => {
      const loaded = loadNodeConfig(home, options.gatewayUrl ? { gatewayUrl: options.gatewayUrl } : {});
      const file = (name: string) => path.join(home, name);
      if (!existsSync(file(NODE_FILES.caCert))) {
        throw new GatehouseError(
          "config_missing",
          `${file(NODE_FILES.caCert)} does not exist`,
          loaded.config.apiKey
            ? "Run `gatehouse node start` once: it fetches ca.pem by the pinned fingerprint."
            : "Run `gatehouse node register` again.",
        );
      }
      const credentials: Credentials = { ca: readFileSync(file(NODE_FILES.caCert), "utf8") };
      if (existsSync(file(NODE_FILES.deviceCert)) && existsSync(file(NODE_FILES.deviceKey))) {
        credentials.cert = readFileSync(file(NODE_FILES.deviceCert), "utf8");
        credentials.key = readFileSync(file(NODE_FILES.deviceKey), "utf8");
      }
      const registration = readRegistrationFile(home);
      // No certificate but an API key: resolve its reference now, so a bad one is named here.
      const apiKey =
        !credentials.cert && loaded.config.apiKey
          ? await resolveSecret(loaded.config.apiKey, "apiKey", { vault: vaultAccess(loaded.config) })
          : undefined;
      return {
        value: { config: loaded.config, credentials, registration, apiKey },
        detail: apiKey
          ? `${loaded.file}: API key ${describeSecret(loaded.config.apiKey!)}`
          : `${loaded.file}: device ${loaded.config.deviceId ?? "(none yet)"}`,
      };
    });
    const url = new URL(config.gatewayUrl);
    result.gatewayUrl = url.origin;
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const port = Number(url.port || 443);

    const address = await step("dns", async () => {
      if (net.isIP(host)) return { value: host, detail: `${host} is an address` };
      try {
        const found = await withTimeout(dns.lookup(host), timeoutMs, `DNS for ${host}`);
        return { value: found.address, detail: `${host} → ${found.address}` };
      } catch (error) {
        if (error instanceof GatehouseError) throw new GatehouseError("dns_failed", error.message);
        throw new GatehouseError(
          "dns_failed",
          `${host} does not resolve (${(error as NodeJS.ErrnoException).code})`,
        );
      }
    });

    await step("tcp", async () => {
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect({ host: address, port, timeout: timeoutMs });
        socket.once("connect", () => {
          socket.destroy();
          resolve();
        });
        socket.once("timeout", () => {
          socket.destroy();
          reject(
            new GatehouseError(
              "connection_timeout",
              `${address}:${port} did not answer within ${timeoutMs} ms`,
              "A firewall drops the traffic, the host is down, or the gateway is overloaded.",
            ),
          );
        });
        socket.once("error", (error: NodeJS.ErrnoException) =>
          reject(describeNetworkError(url.origin, error)),
        );
      });
      return { value: undefined, detail: `connected to ${address}:${port}` };
    });

    await step("tls", async () => {
      const presented = await readPresentedChain(url.origin, timeoutMs);
      // Judged as the node's own connections are: against every CA in its ca.pem (both CAs of a
      // rotation it followed), not against the pin alone.
      const issuer = await verifyPresentedChain(
        url.origin,
        presented,
        certificatesOfBundle(credentials.ca),
        timeoutMs,
      );
      const issuerFingerprint = sha256Fingerprint(issuer.raw);
      return {
        value: undefined,
        detail: `server certificate for ${host}, from ${
          issuerFingerprint === config.caFingerprint ? "the pinned CA" : "a CA in ca.pem"
        } ${issuerFingerprint.slice(0, 19)}…`,
      };
    });

    const tls: TlsClientOptions = { ca: credentials.ca };
    // What a skewed clock broke on the way (a certificate "not yet valid"), for the clock layer.
    let brokenBySkew: string | undefined;
    const health = await step("http", async () => {
      const sentAt = Date.now();
      let response;
      try {
        response = await requestJson<HealthResponse>(`${url.origin}/health`, { tls, timeoutMs });
      } catch (error) {
        // The gateway answered on a connection that ignored the certificate's dates: HTTP works,
        // and the clock layer names the skew.
        if (error instanceof ClockSkewError && error.clock.health) {
          brokenBySkew = error.failure;
          const { health, gatewayTime, skewMs } = error.clock;
          return {
            value: { body: health, midpoint: gatewayTime.getTime() - skewMs },
            detail: `Gatehouse ${health.version}, gateway ${health.gatewayId} (read ignoring certificate dates: ${error.failure})`,
          };
        }
        if (error instanceof GatehouseError && error.code !== "not_a_gateway" && error.status >= 400) {
          throw new GatehouseError(
            "not_a_gateway",
            `GET /health answered ${error.code}: it is not a Gatehouse gateway`,
          );
        }
        throw error;
      }
      const receivedAt = Date.now();
      if (response.body?.service !== "gatehouse" || typeof response.body.time !== "string") {
        throw new GatehouseError(
          "not_a_gateway",
          `${url.origin}/health answered, but not as a Gatehouse gateway`,
        );
      }
      return {
        value: { body: response.body, midpoint: (sentAt + receivedAt) / 2 },
        detail: `Gatehouse ${response.body.version}, gateway ${response.body.gatewayId}`,
      };
    });

    await step("clock", async () => {
      const skewMs = new Date(health.body.time).getTime() - health.midpoint;
      const seconds = (skewMs / 1000).toFixed(1);
      const allowedMs = options.maxSkewMs ?? SKEW_TOLERANCE_MS;
      if (Math.abs(skewMs) > allowedMs || brokenBySkew) {
        throw new GatehouseError(
          "clock_skew",
          `${describeSkew(skewMs)}; tokens and certificates allow ${allowedMs / 1000} s${brokenBySkew ? `; ${brokenBySkew}` : ""}`,
          NTP_HINT,
        );
      }
      return { value: undefined, detail: `skew ${skewMs >= 0 ? "+" : ""}${seconds} s` };
    });

    let token = options.token ?? process.env.GATEHOUSE_TOKEN;
    // A refused token names where it came from, as the admin commands do: a stale GATEHOUSE_TOKEN
    // would otherwise read like a fault of the node's own certificate.
    const deviceCertificate = credentials.cert
      ? `this home's device certificate (${path.join(home, NODE_FILES.deviceCert)})`
      : undefined;
    const tokenSource: CredentialSource | undefined = options.token
      ? {
          kind: "token-flag",
          ...(process.env.GATEHOUSE_TOKEN || deviceCertificate
            ? { next: process.env.GATEHOUSE_TOKEN ? "the GATEHOUSE_TOKEN variable" : deviceCertificate }
            : {}),
        }
      : token
        ? { kind: "token-variable", ...(deviceCertificate ? { next: deviceCertificate } : {}) }
        : undefined;
    const authTls: TlsClientOptions = token || apiKey ? { ca: credentials.ca } : { ...credentials };
    const headers: Record<string, string> = {};
    let deviceFailure: GatehouseError | undefined;
    const validated = await step("auth", async () => {
      try {
        // A node on an API key: exchange it first; a refused key is an authentication failure.
        token ??=
          apiKey && (await new AccessTokenSource(url.origin, apiKey, () => credentials.ca).fetch()).token;
        if (token) headers.authorization = `Bearer ${token}`;
        if (!token && !credentials.cert)
          await explainMissingCertificate(url.origin, tls, registration, home, timeoutMs);
        const { body } = await requestJson<{
          credential: string;
          subject: string;
          role: string;
          deviceId?: string;
        }>(`${url.origin}/api/v1/auth/validate`, { tls: authTls, headers, timeoutMs });
        return {
          value: body,
          detail: `${body.credential === "certificate" ? "client certificate" : "access token"} for ${body.subject}`,
        };
      } catch (error) {
        if (
          error instanceof GatehouseError &&
          (error.code.startsWith("device_") || error.code === "registration_expired")
        ) {
          // The credential is not the problem; the device's state is: name that layer.
          deviceFailure = error;
          return {
            value: undefined,
            detail: credentials.cert ? "credential accepted" : "no certificate yet",
          };
        }
        throw tokenSource ? nameCredentialRefusal(error, tokenSource) : error;
      }
    });

    await step("device", async () => {
      if (deviceFailure) throw deviceFailure;
      return {
        value: undefined,
        detail: validated?.deviceId
          ? `approved (role ${validated.role})`
          : `no device: role ${validated?.role}`,
      };
    });

    await step("websocket", async () => {
      const sessionId = await openSession(url.origin, authTls, headers, timeoutMs);
      return { value: undefined, detail: `session ${sessionId} opened and closed` };
    });
    result.ok = true;
  } catch (error) {
    if (!(error instanceof Stop)) throw error;
  }
  result.totalMs = Math.round(performance.now() - started);
  return result;
}

/** `node test-connection` for a node.json that lists several gateway URLs: each one's walk. */
export interface TestConnectionsResult {
  /** True when every URL passed every layer. */
  ok: boolean;
  home: string;
  totalMs: number;
  gateways: TestConnectionResult[];
}

/**
 * The URLs `node test-connection` walks: the `--gateway` one, else every one node.json lists (in
 * order). A node.json that cannot be read gives one walk, whose config layer names the fault.
 */
export function urlsToTest(home: string, gatewayUrl?: string): (string | undefined)[] {
  if (gatewayUrl) return [gatewayUrl];
  try {
    const urls = loadNodeConfig(home).config.gatewayUrls;
    return urls.length > 1 ? urls : [undefined];
  } catch {
    return [undefined];
  }
}

/**
 * Walks the layers to each of node.json's gateway URLs in turn (testConnection for each): an
 * instance that is down is named even when another serves the node.
 * @param options as testConnection's; `onGateway` is called before each URL's walk (the URL, its
 *   0-based index, the count), `onWalk` after it with its result
 */
export async function testEveryGateway(
  home: string,
  urls: readonly string[],
  options: TestConnectionOptions & {
    onGateway?: (url: string, index: number, count: number) => void;
    onWalk?: (result: TestConnectionResult) => void;
  } = {},
): Promise<TestConnectionsResult> {
  const started = performance.now();
  const gateways: TestConnectionResult[] = [];
  for (const [index, url] of urls.entries()) {
    options.onGateway?.(url, index, urls.length);
    const walk = await testConnection(home, { ...options, gatewayUrl: url });
    options.onWalk?.(walk);
    gateways.push(walk);
  }
  return {
    ok: gateways.every((walk) => walk.ok),
    home,
    totalMs: Math.round(performance.now() - started),
    gateways,
  };
}

function openSession(
  origin: string,
  tls: TlsClientOptions,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(origin.replace(/^https:/, "wss:") + "/api/v1/connect", {
      ...tls,
      headers,
      handshakeTimeout: timeoutMs,
    });
    // eslint-disable-next-line no-restricted-syntax -- timeoutMs is `--timeout`, at most 10 minutes (the CLI checks)
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new GatehouseError("connection_timeout", `no welcome on the session within ${timeoutMs} ms`));
    }, timeoutMs + 500);
    socket.on("unexpected-response", (_request, response) => {
      let text = "";
      response.on("data", (chunk: Buffer) => (text += chunk.toString()));
      response.on("end", () => {
        clearTimeout(timer);
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        reject(GatehouseError.fromBody(body, "not_a_gateway"));
        socket.terminate();
      });
    });
    socket.on("message", (data) => {
      const message = JSON.parse(String(data)) as { type?: string; sessionId?: string };
      if (message.type === "welcome") {
        clearTimeout(timer);
        socket.close(1000, "test-connection");
        resolve(message.sessionId ?? "?");
      }
    });
    socket.on("close", (code, reason) => {
      clearTimeout(timer);
      const text = reason.toString();
      reject(
        new GatehouseError(
          isErrorCode(text) ? text : "connection_failed",
          `the session closed at once (${code} ${text})`,
        ),
      );
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(describeNetworkError(origin, error));
    });
  });
}
