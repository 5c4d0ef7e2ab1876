import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { runJson, tempHome, type TestGateway } from "./harness.js";

/**
 * API keys as tests make them with the CLI: a node home that connects on one, and a key kept in a
 * file by a script that trades it for access tokens.
 */

/** What `keys create --json` prints: the key itself (shown once) and its record. */
export interface CreatedApiKey {
  apiKey: string;
  key: { keyId: string; prefix: string };
}

/** `gatehouse keys create --name <name> --role <role>` on the gateway's home. Throws when it fails. */
export function createApiKey(
  gateway: Pick<TestGateway, "home">,
  name: string,
  role: string,
): Promise<CreatedApiKey> {
  return runJson<CreatedApiKey>(["keys", "create", "--name", name, "--role", role, "--home", gateway.home]);
}

/** A node home that connects on an API key instead of a client certificate. */
export interface ApiKeyNodeHome {
  home: string;
  /** The API key itself: a secret, only for the environment of `node start`. */
  apiKey: string;
  keyId: string;
  /** How `nodes list`, `nodes exec` and `nodes history` name the node: `key:<keyId>`. */
  subject: string;
  /** This process's environment plus the variable node.json's `env://` reference reads. */
  env: NodeJS.ProcessEnv;
}

/**
 * Creates a node-role API key named `keyName` (`keys create --role node`) and a node home for it:
 * a 0700 folder from `tempHome(homePrefix)` holding a 0600 node.json that pins the gateway's CA
 * fingerprint and reads the key from the environment variable `variable` (an `env://` reference,
 * so the key itself is never written to the home). `config` adds settings to node.json, e.g.
 * `{ exec: { allow: ["uname"] } }`. Throws when `keys create` fails.
 */
export async function apiKeyNodeHome(
  gateway: TestGateway,
  options: { keyName: string; homePrefix: string; variable: string; config?: Record<string, unknown> },
): Promise<ApiKeyNodeHome> {
  const created = await createApiKey(gateway, options.keyName, "node");
  const home = tempHome(options.homePrefix);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  writeFileSync(
    path.join(home, "node.json"),
    JSON.stringify({
      gatewayUrl: gateway.url,
      caFingerprint: gateway.caFingerprint,
      apiKey: `env://${options.variable}`,
      ...options.config,
    }),
    { mode: 0o600 },
  );
  return {
    home,
    apiKey: created.apiKey,
    keyId: created.key.keyId,
    subject: `key:${created.key.keyId}`,
    env: { ...process.env, [options.variable]: created.apiKey },
  };
}

/** An API key kept in a file, and an access token for it. */
export interface ApiKeyToken {
  keyId: string;
  /** The key's subject in tokens, audit entries and `nodes history`: `key:<keyId>`. */
  subject: string;
  /** `<keyId>.key` (mode 0600) beside the gateway's home, holding the key and a newline. */
  file: string;
  token: string;
}

/**
 * What a script does to act on the gateway: `keys create --role <role>` named `name`, the key saved
 * to a 0600 file, and an access token from `gatehouse token --api-key-file`. Throws when either
 * command fails.
 */
export async function apiKeyToken(gateway: TestGateway, role: string, name: string): Promise<ApiKeyToken> {
  const created = await createApiKey(gateway, name, role);
  const file = path.join(path.dirname(gateway.home), `${created.key.keyId}.key`);
  writeFileSync(file, created.apiKey + "\n", { mode: 0o600 });
  const { access_token } = await runJson<{ access_token: string }>([
    "token",
    "--api-key-file",
    file,
    "--home",
    gateway.home,
  ]);
  return { keyId: created.key.keyId, subject: `key:${created.key.keyId}`, file, token: access_token };
}
