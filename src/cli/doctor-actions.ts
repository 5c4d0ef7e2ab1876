/**
 * What the `doctor` command does, loaded only when it runs (its definition is in
 * doctor-commands.ts).
 */
import os from "node:os";
import { existsSync } from "node:fs";
import path from "node:path";
import { NODE_FILES, homeParties } from "../config/index.js";
import { checkGatewayHome, checkNodeHome } from "../doctor/home-checks.js";
import { checkAdminCopy, isAdminCopy } from "../doctor/admin-copy-checks.js";
import { doctorExitCode, worstSeverity, type Finding, type Severity } from "../doctor/findings.js";
import { scanLegacyTokens, type LegacyReport } from "../doctor/legacy-scan.js";
import type { CommandContext } from "./run.js";
import { printJson, printText } from "./output.js";

const MARK: Record<Severity, string> = { ok: "✓", info: "·", warning: "!", error: "✗" };

function printFindings(title: string, findings: Finding[]): void {
  printText(`${title}\n`);
  for (const f of findings) {
    printText(`  ${MARK[f.severity]} ${f.check.padEnd(18)} ${f.message}\n`);
    if (f.fix && f.severity !== "ok") printText(`      fix: ${f.fix}\n`);
  }
}

function printLegacy(report: LegacyReport): void {
  if (report.tokens.length === 0) {
    printText("✓ no legacy gateway token found in the old locations\n");
    return;
  }
  printText(
    `! ${report.tokens.length} cop${report.tokens.length > 1 ? "ies" : "y"} of a legacy gateway token, ${report.groups.length} distinct value${report.groups.length > 1 ? "s" : ""}` +
      `${report.disagree ? " — THEY DISAGREE: the copies have drifted" : ""}\n\n`,
  );
  report.groups.forEach((group, i) => {
    const label = group.placeholder ? `placeholder (${group.placeholder})` : "token";
    printText(
      `  ${String.fromCharCode(65 + (i % 26))}  ${group.fingerprint}  ${label}, in ${group.locations.length} place(s)\n`,
    );
    for (const l of group.locations) printText(`       ${l.kind.padEnd(12)} ${l.file}  (${l.where})\n`);
  });
  printText("\nMigration:\n");
  report.migration.forEach((step, i) => printText(`  ${i + 1}. ${step}\n`));
}

/** `doctor [--legacy]`: checks this home, or (--legacy) scans the old token locations. */
export async function doctor(ctx: CommandContext, options: { legacy?: boolean }): Promise<void> {
  if (options.legacy) {
    const report = scanLegacyTokens({ userHome: os.homedir(), cwd: process.cwd(), env: process.env });
    if (ctx.json) printJson(report);
    else printLegacy(report);
    process.exitCode = report.tokens.length ? 1 : 0;
    return;
  }
  const now = new Date();
  // A copy of admin/ (an operator's machine) is a home of its own kind: its stored URL can go stale.
  const adminCopy = isAdminCopy(ctx.home);
  const parties = adminCopy
    ? { gateway: false, node: existsSync(path.join(ctx.home, NODE_FILES.config)) }
    : homeParties(ctx.home);
  const sections: { kind: "gateway" | "node" | "admin"; findings: Finding[] }[] = [];
  if (adminCopy) sections.push({ kind: "admin", findings: await checkAdminCopy(ctx.home, now, process.env) });
  if (parties.gateway)
    sections.push({ kind: "gateway", findings: await checkGatewayHome(ctx.home, now, process.env) });
  if (parties.node)
    sections.push({ kind: "node", findings: await checkNodeHome(ctx.home, now, process.env) });
  const all = sections.flatMap((s) => s.findings);
  if (ctx.json) printJson({ home: ctx.home, worst: worstSeverity(all), sections });
  else {
    for (const s of sections) printFindings(`${s.kind} home ${ctx.home}`, s.findings);
    const problems = all.filter((f) => f.severity === "warning" || f.severity === "error").length;
    printText(
      problems ? `\n${problems} problem(s); worst: ${worstSeverity(all)}\n` : "\n✓ no problems found\n",
    );
  }
  process.exitCode = doctorExitCode(all);
}
