/** Values that were never secrets: defaults from templates and docs, found in real setups. */
const PLACEHOLDERS = new Set([
  "clawdbot-local-dev",
  "openclaw-local-dev",
  "moltbot-local-dev",
  "changeme",
  "change-me",
  "changethis",
  "secret",
  "password",
  "token",
  "test",
  "dev",
  "example",
  "your-token-here",
  "replace-me",
]);

/** Why a credential is a placeholder or too weak to be one, or undefined when it looks random. */
export function weakCredentialReason(value: string): string | undefined {
  const lower = value.toLowerCase();
  if (PLACEHOLDERS.has(lower) || /^(x+|0+|1234.*|your[-_].*|<.*>)$/.test(lower)) return "a known placeholder";
  if (value.length < 16) return `only ${value.length} characters`;
  const counts = new Map<string, number>();
  for (const char of value) counts.set(char, (counts.get(char) ?? 0) + 1);
  let bitsPerChar = 0;
  for (const count of counts.values()) {
    const p = count / value.length;
    bitsPerChar -= p * Math.log2(p);
  }
  // A random 128-bit token carries well over 64 bits by this estimate; words and repeats do not.
  if (bitsPerChar * value.length < 64 || counts.size < 8) return "low entropy (not random)";
  return undefined;
}
