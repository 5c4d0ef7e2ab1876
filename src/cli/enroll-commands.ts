import { Command } from "commander";
import { withTarget } from "./target-options.js";
import { lazyAction } from "./run.js";

/** The `enroll` commands; what each does is in enroll-actions.ts, loaded when it runs. */
export function enrollCommands(): Command {
  const enroll = new Command("enroll").description(
    "enroll tokens: nodes that register with one are approved at once",
  );

  withTarget(
    enroll
      .command("create")
      .description("a token that approves registrations at once (shown once)")
      .option("--uses <n>", "how many registrations it approves", "1")
      .option("--expires <duration>", "how long it is valid (from 1m to 30d)", "1h")
      .option("--role <role>", "the role of the devices it registers", "node")
      .option("--name-prefix <prefix>", "names of the devices it registers start with this")
      .option("--name <label>", "a label for the token", "enroll"),
  ).action(lazyAction(async () => (await import("./enroll-actions.js")).enrollCreate));

  withTarget(enroll.command("list").description("enroll tokens with their uses left")).action(
    lazyAction(async () => (await import("./enroll-actions.js")).enrollList),
  );

  withTarget(enroll.command("revoke").description("stop an enroll token").argument("<id>")).action(
    lazyAction(async () => (await import("./enroll-actions.js")).enrollRevoke),
  );
  return enroll;
}

/** The `migrate` command; what it does is in enroll-actions.ts, loaded when it runs. */
export function migrateCommand(): Command {
  return withTarget(
    new Command("migrate")
      .description("move from the old shared gateway token to Gatehouse")
      .requiredOption(
        "--from-legacy",
        "turn the old gateway token into an enroll token, then list what to delete",
      )
      .option("--uses <n>", "how many existing nodes may register with it", "25")
      .option("--expires <duration>", "how long the old token lets nodes in", "24h")
      .option(
        "--fingerprint <sha256:prefix>",
        "which old token, when the copies disagree (default: the most widespread)",
      ),
  ).action(lazyAction(async () => (await import("./enroll-actions.js")).migrate));
}
