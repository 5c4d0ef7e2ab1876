import { Command } from "commander";
import { lazyAction } from "./run.js";
import { withTarget } from "./target-options.js";

/** The `keys` commands; what each does is in keys-actions.ts, loaded when it runs. */
export function keysCommands(): Command {
  const keys = new Command("keys").description("admin: API keys for scripts and operators");

  withTarget(
    keys
      .command("create")
      .description("create an API key; the secret is printed once")
      .requiredOption("--name <name>", "what the key is for")
      .requiredOption("--role <role>", "node, viewer, operator or admin")
      .option("--expires <duration>", "e.g. 90d; default: no expiry"),
  ).action(lazyAction(async () => (await import("./keys-actions.js")).keysCreate));

  withTarget(keys.command("list").description("list API keys (never their secrets)")).action(
    lazyAction(async () => (await import("./keys-actions.js")).keysList),
  );

  withTarget(
    keys
      .command("revoke")
      .description("revoke an API key and every token minted with it")
      .argument("<key>")
      .option("--reason <text>", "why"),
  ).action(lazyAction(async () => (await import("./keys-actions.js")).keysRevoke));

  withTarget(
    keys
      .command("rotate")
      .description("replace an API key; the old one keeps working until the grace period ends")
      .argument("<key>")
      .option(
        "--grace <duration>",
        "how long the old key stays valid (at least 1m, or 0 to end it at once)",
        "24h",
      ),
  ).action(lazyAction(async () => (await import("./keys-actions.js")).keysRotate));

  return keys;
}

/** The `rotate` commands; what each does is in keys-actions.ts, loaded when it runs. */
export function rotateCommands(): Command {
  const rotate = new Command("rotate").description("admin: rotations without downtime");
  withTarget(
    rotate
      .command("signing-key")
      .description("sign new tokens with a new key; the old key verifies until its last token expires"),
  ).action(lazyAction(async () => (await import("./keys-actions.js")).rotateSigningKey));
  withTarget(
    rotate
      .command("ca")
      .description("replace the CA; nodes follow through a notice signed by the old CA, no re-registration")
      .option(
        "--overlap <duration>",
        "how long both CAs are trusted (at least the client certificate lifetime)",
        "7d",
      ),
  ).action(lazyAction(async () => (await import("./keys-actions.js")).rotateCa));
  return rotate;
}
