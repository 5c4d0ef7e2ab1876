import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { AuditEventInput, AuditWrite, ExecRecord, Store } from "../store/types.js";
import { RefusalSummary, type RefusalSummaryOptions } from "./refusal-summary.js";

export type AuditEvent = Omit<AuditEventInput, "ts" | "details" | "actor" | "subject" | "address" | "code"> &
  Partial<Pick<AuditEventInput, "actor" | "subject" | "address" | "code" | "details">>;

/** Entries in one commit at most; a flood is written in several commits, oldest first. */
const MAX_BATCH = 500;

interface Queued {
  write: AuditWrite;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The audit log: every registration, approval, denial, revocation, issue, exec and refusal, each
 * chained to the one before by the store (see chain.ts).
 *
 * Writes are group-committed: entries recorded while a commit is under way wait for it and then go
 * to disk together, in one transaction and one fsync (synchronous=FULL). `record` resolves only once
 * its entry is durable, so an action acknowledged to a user is audited and a crash loses nothing
 * acknowledged; under load, many requests share one fsync instead of each paying for its own.
 * `recordInBackground` is for writes a request does not wait on. Refusals go through
 * `recordRefusal`, which summarises a flood (see refusal-summary.ts): a stranger's thousand refused
 * requests cost a few rows, and the refusal writes in flight are bounded. A crash can lose only
 * refusals whose answer had already been sent; `close()` writes the pending summaries.
 */
export class AuditLog {
  private queue: Queued[] = [];
  private flushing = false;
  private readonly refusals: RefusalSummary;
  private readonly appendedListeners: (() => void)[] = [];
  private readonly committedListeners: ((entries: number, seconds: number) => void)[] = [];
  /** Entries in the commit under way. */
  private inFlight = 0;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly now: () => Date,
    /** Keeps background writes visible to shutdown, which waits for them. */
    private readonly track: (work: Promise<unknown>) => void = () => undefined,
    refusalOptions: Partial<RefusalSummaryOptions> = {},
  ) {
    this.refusals = new RefusalSummary(
      { background: (event) => this.recordInBackground(event), durable: (event) => this.record(event) },
      now,
      refusalOptions,
    );
  }

  /** Appends an entry (with the history row it describes, if any) and resolves once both are durable. */
  record(event: AuditEvent, exec?: ExecRecord): Promise<void> {
    const input: AuditEventInput = {
      ts: this.now().toISOString(),
      actor: event.actor ?? null,
      subject: event.subject ?? null,
      address: event.address ?? null,
      code: event.code ?? null,
      details: event.details ?? {},
      type: event.type,
      outcome: event.outcome,
    };
    return new Promise((resolve, reject) => {
      this.queue.push({ write: exec ? { event: input, exec } : { event: input }, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // Let the requests of this turn of the event loop join the first commit.
        setImmediate(() => void this.flush());
      }
    });
  }

  /** Starts a write nobody waits on; the promise settles (never rejects) once it is done. */
  recordInBackground(event: AuditEvent): Promise<void> {
    const work = this.record(event).catch((error: unknown) => {
      this.logger.error({ err: error, auditType: event.type }, "audit write failed");
    });
    this.track(work);
    return work;
  }

  /**
   * A refusal (a 401/403/429 answer, a refused enrolment or session refresh): the first few per
   * (type, address, code) and window are written as given, the rest counted into one
   * `<type>.summary` entry. Put the route, credential kind and fingerprint prefix in `details`.
   */
  recordRefusal(event: AuditEvent): void {
    this.refusals.refuse(event);
  }

  /** Calls `listener` after each commit that appended entries (the dashboard's `audit` notice). */
  onAppended(listener: () => void): void {
    this.appendedListeners.push(listener);
  }

  /**
   * Calls `listener` after each commit with the number of entries it made durable and how long the
   * commit took, in seconds (the audit commit metrics).
   */
  onCommitted(listener: (entries: number, seconds: number) => void): void {
    this.committedListeners.push(listener);
  }

  /** Entries recorded and not yet durable: waiting for a commit or in the one under way. */
  get queueDepth(): number {
    return this.queue.length + this.inFlight;
  }

  /** Writes the pending refusal summaries durably; call on a clean stop, before the store closes. */
  close(): Promise<void> {
    return this.refusals.stop();
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      this.inFlight = batch.length;
      const started = performance.now();
      try {
        await this.store.appendAudit(batch.map((q) => q.write));
        for (const q of batch) q.resolve();
        this.committed(batch.length, started);
      } catch {
        // One bad write must not fail the others that shared its commit: write them one by one.
        for (const q of batch) {
          const single = performance.now();
          await this.store.appendAudit([q.write]).then(() => {
            q.resolve();
            this.committed(1, single);
          }, q.reject);
          this.inFlight -= 1;
        }
      }
      this.inFlight = 0;
      for (const listener of this.appendedListeners) listener();
    }
    this.flushing = false;
  }

  private committed(entries: number, startedMs: number): void {
    const seconds = (performance.now() - startedMs) / 1000;
    // A listener's fault must not look like a failed commit (which would write the batch again).
    for (const listener of this.committedListeners) {
      try {
        listener(entries, seconds);
      } catch (error) {
        this.logger.error({ err: error }, "an audit commit listener failed");
      }
    }
  }
}
