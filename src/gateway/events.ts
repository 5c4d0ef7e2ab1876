/** What changed: the dashboard refetches the list of that name. */
export type EventTopic = "devices" | "nodes" | "refusals" | "audit";

export type EventListener = (topic: EventTopic) => void;

/**
 * Change notices inside one gateway process: the registration service (enrol, approve, deny,
 * revoke, expire), the node session registry (open, close), the refusal path and the audit log
 * emit; the `/api/v1/events` stream listens. A notice names only a topic, never the data: a
 * listener refetches through the API, whose scopes decide what it may see.
 */
export class EventHub {
  private readonly listeners = new Set<EventListener>();

  /** Tells every listener that `topic` changed. A failing listener never hurts the emitter. */
  emit(topic: EventTopic): void {
    for (const listener of this.listeners) {
      try {
        listener(topic);
      } catch {
        // A stream that failed to write is cleaned up by its own close handler.
      }
    }
  }

  /** Listens until the returned function is called. */
  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listeners right now (open event streams). */
  get size(): number {
    return this.listeners.size;
  }
}
