import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";
import { deviceNameSchema } from "../protocol/device-name.js";
import { durationSchema, lifetimeSchema } from "./duration.js";
import { serverNameProblem } from "./server-name.js";
import { BUILTIN_ROLES, SCOPES } from "../protocol/scopes.js";

export const listenSchema = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be HOST:PORT, e.g. 127.0.0.1:18789")
  .superRefine((value, ctx) => {
    // The host goes into the server certificate: it follows the rule for `sans` (a wildcard
    // address is fine here: it is how a gateway listens on every interface).
    const host = value.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
    const problem = host === "0.0.0.0" || host === "::" ? undefined : serverNameProblem(host);
    if (problem) ctx.addIssue({ code: "custom", message: `host ${JSON.stringify(host)} ${problem}` });
  });

/** A name for the server certificate (server-name.ts says which names are refused, and why). */
const serverNameSchema = z.string().superRefine((value, ctx) => {
  const problem = serverNameProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} ${problem}` });
});

const vaultSchema = z
  .strictObject({
    address: z.url({ protocol: /^https?$/ }).optional(),
    /** A secret: the Vault token, as a reference (env://, file://, op://). */
    token: z.string().min(1).optional(),
    /** PEM file of the CA of an https Vault. */
    caFile: z.string().optional(),
  })
  .prefault({});

/** Settings that hold secrets: shown as their reference or a fingerprint prefix, never the value. */
export const GATEWAY_SECRET_SETTINGS = [
  "store.url",
  "tokens.hashKey",
  "tokens.keyEncryptionKey",
  "vault.token",
] as const;

/**
 * Where the gateway keeps its state: `sqlite` (gatehouse.db in the home, the default: one gateway)
 * or `postgres` (several gateway instances share one database; see `gateway init --store`).
 */
const storeSchema = z
  .discriminatedUnion("kind", [
    z.strictObject({ kind: z.literal("sqlite") }),
    z.strictObject({
      kind: z.literal("postgres"),
      /** A secret (write a reference, e.g. env://GATEHOUSE_DATABASE_URL): a postgres:// URL. */
      url: z.string().min(1),
      /** Connections this instance keeps open to the database. */
      poolSize: z.number().int().min(2).max(100).default(10),
    }),
  ])
  .default({ kind: "sqlite" });

/** This instance among several on one database (set by `gateway init --store` and `gateway join`). */
const clusterSchema = z
  .strictObject({
    /** `gi_` + 16 base32 characters: names this instance in `/health`, `nodes list` and the audit. */
    instanceId: z
      .string()
      .regex(/^gi_[a-z2-7]{16}$/, "must be gi_ followed by 16 base32 characters")
      .optional(),
    /** The https URL other instances dial to relay commands here (default: from `listen`). */
    advertiseUrl: z.url({ protocol: /^https$/ }).optional(),
  })
  .prefault({});

/** An address or a CIDR block (`10.0.0.0/8`, `fd00::/8`), IPv4 or IPv6. */
const addressOrCidrSchema = z.string().superRefine((value, ctx) => {
  const [address = "", prefix, extra] = value.split("/");
  const bits = isIPv4(address) ? 32 : isIPv6(address) ? 128 : 0;
  const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits);
  if (!bits || !prefixOk || extra !== undefined) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(value)} is not an address or a CIDR (e.g. 10.0.0.0/8)`,
    });
  }
});

/**
 * The PROXY protocol (HAProxy's `send-proxy-v2`, v1 too) on the listener: connections from the
 * `trusted` balancers must begin with a header, whose source address then is the caller's. Empty
 * (the default): off, every caller is the socket's peer.
 */
const proxyProtocolSchema = z
  .strictObject({
    trusted: z.array(addressOrCidrSchema).default([]),
  })
  .prefault({});

export const NODE_SECRET_SETTINGS = ["apiKey", "vault.token"] as const;

/** gateway.json. Every setting has a default but the gateway id, which `gateway init` writes. */
export const gatewayConfigSchema = z.strictObject({
  gatewayId: z.string().min(1),
  name: z.string().default("gatehouse"),
  listen: listenSchema.default("127.0.0.1:18789"),
  /** Extra names and addresses for the server certificate, besides localhost and loopback. */
  sans: z.array(serverNameSchema).default([]),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  store: storeSchema,
  cluster: clusterSchema,
  proxyProtocol: proxyProtocolSchema,
  certificates: z
    .strictObject({
      clientTtl: lifetimeSchema.prefault("24h"),
      serverTtl: lifetimeSchema.prefault("365d"),
      adminTtl: lifetimeSchema.prefault("365d"),
    })
    .prefault({}),
  enroll: z
    .strictObject({
      pendingTtl: lifetimeSchema.prefault("15m"),
      maxPending: z.number().int().positive().default(100),
      /** Registrations one address may start per minute (a token bucket of this size). */
      perAddressPerMinute: z.number().int().positive().default(20),
      maxBodyBytes: z
        .number()
        .int()
        .positive()
        .default(64 * 1024),
    })
    .prefault({}),
  tls: z
    .strictObject({
      /**
       * How long a connection may take to finish its TLS handshake before the gateway destroys it.
       * A connection that never sends a ClientHello holds a file descriptor until then. At most 10m
       * (Node's timer takes no more than 24.8 days, and no handshake needs minutes).
       */
      handshakeTimeout: durationSchema
        .prefault("10s")
        .refine((ms) => ms >= 100 && ms <= 600_000, "must be between 100ms and 10m"),
    })
    .prefault({}),
  http: z
    .strictObject({
      /**
       * How long a client may take to send a whole request (headers and body) before the gateway
       * answers invalid_request and closes the connection. A client that trickles a body holds a
       * file descriptor until then. Between 1s and 10m.
       */
      requestTimeout: durationSchema
        .prefault("30s")
        .refine((ms) => ms >= 1000 && ms <= 600_000, "must be between 1s and 10m"),
    })
    .prefault({}),
  sessions: z
    .strictObject({
      heartbeatInterval: durationSchema.prefault("15s"),
      heartbeatTimeout: durationSchema.prefault("45s"),
    })
    .prefault({}),
  /** Roles beyond the built-in node, viewer, operator and admin: a name and its scopes. */
  roles: z
    .record(
      z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, "role names are lower case, up to 32 characters"),
      z.array(z.enum(SCOPES)),
    )
    .refine(
      (roles) => !Object.keys(roles).some((name) => name in BUILTIN_ROLES),
      "a custom role cannot redefine a built-in one",
    )
    .default({}),
  tokens: z
    .strictObject({
      /** ES256 by default: P-256 verifies about 1.8x faster than Ed25519 with Node's OpenSSL. */
      algorithm: z.enum(["ES256", "EdDSA"]).default("ES256"),
      accessTtl: lifetimeSchema.prefault("1h"),
      refreshTtl: lifetimeSchema.prefault("30d"),
      /**
       * A secret (write a reference: op://, vault://, env://, file://): the HMAC key that API keys
       * and refresh tokens are stored under. Unset, the gateway uses pki/token-hmac.key, made at
       * first start. Keeping it outside the home means a copy of the home cannot test guesses.
       */
      hashKey: z.string().min(1).optional(),
      /**
       * A secret (write a reference): the key-encryption key the token signing keys are sealed
       * under in the database. Unset, the gateway uses pki/signing-keys.kek, made at first start.
       * Set it for several instances that share one database but no disk.
       */
      keyEncryptionKey: z.string().min(1).optional(),
    })
    .prefault({}),
  /** Where vault:// references are read. VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT serve when unset. */
  vault: vaultSchema,
});

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
export type GatewayConfigInput = z.input<typeof gatewayConfigSchema>;

const gatewayUrlSchema = z.url({ protocol: /^https$/ });

/**
 * node.json's `gatewayUrl`: one https URL, or several instances of one gateway (same CA) in the
 * order the agent tries them. Each listed once: a repeat would only make a round longer.
 */
const gatewayUrlsSchema = z
  .union([z.string(), z.array(z.string())], { error: "must be an https:// URL or a list of them" })
  .superRefine((value, ctx) => {
    const urls = typeof value === "string" ? [value] : value;
    if (urls.length === 0) ctx.addIssue({ code: "custom", message: "must list at least one https:// URL" });
    const seen = new Set<string>();
    urls.forEach((url, index) => {
      const path = typeof value === "string" ? [] : [index];
      const checked = gatewayUrlSchema.safeParse(url);
      if (!checked.success) {
        ctx.addIssue({ code: "custom", path, message: checked.error.issues[0]?.message ?? "Invalid URL" });
        return;
      }
      const origin = new URL(url).origin;
      if (seen.has(origin)) ctx.addIssue({ code: "custom", path, message: `${url} is listed twice` });
      seen.add(origin);
    });
  })
  .transform((value) => (typeof value === "string" ? [value] : value));

/**
 * node.json, written by `node register`. The loaded config carries `gatewayUrls` (every URL, in
 * order; `gatewayUrl` in the file may be a string or a list) and `gatewayUrl`, the first of them.
 */
export const nodeConfigSchema = z
  .strictObject({
    gatewayUrl: gatewayUrlsSchema,
    caFingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be sha256: followed by 64 hex digits"),
    deviceId: z.string().min(1).optional(),
    name: deviceNameSchema.optional(),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
    exec: z.strictObject({ allow: z.array(z.string()).default([]) }).prefault({}),
    /**
     * A secret (write a reference): an API key of role `node`, for a node that cannot hold a client
     * certificate. Used only when the home has no device certificate; it is exchanged for short-lived
     * access tokens, refreshed on the session.
     */
    apiKey: z.string().min(1).optional(),
    vault: vaultSchema,
    heartbeatInterval: durationSchema.prefault("15s"),
    reconnect: z
      .strictObject({
        initialDelay: durationSchema.prefault("1s"),
        maxDelay: durationSchema.prefault("60s"),
      })
      .prefault({}),
  })
  .transform(({ gatewayUrl: gatewayUrls, ...rest }) => ({
    ...rest,
    gatewayUrl: gatewayUrls[0]!,
    gatewayUrls,
  }));

export type NodeConfig = z.output<typeof nodeConfigSchema>;
export type NodeConfigInput = z.input<typeof nodeConfigSchema>;
