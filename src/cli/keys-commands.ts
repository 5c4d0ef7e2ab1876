import { Command } from "commander";
import { AdminClient } from "./admin-client.js";
import { action } from "./run.js";
import { ago, printJson, table, printText } from "./output.js";
import { withTarget, type TargetOptions } from "./target-options.js";
import { checkLifetime } from "./validate.js";

interface KeyView {
  keyId: string;
  prefix: string;
  name: string;
  role: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  replacedBy: string | null;
  graceUntil: string | null;
  lastUsedAt: string | null;
}

function keyState(key: KeyView): string {
  if (key.revokedAt) return "revoked";
  if (key.graceUntil)
    return key.graceUntil <= new Date().toISOString() ? "rotated" : `rotating (until ${key.graceUntil})`;
  if (key.expiresAt && key.expiresAt <= new Date().toISOString()) return "expired";
  return "active";
}

function printSecret(key: KeyView, secret: string): void {
  printText(
    [
      `✓ API key ${key.prefix} (${key.name}, role ${key.role})`,
      ``,
      `  ${secret}`,
      ``,
      `This is the only time the key is shown: store it in your secret manager now.`,
      `Exchange it for an access token with: gatehouse token --api-key-file FILE`,
      ``,
    ].join("\n"),
  );
}

export function keysCommands(): Command {
  const keys = new Command("keys").description("admin: API keys for scripts and operators");

  withTarget(
    keys
      .command("create")
      .description("create an API key; the secret is printed once")
      .requiredOption("--name <name>", "what the key is for")
      .requiredOption("--role <role>", "node, viewer, operator or admin")
      .option("--expires <duration>", "e.g. 90d; default: no expiry"),
  ).action(
    action(async (ctx, options: TargetOptions & { name: string; role: string; expires?: string }) => {
      checkLifetime("--expires", options.expires);
      const client = AdminClient.fromHome(ctx.home, options);
      const body = {
        name: options.name,
        role: options.role,
        ...(options.expires ? { expires: options.expires } : {}),
      };
      const result = await client.post<{ key: KeyView; apiKey: string }>("/api/v1/keys", body);
      if (ctx.json) printJson(result);
      else printSecret(result.key, result.apiKey);
    }),
  );

  withTarget(keys.command("list").description("list API keys (never their secrets)")).action(
    action(async (ctx, options: TargetOptions) => {
      const { keys: list } = await AdminClient.fromHome(ctx.home, options).get<{ keys: KeyView[] }>(
        "/api/v1/keys",
      );
      if (ctx.json) printJson({ keys: list });
      else
        printText(
          list.length
            ? table(
                ["KEY", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST USED"],
                list.map((k) => [
                  k.prefix,
                  k.name,
                  k.role,
                  keyState(k),
                  ago(k.createdAt),
                  k.expiresAt ?? "never",
                  ago(k.lastUsedAt),
                ]),
              )
            : "no API keys\n",
        );
    }),
  );

  withTarget(
    keys
      .command("revoke")
      .description("revoke an API key and every token minted with it")
      .argument("<key>")
      .option("--reason <text>", "why"),
  ).action(
    action(async (ctx, id: string, options: TargetOptions & { reason?: string }) => {
      const client = AdminClient.fromHome(ctx.home, options);
      const result = await client.post<{ key: KeyView }>(
        `/api/v1/keys/${encodeURIComponent(id)}/revoke`,
        options.reason ? { reason: options.reason } : {},
      );
      if (ctx.json) printJson(result);
      else
        printText(
          `✓ revoked ${result.key.prefix} (${result.key.name}); its refresh tokens are revoked too\n`,
        );
    }),
  );

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
  ).action(
    action(async (ctx, id: string, options: TargetOptions & { grace: string }) => {
      checkLifetime("--grace", options.grace, { allowZero: true });
      const client = AdminClient.fromHome(ctx.home, options);
      const result = await client.post<{ key: KeyView; apiKey: string; previous: KeyView }>(
        `/api/v1/keys/${encodeURIComponent(id)}/rotate`,
        { grace: options.grace },
      );
      if (ctx.json) printJson(result);
      else {
        printSecret(result.key, result.apiKey);
        printText(`The old key ${result.previous.prefix} stops at ${result.previous.graceUntil}.\n`);
      }
    }),
  );

  return keys;
}

export function rotateCommands(): Command {
  const rotate = new Command("rotate").description("admin: rotations without downtime");
  withTarget(
    rotate
      .command("signing-key")
      .description("sign new tokens with a new key; the old key verifies until its last token expires"),
  ).action(
    action(async (ctx, options: TargetOptions) => {
      const result = await AdminClient.fromHome(ctx.home, options).post<{
        kid: string;
        previous: string[];
        previousVerifyUntil: string;
      }>("/api/v1/signing-keys/rotate");
      if (ctx.json) printJson(result);
      else
        printText(
          `✓ new signing key ${result.kid}; ${result.previous.join(", ") || "the old key"} keeps verifying until ${result.previousVerifyUntil}\n`,
        );
    }),
  );
  withTarget(
    rotate
      .command("ca")
      .description("replace the CA; nodes follow through a notice signed by the old CA, no re-registration")
      .option(
        "--overlap <duration>",
        "how long both CAs are trusted (at least the client certificate lifetime)",
        "7d",
      ),
  ).action(
    action(async (ctx, options: TargetOptions & { overlap: string }) => {
      checkLifetime("--overlap", options.overlap);
      const result = await AdminClient.fromHome(ctx.home, options).post<{
        previousFingerprint: string;
        nextFingerprint: string;
        retireAt: string;
        sessionsNotified: number;
      }>("/api/v1/ca/rotate", { overlap: options.overlap });
      if (ctx.json) printJson(result);
      else
        printText(
          [
            `✓ new CA ${result.nextFingerprint}`,
            `  the previous CA ${result.previousFingerprint} stays trusted until ${result.retireAt}`,
            `  ${result.sessionsNotified} connected node(s) notified; others learn it when they connect or renew`,
            `  until then the server certificate stays with the previous CA: new nodes pin ${result.previousFingerprint.slice(0, 19)}…,`,
            `  from then on ${result.nextFingerprint.slice(0, 19)}…`,
            "",
          ].join("\n"),
        );
    }),
  );
  return rotate;
}
