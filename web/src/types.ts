// The JSON shapes the dashboard reads. Device and node views are the gateway's own wire types
// (src/protocol); the rest are small enough to state here, as the API documents them.
export type { DeviceView, NodeView } from "../../src/protocol/messages.js";

/** GET /api/v1/dashboard/session */
export interface DashboardSession {
  subject: string;
  role: string;
  scopes: string[];
  csrfToken: string;
  expiresAt: string;
  idleExpiresAt: string;
  createdBy: string;
}

/** One row of GET /api/v1/refusals, newest first. */
export interface Refusal {
  at: string;
  address: string;
  code: string;
  route: string;
  credential: string;
  /** The presented credential's fingerprint prefix (a client certificate's: not its key's). */
  fingerprint?: string;
  deviceId?: string;
  /** The name and KEY fingerprint prefix of the device `deviceId` names, when the gateway knows it. */
  deviceName?: string;
  deviceKeyFingerprint?: string;
  /** What the refused reply said. */
  description: string;
  hint: string;
}

/** GET /api/v1/refusals: the list, and when the gateway began keeping it (it is in memory). */
export interface RefusalList {
  since: string;
  refusals: Refusal[];
}

/** One entry of GET /api/v1/audit (ids ascend with time). */
export interface AuditEntry {
  id: number;
  seq: number;
  ts: string;
  type: string;
  outcome: "success" | "failure";
  actor: string | null;
  subject: string | null;
  address: string | null;
  code: string | null;
  details: Record<string, unknown>;
}

/** GET /api/v1/audit/verify */
export interface ChainVerdict {
  ok: boolean;
  checked: number;
  firstBroken?: { id: number; seq: number; reason: string };
}

/** The topics of the event stream's `change` events. */
export type Topic = "devices" | "nodes" | "refusals" | "audit";
