import type { Topic } from "./types.js";

/** Changes that come close together (a registration writes devices and audit) cause one refetch. */
const DEBOUNCE_MS = 200;
/** The first wait before opening a refused stream again; each further refusal doubles it. */
export const RETRY_FIRST_MS = 5_000;
/** The longest wait between two attempts. */
export const RETRY_MAX_MS = 60_000;

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
 * The wait before the next attempt after `previous` ms (undefined: the first refusal): 5 s, 10 s,
 * 20 s, 40 s, then 60 s each time.
 */
export function nextRetryDelay(previous: number | undefined): number {
  return previous === undefined ? RETRY_FIRST_MS : Math.min(previous * 2, RETRY_MAX_MS);
}

/**
 * What the page learned from GET /api/v1/dashboard/session after the stream closed: `ended` (the
 * session is gone: the page says so), `refused` (the session lives but its role cannot read the
 * stream: asking again would be refused the same way), `retry` (anything else: try again later).
 */
export type ClosedVerdict = "ended" | "refused" | "retry";

/** `connecting` until the first answer; `off` when the stream was refused for good. */
export type LiveState = "connecting" | "on" | "reconnecting" | "off";

/**
 * Opens GET /api/v1/events (Server-Sent Events) and turns its `change` events into refetches of
 * the named topic. On every reconnect (a `ready` after the first) every topic is refetched: changes
 * made while the stream was down were not seen. When the stream is closed by an error answer (the
 * browser then gives up), `onClosed` is asked once what it means (see ClosedVerdict): only `retry`
 * opens the stream again, after 5 s, doubling up to 60 s until a stream is ready again.
 * @returns a function that closes the stream
 */
export function startLive(
  onClosed: () => Promise<ClosedVerdict>,
  onState: (state: LiveState) => void,
): () => void {
  let source: EventSource | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let delay: number | undefined;
  let connectedOnce = false;
  let stopped = false;

  const open = () => {
    source = new EventSource("/api/v1/events");
    source.addEventListener("ready", () => {
      onState("on");
      delay = undefined;
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
      if (stopped) return;
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (an error status).
      if (source?.readyState !== EventSource.CLOSED) {
        onState(connectedOnce ? "reconnecting" : "connecting");
        return;
      }
      onState("reconnecting");
      source.close();
      void onClosed().then(
        (verdict) => schedule(verdict),
        () => schedule("retry"),
      );
    });
  };

  const schedule = (verdict: ClosedVerdict) => {
    if (stopped) return;
    if (verdict === "refused") onState("off");
    if (verdict !== "retry") return;
    delay = nextRetryDelay(delay);
    retry = setTimeout(() => {
      if (!stopped) open();
    }, delay);
  };

  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    source?.close();
  };
}
