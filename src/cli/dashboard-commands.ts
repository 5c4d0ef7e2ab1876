import { Command } from "commander";
import { withTarget } from "./target-options.js";
import { lazyAction } from "./run.js";

/** The `dashboard` command; what it does is in dashboard-actions.ts, loaded when it runs. */
export function dashboardCommand(): Command {
  return withTarget(
    new Command("dashboard")
      .description("print (and on a desktop open) a single-use login link to the web dashboard")
      .option(
        "--role <role>",
        "the session's role: admin (default), viewer, or a role from gateway.json; the session must be able to read devices",
      )
      .option("--no-open", "print the link only, do not open a browser"),
  ).action(lazyAction(async () => (await import("./dashboard-actions.js")).dashboard));
}
