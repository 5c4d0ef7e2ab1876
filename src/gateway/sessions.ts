import type { WebSocket } from "ws";
import type { NodeView } from "../protocol/messages.js";
import { setLongTimeout, type LongTimer } from "../protocol/long-timer.js";

/**
 * What a live node session keeps, and nothing more: no upgrade request or response, no logger of
 * its own, no timer of its own (the registry's one sweep and one expiry timer serve them all), so
 * that an idle session costs little more than its TLS socket.
 */
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
  /**
   * Records the session's end (registry, pending commands, log, journal) as its socket's close
   * event does; runs once whichever comes first. A stopping gateway calls it itself, since the
   * process exits before the close event would come; `quiet`: without the session's own log line
   * (the stop logs one line for all).
   */
  end?: (code: number, reason: Buffer | string, quiet?: boolean) => void;
  /** When the session ends with its credential, in ms since the epoch (the gateway's clock); null: never. */
  expiresAt?: number | null;
  /** The close reason when it does: a certificate's session ends `cert_expired`, a token's `token_expired`. */
  expiryReason?: "cert_expired" | "token_expired";
}

/** How the registry keeps time for its sessions' heartbeats and credential expiry. */
export interface SessionClockOptions {
  now: () => Date;
  /** A session silent for longer than this (ms) is closed 4408 `heartbeat_timeout`. */
  heartbeatTimeoutMs: number;
  /** How often (ms) one sweep looks for silent sessions. */
  sweepEveryMs: number;
  /** Told of each session the registry ends for a catalogue reason (counted as a refusal). */
  refused?: (code: "heartbeat_timeout" | "cert_expired" | "token_expired") => void;
}

/** Time a peer gets to answer a close frame before its connection is cut. */
const CLOSE_GRACE_MS = 2000;

/**
 * Sends a close frame, and cuts the connection if the peer does not answer it in time: a
 * revoked node that ignores the close must not keep its session for ws's 30 s default.
 */
export function closeFirmly(socket: WebSocket, code: number, reason: string, graceMs = CLOSE_GRACE_MS): void {
  socket.close(code, reason);
  // eslint-disable-next-line no-restricted-syntax -- a grace of at most CLOSE_GRACE_MS (2 s)
  setTimeout(() => socket.terminate(), Math.min(graceMs, CLOSE_GRACE_MS)).unref();
}

/** Resolves once no session has bytes waiting to be handed to the kernel, or after `boundMs` (ms). */
async function framesFlushed(sessions: LiveSession[], boundMs: number): Promise<void> {
  let waited = false;
  // eslint-disable-next-line no-restricted-syntax -- a bound of boundMs (100 ms at a stop)
  const bound = setTimeout(() => (waited = true), boundMs);
  while (!waited && sessions.some((session) => session.socket.bufferedAmount > 0))
    await new Promise<void>((resolve) => setImmediate(resolve));
  clearTimeout(bound);
}

/** The node sessions that are open right now, by device. Revocation and `nodes list` read this. */
export class SessionRegistry {
  private readonly byDevice = new Map<string, Map<string, LiveSession>>();
  private count = 0;
  /** One interval for every session's heartbeat check; runs only while a session is open. */
  private sweep: NodeJS.Timeout | undefined;
  /** One timer for the soonest credential expiry among all sessions, and when that is (ms). */
  private expiryTimer: LongTimer | undefined;
  private expiryAt = Infinity;

  /**
   * @param changed called after a session is added or removed (the dashboard's `nodes` notice).
   * @param clock heartbeat and expiry keeping; without it (unit tests) sessions are only listed.
   */
  constructor(
    private readonly changed: () => void = () => undefined,
    private readonly clock?: SessionClockOptions,
  ) {}

  /** How many sessions are open. */
  get size(): number {
    return this.count;
  }

  add(session: LiveSession): void {
    let sessions = this.byDevice.get(session.deviceId);
    if (!sessions) {
      sessions = new Map();
      this.byDevice.set(session.deviceId, sessions);
    }
    sessions.set(session.sessionId, session);
    this.count++;
    if (this.clock && !this.sweep) {
      // eslint-disable-next-line no-restricted-syntax -- sweepEveryMs is at most 5 s (start.ts)
      this.sweep = setInterval(() => this.closeSilent(), this.clock.sweepEveryMs);
      this.sweep.unref();
    }
    if (session.expiresAt != null && session.expiresAt < this.expiryAt) this.armExpiry();
    this.changed();
  }

  remove(session: LiveSession): void {
    const sessions = this.byDevice.get(session.deviceId);
    if (!sessions) return;
    if (!sessions.delete(session.sessionId)) return;
    if (sessions.size === 0) this.byDevice.delete(session.deviceId);
    this.count--;
    if (this.count === 0) this.stopClock();
    this.changed();
  }

  /**
   * Moves the moment a session ends with its credential (a refreshed token, a renewed
   * certificate). `expiresAt` undefined: it no longer ends by itself.
   */
  setExpiry(session: LiveSession, expiresAt: Date | undefined): void {
    const previous = session.expiresAt ?? null;
    session.expiresAt = expiresAt ? expiresAt.getTime() : null;
    // The soonest expiry changes only if this one was it, or is now sooner than it.
    if (previous === this.expiryAt || (session.expiresAt !== null && session.expiresAt < this.expiryAt))
      this.armExpiry();
  }

  /** Stops the sweep and the expiry timer (the gateway stops; sessions are closed by closeAll). */
  stopClock(): void {
    clearInterval(this.sweep);
    this.sweep = undefined;
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    this.expiryAt = Infinity;
  }

  /** Closes 4408 `heartbeat_timeout` every session silent for longer than the heartbeat timeout. */
  private closeSilent(): void {
    if (!this.clock) return;
    const now = this.clock.now().getTime();
    for (const sessions of this.byDevice.values())
      for (const session of sessions.values())
        if (now - session.lastHeartbeat.getTime() > this.clock.heartbeatTimeoutMs) {
          this.clock.refused?.("heartbeat_timeout");
          closeFirmly(session.socket, 4408, "heartbeat_timeout");
        }
  }

  /**
   * Arms the one expiry timer for the soonest expiry; when it fires, every session whose
   * credential has run out is closed 4401 with its reason, and the timer re-arms for the next.
   * A scan of all sessions, only when the soonest expiry changes: rare next to heartbeats.
   */
  private armExpiry(): void {
    if (!this.clock) return;
    const clock = this.clock;
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    let soonest = Infinity;
    for (const sessions of this.byDevice.values())
      for (const session of sessions.values())
        if (session.expiresAt != null && session.expiresAt < soonest) soonest = session.expiresAt;
    this.expiryAt = soonest;
    if (soonest === Infinity) return;
    // A credential may live longer than one Node timer holds (30-day certificates): a long timer.
    this.expiryTimer = setLongTimeout(
      () => {
        const now = clock.now().getTime();
        for (const sessions of this.byDevice.values())
          for (const session of sessions.values())
            if (session.expiresAt != null && session.expiresAt <= now) {
              session.expiresAt = null; // closed once; the close removes it
              const reason = session.expiryReason ?? "token_expired";
              clock.refused?.(reason);
              closeFirmly(session.socket, 4401, reason);
            }
        this.armExpiry();
      },
      Math.max(0, soonest - clock.now().getTime()),
      { unref: true },
    );
  }

  isOnline(deviceId: string): boolean {
    return this.byDevice.has(deviceId);
  }

  /**
   * The newest open session of one device (latest `connectedAt`), or undefined when it has none.
   * Reads only that device's sessions: an exec costs the same with 10 or 10,000 nodes online.
   */
  newestOf(deviceId: string): LiveSession | undefined {
    let newest: LiveSession | undefined;
    for (const session of this.byDevice.get(deviceId)?.values() ?? [])
      if (!newest || session.connectedAt.getTime() > newest.connectedAt.getTime()) newest = session;
    return newest;
  }

  all(): LiveSession[] {
    return [...this.byDevice.values()].flatMap((sessions) => [...sessions.values()]);
  }

  /** Every open session, without copying them into an array. */
  *each(): IterableIterator<LiveSession> {
    for (const sessions of this.byDevice.values()) yield* sessions.values();
  }

  /** Closes every session of a device at once, e.g. 4403 `device_revoked`. Returns how many. */
  closeDevice(deviceId: string, code: number, reason: string): number {
    const sessions = [...(this.byDevice.get(deviceId)?.values() ?? [])];
    for (const session of sessions) closeFirmly(session.socket, code, reason);
    return sessions.length;
  }

  /** A device renewed its certificate: its certificate sessions now end with the new one. */
  extendCredential(deviceId: string, expiresAt: Date): void {
    for (const session of this.byDevice.get(deviceId)?.values() ?? [])
      if (session.expiryReason === "cert_expired") this.setExpiry(session, expiresAt);
  }

  /** Sends one message to every open session (a CA rotation notice, say). */
  broadcast(message: unknown): number {
    const text = JSON.stringify(message);
    const sessions = this.all();
    for (const session of sessions) session.socket.send(text);
    return sessions.length;
  }

  /**
   * Closes every session with `code` and `reason` (a stopping gateway: 1012 `gateway restarting`,
   * RFC 6455 §7.4.1); resolves once all are gone. A peer that has not answered its close frame
   * within `graceMs` is cut (its close frame was already sent), so a stop never waits on the
   * slowest node.
   */
  async closeAll(code: number, reason: string, graceMs = CLOSE_GRACE_MS): Promise<void> {
    this.stopClock();
    const closing: Promise<void>[] = [];
    for (const session of this.each()) {
      const socket = session.socket;
      if (socket.readyState === socket.CLOSED) continue;
      closing.push(new Promise<void>((resolve) => socket.once("close", () => resolve())));
      closeFirmly(socket, code, reason, graceMs);
    }
    await Promise.all(closing);
  }

  /**
   * Tells every session `code` and `reason` in one pass (a stopping gateway: 1012 `gateway
   * restarting`, RFC 6455 §7.4.1) and records each session's end as that close (LiveSession.end)
   * before it returns, without a log line per session (the caller logs one for all: 2,000 lines
   * cost a fifth of the stop). The promise resolves once every close frame has been handed to the
   * kernel (ws `bufferedAmount` 0), or after `flushMs` (ms) at the most, so the caller can write
   * the ends meanwhile. The connections are left open, for the caller's process to exit at once:
   * the kernel closes them then. Waiting for 2,000 peers to answer, and tearing down 2,000 TLS
   * connections one by one, cost a stop over half a second of a 2-core machine; a peer has its
   * close frame in either case.
   */
  closeAllForExit(code: number, reason: string, flushMs: number): Promise<void> {
    this.stopClock();
    const sessions = this.all();
    for (const { socket } of sessions) {
      if (socket.readyState === socket.OPEN) socket.close(code, reason);
      // Their answers are not read: handling 2,000 close handshakes and TLS teardowns is what
      // held a stop up, and the process is about to exit anyway.
      socket.pause();
    }
    for (const session of sessions) session.end?.(code, reason, true);
    return framesFlushed(sessions, flushMs);
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
