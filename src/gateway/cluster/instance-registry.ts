import type { Logger } from "pino";
import { GatehouseError } from "../../protocol/errors.js";
import type { InstanceRecord, Store } from "../../store/types.js";

/** How often a running instance writes its heartbeat (ms). */
export const HEARTBEAT_EVERY_MS = 2000;
/**
 * An instance whose last heartbeat is older than this (ms) is gone: five missed beats, so a busy
 * database or a long garbage collection does not make a live instance look dead.
 */
export const INSTANCE_STALE_AFTER_MS = 10_000;
/** What a session left open by an instance that went away is recorded as (sessions.close_reason). */
export const STALE_INSTANCE_CLOSE_REASON = "gateway instance gone";

/** Where this instance is reached, as `/health` and the exec relay show it. */
export interface InstanceIdentity {
  instanceId: string;
  /** https URL other instances dial (cluster.advertiseUrl, or the one made from `listen`). */
  url: string;
  /** HOST:PORT it listens on. */
  listen: string;
}

/**
 * The instances sharing the database and which of them are alive: this one's row is written at
 * start, its heartbeat every HEARTBEAT_EVERY_MS, its stop on a clean stop. Each beat also reads
 * every instance's row (the list `liveInstances` answers from, without a query) and closes the
 * open session rows of instances gone stale — a killed instance cannot close its own, and `nodes
 * list` must not show sessions no one holds. Times come from the injected clock.
 */
export class InstanceRegistry {
  private instances: InstanceRecord[] = [];
  /** Stale instances whose sessions were closed already (once per time they go stale). */
  private readonly swept = new Set<string>();
  private startedAt = "";
  /**
   * Since when (ms) this instance's beats have reached the database without a failure. Nobody's
   * heartbeat is written while the database is away: right after it is back every other instance
   * looks stale, and their sessions are swept only once they have had the stale delay to beat again.
   */
  private reachableSince = 0;

  /**
   * @param sessionsClosed called after a sweep closed another instance's open sessions (with its
   *   id and how many), so the node lists watching them are told: those nodes are no longer online.
   */
  constructor(
    private readonly store: Store,
    private readonly self: InstanceIdentity,
    private readonly now: () => Date,
    private readonly logger: Logger,
    private readonly sessionsClosed: (instanceId: string, closed: number) => void = () => undefined,
  ) {}

  /** Writes this instance's row (a restart under the same id replaces it) and reads the others. */
  async register(): Promise<void> {
    this.startedAt = this.now().toISOString();
    await this.store.upsertInstance({
      ...this.self,
      startedAt: this.startedAt,
      heartbeatAt: this.startedAt,
      stoppedAt: null,
    });
    this.reachableSince = this.now().getTime();
    await this.refresh();
  }

  /** One beat: the heartbeat, a fresh list of instances, and the sweep of stale instances' sessions. */
  async beat(): Promise<void> {
    try {
      await this.store.heartbeatInstance(this.self.instanceId, this.now().toISOString());
      await this.refresh();
    } catch (error) {
      this.reachableSince = Infinity;
      throw error;
    }
    const now = this.now().getTime();
    if (this.reachableSince === Infinity) this.reachableSince = now;
    if (now - this.reachableSince > INSTANCE_STALE_AFTER_MS) await this.sweepStale();
  }

  /**
   * Live instances (a heartbeat within INSTANCE_STALE_AFTER_MS, not stopped), oldest start first;
   * this one always (it runs), even while the database is away and its heartbeat cannot be written.
   */
  live(): InstanceRecord[] {
    const now = this.now().getTime();
    // Sorted once per heartbeat (refresh), not on every call: a relayed command asks too.
    return this.instances.filter(
      (instance) => instance.instanceId === this.self.instanceId || isLive(instance, now),
    );
  }

  /** A clean stop: the others see this instance gone at once instead of after the stale delay. */
  async stopped(): Promise<void> {
    await this.store.markInstanceStopped(this.self.instanceId, this.now().toISOString());
  }

  private async refresh(): Promise<void> {
    const rows = await this.store.listInstances();
    const at = this.now().toISOString();
    // This instance is alive while it runs, whatever its row said when it was read.
    this.instances = rows.map((row) =>
      row.instanceId === this.self.instanceId
        ? { ...row, ...this.self, heartbeatAt: at, stoppedAt: null }
        : row,
    );
    if (!rows.some((row) => row.instanceId === this.self.instanceId))
      this.instances.push({ ...this.self, startedAt: this.startedAt, heartbeatAt: at, stoppedAt: null });
    this.instances.sort(
      (a, b) => a.startedAt.localeCompare(b.startedAt) || a.instanceId.localeCompare(b.instanceId),
    );
  }

  private async sweepStale(): Promise<void> {
    const now = this.now();
    for (const instance of this.instances) {
      if (isLive(instance, now.getTime())) {
        this.swept.delete(instance.instanceId);
        continue;
      }
      if (this.swept.has(instance.instanceId)) continue;
      // Only what it opened up to its last heartbeat as read here: if it restarted under the same id
      // since that read, the sessions of its new run (connected later) are its own and stay open.
      const closed = await this.store.closeAllOpenSessions(
        now.toISOString(),
        STALE_INSTANCE_CLOSE_REASON,
        instance.instanceId,
        instance.heartbeatAt,
      );
      this.swept.add(instance.instanceId);
      if (closed > 0) {
        this.logger.info(
          { instanceId: instance.instanceId, sessions: closed, heartbeatAt: instance.heartbeatAt },
          "closed the sessions of a gateway instance that is gone",
        );
        this.sessionsClosed(instance.instanceId, closed);
      }
    }
  }
}

/**
 * Refuses a start under an instance id that another live process holds: a copy of a running
 * instance's home (a cloned machine, a home copied instead of made by `gateway join`). Two processes
 * under one id would overwrite each other's row (where relays go) and close each other's session
 * rows. A restart of the same home after a crash finds its own row still live but with the same
 * `listen`, and goes on; so does any start once the row is stale (INSTANCE_STALE_AFTER_MS) or
 * stopped. Called before the start writes anything.
 * @param self this start's instance id and `listen` setting (HOST:PORT as configured).
 * @throws GatehouseError `already_running` naming the instance, where it listens and its last heartbeat.
 */
export async function refuseLiveTwin(
  store: Pick<Store, "listInstances">,
  self: { instanceId: string; listen: string },
  now: Date,
): Promise<void> {
  const row = (await store.listInstances()).find((r) => r.instanceId === self.instanceId);
  if (!row || row.listen === self.listen || !isLive(row, now.getTime())) return;
  const seconds = Math.max(0, Math.round((now.getTime() - Date.parse(row.heartbeatAt)) / 1000));
  throw new GatehouseError(
    "already_running",
    `gateway instance ${self.instanceId} is running at ${row.url} (listen ${row.listen}, heartbeat ${seconds}s ago): this home is a copy of its home`,
    "Give each instance its own home with `gatehouse gateway join --store REF --listen HOST:PORT`; if that instance has just stopped, wait a few seconds until its heartbeat is stale.",
  );
}

function isLive(instance: InstanceRecord, nowMs: number): boolean {
  return instance.stoppedAt === null && nowMs - Date.parse(instance.heartbeatAt) <= INSTANCE_STALE_AFTER_MS;
}
