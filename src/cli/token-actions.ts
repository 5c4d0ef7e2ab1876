/**
 * What the `token` and `auth` commands do, loaded only when one runs (their definitions are in
 * token-commands.ts).
 */
import { GatehouseError } from "../protocol/errors.js";
import { AdminClient } from "./admin-client.js";
import { readFlagFile } from "./flag-files.js";
import type { CommandContext } from "./run.js";
import { UsageError, printJson, printText } from "./output.js";
import type { TargetOptions } from "./target-options.js";

interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
  scope: string;
}

/** Reads a secret from a file (or `-` for standard input), so it never sits in argv or history. */
function readSecret(flag: string, file: string): string {
  const text = readFlagFile(flag, file, { stdin: true }).trim();
  if (!text)
    throw new GatehouseError("invalid_request", `${file === "-" ? "standard input" : file} is empty`);
  return text;
}

/** `token --api-key-file FILE | --refresh-token-file FILE`: prints the access token. */
export async function token(
  ctx: CommandContext,
  options: TargetOptions & { apiKeyFile?: string; refreshTokenFile?: string },
): Promise<void> {
  if (!options.apiKeyFile === !options.refreshTokenFile) {
    throw new UsageError("give exactly one of --api-key-file and --refresh-token-file");
  }
  // The body carries the credential: a refusal names its file (credential-source.ts).
  const client = AdminClient.fromHome(ctx.home, { ...options, token: "" }).anonymous(
    options.apiKeyFile
      ? { kind: "api-key-file", file: options.apiKeyFile }
      : { kind: "refresh-token-file", file: options.refreshTokenFile! },
  );
  const body = options.apiKeyFile
    ? {
        grant_type: "client_credentials",
        client_secret: readSecret("--api-key-file", options.apiKeyFile),
      }
    : {
        grant_type: "refresh_token",
        refresh_token: readSecret("--refresh-token-file", options.refreshTokenFile!),
      };
  const response = await client.post<TokenResponse>("/api/v1/auth/token", body);
  if (ctx.json) printJson(response);
  else printText(response.access_token + "\n");
}

/** `auth validate`: whether the gateway takes this credential, and for whom. */
export async function authValidate(ctx: CommandContext, options: TargetOptions): Promise<void> {
  const result = await AdminClient.fromHome(ctx.home, options).get<{
    credential: string;
    subject: string;
    deviceId?: string;
    role: string;
    scopes: string[];
    expiresAt: string | null;
  }>("/api/v1/auth/validate");
  if (ctx.json) printJson(result);
  else
    printText(
      [
        `✓ valid ${result.credential}`,
        `  subject  ${result.subject}`,
        ...(result.deviceId ? [`  device   ${result.deviceId}`] : []),
        `  role     ${result.role}`,
        `  scopes   ${result.scopes.join(" ")}`,
        `  expires  ${result.expiresAt ?? "with the certificate"}`,
        "",
      ].join("\n"),
    );
}
