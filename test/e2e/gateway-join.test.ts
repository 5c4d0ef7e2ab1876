/**
 * `gateway init --store` and `gateway join`, as an operator meets them with the real CLI and a
 * real PostgreSQL: the first instance on an empty database, another instance from the shared
 * state, both serving one gateway (tokens of one valid on the other), and every refusal named
 * with a catalogue code that leaves no home behind and the database as it was. Runs
 * dist/cli/main.js: build first.
 */
import { X509Certificate, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, postgresAvailable } from "../fixtures/postgres.js";
import {
  cleanupAll,
  freePort,
  probeHealth,
  runCli,
  spawnCli,
  tempHome,
  type CliResult,
  type Running,
} from "./harness.js";

const drops: (() => Promise<void>)[] = [];
const running: Running[] = [];

async function stopInstances(): Promise<void> {
  for (const gateway of running.splice(0)) {
    gateway.child.kill("SIGTERM");
    await gateway.exited;
  }
}

afterAll(async () => {
  await stopInstances();
  for (const drop of drops.splice(0)) await drop();
  cleanupAll();
});

/** A fresh database, and the environment a CLI process gets its references from. */
async function cluster(kek = randomBytes(32).toString("hex")) {
  const database = await createTestDatabase();
  drops.push(database.drop);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GATEHOUSE_DATABASE_URL: database.url,
    GATEHOUSE_KEY_ENCRYPTION_KEY: kek,
  };
  return { url: database.url, env };
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/** The rows an init or a join writes: what a refusal must leave as they were. */
async function storedState(url: string): Promise<string> {
  const tables = await query<{ n: string }>(
    url,
    "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'shared_material'",
  );
  if (tables[0]?.n === "0") return "no tables";
  return JSON.stringify([
    await query(url, "SELECT name, value FROM shared_material ORDER BY name"),
    await query(url, "SELECT device_id, name FROM devices ORDER BY device_id"),
    await query(url, "SELECT kid FROM signing_keys ORDER BY kid"),
  ]);
}

function expectNamedRefusal(result: CliResult, code: string) {
  expect(result.code, result.stdout + result.stderr).toBe(1);
  expect(result.stderr).toContain(`${code}:`);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toContain("Error:");
}

interface InitJson {
  home: string;
  gatewayId: string;
  instanceId: string;
  caFingerprint: string;
  listen: string;
  url: string;
  adminDeviceId: string;
  registerCommand: string;
}

/** `gateway join` making `home` from the store in GATEHOUSE_DATABASE_URL, listening on `listen`. */
function joinArgs(home: string, listen: string): string[] {
  return ["gateway", "join", "--home", home, "--store", "env://GATEHOUSE_DATABASE_URL", "--listen", listen];
}

async function initJson(args: string[], env: NodeJS.ProcessEnv): Promise<InitJson> {
  const result = await runCli([...args, "--json"], { env });
  expect(result.code, result.stdout + result.stderr).toBe(0);
  return JSON.parse(result.stdout) as InitJson;
}

async function startInstance(home: string, url: string, env: NodeJS.ProcessEnv): Promise<Running> {
  const gateway = spawnCli(["gateway", "start", "--home", home], env);
  running.push(gateway);
  // Generous: the machine is shared; a start that fails exits and says why.
  const deadline = Date.now() + 60_000;
  while (!(await probeHealth(url))) {
    if (Date.now() > deadline || gateway.child.exitCode !== null)
      throw new Error(`gateway did not start\n${gateway.stdout}\n${gateway.stderr}`);
    await sleep(100);
  }
  return gateway;
}

describe.skipIf(!postgresAvailable())("gateway init --store and gateway join", () => {
  let first: { url: string; env: NodeJS.ProcessEnv };
  let home1: string;
  let home2: string;
  let init: InitJson;
  let joined: InitJson;

  beforeAll(async () => {
    first = await cluster();
    home1 = tempHome("init-store");
    home2 = tempHome("join");
    const port1 = await freePort();
    init = await initJson(
      [
        "gateway",
        "init",
        "--home",
        home1,
        "--store",
        "env://GATEHOUSE_DATABASE_URL",
        "--listen",
        `127.0.0.1:${port1}`,
      ],
      first.env,
    );
  });

  it("init --store prints what init prints, plus the instance id", async () => {
    const solo = await initJson(["gateway", "init", "--home", tempHome("solo")], process.env);
    expect(Object.keys(init).sort()).toEqual([...Object.keys(solo), "instanceId"].sort());
    expect(init.instanceId).toMatch(/^gi_[a-z2-7]{16}$/);
    expect(init.gatewayId).toMatch(/^gw_/);
    expect(init.registerCommand).toContain(init.caFingerprint);

    const human = await runCli(
      ["gateway", "init", "--home", tempHome("human"), "--store", "env://GATEHOUSE_DATABASE_URL"],
      { env: (await cluster()).env },
    );
    expect(human.code, human.stderr).toBe(0);
    const soloHuman = await runCli(["gateway", "init", "--home", tempHome("solo-human")]);
    // The same lines but the values (paths, ids, fingerprints), and the one line more.
    const shape = (text: string) =>
      text
        .split("\n")
        .filter((line) => !line.includes("instance id:"))
        .map((line) =>
          line
            .replace(/sha256:[0-9a-f]{64}/g, "FP")
            .replace(/gw_[a-z2-7]+/g, "GW")
            .replace(/\/\S+/g, "PATH"),
        );
    expect(human.stdout + human.stderr).toMatch(/^ {2}instance id: {5}gi_[a-z2-7]{16}$/m);
    expect(shape(human.stdout + human.stderr)).toEqual(shape(soloHuman.stdout + soloHuman.stderr));
    expect(soloHuman.stdout + soloHuman.stderr).not.toContain("instance id");
  });

  it("init --store keeps the CA and the keys in the database, sealed; the home holds only its own", async () => {
    for (const file of ["pki/ca.key", "pki/token-hmac.key", "pki/signing-keys.kek", "gatehouse.db"])
      expect(existsSync(path.join(home1, file)), file).toBe(false);
    for (const file of [
      "pki/server.key",
      "pki/server.pem",
      "pki/ca.pem",
      "admin/admin.key",
      "admin/admin.pem",
    ])
      expect(existsSync(path.join(home1, file)), file).toBe(true);
    const config = JSON.parse(readFileSync(path.join(home1, "gateway.json"), "utf8")) as Record<
      string,
      unknown
    >;
    expect(config).toMatchObject({
      gatewayId: init.gatewayId,
      store: { kind: "postgres", url: "env://GATEHOUSE_DATABASE_URL" },
      tokens: { keyEncryptionKey: "env://GATEHOUSE_KEY_ENCRYPTION_KEY" },
      cluster: { instanceId: init.instanceId },
    });

    // A copy of the database alone can sign nothing: no private key, no hash key in the clear.
    const rows = await query<{ name: string; value: string; sealed: number }>(
      first.url,
      "SELECT name, value, sealed FROM shared_material ORDER BY name",
    );
    expect(rows.map((row) => row.name)).toEqual([
      "cluster/gateway",
      "pki/ca.key",
      "pki/ca.pem",
      "pki/token-hmac.key",
    ]);
    const keys = await query<{ sealed_private_key: string }>(
      first.url,
      "SELECT sealed_private_key FROM signing_keys",
    );
    expect(keys).toHaveLength(1);
    const dump = JSON.stringify([rows, keys]);
    expect(dump).not.toContain("PRIVATE KEY");
    for (const row of rows.filter((row) => row.name !== "pki/ca.pem" && row.name !== "cluster/gateway"))
      expect(row.value).toMatch(/^ghsk1\./);
    // The admin credential's device is in the shared database.
    const devices = await query<{ device_id: string; name: string }>(
      first.url,
      "SELECT device_id, name FROM devices",
    );
    expect(devices).toEqual([{ device_id: init.adminDeviceId, name: "admin" }]);
  });

  it("init --store on a database that holds a gateway is refused: use gateway join; nothing is made", async () => {
    const before = await storedState(first.url);
    const home = tempHome("second-init");
    const result = await runCli(
      ["gateway", "init", "--home", home, "--store", "env://GATEHOUSE_DATABASE_URL"],
      {
        env: first.env,
      },
    );
    expectNamedRefusal(result, "invalid_request");
    expect(result.stderr).toContain(init.gatewayId);
    expect(result.stderr).toContain("gateway join");
    expect(existsSync(home)).toBe(false);
    expect(await storedState(first.url)).toBe(before);
  });

  it("join makes another instance of the same gateway: same id and CA, its own instance id, server certificate and admin", async () => {
    const port2 = await freePort();
    joined = await initJson(joinArgs(home2, `127.0.0.1:${port2}`), first.env);
    expect(Object.keys(joined).sort()).toEqual(Object.keys(init).sort());
    expect(joined.gatewayId).toBe(init.gatewayId);
    expect(joined.caFingerprint).toBe(init.caFingerprint);
    expect(joined.instanceId).toMatch(/^gi_[a-z2-7]{16}$/);
    expect(joined.instanceId).not.toBe(init.instanceId);
    expect(joined.adminDeviceId).not.toBe(init.adminDeviceId);
    expect(joined.url).toBe(`https://127.0.0.1:${port2}`);
    const ca = new X509Certificate(readFileSync(path.join(home1, "pki/ca.pem")));
    const server2 = new X509Certificate(readFileSync(path.join(home2, "pki/server.pem")));
    expect(server2.verify(ca.publicKey)).toBe(true);
    expect(readFileSync(path.join(home2, "pki/server.key"), "utf8")).not.toBe(
      readFileSync(path.join(home1, "pki/server.key"), "utf8"),
    );
    expect(existsSync(path.join(home2, "pki/ca.key"))).toBe(false);
    const names = (await query<{ name: string }>(first.url, "SELECT name FROM devices ORDER BY name")).map(
      (d) => d.name,
    );
    expect(names).toEqual(["admin", `admin (${joined.instanceId})`]);
  });

  it("doctor checks that the database answers, holds this gateway and opens with the key", async () => {
    const checks = async (env: NodeJS.ProcessEnv) => {
      const result = await runCli(["doctor", "--home", home2, "--json"], { env });
      const { sections } = JSON.parse(result.stdout) as {
        sections: { findings: { severity: string; check: string; message: string }[] }[];
      };
      return { code: result.code, findings: sections.flatMap((s) => s.findings) };
    };
    const healthy = await checks(first.env);
    expect(healthy.code).toBe(0);
    expect(healthy.findings).toContainEqual(
      expect.objectContaining({
        severity: "ok",
        check: "store",
        message: expect.stringContaining(init.gatewayId),
      }),
    );
    expect(healthy.findings).toContainEqual(expect.objectContaining({ severity: "ok", check: "store-key" }));

    const withoutKey = { ...first.env };
    delete withoutKey.GATEHOUSE_KEY_ENCRYPTION_KEY;
    const missing = await checks(withoutKey);
    expect(missing.code).toBe(1);
    expect(missing.findings).toContainEqual(
      expect.objectContaining({
        severity: "error",
        check: "secret-reference",
        message: expect.stringContaining("GATEHOUSE_KEY_ENCRYPTION_KEY"),
      }),
    );
    // The database is still checked.
    expect(missing.findings).toContainEqual(expect.objectContaining({ severity: "ok", check: "store" }));
  });

  it("both instances serve one gateway: a key's token from one is valid on the other", async () => {
    const gateway1 = await startInstance(home1, init.url, first.env);
    const made = await runCli(
      ["keys", "create", "--name", "ops", "--role", "admin", "--home", home1, "--json"],
      {
        env: first.env,
      },
    );
    expect(made.code, made.stderr).toBe(0);
    const keyFile = path.join(path.dirname(home1), "ops.key");
    writeFileSync(keyFile, (JSON.parse(made.stdout) as { apiKey: string }).apiKey + "\n", { mode: 0o600 });
    await startInstance(home2, joined.url, first.env);
    // Exchanged on the joined instance (the shared hash key), validated on the first (the shared signing keys).
    const token = await runCli(["token", "--api-key-file", keyFile, "--home", home2, "--json"], {
      env: first.env,
    });
    expect(token.code, token.stdout + token.stderr).toBe(0);
    const accessToken = (JSON.parse(token.stdout) as { access_token: string }).access_token;
    const valid = await runCli(["auth", "validate", "--home", home1, "--token", accessToken, "--json"], {
      env: first.env,
    });
    expect(valid.code, valid.stdout + valid.stderr).toBe(0);
    expect(JSON.parse(valid.stdout)).toMatchObject({ valid: true, subject: expect.stringMatching(/^key:/) });
    // Each instance's admin sees the devices of the one gateway.
    const listed = await runCli(["devices", "list", "--home", home2, "--json"], { env: first.env });
    expect(listed.code, listed.stderr).toBe(0);
    const ids = (JSON.parse(listed.stdout) as { devices: { deviceId: string }[] }).devices
      .map((d) => d.deviceId)
      .sort();
    expect(ids).toEqual([init.adminDeviceId, joined.adminDeviceId].sort());
    expect(gateway1.child.exitCode).toBeNull();
  });

  it("rotate ca is refused with several instances, changing nothing", async () => {
    const before = await storedState(first.url);
    const result = await runCli(["rotate", "ca", "--home", home2], { env: first.env });
    expectNamedRefusal(result, "invalid_request");
    expect(result.stderr).toContain("not yet supported with several instances");
    expect(await storedState(first.url)).toBe(before);
    expect(existsSync(path.join(home2, "pki/ca-rotation.json"))).toBe(false);
  });

  it("join with another key-encryption key is refused by name, leaving no home and no device", async () => {
    const before = await storedState(first.url);
    const home = tempHome("wrong-kek");
    const env = { ...first.env, GATEHOUSE_KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex") };
    const result = await runCli(joinArgs(home, "127.0.0.1:18790"), { env });
    expectNamedRefusal(result, "config_invalid");
    expect(result.stderr).toContain("tokens.keyEncryptionKey (env://GATEHOUSE_KEY_ENCRYPTION_KEY)");
    expect(result.stderr).toMatch(/kek_[0-9a-f]{12}/);
    expect(existsSync(home)).toBe(false);
    expect(await storedState(first.url)).toBe(before);
  });

  it("a start without tokens.keyEncryptionKey names the setting and how to make a key", async () => {
    await stopInstances();
    const file = path.join(home2, "gateway.json");
    const saved = readFileSync(file, "utf8");
    const config = JSON.parse(saved) as { tokens?: unknown };
    delete config.tokens;
    writeFileSync(file, JSON.stringify(config));
    try {
      const result = await runCli(["gateway", "start", "--home", home2, "--listen", "127.0.0.1:0"], {
        env: first.env,
      });
      expectNamedRefusal(result, "config_invalid");
      expect(result.stderr).toContain("tokens.keyEncryptionKey");
      expect(result.stderr).toContain("openssl rand -hex 32");
    } finally {
      writeFileSync(file, saved);
    }
  });
});

describe.skipIf(!postgresAvailable())("refusals before any state exists", () => {
  it("join on a database without a gateway: not_found, run gateway init --store first", async () => {
    const { url, env } = await cluster();
    const home = tempHome("join-empty");
    const result = await runCli(joinArgs(home, "127.0.0.1:18790"), { env });
    expectNamedRefusal(result, "not_found");
    expect(result.stderr).toContain("gateway init --store");
    expect(existsSync(home)).toBe(false);
    expect(await query(url, "SELECT * FROM devices")).toEqual([]);
  });

  it("init --store without the key-encryption key: config_invalid, how to make one, nothing made", async () => {
    const { url, env } = await cluster();
    delete env.GATEHOUSE_KEY_ENCRYPTION_KEY;
    const home = tempHome("no-kek");
    const result = await runCli(
      ["gateway", "init", "--home", home, "--store", "env://GATEHOUSE_DATABASE_URL"],
      {
        env,
      },
    );
    expectNamedRefusal(result, "config_invalid");
    expect(result.stderr).toContain("GATEHOUSE_KEY_ENCRYPTION_KEY");
    expect(result.stderr).toContain("openssl rand -hex 32");
    expect(existsSync(home)).toBe(false);
    expect(await storedState(url)).toBe("no tables");
  });

  it("a solo home whose gateway.json says postgres is not started on its SQLite file", async () => {
    const { env } = await cluster();
    const home = tempHome("hand-edited");
    await initJson(["gateway", "init", "--home", home, "--listen", "127.0.0.1:0"], process.env);
    const file = path.join(home, "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    // The line, written by hand into a home that `gateway init --store` did not make.
    config.store = { kind: "postgres", url: "env://GATEHOUSE_DATABASE_URL" };
    writeFileSync(file, JSON.stringify(config));
    const result = await runCli(["gateway", "start", "--home", home], { env, timeoutMs: 60_000 });
    expectNamedRefusal(result, "config_invalid");
    expect(result.stderr).toContain("cluster.instanceId");
    expect(result.stderr).toContain("gateway join");
  });

  it("a key given on the command line instead of a reference is wrong usage", async () => {
    const { env } = await cluster();
    const home = tempHome("plain-kek");
    const result = await runCli(
      [
        "gateway",
        "init",
        "--home",
        home,
        "--store",
        "env://GATEHOUSE_DATABASE_URL",
        "--key-encryption-key",
        "ab".repeat(32),
      ],
      { env },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--key-encryption-key must be a secret reference");
    expect(result.stderr).not.toContain("ab".repeat(32));
    expect(existsSync(home)).toBe(false);
  });
});

describe.skipIf(!postgresAvailable())("a database that cannot be reached", () => {
  let home: string;
  const password = "pw-" + randomBytes(6).toString("hex");
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    const made = await cluster();
    env = made.env;
    home = tempHome("unreachable");
    await initJson(["gateway", "init", "--home", home, "--store", "env://GATEHOUSE_DATABASE_URL"], env);
    // The URL written in the file (plaintext, as some will), pointing where no PostgreSQL listens.
    const file = path.join(home, "gateway.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as { store: { url: string } };
    config.store.url = `postgres://gatehouse:${password}@127.0.0.1:1/ghdb`;
    writeFileSync(file, JSON.stringify(config));
  });

  it("stops the start with unavailable, naming host:port/db and never the password", async () => {
    const result = await runCli(["gateway", "start", "--home", home, "--listen", "127.0.0.1:0"], { env });
    expectNamedRefusal(result, "unavailable");
    expect(result.stderr).toContain("127.0.0.1:1/ghdb");
    expect(result.stdout + result.stderr).not.toContain(password);
  });

  it("doctor names it, and the plaintext URL, without printing the password", async () => {
    const result = await runCli(["doctor", "--home", home, "--json"], { env });
    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain(password);
    const findings = JSON.parse(result.stdout) as unknown;
    const all = JSON.stringify(findings);
    expect(all).toMatch(
      /"check":"store".*?unavailable: PostgreSQL at postgres:\/\/gatehouse@127\.0\.0\.1:1\/ghdb/,
    );
    expect(all).toMatch(/"check":"plaintext-secret"[^}]*store\.url holds a plaintext secret/);
  });

  it("config explain shows the store's kind and its URL as a fingerprint, never the password", async () => {
    const result = await runCli(["config", "explain", "--home", home], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^store\.kind\s+postgres\s+file /m);
    expect(result.stdout).toMatch(/^store\.url \(secret\)\s+sha256:[0-9a-f]{12}… \(plaintext\)/m);
    expect(result.stdout).not.toContain(password);
  });
});
