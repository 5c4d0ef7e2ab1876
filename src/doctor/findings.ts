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
