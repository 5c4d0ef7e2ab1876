import type { Logger } from "pino";
import type { InstanceRecord, Store } from "../../store/types.js";
import { GatehouseError } from "../../protocol/errors.js";
import {
  CHANGE_CHANNEL,
  ChangeFeed,
  encodeChange,
  type ChangeFeedHandlers,
  type ClusterChange,
  type FeedTimer,
} from "./change-feed.js";
import { HEARTBEAT_EVERY_MS, InstanceRegistry, type InstanceIdentity } from "./instance-registry.js";

export type { ClusterChange } from "./change-feed.js";

/**
 * The gateway's instances as one: which are alive, and changes told to the others. Routes and
 * services use only this; with SQLite it is one instance alone (`soloCluster`), with PostgreSQL
 * the instances share the database (`FleetCluster`: LISTEN/NOTIFY and a heartbeat table).
 */
export interface Cluster {
  /** This instance's `cluster.instanceId`; null when solo. */
  readonly instanceId: string | null;
  /** True when several instances may share the store (store.dialect === "postgres"). */
  readonly enabled: boolean;
  /** Instances with a fresh heartbeat (this one included), oldest start first; [] when solo. */
  liveInstances(): InstanceRecord[];
  /**
   * Tells the other instances, once the change is durable, so that they re-read it (NOTIFY); a
   * no-op solo. Never throws: a lost notice is made good by the receivers' catch-up read, which
   * each runs every RECONCILE_EVERY_MS (change-feed.ts) whatever it heard.
   */
  publish(change: ClusterChange): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** One gateway alone on its SQLite file: nobody to tell, nobody else alive. */
export function soloCluster(): Cluster {
  return {
    instanceId: null,
    enabled: false,
    liveInstances: () => [],
    publish: () => undefined,
    start: async () => undefined,
    stop: async () => undefined,
  };
}

export interface FleetClusterOptions {
  store: Store;
  /** The database's postgres:// URL, for the dedicated LISTEN connection. */
  databaseUrl: string;
  instanceId: string;
  /**
   * Where this instance is reached, read at `start` (after the server listens: a port 0 in `listen`
   * is only known then).
   */
  address: () => Omit<InstanceIdentity, "instanceId">;
  logger: Logger;
  now: () => Date;
  /** Waits between the change feed's dials (ms); tests pass one they control. */
  sleep?: (ms: number) => Promise<void>;
  /** Schedules the change feed's periodic re-read and its retries; tests pass one they fire. */
  rereadTimer?: FeedTimer;
}

/**
 * Several instances on one PostgreSQL database. `receive` names what to do with the others'
 * changes (see cache-refresh.ts); `start` registers the instance, starts its heartbeat and
 * LISTENs; `stop` marks it stopped so the others drop it at once.
 */
export class FleetCluster implements Cluster {
  readonly enabled = true;
  readonly instanceId: string;
  private registry: InstanceRegistry | undefined;
  private handlers: ChangeFeedHandlers | undefined;
  private feed: ChangeFeed | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private pinging: Promise<void> | undefined;
  private heartbeatFailing = false;
  private staleSessionsClosed: () => void = () => undefined;

  constructor(private readonly options: FleetClusterOptions) {
    this.instanceId = options.instanceId;
  }

  /** What to do with the other instances' changes; set before `start`. */
  receive(handlers: ChangeFeedHandlers): void {
    this.handlers = handlers;
  }

  /**
   * What to do when this instance closed the open sessions of an instance gone stale (a killed
   * one cannot close its own): the node lists watching here and on the others must hear of it,
   * since the nodes it held are no longer online. Set before `start`.
   */
  onStaleSessionsClosed(listener: () => void): void {
    this.staleSessionsClosed = listener;
  }

  liveInstances(): InstanceRecord[] {
    return this.registry?.live() ?? [];
  }

  /** True while the change feed's connection is listening. */
  get listening(): boolean {
    return this.feed?.listening ?? false;
  }

  publish(change: ClusterChange): void {
    this.options.store
      .notify(CHANGE_CHANNEL, encodeChange(this.instanceId, change))
      .catch((err: unknown) =>
        this.options.logger.warn(
          { err: err instanceof Error ? err.message : String(err), change: change.kind },
          "could not tell the other instances of a change; they re-read it at their next periodic catch-up",
        ),
      );
  }

  async start(): Promise<void> {
    const handlers = this.handlers;
    if (!handlers) throw new Error("FleetCluster.receive must be called before start");
    const { store, logger, now } = this.options;
    this.registry = new InstanceRegistry(
      store,
      { instanceId: this.instanceId, ...this.options.address() },
      now,
      logger,
      () => this.staleSessionsClosed(),
    );
    await this.registry.register();
    this.feed = new ChangeFeed({
      url: this.options.databaseUrl,
      applicationName: `gatehouse-changes ${this.instanceId}`,
      logger: this.options.logger,
      ...(this.options.sleep ? { sleep: this.options.sleep } : {}),
      ...(this.options.rereadTimer ? { timer: this.options.rereadTimer } : {}),
      handlers: {
        // Its own notices come back too (NOTIFY reaches every listener): they change nothing here.
        change: (change, from) =>
          from === this.instanceId ? Promise.resolve() : handlers.change(change, from),
        listening: () => handlers.listening(),
      },
    });
    await this.feed.start();
    this.heartbeat = setInterval(() => void this.beat(), HEARTBEAT_EVERY_MS);
    this.heartbeat.unref();
  }

  /**
   * One heartbeat (also run by tests with their own clock): this instance's row, the list of
   * live instances, stale instances' sessions, and a ping of the feed's connection.
   */
  async beat(): Promise<void> {
    // The ping runs beside the heartbeat, not after it: a heartbeat held up by a database that
    // stopped answering must not delay noticing that the listening connection is gone too.
    this.pinging ??= (this.feed?.ping() ?? Promise.resolve()).finally(() => (this.pinging = undefined));
    this.beating ??= (async () => {
      try {
        await this.registry?.beat();
        if (this.heartbeatFailing) this.options.logger.info("gateway instance heartbeat written again");
        this.heartbeatFailing = false;
      } catch (err) {
        // Once per outage, not every beat: a database away for a minute is one line, not thirty.
        if (!this.heartbeatFailing)
          this.options.logger.warn(
            { err: err instanceof Error ? err.message : String(err) },
            "gateway instance heartbeat failed",
          );
        this.heartbeatFailing = true;
      }
    })().finally(() => (this.beating = undefined));
    await Promise.all([this.beating, this.pinging]);
  }

  /**
   * Stops the heartbeat and the feed and marks this instance stopped. Bounded: a beat or the feed's
   * close still in flight is waited for at most STOP_WAIT_MS each (a database that stopped
   * answering holds them until their query timeouts, a beat making several queries), and the
   * final mark is one query, bounded by the store's query timeout.
   */
  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    await settledWithin(Promise.all([this.beating, this.pinging]));
    await settledWithin(this.feed?.stop());
    await this.registry
      ?.stopped()
      .catch((err: unknown) =>
        this.options.logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "could not mark this gateway instance stopped; the others drop it when its heartbeat is stale",
        ),
      );
  }
}

/** How long (ms) a stop waits for a heartbeat or the feed's close in flight before going on. */
export const STOP_WAIT_MS = 3000;

/** Resolves when `work` settles (either way) or after STOP_WAIT_MS, whichever is first. */
async function settledWithin(work: Promise<unknown> | undefined): Promise<void> {
  if (!work) return;
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, STOP_WAIT_MS);
  });
  await Promise.race([work.then(noop, noop), elapsed]);
  clearTimeout(timer);
}

function noop(): void {}

/**
 * The cluster a gateway runs with: solo for SQLite; for PostgreSQL, a FleetCluster named by
 * `cluster.instanceId` (written by `gateway init --store` / `gateway join`).
 * @throws GatehouseError `config_invalid` when a PostgreSQL gateway has no `cluster.instanceId`.
 */
export function clusterFor(options: {
  store: Store;
  databaseUrl: string | undefined;
  instanceId: string | undefined;
  address: FleetClusterOptions["address"];
  logger: Logger;
  now: () => Date;
  /** How the change feed waits between dials (default: a timer); see FleetClusterOptions.sleep. */
  sleep?: (ms: number) => Promise<void>;
  /** Schedules the change feed's periodic re-read (default: a timer); see FleetClusterOptions. */
  rereadTimer?: FeedTimer;
}): Cluster | FleetCluster {
  if (options.store.dialect !== "postgres") return soloCluster();
  if (!options.databaseUrl) throw new Error("a PostgreSQL store was opened without its URL");
  if (!options.instanceId)
    throw new GatehouseError(
      "config_invalid",
      "cluster.instanceId is not set: every gateway instance on a shared database needs its own id",
      "Make the instance's home with `gatehouse gateway join --store REF --listen HOST:PORT` (or `gateway init --store` for the first), which writes it.",
    );
  return new FleetCluster({
    store: options.store,
    databaseUrl: options.databaseUrl,
    instanceId: options.instanceId,
    address: options.address,
    logger: options.logger,
    now: options.now,
    ...(options.sleep ? { sleep: options.sleep } : {}),
    ...(options.rereadTimer ? { rereadTimer: options.rereadTimer } : {}),
  });
}
