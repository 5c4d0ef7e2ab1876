import { Command } from "commander";
import { lazyAction } from "./run.js";
import { withTarget } from "./target-options.js";

/** The `token` command; what it does is in token-actions.ts, loaded when it runs. */
export function tokenCommand(): Command {
  return withTarget(
    new Command("token")
      .description("exchange an API key (or a refresh token) for an access token")
      .option("--api-key-file <file>", "file holding the API key (ghk_…), or - for standard input")
      .option("--refresh-token-file <file>", "file holding a refresh token (ghr_…), to rotate it"),
  ).action(lazyAction(async () => (await import("./token-actions.js")).token));
}

/** The `auth` commands; what each does is in token-actions.ts, loaded when it runs. */
export function authCommands(): Command {
  const auth = new Command("auth").description("check credentials");
  withTarget(
    auth
      .command("validate")
      .description("ask the gateway whether a credential is valid (a token, or this home's certificate)"),
  ).action(lazyAction(async () => (await import("./token-actions.js")).authValidate));
  return auth;
}
