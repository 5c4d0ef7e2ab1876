/**
 * Exponential backoff with full jitter (a random delay between 0 and the capped exponential), so
 * that many nodes cut off by one gateway restart do not all come back in the same instant.
 */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.max(initialMs / 2, Math.round(random() * ceiling));
}
