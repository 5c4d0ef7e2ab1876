import pg from "pg";
import type { Logger } from "pino";
import { z } from "zod";
import { driverConnectionString } from "../../store/postgres-url.js";
import { KEEPALIVE_DELAY_MS } from "../../store/postgres-store.js";

/** The PostgreSQL channel every instance of one deployment LISTENs on and NOTIFYs. */
export const CHANGE_CHANNEL = "gatehouse_changes";

/** First wait before dialling the database again after the listening connection dropped (ms). */
const RETRY_INITIAL_MS = 100;
/** The longest wait between two dials (ms): a database back from a restart is heard within it. */
const RETRY_MAX_MS = 2000;
/** A dial or a ping that takes longer than this (ms) counts as a lost connection. */
const CONNECTION_TIMEOUT_MS = 5000;
/**
 * How often an instance re-reads everything it caches even though it heard of no change (ms): a
 * notice lost after its sender's commit (a NOTIFY that failed) or a re-read that failed is made
 * good within this period, whatever the LISTEN connection did.
 */
export const RECONCILE_EVERY_MS = 15_000;
/** First wait before re-reading after a failed catch-up or change handler (ms); doubles up to RECONCILE_EVERY_MS. */
const REREAD_RETRY_INITIAL_MS = 500;

/**
 * Runs `run` once after `ms` milliseconds; returns what cancels it. The feed's reconciliation and
 * retries use it, so tests fire them without waiting.
 */
export type FeedTimer = (run: () => void, ms: number) => () => void;

/** The default FeedTimer: an unref'd setTimeout (it never keeps the process up). */
const realTimer: FeedTimer = (run, ms) => {
  // eslint-disable-next-line no-restricted-syntax -- at most RECONCILE_EVERY_MS (15 s)
  const timer = setTimeout(run, ms);
  timer.unref();
  return () => clearTimeout(timer);
};

/**
 * Something another instance made durable and this one may hold in a cache. Only ids travel: the
 * receiver re-reads the record, so a notification can neither carry stale state nor be forged
 * into a cache (anyone who can NOTIFY can write the tables anyway).
 */
export type ClusterChange =
  | { kind: "device"; deviceId: string }
  | { kind: "api_key"; keyId: string }
  | { kind: "token_family"; familyId: string }
  | { kind: "signing_keys" }
  | { kind: "enroll_token"; tokenId: string }
  /** Node sessions opened or closed on the sender (coalesced, see nodes-notice.ts): lists refetch. */
  | { kind: "nodes" };

const idSchema = z.string().min(1).max(200);
const changeSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("device"), deviceId: idSchema }),
  z.object({ kind: z.literal("api_key"), keyId: idSchema }),
  z.object({ kind: z.literal("token_family"), familyId: idSchema }),
  z.object({ kind: z.literal("signing_keys") }),
  z.object({ kind: z.literal("enroll_token"), tokenId: idSchema }),
  z.object({ kind: z.literal("nodes") }),
]);
const noticeSchema = z.object({ v: z.literal(1), from: z.string(), change: changeSchema });

/** A change as it travels: `{"v":1,"from":<instanceId>,"change":{…}}` (far below NOTIFY's 8,000 bytes). */
export function encodeChange(from: string, change: ClusterChange): string {
  return JSON.stringify({ v: 1, from, change });
}

/** The sender and the change, or undefined for a payload this version does not understand. */
export function decodeChange(
  payload: string | undefined,
): { from: string; change: ClusterChange } | undefined {
  try {
    const parsed = noticeSchema.safeParse(JSON.parse(payload ?? ""));
    return parsed.success ? { from: parsed.data.from, change: parsed.data.change } : undefined;
  } catch {
    return undefined;
  }
}

/** What the feed tells its owner. Each call is awaited before the next one starts. */
export interface ChangeFeedHandlers {
  /** A change another instance published (`from` is its instance id). */
  change(change: ClusterChange, from: string): Promise<void>;
  /**
   * The connection is (again) listening: whatever was published while it was not is lost, so the
   * owner re-reads everything it caches. Called after the first connect too (a change made between
   * the start's first reads and the LISTEN would be lost otherwise).
   */
  listening(): Promise<void>;
}

export interface ChangeFeedOptions {
  /** postgres:// URL of the shared database (its password is never logged). */
  url: string;
  /** Shown in pg_stat_activity as application_name, so an operator can tell the connection apart. */
  applicationName: string;
  handlers: ChangeFeedHandlers;
  logger: Logger;
  /** Waits before a new dial (ms); tests pass one they release themselves. */
  sleep?: (ms: number) => Promise<void>;
  /** Schedules the periodic re-read and its retries (default: a timer); tests fire it themselves. */
  timer?: FeedTimer;
}

/**
 * PostgreSQL LISTEN on one dedicated connection (a pooled one cannot hold a LISTEN), kept alive:
 * a connection that errors, ends or does not answer a ping is dropped and dialled again with a
 * capped exponential backoff, and every (re)connect is followed by the owner's catch-up read.
 * The catch-up also runs every RECONCILE_EVERY_MS, and soon again (backoff) after a catch-up or a
 * change handler failed: a notice lost for good (its NOTIFY failed) or a re-read that hit a dead
 * pooled connection is made good within the period, not at the next reconnect.
 * Notifications and catch-ups are handled one at a time, in the order they came.
 */
export class ChangeFeed {
  private client: pg.Client | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  /** The handlers' queue: one change or catch-up at a time, in order. */
  private work: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly timer: FeedTimer;
  /** Cancels the scheduled re-read, and whether it is a retry after a failure (sooner) or the period. */
  private reread: { cancel: () => void; retry: boolean } | undefined;
  /** Failed handlers or catch-ups since the last catch-up that worked (the retry's backoff). */
  private failures = 0;

  constructor(private readonly options: ChangeFeedOptions) {
    this.sleep =
      options.sleep ??
      ((ms) =>
        new Promise<void>((resolve) => {
          // eslint-disable-next-line no-restricted-syntax -- at most RETRY_MAX_MS (2 s)
          const timer = setTimeout(resolve, Math.min(ms, RETRY_MAX_MS));
          timer.unref();
        }));
    this.timer = options.timer ?? realTimer;
  }

  /** True while the connection is up and listening. */
  get listening(): boolean {
    return this.client !== undefined;
  }

  /** Starts listening; resolves after the first attempt (connected or not: it keeps trying). */
  start(): Promise<void> {
    let first!: () => void;
    const attempted = new Promise<void>((resolve) => (first = resolve));
    this.running = this.run(first);
    this.scheduleReread(RECONCILE_EVERY_MS, false);
    return attempted;
  }

  /**
   * Checks the connection with a round trip (called by the instance's heartbeat): a connection cut
   * without a FIN (a database host gone) is noticed here, not after the kernel's TCP timeout.
   */
  async ping(): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      await client.query("SELECT 1");
    } catch (err) {
      this.drop(client, err);
    }
  }

  /** Stops listening and closes the connection; the handler queue finishes what it started. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.reread?.cancel();
    this.reread = undefined;
    this.wake?.();
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
    await this.running;
    await this.work;
  }

  private async run(firstAttempt: () => void): Promise<void> {
    for (let attempt = 0; !this.stopped;) {
      const connected = await this.connect();
      firstAttempt();
      if (connected) {
        attempt = 0;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          connected.once("end", resolve);
          // Lost already (between the LISTEN and here): no 'end' is coming any more.
          if (this.client !== connected) resolve();
        });
        this.wake = undefined;
        if (this.stopped) break;
        this.options.logger.warn({ channel: CHANGE_CHANNEL }, "change feed connection lost; reconnecting");
      }
      await this.sleep(Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** Math.min(attempt++, 10)));
    }
  }

  /** One dial: the LISTEN is in place and the catch-up queued when it returns a client. */
  private async connect(): Promise<pg.Client | undefined> {
    const client = new pg.Client({
      connectionString: driverConnectionString(this.options.url),
      application_name: this.options.applicationName,
      connectionTimeoutMillis: CONNECTION_TIMEOUT_MS,
      query_timeout: CONNECTION_TIMEOUT_MS,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    });
    // Without a listener an 'error' event would throw out of the process.
    client.on("error", (err) => this.drop(client, err));
    client.on("end", () => {
      if (this.client === client) this.client = undefined;
    });
    client.on("notification", (message) => {
      if (message.channel !== CHANGE_CHANNEL) return;
      const notice = decodeChange(message.payload);
      if (!notice) {
        this.options.logger.warn({ channel: CHANGE_CHANNEL }, "change notice not understood; ignored");
        return;
      }
      this.enqueue(() => this.options.handlers.change(notice.change, notice.from), false);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (err) {
      this.options.logger.warn({ err: reasonOf(err), channel: CHANGE_CHANNEL }, "change feed cannot listen");
      await client.end().catch(() => undefined);
      return undefined;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return undefined;
    }
    this.client = client;
    this.enqueue(() => this.options.handlers.listening(), true);
    return client;
  }

  private drop(client: pg.Client, err: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.options.logger.warn(
      { err: reasonOf(err), channel: CHANGE_CHANNEL },
      "change feed connection failed",
    );
    // 'end' follows (pg destroys the socket of a client whose query is unanswered), and the loop
    // dials again.
    client.end().catch(() => undefined);
  }

  /** Queues a handler; `catchUp` when it is the whole re-read (which restarts the period). */
  private enqueue(step: () => Promise<void>, catchUp: boolean): void {
    this.work = this.work.then(step).then(
      () => {
        if (!catchUp) return;
        if (this.failures > 0) this.options.logger.info("caches re-read again after a failure");
        this.failures = 0;
        this.scheduleReread(RECONCILE_EVERY_MS, false);
      },
      (err: unknown) => {
        // Once per streak, not every retry: a database away for a minute is one line.
        if (this.failures === 0)
          this.options.logger.error(
            { err: reasonOf(err) },
            catchUp
              ? "could not re-read the shared database; trying again soon"
              : "could not apply a change from another instance; re-reading everything soon",
          );
        this.failures++;
        // A retry already due stays (a stream of failing notices must not keep pushing it back).
        if (this.reread?.retry) return;
        const backoff = REREAD_RETRY_INITIAL_MS * 2 ** Math.min(this.failures - 1, 10);
        this.scheduleReread(Math.min(RECONCILE_EVERY_MS, backoff), true);
      },
    );
  }

  /** Replaces the scheduled re-read with one in `ms`; nothing once stopped. */
  private scheduleReread(ms: number, retry: boolean): void {
    this.reread?.cancel();
    this.reread = undefined;
    if (this.stopped) return;
    const reread = {
      retry,
      cancel: this.timer(() => {
        if (this.reread === reread) this.reread = undefined;
        if (!this.stopped) this.enqueue(() => this.options.handlers.listening(), true);
      }, ms),
    };
    this.reread = reread;
  }
}

/** The driver's reason, without the stack (and never the URL, which pg does not put there). */
function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
