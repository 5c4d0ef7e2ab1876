import { useEffect, useState } from "preact/hooks";
import { absoluteTime, relativeTime } from "../format.js";

/** Relative times are redrawn on one shared tick, not one timer per cell. */
const TICK_MS = 30_000;
const subscribers = new Set<(now: number) => void>();
let tick: ReturnType<typeof setInterval> | undefined;

function useNow(): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    subscribers.add(setNow);
    tick ??= setInterval(() => {
      const at = Date.now();
      for (const subscriber of subscribers) subscriber(at);
    }, TICK_MS);
    return () => {
      subscribers.delete(setNow);
      if (subscribers.size === 0) {
        clearInterval(tick);
        tick = undefined;
      }
    };
  }, []);
  return now;
}

/** "3 min ago" with the absolute time in its title; a dash when there is no time. */
export function RelativeTime({ iso }: { iso: string | null | undefined }) {
  const now = useNow();
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={absoluteTime(iso)}>
      {relativeTime(iso, now)}
    </time>
  );
}
