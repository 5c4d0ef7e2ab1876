import { execFile } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { GatehouseError } from "../protocol/errors.js";

/**
 * Secret references: a config value that names where a secret lives instead of holding it.
 *   op://vault/item/field      1Password, through `op read` (no shell)
 *   vault://mount/path#field   HashiCorp Vault KV v2, over its HTTP API (VAULT_ADDR, a Vault token)
 *   env://NAME                 an environment variable
 *   file://PATH                a file (a trailing newline is dropped; ~ is the user's home)
 * Anything else is a plaintext value, which works but `doctor` reports.
 */
export type SecretScheme = "op" | "vault" | "env" | "file";

const SCHEMES: readonly SecretScheme[] = ["op", "vault", "env", "file"];

export function secretScheme(value: string): SecretScheme | undefined {
  const match = /^([a-z]+):\/\//.exec(value);
  const scheme = match?.[1] as SecretScheme | undefined;
  return scheme && SCHEMES.includes(scheme) ? scheme : undefined;
}

export function isSecretReference(value: string): boolean {
  return secretScheme(value) !== undefined;
}

/** Where a Vault reference is read: address and token, themselves from the environment or config. */
export interface VaultAccess {
  address?: string;
  /** A Vault token, or a reference to one (env://, file://, op://). */
  token?: string;
  /** PEM of the CA of an https Vault (VAULT_CACERT). */
  caPem?: string;
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  vault?: VaultAccess;
  /** The 1Password CLI to run; `op` on the PATH by default. */
  opCommand?: string;
  timeoutMs?: number;
}

/** Names the reference and why it failed, never a value. */
function failure(reference: string, setting: string, reason: string, hint: string): GatehouseError {
  return new GatehouseError("config_invalid", `${setting}: secret ${reference} ${reason}`, hint);
}

function readOp(reference: string, setting: string, options: ResolveOptions): Promise<string> {
  const command = options.opCommand ?? options.env?.GATEHOUSE_OP ?? "op";
  return new Promise((resolve, reject) => {
    execFile(
      command,
      ["read", "--no-newline", reference],
      { timeout: options.timeoutMs ?? 15_000, env: options.env ?? process.env, maxBuffer: 64 * 1024 },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout.replace(/\r?\n$/, ""));
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT")
          return reject(
            failure(
              reference,
              setting,
              "needs the 1Password CLI, and `op` is not on the PATH",
              "Install the 1Password CLI and sign in (`op signin`), or use env:// or file://.",
            ),
          );
        // op writes its reason to stderr ("[ERROR] … isn't an item …"); it never holds the secret.
        const reason = stderr.trim().split("\n")[0]?.slice(0, 200) || error.message;
        reject(
          failure(
            reference,
            setting,
            `could not be read: ${reason}`,
            "Check the reference with `op read` and that `op` is signed in.",
          ),
        );
      },
    );
  });
}

function vaultToken(access: VaultAccess, env: NodeJS.ProcessEnv, reference: string, setting: string) {
  if (access.token) return access.token;
  if (env.VAULT_TOKEN) return env.VAULT_TOKEN;
  const file = path.join(env.HOME ?? os.homedir(), ".vault-token");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  throw failure(
    reference,
    setting,
    "needs a Vault token, and none is set",
    "Set VAULT_TOKEN, log in with `vault login` (~/.vault-token), or set vault.token to a reference.",
  );
}

function readVault(reference: string, setting: string, options: ResolveOptions): Promise<string> {
  const env = options.env ?? process.env;
  const access = options.vault ?? {};
  const match = /^vault:\/\/([^/#]+)\/([^#]+)#(.+)$/.exec(reference);
  if (!match)
    return Promise.reject(
      failure(
        reference,
        setting,
        "is not vault://MOUNT/PATH#FIELD",
        "Write it as vault://secret/gatehouse#apiKey.",
      ),
    );
  const [, mount, secretPath, field] = match as unknown as [string, string, string, string];
  const address = access.address ?? env.VAULT_ADDR;
  if (!address)
    return Promise.reject(
      failure(reference, setting, "needs a Vault address", "Set VAULT_ADDR or vault.address in the config."),
    );
  let token: string;
  try {
    token = vaultToken(access, env, reference, setting);
  } catch (error) {
    return Promise.reject(error as Error);
  }
  // KV v2: the data of a secret lives under MOUNT/data/PATH.
  const url = new URL(
    `/v1/${encodeURIComponent(mount)}/data/${secretPath.split("/").map(encodeURIComponent).join("/")}`,
    address,
  );
  // A Vault token must not cross a network in clear text: plain http only to this machine.
  const loopback =
    ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname) || url.hostname.startsWith("127.");
  if (url.protocol === "http:" && !loopback)
    return Promise.reject(
      failure(
        reference,
        setting,
        `would send the Vault token in clear text to ${url.origin}`,
        "Use an https:// Vault address.",
      ),
    );
  const client = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const request = client.get(
      url,
      {
        headers: { "x-vault-token": token, accept: "application/json" },
        timeout: options.timeoutMs ?? 10_000,
        ...(access.caPem ? { ca: access.caPem } : {}),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const status = response.statusCode ?? 0;
          let body: { data?: { data?: Record<string, unknown> }; errors?: string[] } | undefined;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof body;
          } catch {
            body = undefined;
          }
          if (status === 403)
            return reject(
              failure(
                reference,
                setting,
                "was refused by Vault (403): the token is invalid or lacks read on that path",
                "Check the Vault token and its policy.",
              ),
            );
          if (status === 404)
            return reject(
              failure(
                reference,
                setting,
                `does not exist in Vault (404 at ${url.pathname})`,
                "Check the mount and path; KV v2 is expected.",
              ),
            );
          if (status !== 200 || !body?.data?.data)
            return reject(
              failure(
                reference,
                setting,
                `could not be read from Vault (HTTP ${status}${body?.errors?.length ? `: ${body.errors[0]}` : ""})`,
                "Check VAULT_ADDR and that the mount is KV v2.",
              ),
            );
          const value = body.data.data[field];
          if (typeof value !== "string")
            return reject(
              failure(
                reference,
                setting,
                `has no field "${field}" (fields: ${Object.keys(body.data.data).join(", ") || "none"})`,
                "Check the field after # in the reference.",
              ),
            );
          resolve(value);
        });
        response.on("error", (error) =>
          reject(
            failure(
              reference,
              setting,
              `could not be read from Vault: ${error.message}`,
              "Check VAULT_ADDR.",
            ),
          ),
        );
      },
    );
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", (error: NodeJS.ErrnoException) =>
      reject(
        failure(
          reference,
          setting,
          `could not reach Vault at ${url.origin}: ${error.code ?? error.message}`,
          "Check VAULT_ADDR and that Vault is running.",
        ),
      ),
    );
  });
}

function readEnv(reference: string, setting: string, env: NodeJS.ProcessEnv): string {
  const name = reference.slice("env://".length);
  const value = env[name];
  if (value === undefined || value === "")
    throw failure(
      reference,
      setting,
      `names the environment variable ${name}, which is not set`,
      `Set ${name} in the environment of this process (or its service file).`,
    );
  return value;
}

function readSecretFile(reference: string, setting: string, env: NodeJS.ProcessEnv): string {
  let file = reference.slice("file://".length);
  if (file.startsWith("~/")) file = path.join(env.HOME ?? os.homedir(), file.slice(2));
  if (!existsSync(file))
    throw failure(
      reference,
      setting,
      `names ${file}, which does not exist`,
      "Create the file (mode 0600) or fix the path.",
    );
  try {
    return readFileSync(file, "utf8").replace(/\r?\n$/, "");
  } catch (error) {
    throw failure(
      reference,
      setting,
      `could not be read: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
      `Check the permissions of ${file}.`,
    );
  }
}

/** The secret a config value stands for: the value itself, or what its reference names. */
export async function resolveSecret(
  value: string,
  setting: string,
  options: ResolveOptions = {},
): Promise<string> {
  const env = options.env ?? process.env;
  switch (secretScheme(value)) {
    case "op":
      return readOp(value, setting, options);
    case "vault": {
      const token = options.vault?.token;
      // The Vault token may itself be a reference, but not to Vault.
      if (token && secretScheme(token) === "vault")
        throw failure(
          value,
          setting,
          "needs a Vault token that is not itself in Vault",
          "Set vault.token to env://, file:// or op://.",
        );
      const vault =
        token && isSecretReference(token)
          ? {
              ...options.vault,
              token: await resolveSecret(token, `${setting} (vault.token)`, { ...options, vault: {} }),
            }
          : options.vault;
      return readVault(value, setting, { ...options, ...(vault ? { vault } : {}) });
    }
    case "env":
      return readEnv(value, setting, env);
    case "file":
      return readSecretFile(value, setting, env);
    default:
      return value;
  }
}
