import { Command } from "commander";
import { lazyAction } from "./run.js";
import { withTarget } from "./target-options.js";

/** The `audit` commands; what each does is in audit-actions.ts, loaded when it runs. */
export function auditCommands(): Command {
  const audit = new Command("audit").description("the tamper-evident audit log");

  withTarget(
    audit
      .command("tail")
      .description("the latest entries")
      .option("-n, --lines <count>", "how many (read newest first, however long the log is)", "20")
      .option("-f, --follow", "keep printing new entries"),
  ).action(lazyAction(async () => (await import("./audit-actions.js")).auditTail));

  withTarget(
    audit
      .command("export")
      .description("every entry, oldest first, as JSON Lines (one entry per line, streamed)")
      .addHelpText(
        "after",
        "\nWithout --json: JSON Lines, one entry per line, written as it is read (for `jq -c`, log shippers).\n" +
          'With --json: one document, {"entries": [...]}, as `audit tail --json` prints.',
      ),
  ).action(lazyAction(async () => (await import("./audit-actions.js")).auditExport));

  withTarget(
    audit
      .command("verify")
      .description("check the hash chain; name the first altered, removed or reordered entry"),
  ).action(lazyAction(async () => (await import("./audit-actions.js")).auditVerify));

  return audit;
}
