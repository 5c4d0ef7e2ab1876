/**
 * What the `keys` and `rotate` commands do, loaded only when one runs (their definitions are in
 * keys-commands.ts).
 */
import { AdminClient } from "./admin-client.js";
import type { CommandContext } from "./run.js";
import { ago, printJson, table, printText } from "./output.js";
import type { TargetOptions } from "./target-options.js";
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

/** `keys create --name NAME --role ROLE [--expires DURATION]`: the secret is printed once. */
export async function keysCreate(
  ctx: CommandContext,
  options: TargetOptions & { name: string; role: string; expires?: string },
): Promise<void> {
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
}

/** `keys list`: never the secrets. */
export async function keysList(ctx: CommandContext, options: TargetOptions): Promise<void> {
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
}

/** `keys revoke KEY [--reason TEXT]`. */
export async function keysRevoke(
  ctx: CommandContext,
  id: string,
  options: TargetOptions & { reason?: string },
): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const result = await client.post<{ key: KeyView }>(
    `/api/v1/keys/${encodeURIComponent(id)}/revoke`,
    options.reason ? { reason: options.reason } : {},
  );
  if (ctx.json) printJson(result);
  else printText(`✓ revoked ${result.key.prefix} (${result.key.name}); its refresh tokens are revoked too\n`);
}

/** `keys rotate KEY [--grace DURATION]`: the new secret is printed once. */
export async function keysRotate(
  ctx: CommandContext,
  id: string,
  options: TargetOptions & { grace: string },
): Promise<void> {
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
}

/** `rotate signing-key`. */
export async function rotateSigningKey(ctx: CommandContext, options: TargetOptions): Promise<void> {
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
}

/** `rotate ca [--overlap DURATION]`. */
export async function rotateCa(
  ctx: CommandContext,
  options: TargetOptions & { overlap: string },
): Promise<void> {
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
}
