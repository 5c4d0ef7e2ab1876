/**
 * What the `enroll` and `migrate` commands do, loaded only when one runs (their definitions are in
 * enroll-commands.ts).
 */
import os from "node:os";
import { GatehouseError } from "../protocol/errors.js";
import { legacyTokenToImport, scanLegacyTokens } from "../doctor/legacy-scan.js";
import { ENROLL_TOKEN_MAX_LIFETIME_MS, type EnrollTokenView } from "../gateway/enroll-tokens.js";
import { checkLifetime } from "./validate.js";
import { AdminClient } from "./admin-client.js";
import type { TargetOptions } from "./target-options.js";
import type { CommandContext } from "./run.js";
import { UsageError, ago, printJson, table, printText } from "./output.js";

function usesOption(value: string): number {
  const uses = Number(value);
  if (!Number.isInteger(uses) || uses < 1)
    throw new UsageError("--uses must be a whole number of at least 1");
  return uses;
}

/** `enroll create`: a token that approves registrations at once; printed once. */
export async function enrollCreate(
  ctx: CommandContext,
  options: TargetOptions & {
    uses: string;
    expires: string;
    role: string;
    namePrefix?: string;
    name: string;
  },
): Promise<void> {
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
}

/** `enroll list`: enroll tokens with their uses left and state. */
export async function enrollList(ctx: CommandContext, options: TargetOptions): Promise<void> {
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
}

/** `enroll revoke ID`. */
export async function enrollRevoke(ctx: CommandContext, id: string, options: TargetOptions): Promise<void> {
  const result = await AdminClient.fromHome(ctx.home, options).post<{ enrollToken: EnrollTokenView }>(
    `/api/v1/enroll-tokens/${encodeURIComponent(id)}/revoke`,
  );
  if (ctx.json) printJson(result);
  else printText(`✓ revoked enroll token ${result.enrollToken.tokenId}\n`);
}

/** `migrate --from-legacy`: turns the old shared gateway token into an enroll token, then lists what to delete. */
export async function migrate(
  ctx: CommandContext,
  options: TargetOptions & { uses: string; expires: string; fingerprint?: string },
): Promise<void> {
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
  const remove = report.groups.flatMap((g) => g.locations.map((l) => ({ ...l, fingerprint: g.fingerprint })));
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
}
