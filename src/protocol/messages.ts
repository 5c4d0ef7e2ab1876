import { z } from "zod";
import { deviceNameSchema } from "./device-name.js";

/**
 * Text that ends up on an admin's terminal: no control characters (terminal escapes) and no
 * format characters (bidi overrides that make one name look like another).
 */
export function printableSchema(field: string, max: number) {
  return z
    .string()
    .max(max, `${field} is longer than ${max} characters`)
    .refine((value) => !/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(value), `${field} contains control characters`)
    .refine(
      (value) => !/[\p{Default_Ignorable_Code_Point}\p{Co}\p{Cn}\uFFFD]|\p{Cs}/u.test(value),
      `${field} contains invisible, private-use, unassigned or invalid characters`,
    )
    .refine((value) => !/\p{M}{5}/u.test(value), `${field} stacks more than four combining marks`);
}

// A name a person gives a device: the one set of rules is in device-name.ts.
export { deviceNameSchema };

/** The longest enroll token a registration may carry (imported legacy tokens included). */
export const ENROLL_TOKEN_MAX_LENGTH = 256;

export const enrollRequestSchema = z.strictObject({
  csr: z.string().min(1, "csr is missing"),
  name: deviceNameSchema,
  platform: printableSchema("platform", 64).optional(),
  enrollToken: z.string().max(ENROLL_TOKEN_MAX_LENGTH).optional(),
});
export type EnrollRequest = z.infer<typeof enrollRequestSchema>;

export interface EnrollResponse {
  requestId: string;
  deviceId: string;
  /** The device's name on the gateway: the one asked for, with an enroll token's name prefix. */
  name: string;
  userCode: string;
  keyFingerprint: string;
  status: "pending" | "approved" | "denied" | "expired";
  expiresAt: string;
  pollAfterMs: number;
}

export interface EnrollStatusResponse {
  requestId: string;
  deviceId: string;
  /** The device's name on the gateway now (an enroll token's name prefix included). */
  name?: string;
  status: "pending" | "approved" | "denied" | "expired";
  reason?: string;
  certificate?: string;
  caBundle?: string;
  expiresAt: string;
}

export interface HealthResponse {
  status: "ok";
  service: "gatehouse";
  version: string;
  gatewayId: string;
  time: string;
  /** The CAs this gateway's certificates chain to: a client behind a TLS-terminating proxy learns it reached its gateway. */
  caFingerprints?: string[];
  /** Several instances on one database only: the instance that answered. */
  instanceId?: string;
  /** Several instances on one database only: the live ones (a heartbeat within 10 s), oldest start first. */
  instances?: HealthInstance[];
}

/** One live gateway instance, as `/health` lists it. Times are ISO-8601. */
export interface HealthInstance {
  instanceId: string;
  /** HOST:PORT it listens on. */
  listen: string;
  /** The https URL the other instances reach it at. */
  url: string;
  startedAt: string;
  heartbeatAt: string;
}

/** The device as the API and `--json` show it. */
export interface DeviceView {
  deviceId: string;
  kind: "node" | "operator";
  name: string;
  status: "pending" | "approved" | "denied" | "revoked";
  role: string;
  userCode: string | null;
  fingerprint: string;
  platform: string | null;
  address: string | null;
  online: boolean;
  lastSeen: string | null;
  certExpiresAt: string | null;
  certFingerprint: string | null;
  createdAt: string;
  approvedAt: string | null;
  revokedAt: string | null;
  statusReason: string | null;
  /** The last refused attempts with this device's certificate, newest first (gateway memory). */
  recentFailures: FailureView[];
}

export interface FailureView {
  at: string;
  code: string;
  address: string;
  route: string;
  credential: string;
}

export interface NodeView {
  deviceId: string;
  name: string;
  platform: string | null;
  version: string | null;
  hostname: string | null;
  address: string | null;
  sessionId: string;
  connectedAt: string;
  /** null for a session another instance holds (only the holder hears its heartbeats). */
  lastHeartbeat: string | null;
  uptimeSeconds: number | null;
  online: true;
  /** With several instances: the one holding the session. Absent on a gateway alone. */
  instanceId?: string;
}

/**
 * The answer of GET /api/v1/nodes: one entry per device (its newest session), oldest connection
 * first. `incomplete`, only with several instances: the other instances' sessions could not be
 * read (the shared database is out of reach), so `nodes` holds only the answering instance's; the
 * value is what the error would have been (`{error, error_description, hint}`, code `unavailable`).
 */
export interface NodeList {
  nodes: NodeView[];
  incomplete?: { error: string; error_description: string; hint: string };
}

/** A CA rotation, announced to nodes: the statement and the previous CA's signature over it. */
export const caRotationNoticeSchema = z.object({
  statement: z.object({
    version: z.literal(1),
    previousFingerprint: z.string(),
    nextFingerprint: z.string(),
    nextCaPem: z.string().max(8192),
    issuedAt: z.string(),
  }),
  signature: z.string().max(512),
  /** The new CA's succession signature: lets a node that pinned the new CA trust the previous one. */
  nextSignature: z.string().max(512).optional(),
});
export type CaRotationNotice = z.infer<typeof caRotationNoticeSchema>;

/**
 * GET /api/v1/ca (no credential): every CA the gateway's certificates may chain to now, and the
 * rotation that vouches for the CAs besides the pinned one. A client trusts it only after
 * checking it against its pin (pki checkCaBundle), so it may be read before TLS is verified.
 */
export interface CaBundleResponse {
  caBundle: string;
  caRotation?: CaRotationNotice;
}

// Messages on the node session (WebSocket, JSON text frames).
export const nodeHelloSchema = z.object({
  type: z.literal("hello"),
  version: printableSchema("version", 64),
  platform: printableSchema("platform", 64),
  hostname: printableSchema("hostname", 255).optional(),
  /** Seconds since the node's host started: at most about 300 years. */
  uptimeSeconds: z.number().finite().nonnegative().max(1e10).optional(),
});
export const heartbeatSchema = z.object({ type: z.literal("heartbeat"), ts: z.number() });
/**
 * A session opened with a bearer token ends when the token expires (4401 token_expired) unless
 * the client sends a fresh access token for the same subject on the session before then.
 */
export const tokenRefreshSchema = z.object({
  type: z.literal("token_refresh"),
  accessToken: z.string().max(8192),
});
/** The node's answer to an exec request. Output is base64: commands may print any bytes. */
export const execResultSchema = z.object({
  type: z.literal("exec_result"),
  id: z.string().max(64),
  outcome: z.enum(["completed", "refused", "timeout", "truncated", "failed"]),
  /** The process's exit code: any integer a platform reports (the CLI exits 1 for one outside 0–255). */
  exitCode: z
    .number()
    .int()
    .min(-(2 ** 31))
    .max(2 ** 32 - 1)
    .nullable(),
  signal: printableSchema("signal", 32).nullable(),
  stdout: z.string().max(48 * 1024),
  stderr: z.string().max(48 * 1024),
  /** Milliseconds the command ran: at most a day (the longest timeout is 5 min). */
  durationMs: z.number().finite().nonnegative().max(86_400_000),
  /** The node's own label for the outcome; informative only: the gateway picks every code itself. */
  code: z.string().max(64).optional(),
  /** The node's words: the gateway quotes them as data, never as an error code or raw terminal text. */
  message: z.string().max(1024).optional(),
});
export type ExecResult = z.infer<typeof execResultSchema>;

/** The answer of POST /api/v1/nodes/:id/exec: the command's output and exit code. */
export interface ExecResponse {
  execId: string;
  deviceId: string;
  command: string;
  args: string[];
  outcome: ExecResult["outcome"];
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  truncated: boolean;
  code?: string;
}

/** One command run on a node, as GET /api/v1/nodes/:id/history shows it. */
export interface ExecHistoryEntry {
  execId: string;
  deviceId: string;
  requestedBy: string;
  command: string;
  args: string[];
  requestedAt: string;
  finishedAt: string | null;
  outcome: string;
  exitCode: number | null;
  durationMs: number | null;
  stdoutBytes: number;
  stderrBytes: number;
  code: string | null;
}

/**
 * The largest session message either side accepts, in bytes. A larger one closes the session with
 * 1009 `payload_too_large`; exec output is capped well below it (16 KiB per stream, base64).
 */
export const MAX_SESSION_MESSAGE_BYTES = 64 * 1024;

export const nodeMessageSchema = z.discriminatedUnion("type", [
  execResultSchema,
  nodeHelloSchema,
  heartbeatSchema,
  tokenRefreshSchema,
]);
export type NodeMessage = z.infer<typeof nodeMessageSchema>;

export const welcomeSchema = z.object({
  type: z.literal("welcome"),
  sessionId: z.string(),
  deviceId: z.string(),
  heartbeatIntervalMs: z.number(),
  serverTime: z.string(),
  /** When the session's credential expires (a token, or the client certificate). */
  credentialExpiresAt: z.string().optional(),
  /** Present while a CA rotation is under way: the node checks it and follows. */
  caRotation: caRotationNoticeSchema.optional(),
});
export const heartbeatAckSchema = z.object({
  type: z.literal("heartbeat_ack"),
  ts: z.number(),
  serverTime: z.string(),
});
export const tokenRefreshedSchema = z.object({ type: z.literal("token_refreshed"), expiresAt: z.string() });
/** A command for the node to run without a shell, if its own exec.allow lists it. */
export const execRequestSchema = z.object({
  type: z.literal("exec"),
  id: z.string().max(64),
  command: z.string().min(1).max(256),
  args: z.array(z.string().max(4096)).max(64),
  timeoutMs: z.number().int().positive(),
  maxOutputBytes: z.number().int().positive(),
});
export type ExecRequest = z.infer<typeof execRequestSchema>;

export const caRotationMessageSchema = z.object({
  type: z.literal("ca_rotation"),
  caRotation: caRotationNoticeSchema,
});
export const gatewayMessageSchema = z.discriminatedUnion("type", [
  welcomeSchema,
  heartbeatAckSchema,
  tokenRefreshedSchema,
  caRotationMessageSchema,
  execRequestSchema,
]);
export type GatewayMessage = z.infer<typeof gatewayMessageSchema>;

/** The answer to a renewal or a re-issue. */
export interface CertificateResponse {
  certificate: string;
  caBundle: string;
  expiresAt: string;
  caRotation?: CaRotationNotice;
}

/** RFC 8628-style user code alphabet: no vowels, no look-alikes. */
export const USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";

export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/** "bcdf-ghjk", "BCDFGHJK" and "BCDF GHJK" all name the same code; returns undefined if not a code. */
export function parseUserCode(input: string): string | undefined {
  const compact = input.toUpperCase().replace(/[\s-]/g, "");
  return compact.length === 8 && [...compact].every((c) => USER_CODE_ALPHABET.includes(c))
    ? compact
    : undefined;
}
