import type { AuditEvent } from "./audit-log.js";
import { setLongTimeout } from "../protocol/long-timer.js";

/**
 * Where refusal entries go. `background` starts a write and resolves once it settled (it never
 * rejects: failures are logged by the audit log); `durable` resolves once the entry is on disk.
 */
export interface RefusalSink {
  background(event: AuditEvent): Promise<void>;
  durable(event: AuditEvent): Promise<void>;
}

/** Runs `fire` after `delayMs` and returns a cancel function; injected so tests need no sleeping. */
export type Schedule = (fire: () => void, delayMs: number) => () => void;

export interface RefusalSummaryOptions {
  /** Length of a window in ms; windows are aligned to the epoch (00:00, 00:01, … for a minute). */
  windowMs: number;
  /** Refusals per (type, address, code) in a window written one by one before counting starts. */
  individualPerKey: number;
  /** Refusals written one by one per window across all keys (a spray from many addresses). */
  individualPerWindow: number;
  /** Distinct (type, address, code) keys per window; more fold into one bucket per (type, code). */
  maxKeys: number;
  /** Individual writes in flight at once; beyond it a refusal is counted instead (bounded queue). */
  maxPendingWrites: number;
  /** Distinct routes, credential kinds and fingerprint prefixes a summary lists (a sample). */
  maxSamples: number;
}

export const REFUSAL_SUMMARY_DEFAULTS: RefusalSummaryOptions = {
  windowMs: 60_000,
  individualPerKey: 5,
  individualPerWindow: 100,
  maxKeys: 1000,
  maxPendingWrites: 50,
  maxSamples: 8,
};

/** Folded keys are bounded too: types and codes come from the code, but a bound costs nothing. */
const MAX_OVERFLOW_KEYS = 64;

/** What a window knows about one (type, address, code): a few numbers and bounded samples. */
interface Tally {
  type: string;
  address: string | null;
  code: string | null;
  /** Written one by one. */
  individual: number;
  /** Counted, to be written as one summary. */
  count: number;
  firstAt: string;
  lastAt: string;
  routes: Set<string>;
  credentials: Set<string>;
  fingerprints: Set<string>;
  /** For the folded bucket: a sample of the addresses it holds. */
  addresses?: Set<string>;
}

const summaryType = (type: string) => `${type}.summary`;

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value.slice(0, 200) : undefined;
}

/**
 * Refusals (401/403/429 answers, refused enrolments, refused session refreshes) reach the audit
 * log through here, so a stranger's flood costs a bounded number of rows, not one per request.
 *
 * Per window and per (type, address, code): the first `individualPerKey` refusals are written as
 * they are (e.g. `auth.refused`), the rest are counted and written as one entry of type
 * `<type>.summary` (e.g. `auth.refused.summary`) with `details.count` (refusals it stands for),
 * `firstAt`/`lastAt`, the window, and bounded samples of routes, credential kinds and fingerprint
 * prefixes (never a secret: callers pass prefixes only). The table holds at most `maxKeys` keys;
 * refusals from further addresses fold into one summary per (type, code) whose address is null
 * and whose `details.otherAddresses` is true. Summaries are written when their window ends (a
 * timer, or the next refusal after it) and by `stop()`, which writes them durably: a clean stop
 * loses no count. Every refusal is accounted for: individual entries plus summary counts equal
 * the refusals seen.
 */
export class RefusalSummary {
  private readonly options: RefusalSummaryOptions;
  private windowStart = Number.NaN;
  private readonly tallies = new Map<string, Tally>();
  private readonly folded = new Map<string, Tally>();
  private individualInWindow = 0;
  private pendingWrites = 0;
  private cancelTimer: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly sink: RefusalSink,
    private readonly now: () => Date,
    options: Partial<RefusalSummaryOptions> = {},
    private readonly schedule: Schedule = realSchedule,
  ) {
    this.options = { ...REFUSAL_SUMMARY_DEFAULTS, ...options };
  }

  /** Distinct keys held now (for tests and metrics): never more than maxKeys plus the folded ones. */
  get keys(): number {
    return this.tallies.size + this.folded.size;
  }

  /**
   * Accounts for one refusal. `event.details` may carry `route`, `credential` and `fingerprint`
   * (a prefix), which summaries sample. Returns at once; writes happen in the background.
   */
  refuse(event: AuditEvent): void {
    const at = this.now();
    if (this.stopped) {
      void this.sink.background(event);
      return;
    }
    this.roll(at.getTime());
    const tally = this.tallyFor(event, at.toISOString());
    const o = this.options;
    if (
      !tally.addresses &&
      tally.individual < o.individualPerKey &&
      this.individualInWindow < o.individualPerWindow &&
      this.pendingWrites < o.maxPendingWrites
    ) {
      tally.individual += 1;
      this.individualInWindow += 1;
      this.pendingWrites += 1;
      void this.sink.background(event).finally(() => (this.pendingWrites -= 1));
      return;
    }
    this.count(tally, event, at.toISOString());
  }

  /** Writes the pending summaries durably and stops the timer; later refusals are written one by one. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    await Promise.all(this.takeSummaries().map((summary) => this.sink.durable(summary)));
  }

  /** Ends the window if `nowMs` is past it: its summaries are written and its table emptied. */
  private roll(nowMs: number): void {
    const start = nowMs - (nowMs % this.options.windowMs);
    if (start === this.windowStart) return;
    for (const summary of this.takeSummaries()) void this.sink.background(summary);
    this.windowStart = start;
    this.arm(start + this.options.windowMs - nowMs);
  }

  private arm(delayMs: number): void {
    this.cancelTimer?.();
    this.cancelTimer = this.schedule(() => {
      this.cancelTimer = undefined;
      if (this.stopped || this.keys === 0) return;
      const nowMs = this.now().getTime();
      const start = nowMs - (nowMs % this.options.windowMs);
      if (start === this.windowStart) this.arm(this.windowStart + this.options.windowMs - nowMs);
      else for (const summary of this.takeSummaries()) void this.sink.background(summary);
    }, delayMs);
  }

  private tallyFor(event: AuditEvent, at: string): Tally {
    const address = event.address ?? null;
    const code = event.code ?? null;
    const key = JSON.stringify([event.type, address, code]);
    const known = this.tallies.get(key);
    if (known) return known;
    const fresh = (addr: string | null): Tally => ({
      type: event.type,
      address: addr,
      code,
      individual: 0,
      count: 0,
      firstAt: at,
      lastAt: at,
      routes: new Set(),
      credentials: new Set(),
      fingerprints: new Set(),
    });
    if (this.tallies.size < this.options.maxKeys) {
      const tally = fresh(address);
      this.tallies.set(key, tally);
      return tally;
    }
    // The table is full: one bucket per (type, code) for every further address.
    const foldKey = this.folded.size < MAX_OVERFLOW_KEYS ? JSON.stringify([event.type, code]) : "*";
    let bucket = this.folded.get(foldKey);
    if (!bucket) {
      bucket = { ...fresh(null), addresses: new Set() };
      if (foldKey === "*") bucket.code = null;
      this.folded.set(foldKey, bucket);
    }
    if (address && bucket.addresses!.size < this.options.maxSamples) bucket.addresses!.add(address);
    return bucket;
  }

  private count(tally: Tally, event: AuditEvent, at: string): void {
    if (tally.count === 0) tally.firstAt = at;
    tally.count += 1;
    tally.lastAt = at;
    const details = event.details ?? {};
    const sample = (set: Set<string>, value: unknown) => {
      const v = text(value);
      if (v && set.size < this.options.maxSamples) set.add(v);
    };
    sample(tally.routes, details.route);
    sample(tally.credentials, details.credential);
    sample(tally.fingerprints, details.fingerprint);
  }

  /** The window's summaries (only keys with counted refusals), emptying the table. */
  private takeSummaries(): AuditEvent[] {
    const windowStart = this.windowStart;
    const summaries = [...this.tallies.values(), ...this.folded.values()]
      .filter((tally) => tally.count > 0)
      .map((tally): AuditEvent => ({
        type: summaryType(tally.type),
        outcome: "failure",
        address: tally.address,
        code: tally.code,
        details: {
          count: tally.count,
          individual: tally.individual,
          firstAt: tally.firstAt,
          lastAt: tally.lastAt,
          window: {
            start: new Date(windowStart).toISOString(),
            end: new Date(windowStart + this.options.windowMs).toISOString(),
          },
          routes: [...tally.routes],
          credentials: [...tally.credentials],
          fingerprints: [...tally.fingerprints],
          ...(tally.addresses ? { otherAddresses: true, addressSample: [...tally.addresses] } : {}),
        },
      }));
    this.tallies.clear();
    this.folded.clear();
    this.individualInWindow = 0;
    return summaries;
  }
}

/** A long timer, unref'd so a pending summary never keeps a process alive (stop() writes it). */
function realSchedule(fire: () => void, delayMs: number): () => void {
  const timer = setLongTimeout(fire, delayMs, { unref: true });
  return () => timer.cancel();
}
