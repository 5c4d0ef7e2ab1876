import os from "node:os";
import { Command } from "commander";
import { GatehouseError } from "../protocol/errors.js";
import { legacyTokenToImport, scanLegacyTokens } from "../doctor/legacy-scan.js";
import { ENROLL_TOKEN_MAX_LIFETIME_MS, type EnrollTokenView } from "../gateway/enroll-tokens.js";
import { checkLifetime } from "./validate.js";
import { AdminClient } from "./admin-client.js";
import { withTarget, type TargetOptions } from "./target-options.js";
import { action } from "./run.js";
import { UsageError, ago, printJson, table, printText } from "./output.js";

function usesOption(value: string): number {
  const uses = Number(value);
  if (!Number.isInteger(uses) || uses < 1)
    throw new UsageError("--uses must be a whole number of at least 1");
  return uses;
}

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
  ).action(
    action(
      async (
        ctx,
        options: TargetOptions & {
          uses: string;
          expires: string;
          role: string;
          namePrefix?: string;
          name: string;
        },
      ) => {
        checkLifetime("--expires", options.expires, { maxMs: ENROLL_TOKEN_MAX_LIFETIME_MS });
        const result = await AdminClient.fromHome(ctx.home, options).post<{
          enrollToken: EnrollTokenView;
          token: string;
        }>("/api/v1/enroll-tokens", {
          name: options.name,
          role: options.role,
          uses: usesOption(options.uses),
          expires: options.expires,
          ...(options.namePrefix ? { namePrefix: options.namePrefix } : {}),
        });
        if (ctx.json) printJson(result);
        else
          printText(
            `✓ enroll token ${result.enrollToken.tokenId}: ${result.enrollToken.usesTotal} use(s), role ${result.enrollToken.role}, expires ${result.enrollToken.expiresAt}\n` +
              `${result.token}\n` +
              `This is shown once. On a node: GATEHOUSE_ENROLL_TOKEN=… gatehouse node register --gateway URL --ca-fingerprint sha256:…\n`,
          );
      },
    ),
  );

  withTarget(enroll.command("list").description("enroll tokens with their uses left")).action(
    action(async (ctx, options: TargetOptions) => {
      const { enrollTokens } = await AdminClient.fromHome(ctx.home, options).get<{
        enrollTokens: EnrollTokenView[];
      }>("/api/v1/enroll-tokens");
      if (ctx.json) printJson({ enrollTokens });
      else
        printText(
          enrollTokens.length
            ? table(
                ["ID", "NAME", "ROLE", "USES LEFT", "EXPIRES", "STATE", "SOURCE"],
                enrollTokens.map((t) => [
                  t.tokenId,
                  t.name,
                  t.role,
                  `${t.usesLeft}/${t.usesTotal}`,
                  ago(t.expiresAt),
                  t.revokedAt
                    ? "revoked"
                    : new Date(t.expiresAt) <= new Date()
                      ? "expired"
                      : t.usesLeft
                        ? "active"
                        : "used up",
                  t.source,
                ]),
              )
            : "no enroll tokens\n",
        );
    }),
  );

  withTarget(enroll.command("revoke").description("stop an enroll token").argument("<id>")).action(
    action(async (ctx, id: string, options: TargetOptions) => {
      const result = await AdminClient.fromHome(ctx.home, options).post<{ enrollToken: EnrollTokenView }>(
        `/api/v1/enroll-tokens/${encodeURIComponent(id)}/revoke`,
      );
      if (ctx.json) printJson(result);
      else printText(`✓ revoked enroll token ${result.enrollToken.tokenId}\n`);
    }),
  );
  return enroll;
}

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
  ).action(
    action(async (ctx, options: TargetOptions & { uses: string; expires: string; fingerprint?: string }) => {
      checkLifetime("--expires", options.expires, { maxMs: ENROLL_TOKEN_MAX_LIFETIME_MS });
      const scan = { userHome: os.homedir(), cwd: process.cwd(), env: process.env };
      const chosen = legacyTokenToImport(scan, options.fingerprint);
      const report = scanLegacyTokens(scan);
      if (!chosen)
        throw new GatehouseError(
          "config_missing",
          options.fingerprint
            ? `no legacy token with fingerprint ${options.fingerprint} (of the real ones; placeholders are never imported)`
            : report.tokens.length
              ? "every legacy token found is a placeholder or too weak to let nodes in with"
              : "no legacy gateway token found in the old locations",
          "Register each node with `gatehouse node register` and approve it by its code.",
        );
      const result = await AdminClient.fromHome(ctx.home, options).post<{ enrollToken: EnrollTokenView }>(
        "/api/v1/enroll-tokens",
        {
          name: `legacy ${chosen.fingerprint}`,
          role: "node",
          uses: usesOption(options.uses),
          expires: options.expires,
          legacySecret: chosen.value,
        },
      );
      const others = report.groups.filter((g) => g.fingerprint !== chosen.fingerprint);
      const remove = report.groups.flatMap((g) =>
        g.locations.map((l) => ({ ...l, fingerprint: g.fingerprint })),
      );
      if (ctx.json) {
        printJson({
          enrollToken: result.enrollToken,
          imported: chosen.fingerprint,
          notImported: others.map((g) => g.fingerprint),
          remove,
        });
        return;
      }
      printText(
        `✓ the old token ${chosen.fingerprint} (found in ${chosen.places} place(s)) is now enroll token ${result.enrollToken.tokenId}:\n` +
          `  ${result.enrollToken.usesTotal} registration(s), until ${result.enrollToken.expiresAt}, then it stops.\n\n` +
          `On each existing node, once (the old token is read from the environment, never typed):\n` +
          `  GATEHOUSE_ENROLL_TOKEN="$CLAWDBOT_GATEWAY_TOKEN" gatehouse node register --gateway URL --ca-fingerprint sha256:…\n` +
          (others.length
            ? `\nNot imported (other values, which will not let nodes in): ${others.map((g) => g.fingerprint).join(", ")}\n`
            : "") +
          `\nThen delete the old token from:\n${remove.map((l) => `  ${l.file}  (${l.where}, ${l.fingerprint})`).join("\n")}\n`,
      );
    }),
  );
}
