import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveSecret } from "../src/config/secret-ref.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { startFakeVault, type FakeVault } from "./fixtures/fake-vault.js";

const FAKE_OP = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "op");
const SECRET = "s3cr3t-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
let dir: string;
let vault: FakeVault;
let opEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "gh-secrets-"));
  const items = path.join(dir, "items.json");
  writeFileSync(items, JSON.stringify({ "op://Infra/gatehouse/hash-key": SECRET }));
  opEnv = { ...process.env, FAKE_OP_ITEMS: items };
  vault = await startFakeVault("hvs.test-token", { "secret/gatehouse/gateway": { hashKey: SECRET } });
});
afterAll(() => vault.close());

async function failure(promise: Promise<string>): Promise<GatehouseError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GatehouseError);
  const named = error as GatehouseError;
  expect(named.code).toBe("config_invalid");
  // A failure names the setting and the reference, never a value.
  expect(named.message).not.toContain(SECRET);
  return named;
}

describe("secret references", () => {
  it("passes a plaintext value through", async () => {
    expect(await resolveSecret("plain", "tokens.hashKey")).toBe("plain");
  });

  it("reads env:// and names a missing variable", async () => {
    expect(await resolveSecret("env://GH_KEY", "k", { env: { GH_KEY: SECRET } })).toBe(SECRET);
    const error = await failure(resolveSecret("env://GH_MISSING", "tokens.hashKey", { env: {} }));
    expect(error.message).toMatch(
      /tokens\.hashKey: secret env:\/\/GH_MISSING .*GH_MISSING, which is not set/,
    );
  });

  it("reads file:// (dropping the final newline) and names a missing file", async () => {
    const file = path.join(dir, "hash.key");
    writeFileSync(file, SECRET + "\n", { mode: 0o600 });
    expect(await resolveSecret(`file://${file}`, "k")).toBe(SECRET);
    const error = await failure(resolveSecret(`file://${dir}/nope`, "k"));
    expect(error.message).toContain("which does not exist");
  });

  it("reads op:// through the op CLI without a shell, and passes on op's reason", async () => {
    expect(
      await resolveSecret("op://Infra/gatehouse/hash-key", "k", { opCommand: FAKE_OP, env: opEnv }),
    ).toBe(SECRET);
    const missing = await failure(
      resolveSecret("op://Infra/nothing/field", "tokens.hashKey", { opCommand: FAKE_OP, env: opEnv }),
    );
    expect(missing.message).toContain(`"nothing" isn't an item`);
    const signedOut = await failure(
      resolveSecret("op://Infra/gatehouse/hash-key", "k", {
        opCommand: FAKE_OP,
        env: { ...opEnv, FAKE_OP_SIGNED_OUT: "1" },
      }),
    );
    expect(signedOut.message).toContain("not currently signed in");
    const noCli = await failure(
      resolveSecret("op://a/b/c", "k", { opCommand: path.join(dir, "no-op"), env: opEnv }),
    );
    expect(noCli.message).toContain("`op` is not on the PATH");
  });

  it("reads vault:// from KV v2 with a token that is itself a reference, and names each failure", async () => {
    const env = { VAULT_TOKEN_FILE_IS_NOT_USED: "1", GH_VAULT_TOKEN: "hvs.test-token" };
    const access = { address: vault.address, token: "env://GH_VAULT_TOKEN" };
    expect(await resolveSecret("vault://secret/gatehouse/gateway#hashKey", "k", { env, vault: access })).toBe(
      SECRET,
    );
    expect(vault.requests.at(-1)).toEqual({
      path: "/v1/secret/data/gatehouse/gateway",
      token: "hvs.test-token",
    });

    const wrongToken = await failure(
      resolveSecret("vault://secret/gatehouse/gateway#hashKey", "k", {
        env: {},
        vault: { address: vault.address, token: "bad" },
      }),
    );
    expect(wrongToken.message).toContain("refused by Vault (403)");
    const noPath = await failure(resolveSecret("vault://secret/other#hashKey", "k", { env, vault: access }));
    expect(noPath.message).toContain("does not exist in Vault (404");
    const noField = await failure(
      resolveSecret("vault://secret/gatehouse/gateway#apiKey", "k", { env, vault: access }),
    );
    expect(noField.message).toContain('has no field "apiKey" (fields: hashKey)');
    const noAddress = await failure(
      resolveSecret("vault://secret/x#y", "k", { env: { HOME: dir }, vault: {} }),
    );
    expect(noAddress.message).toContain("needs a Vault address");
    const down = await failure(
      resolveSecret("vault://secret/x#y", "k", { env, vault: { address: "http://127.0.0.1:1", token: "t" } }),
    );
    expect(down.message).toContain("could not reach Vault");
    const clear = await failure(
      resolveSecret("vault://secret/x#y", "k", {
        env,
        vault: { address: "http://vault.example:8200", token: "t" },
      }),
    );
    expect(clear.message).toContain("would send the Vault token in clear text");
  });
});
