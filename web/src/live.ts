import type { Topic } from "./types.js";

/** Changes that come close together (a registration writes devices and audit) cause one refetch. */
const DEBOUNCE_MS = 200;
/** After the stream closes for good (an error answer), how long before asking again. */
const RETRY_MS = 5000;

type Listener = () => void;

const listeners = new Map<Topic, Set<Listener>>();
const timers = new Map<Topic, ReturnType<typeof setTimeout>>();
const ALL_TOPICS: Topic[] = ["devices", "nodes", "refusals", "audit"];

/** Calls `listener` (debounced) whenever the gateway reports a change to `topic`; returns the unsubscribe. */
export function onTopic(topic: Topic, listener: Listener): () => void {
  let set = listeners.get(topic);
  if (!set) listeners.set(topic, (set = new Set()));
  set.add(listener);
  return () => set.delete(listener);
}

function changed(topic: Topic): void {
  clearTimeout(timers.get(topic));
  timers.set(
    topic,
    setTimeout(() => {
      timers.delete(topic);
      for (const listener of listeners.get(topic) ?? []) listener();
    }, DEBOUNCE_MS),
  );
}

function isTopic(value: unknown): value is Topic {
  return typeof value === "string" && (ALL_TOPICS as string[]).includes(value);
}

/**
 * Opens GET /api/v1/events (Server-Sent Events) and turns its `change` events into refetches of
 * the named topic. On every reconnect (a `ready` after the first) every topic is refetched: changes
 * made while the stream was down were not seen. When the stream is refused (the browser then gives
 * up), `onClosed` runs, so the page can learn whether the session ended, and it tries again later.
 * @returns a function that closes the stream
 */
export function startLive(onClosed: () => void, onConnected: (connected: boolean) => void): () => void {
  let source: EventSource | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let connectedOnce = false;
  let stopped = false;

  const open = () => {
    source = new EventSource("/api/v1/events");
    source.addEventListener("ready", () => {
      onConnected(true);
      if (connectedOnce) for (const topic of ALL_TOPICS) changed(topic);
      connectedOnce = true;
    });
    source.addEventListener("change", (event) => {
      try {
        const { topic } = JSON.parse((event as MessageEvent<string>).data) as { topic?: unknown };
        if (isTopic(topic)) changed(topic);
      } catch {
        // A malformed event names no topic: nothing to refetch.
      }
    });
    source.addEventListener("error", () => {
      onConnected(false);
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (an error status).
      if (source?.readyState !== EventSource.CLOSED || stopped) return;
      onClosed();
      retry = setTimeout(() => {
        if (!stopped) open();
      }, RETRY_MS);
    });
  };

  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    source?.close();
  };
}
