import type { Cluster } from "./cluster.js";

/** At most one "nodes" notice per instance this often, in milliseconds. */
export const NODES_NOTICE_EVERY_MS = 1000;

/** When to run a delayed step (tests pass one they drive); returns a function that cancels it. */
export type Schedule = (run: () => void, delayMs: number) => () => void;

const timerSchedule: Schedule = (run, delayMs) => {
  // eslint-disable-next-line no-restricted-syntax -- at most NODES_NOTICE_EVERY_MS (1 s)
  const timer = setTimeout(run, delayMs);
  timer.unref();
  return () => clearTimeout(timer);
};

/**
 * Tells the other instances that this one's node sessions changed, so that the dashboards watching
 * them refetch their node list (each instance's own sessions tell only its own event streams).
 * Coalesced: at most one notice per NODES_NOTICE_EVERY_MS, whatever the number of sessions opened
 * or closed meanwhile — 2,000 nodes coming back after a restart are a handful of notices, not
 * 2,000. The first change after a quiet second is told at once; later ones wait for the second's
 * end and go out as one. Call `changed` once the sessions are written to the shared table.
 */
export class NodesNotice {
  private sentAt = Number.NEGATIVE_INFINITY;
  private cancel: (() => void) | undefined;

  /**
   * @param now milliseconds since the epoch (an injected clock in tests)
   */
  constructor(
    private readonly cluster: Pick<Cluster, "publish">,
    private readonly now: () => number,
    private readonly schedule: Schedule = timerSchedule,
  ) {}

  /** This instance's sessions changed (and are written). */
  changed(): void {
    if (this.cancel) return;
    const wait = this.sentAt + NODES_NOTICE_EVERY_MS - this.now();
    if (wait <= 0) return this.send();
    this.cancel = this.schedule(() => {
      this.cancel = undefined;
      this.send();
    }, wait);
  }

  /** Sends a notice still waiting now (a stopping instance, its sessions' ends written). */
  flush(): void {
    if (!this.cancel) return;
    this.cancel();
    this.cancel = undefined;
    this.send();
  }

  private send(): void {
    this.sentAt = this.now();
    this.cluster.publish({ kind: "nodes" });
  }
}
