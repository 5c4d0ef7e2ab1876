import type { WebSocket } from "ws";
import type { NodeView } from "../protocol/messages.js";

export interface LiveSession {
  sessionId: string;
  deviceId: string;
  name: string;
  socket: WebSocket;
  address: string | null;
  connectedAt: Date;
  lastHeartbeat: Date;
  platform: string | null;
  version: string | null;
  hostname: string | null;
  uptimeSeconds: number | null;
  uptimeReportedAt: Date | null;
  /** Moves the moment the session ends with its credential (a renewal extends it). */
  setCredentialExpiry?: (expiresAt: Date) => void;
}

/** Time a peer gets to answer a close frame before its connection is cut. */
const CLOSE_GRACE_MS = 2000;

/**
 * Sends a close frame, and cuts the connection if the peer does not answer it in time: a
 * revoked node that ignores the close must not keep its session for ws's 30 s default.
 */
export function closeFirmly(socket: WebSocket, code: number, reason: string): void {
  socket.close(code, reason);
  setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref();
}

/** The node sessions that are open right now, by device. Revocation and `nodes list` read this. */
export class SessionRegistry {
  private readonly byDevice = new Map<string, Map<string, LiveSession>>();

  /** @param changed called after a session is added or removed (the dashboard's `nodes` notice). */
  constructor(private readonly changed: () => void = () => undefined) {}

  add(session: LiveSession): void {
    let sessions = this.byDevice.get(session.deviceId);
    if (!sessions) {
      sessions = new Map();
      this.byDevice.set(session.deviceId, sessions);
    }
    sessions.set(session.sessionId, session);
    this.changed();
  }

  remove(session: LiveSession): void {
    const sessions = this.byDevice.get(session.deviceId);
    if (!sessions) return;
    if (!sessions.delete(session.sessionId)) return;
    if (sessions.size === 0) this.byDevice.delete(session.deviceId);
    this.changed();
  }

  isOnline(deviceId: string): boolean {
    return this.byDevice.has(deviceId);
  }

  all(): LiveSession[] {
    return [...this.byDevice.values()].flatMap((sessions) => [...sessions.values()]);
  }

  /** Closes every session of a device at once, e.g. 4403 `device_revoked`. Returns how many. */
  closeDevice(deviceId: string, code: number, reason: string): number {
    const sessions = [...(this.byDevice.get(deviceId)?.values() ?? [])];
    for (const session of sessions) closeFirmly(session.socket, code, reason);
    return sessions.length;
  }

  /** A device renewed its certificate: its open sessions now end with the new one. */
  extendCredential(deviceId: string, expiresAt: Date): void {
    for (const session of this.byDevice.get(deviceId)?.values() ?? [])
      session.setCredentialExpiry?.(expiresAt);
  }

  /** Sends one message to every open session (a CA rotation notice, say). */
  broadcast(message: unknown): number {
    const text = JSON.stringify(message);
    const sessions = this.all();
    for (const session of sessions) session.socket.send(text);
    return sessions.length;
  }

  /** Closes every session; resolves once all are gone (or were cut after the grace period). */
  async closeAll(code: number, reason: string): Promise<void> {
    await Promise.all(
      this.all().map(
        (session) =>
          new Promise<void>((resolve) => {
            session.socket.once("close", () => resolve());
            closeFirmly(session.socket, code, reason);
          }),
      ),
    );
  }

  view(session: LiveSession, now: Date): NodeView {
    const uptimeSeconds =
      session.uptimeSeconds !== null && session.uptimeReportedAt
        ? Math.round(session.uptimeSeconds + (now.getTime() - session.uptimeReportedAt.getTime()) / 1000)
        : null;
    return {
      deviceId: session.deviceId,
      name: session.name,
      platform: session.platform,
      version: session.version,
      hostname: session.hostname,
      address: session.address,
      sessionId: session.sessionId,
      connectedAt: session.connectedAt.toISOString(),
      lastHeartbeat: session.lastHeartbeat.toISOString(),
      uptimeSeconds,
      online: true,
    };
  }
}
