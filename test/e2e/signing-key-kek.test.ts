/**
 * The key-encryption key the token signing keys are sealed under, as an operator meets it: made at
 * the first start beside the other keys, movable behind a secret reference, and, when missing or
 * wrong, a start that stops with a catalogue error naming the file or reference.
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupAll, runCli, runJson, startTestGateway, tempHome, type TestGateway } from "./harness.js";

let gateway: TestGateway;
let kekFile: string;
let token: string;

/** Every row of the tables a start could touch: a refused start must leave them as they were. */
function storedState(home: string): string {
  const db = new Database(path.join(home, "gatehouse.db"), { readonly: true, fileMustExist: true });
  try {
    return JSON.stringify(
      ["signing_keys", "api_keys", "devices", "sessions", "audit_events"].map((table) =>
        db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).all(),
      ),
    );
  } finally {
    db.close();
  }
}

function startFails(env: NodeJS.ProcessEnv = process.env) {
  return runCli(["gateway", "start", "--home", gateway.home], { env });
}

function expectNamedRefusal(result: { code: number | null; stdout: string; stderr: string }, code: string) {
  expect(result.code, result.stdout + result.stderr).toBe(1);
  expect(result.stderr).toContain(`${code}:`);
  // A message and a hint, never a stack trace.
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toContain("Error:");
}

async function validates(accessToken: string): Promise<boolean> {
  const result = await runCli(["auth", "validate", "--home", gateway.home, "--token", accessToken, "--json"]);
  return result.code === 0 && (JSON.parse(result.stdout) as { valid?: boolean }).valid !== false;
}

beforeAll(async () => {
  gateway = await startTestGateway();
  kekFile = path.join(gateway.home, "pki/signing-keys.kek");
  const created = await runJson<{ apiKey: string }>([
    "keys",
    "create",
    "--name",
    "ops",
    "--role",
    "admin",
    "--home",
    gateway.home,
  ]);
  const keyFile = path.join(path.dirname(tempHome("key")), "ops.key");
  writeFileSync(keyFile, created.apiKey + "\n", { mode: 0o600 });
  token = (
    await runJson<{ access_token: string }>(["token", "--api-key-file", keyFile, "--home", gateway.home])
  ).access_token;
  await gateway.stop();
});

afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

describe("the signing keys' key-encryption key", () => {
  it("is made at the first start as a private file of the home, and doctor checks its mode", async () => {
    expect(statSync(kekFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(kekFile, "utf8")).toMatch(/^[0-9a-f]{64}\n$/);
    const doctor = await runCli(["doctor", "--home", gateway.home, "--json"]);
    expect(doctor.stdout).toContain("signing-keys.kek is 0600");
  });

  it("missing: the start stops with config_missing naming the file, and changes nothing", async () => {
    const before = storedState(gateway.home);
    renameSync(kekFile, `${kekFile}.away`);
    try {
      const result = await startFails();
      expectNamedRefusal(result, "config_missing");
      expect(result.stderr).toContain(kekFile);
      expect(result.stderr).toContain("sealed");
      expect(existsSync(kekFile)).toBe(false);
      expect(storedState(gateway.home)).toBe(before);
    } finally {
      renameSync(`${kekFile}.away`, kekFile);
    }
  });

  it("wrong: the start stops with config_invalid naming the file and both keys, and changes nothing", async () => {
    const before = storedState(gateway.home);
    const right = readFileSync(kekFile);
    writeFileSync(kekFile, randomBytes(32).toString("hex") + "\n", { mode: 0o600 });
    try {
      const result = await startFails();
      expectNamedRefusal(result, "config_invalid");
      expect(result.stderr).toContain(kekFile);
      expect(result.stderr.match(/kek_[0-9a-f]{12}/g)?.length).toBeGreaterThanOrEqual(2);
      expect(storedState(gateway.home)).toBe(before);
    } finally {
      writeFileSync(kekFile, right, { mode: 0o600 });
    }
    // A damaged file is named as such.
    writeFileSync(kekFile, "not a key\n", { mode: 0o600 });
    try {
      const result = await startFails();
      expectNamedRefusal(result, "config_invalid");
      expect(result.stderr).toContain(`${kekFile} is not a key`);
    } finally {
      writeFileSync(kekFile, right, { mode: 0o600 });
    }
  });

  it("moves behind a secret reference: the same key by env:// keeps every token valid; another is named", async () => {
    const config = path.join(gateway.home, "gateway.json");
    const original = readFileSync(config, "utf8");
    const right = readFileSync(kekFile, "utf8").trim();
    writeFileSync(
      config,
      JSON.stringify({ ...JSON.parse(original), tokens: { keyEncryptionKey: "env://GH_TEST_KEK" } }),
    );
    renameSync(kekFile, `${kekFile}.away`);
    try {
      const wrong = await startFails({ ...process.env, GH_TEST_KEK: randomBytes(32).toString("hex") });
      expectNamedRefusal(wrong, "config_invalid");
      expect(wrong.stderr).toContain("tokens.keyEncryptionKey (env://GH_TEST_KEK)");
      const unset = await startFails({ ...process.env, GH_TEST_KEK: "" });
      expectNamedRefusal(unset, "config_invalid");
      expect(unset.stderr).toContain("env://GH_TEST_KEK");

      // config explain shows the setting as a secret, by its reference only.
      const explained = await runJson<{
        configs: { settings: { key: string; value: unknown; secret?: boolean }[] }[];
      }>(["config", "explain", "--home", gateway.home]);
      expect(explained.configs[0]!.settings.find((s) => s.key === "tokens.keyEncryptionKey")).toMatchObject({
        value: "env://GH_TEST_KEK",
        secret: true,
      });

      process.env.GH_TEST_KEK = right;
      await gateway.restart();
      expect(await validates(token)).toBe(true);
      // The home made no key file of its own: the reference is the key.
      expect(existsSync(kekFile)).toBe(false);
      await gateway.stop();
    } finally {
      delete process.env.GH_TEST_KEK;
      writeFileSync(config, original);
      renameSync(`${kekFile}.away`, kekFile);
    }
    await gateway.restart();
    expect(await validates(token)).toBe(true);
    await gateway.stop();
  });
});
