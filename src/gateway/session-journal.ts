import type { Logger } from "pino";
import type { SessionChange, SessionRecord, Store } from "../store/types.js";

/** At most this many session changes go in one transaction, so one batch never holds the loop long. */
const MAX_BATCH = 500;
/**
 * Changes are gathered for this long (ms) before their batch is written: a commit on the event
 * loop costs far more than a row, so nodes arriving one by one must not each pay for one.
 */
const BATCH_WINDOW_MS = 100;

/**
 * The sessions table and the devices' last seen, written in batches off the session's hot path.
 *
 * A session's open and end used to be one commit each (an fsync with synchronous=FULL) on the
 * event loop: 2,000 nodes coming back after a restart meant 2,000 commits while `/health` waited,
 * and a stop meant 4,000 more. Here each change is queued, and everything queued within
 * BATCH_WINDOW_MS of the first is written in one transaction (at most MAX_BATCH changes, the next
 * batch on a later turn); `drain` writes at once. Order is kept, so a session's end never lands
 * before its open.
 *
 * What must survive a crash survives it: the audit log records every session's open durably by
 * itself, and a start closes the sessions a crash left open (`closeAllOpenSessions`).
 */
export class SessionJournal {
  private queue: SessionChange[] = [];
  private seen = new Map<string, { lastSeen: string; address: string | null }>();
  private writing: Promise<void> | undefined;
  private window: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  /** A stopping gateway writes all it has as one batch: nothing is served between batches any more. */
  private draining = false;

  /**
   * @param noteSeen told of each device's last seen once its batch is written (the cache follows)
   * @param instanceId this gateway instance's id, written on each session it opens (several
   *   instances on one database: a stale instance's sessions are closed by its id); null alone
   * @param written told after each batch is written (several instances: the others may re-read
   *   the sessions table now)
   */
  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly noteSeen: (deviceId: string, lastSeen: string, address: string | null) => void,
    private readonly instanceId: string | null = null,
    private readonly written: () => void = () => undefined,
  ) {}

  /** Changes waiting for their batch. */
  get pending(): number {
    return this.queue.length + this.seen.size;
  }

  opened(session: SessionRecord): void {
    this.queue.push({
      kind: "open",
      session: this.instanceId === null ? session : { ...session, instanceId: this.instanceId },
    });
    this.schedule();
  }

  /** A session ended (`at` ISO 8601); its device was last seen then, from `address`. */
  closed(
    end: {
      sessionId: string;
      deviceId: string;
      at: string;
      closeCode: number | null;
      closeReason: string | null;
    },
    address: string | null,
  ): void {
    const { deviceId, ...change } = end;
    this.queue.push({ kind: "close", ...change });
    this.seen.set(deviceId, { lastSeen: end.at, address });
    this.schedule();
  }

  /** Resolves once every change queued so far is written (or its failure logged). */
  async drain(): Promise<void> {
    // No waiting for the window: a stopping gateway writes what it has now.
    this.draining = true;
    this.endWindow();
    while (this.writing || this.pending > 0) {
      if (!this.writing) this.schedule();
      await this.writing;
    }
  }

  private schedule(): void {
    // The write starts after the window: every session opened or closed meanwhile joins it.
    this.writing ??= new Promise<void>((resolve) => {
      // A stopping gateway writes at once: no window to gather more in.
      if (this.draining) return resolve();
      const timer = setTimeout(() => this.endWindow(), BATCH_WINDOW_MS);
      timer.unref();
      this.window = { timer, resolve };
    }).then(() => this.write());
  }

  private endWindow(): void {
    if (!this.window) return;
    clearTimeout(this.window.timer);
    this.window.resolve();
    this.window = undefined;
  }

  private async write(): Promise<void> {
    try {
      while (this.pending > 0) {
        const changes = this.queue.splice(0, this.draining ? this.queue.length : MAX_BATCH);
        const seen =
          this.queue.length === 0 ? [...this.seen].map(([deviceId, last]) => ({ deviceId, ...last })) : [];
        if (seen.length) this.seen.clear();
        try {
          await this.store.recordSessionChanges(changes, seen);
          for (const device of seen) this.noteSeen(device.deviceId, device.lastSeen, device.address);
          if (changes.length > 0) this.written();
        } catch (err) {
          this.logger.error({ err, changes: changes.length }, "could not record node sessions");
        }
        // Let requests in between two batches.
        if (this.pending > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.writing = undefined;
    }
  }
}
