/** What doctor found: one problem (or one thing checked and fine), its severity and its fix. */
export type Severity = "ok" | "info" | "warning" | "error";

export interface Finding {
  severity: Severity;
  /** A short stable name for the check, for scripts: `file-mode`, `plaintext-secret`, … */
  check: string;
  message: string;
  fix?: string;
  file?: string;
}

const RANK: Record<Severity, number> = { ok: 0, info: 1, warning: 2, error: 3 };

export function worstSeverity(findings: readonly Finding[]): Severity {
  return findings.reduce<Severity>((worst, f) => (RANK[f.severity] > RANK[worst] ? f.severity : worst), "ok");
}

/** Exit code: 0 when nothing is worse than info, 1 for a warning or an error. */
export function doctorExitCode(findings: readonly Finding[]): number {
  return RANK[worstSeverity(findings)] >= RANK.warning ? 1 : 0;
}

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
