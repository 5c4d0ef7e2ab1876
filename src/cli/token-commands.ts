import { Command } from "commander";
import { GatehouseError } from "../protocol/errors.js";
import { AdminClient } from "./admin-client.js";
import { readFlagFile } from "./flag-files.js";
import { action } from "./run.js";
import { UsageError, printJson, printText } from "./output.js";
import { withTarget, type TargetOptions } from "./target-options.js";

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

export function tokenCommand(): Command {
  return withTarget(
    new Command("token")
      .description("exchange an API key (or a refresh token) for an access token")
      .option("--api-key-file <file>", "file holding the API key (ghk_…), or - for standard input")
      .option("--refresh-token-file <file>", "file holding a refresh token (ghr_…), to rotate it"),
  ).action(
    action(async (ctx, options: TargetOptions & { apiKeyFile?: string; refreshTokenFile?: string }) => {
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
    }),
  );
}

export function authCommands(): Command {
  const auth = new Command("auth").description("check credentials");
  withTarget(
    auth
      .command("validate")
      .description("ask the gateway whether a credential is valid (a token, or this home's certificate)"),
  ).action(
    action(async (ctx, options: TargetOptions) => {
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
    }),
  );
  return auth;
}
