// Plain text for times and fingerprints. Everything here returns strings; the pages render them
// as text nodes.

const UNITS: [limitSeconds: number, seconds: number, unit: string][] = [
  [90, 1, "s"],
  [90 * 60, 60, "min"],
  [36 * 3600, 3600, "h"],
  [Infinity, 86400, "d"],
];

/**
 * "3 min ago", "in 23 h", "just now": the distance from `now` to an ISO 8601 instant, in the
 * largest unit that still reads well. An unparseable input comes back as given.
 */
export function relativeTime(iso: string, now: number): string {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return iso;
  const delta = Math.round((at - now) / 1000);
  const distance = Math.abs(delta);
  if (distance < 10) return "just now";
  const [, seconds, unit] = UNITS.find(([limit]) => distance < limit) ?? UNITS[UNITS.length - 1]!;
  const amount = Math.round(distance / seconds);
  return delta < 0 ? `${amount} ${unit} ago` : `in ${amount} ${unit}`;
}

/** The instant in the reader's locale and time zone, for a title attribute. */
export function absoluteTime(iso: string): string {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? iso : at.toLocaleString();
}

/**
 * `sha256:` and the first 12 hex digits, as the gateway's logs print a fingerprint (the browser
 * twin of fingerprintPrefix in src/pki/fingerprint.ts, which needs node:crypto).
 */
export function fingerprintPrefix(fingerprint: string, length = 12): string {
  const hex = fingerprint.startsWith("sha256:") ? fingerprint.slice(7) : fingerprint;
  return "sha256:" + hex.slice(0, length);
}

/** `text` ending with a full stop (or the `.`, `!`, `?` it already ends with). */
export function asSentence(text: string): string {
  const trimmed = text.trim();
  return trimmed === "" || /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}
