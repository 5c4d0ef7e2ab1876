/**
 * What a copy of gatehouse.db alone gives its holder: nothing that can sign a token. A gateway runs
 * in this process (real TLS on loopback, real SQLite) so the test can read the signing keys it holds
 * in memory, and then search a copy of its database for every form of them.
 */
import { KeyObject, randomBytes } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import * as jose from "jose";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { refusal } from "./fixtures/refusal.js";

const dirs: string[] = [];
const running: RunningGateway[] = [];

afterAll(async () => {
  await Promise.allSettled(running.map((gateway) => gateway.close()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-dbcopy-"));
  dirs.push(dir);
  return dir;
}

async function newHome(): Promise<string> {
  const home = path.join(tempDir(), "home");
  await initGatewayHome(home, { listen: "127.0.0.1:0" });
  return home;
}

async function start(home: string): Promise<RunningGateway> {
  const gateway = await startGateway(home, { logger: pino({ level: "silent" }) });
  running.push(gateway);
  return gateway;
}

async function stop(gateway: RunningGateway): Promise<void> {
  await gateway.close();
  running.splice(running.indexOf(gateway), 1);
}

/** Secrets handed out so far (API keys, refresh tokens): none may sit in the database either. */
const handedOut: string[] = [];

/** An admin access token, minted the way `gatehouse token` gets one: an API key exchanged. */
async function adminToken(gateway: RunningGateway): Promise<string> {
  const { secret } = await gateway.ctx.tokens.createApiKey({
    name: `ops-${randomBytes(3).toString("hex")}`,
    role: "admin",
  });
  const response = await gateway.ctx.tokens.exchangeApiKey(secret, undefined);
  handedOut.push(secret, response.refresh_token);
  return response.access_token;
}

/** GET /api/v1/auth/validate over real TLS, trusting only the home's CA. */
function validate(
  gateway: RunningGateway,
  token: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const ca = readFileSync(path.join(gateway.ctx.home, "pki/ca.pem"));
  return new Promise((resolve, reject) => {
    const request = https.get(
      `${gateway.url}/api/v1/auth/validate`,
      { ca, headers: { authorization: `Bearer ${token}` } },
      (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }),
        );
      },
    );
    request.on("error", reject);
  });
}

/** Every form in which a private key could sit in a file: PEM text, PKCS#8 DER, the scalar d. */
function keyForms(privateKey: CryptoKey, label: string): { label: string; bytes: Buffer }[] {
  const key = KeyObject.from(privateKey);
  const der = key.export({ type: "pkcs8", format: "der" });
  const pemBody = (key.export({ type: "pkcs8", format: "pem" }) as string).split("\n")[1]!;
  const d = Buffer.from(key.export({ format: "jwk" }).d!, "base64url");
  return [
    { label: `${label}: PKCS#8 DER`, bytes: der },
    { label: `${label}: PEM body`, bytes: Buffer.from(pemBody) },
    { label: `${label}: d`, bytes: d },
    { label: `${label}: d as hex`, bytes: Buffer.from(d.toString("hex")) },
    { label: `${label}: d as base64url`, bytes: Buffer.from(d.toString("base64url")) },
    { label: `${label}: d as base64`, bytes: Buffer.from(d.toString("base64")) },
  ];
}

const GENERIC_FORMS = [
  { label: "a PEM private key", bytes: Buffer.from("PRIVATE KEY") },
  { label: 'a JWK private part ("d":)', bytes: Buffer.from('"d":') },
];

/** The text of every cell of every table of a database file, one buffer. */
function everyCell(file: string): Buffer {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
      name: string;
    }[];
    const cells: Buffer[] = [];
    for (const { name } of tables)
      for (const row of db.prepare(`SELECT * FROM "${name}"`).all() as Record<string, unknown>[])
        for (const value of Object.values(row))
          cells.push(Buffer.isBuffer(value) ? value : Buffer.from(String(value)), Buffer.from("\n"));
    return Buffer.concat(cells);
  } finally {
    db.close();
  }
}

function found(haystack: Buffer, forms: { label: string; bytes: Buffer }[]): string[] {
  return forms.filter((form) => haystack.includes(form.bytes)).map((form) => form.label);
}

/** The keys a holder of the file could import from any cell: PKCS#8 PEM or a private JWK. */
async function importableKeys(file: string): Promise<string[]> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  const values: string[] = [];
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
      name: string;
    }[];
    for (const { name } of tables)
      for (const row of db.prepare(`SELECT * FROM "${name}"`).all() as Record<string, unknown>[])
        for (const value of Object.values(row)) if (typeof value === "string") values.push(value);
  } finally {
    db.close();
  }
  const importable: string[] = [];
  for (const value of values) {
    for (const alg of ["ES256", "EdDSA"]) {
      const key = await jose.importPKCS8(value, alg).catch(() => undefined);
      if (key) importable.push(`PKCS#8 ${alg}: ${value.slice(0, 40)}`);
    }
    try {
      const jwk = JSON.parse(value) as jose.JWK;
      if (jwk && typeof jwk === "object" && "d" in jwk) importable.push(`JWK: ${value.slice(0, 40)}`);
    } catch {
      // not JSON
    }
  }
  return importable;
}

describe("a copy of gatehouse.db alone", () => {
  it("holds no private key material and cannot be made to sign", async () => {
    const home = await newHome();
    const gateway = await start(home);
    const first = gateway.ctx.signingKeys.signer();
    const before = await adminToken(gateway);
    await gateway.ctx.signingKeys.rotate(3_600_000);
    const second = gateway.ctx.signingKeys.signer();
    expect(second.kid).not.toBe(first.kid);
    const after = await adminToken(gateway);
    expect((await validate(gateway, before)).status).toBe(200);
    expect((await validate(gateway, after)).status).toBe(200);

    const forms = [
      ...GENERIC_FORMS,
      ...keyForms(first.privateKey, "the previous signing key"),
      ...keyForms(second.privateKey, "the signing key"),
    ];
    for (const secret of handedOut) forms.push({ label: `a secret handed out`, bytes: Buffer.from(secret) });
    const kekFile = path.join(home, "pki/signing-keys.kek");
    if (existsSync(kekFile)) {
      const kek = readFileSync(kekFile, "utf8").trim();
      forms.push({ label: "the key-encryption key as hex", bytes: Buffer.from(kek) });
      forms.push({ label: "the key-encryption key", bytes: Buffer.from(kek, "hex") });
    }

    // A backup taken while the gateway runs (SQLite's online backup: WAL content included), and a
    // plain copy of the file after a clean stop.
    const database = path.join(home, "gatehouse.db");
    const backup = path.join(tempDir(), "backup.db");
    const source = new Database(database, { readonly: true, fileMustExist: true });
    await source.backup(backup);
    source.close();
    expect(found(everyCell(backup), forms)).toEqual([]);
    expect(found(readFileSync(backup), forms)).toEqual([]);
    expect(await importableKeys(backup)).toEqual([]);

    await stop(gateway);
    const copy = path.join(tempDir(), "gatehouse.db");
    copyFileSync(database, copy);
    expect(found(everyCell(copy), forms)).toEqual([]);
    expect(found(readFileSync(copy), forms)).toEqual([]);
    expect(await importableKeys(copy)).toEqual([]);

    // The thief's own home around the copy: the start stops, naming what is missing, and makes
    // no key-encryption key of its own.
    const thief = await newHome();
    copyFileSync(copy, path.join(thief, "gatehouse.db"));
    const missing = await refusal(start(thief));
    expect(missing.code).toBe("config_missing");
    expect(missing.message).toContain(path.join(thief, "pki/signing-keys.kek"));
    expect(existsSync(path.join(thief, "pki/signing-keys.kek"))).toBe(false);
    // A key-encryption key of the thief's choosing does not open the rows.
    writeFileSync(path.join(thief, "pki/signing-keys.kek"), randomBytes(32).toString("hex") + "\n", {
      mode: 0o600,
    });
    const wrong = await refusal(start(thief));
    expect(wrong.code).toBe("config_invalid");
    expect(wrong.message).toContain(path.join(thief, "pki/signing-keys.kek"));

    // The home itself, with its key-encryption key, still starts and verifies what it issued.
    const again = await start(home);
    expect((await validate(again, after)).status).toBe(200);
    expect((await validate(again, before)).status).toBe(200);
    await stop(again);
  });
});

describe("a database from before the signing keys were sealed", () => {
  it("is sealed in place at start: tokens signed before still verify, and no plaintext remains in the file", async () => {
    const home = await newHome();
    const gateway = await start(home);
    const signer = gateway.ctx.signingKeys.signer();
    const token = await adminToken(gateway);
    const pem = KeyObject.from(signer.privateKey).export({ type: "pkcs8", format: "pem" }) as string;
    const forms = [...GENERIC_FORMS, ...keyForms(signer.privateKey, "the signing key")];
    await stop(gateway);

    // The database as the previous version wrote it: the PEM in signing_keys.private_key_pem, a
    // retired key deleted in the clear, and no key-encryption key.
    const database = path.join(home, "gatehouse.db");
    const db = new Database(database);
    db.exec("ALTER TABLE signing_keys RENAME COLUMN sealed_private_key TO private_key_pem");
    db.prepare("UPDATE signing_keys SET private_key_pem = ? WHERE kid = ?").run(pem, signer.kid);
    db.prepare("DELETE FROM kysely_migration WHERE name = ?").run("0006_sealed_signing_keys");
    // Nor had it the later migrations' tables (several instances on one database).
    db.exec(`DROP TABLE gateway_instances; DROP TABLE shared_material; DROP TABLE rate_windows;
      DROP INDEX sessions_instance_open_idx; ALTER TABLE sessions DROP COLUMN instance_id;
      DROP TABLE spent_challenges; DROP TABLE dashboard_links; DROP TABLE dashboard_sessions;
      DELETE FROM kysely_migration WHERE name IN ('0007_several_instances', '0008_shared_ephemera');`);
    const retired = await jose.generateKeyPair("ES256", { extractable: true });
    const retiredPem = await jose.exportPKCS8(retired.privateKey);
    const insert = db.prepare(
      "INSERT INTO signing_keys (kid, alg, private_key_pem, public_jwk, created_at, verify_until) VALUES (?, 'ES256', ?, ?, ?, ?)",
    );
    const publicJwk = async (kid: string, key: CryptoKey) =>
      JSON.stringify({ ...(await jose.exportJWK(key)), kid, alg: "ES256", use: "sig" });
    // A previous key still verifying, also in the clear.
    const previous = await jose.generateKeyPair("ES256", { extractable: true });
    const farFuture = new Date(Date.now() + 86_400_000).toISOString();
    insert.run(
      "sk_oldprevious",
      await jose.exportPKCS8(previous.privateKey),
      await publicJwk("sk_oldprevious", previous.publicKey),
      "2020-01-01T00:00:00.000Z",
      farFuture,
    );
    // A retired key, deleted in the clear as the previous version did: its bytes stay in the page.
    insert.run(
      "sk_oldretired",
      retiredPem,
      await publicJwk("sk_oldretired", retired.publicKey),
      "2020-01-01T00:00:00.000Z",
      "2020-01-02T00:00:00.000Z",
    );
    db.prepare("DELETE FROM signing_keys WHERE kid = 'sk_oldretired'").run();
    db.close();
    rmSync(path.join(home, "pki/signing-keys.kek"), { force: true });
    forms.push(...keyForms(retired.privateKey as CryptoKey, "the retired key"));
    forms.push(...keyForms(previous.privateKey as CryptoKey, "the previous key"));
    // The old file holds all three keys: what this test looks for is there to be found.
    expect(found(readFileSync(database), forms)).toEqual(
      expect.arrayContaining([
        "a PEM private key",
        "the signing key: PEM body",
        "the previous key: PEM body",
        "the retired key: PEM body",
      ]),
    );
    // A token the previous key signed: the same claims as a real one, under that key.
    const oldToken = await new jose.SignJWT(jose.decodeJwt(token))
      .setProtectedHeader({ alg: "ES256", kid: "sk_oldprevious", typ: "at+jwt" })
      .sign(previous.privateKey);

    const migrated = await start(home);
    // Tokens signed before still verify, by the current key and by the previous one.
    expect((await validate(migrated, token)).status).toBe(200);
    expect((await validate(migrated, oldToken)).status).toBe(200);
    expect((await validate(migrated, await adminToken(migrated))).status).toBe(200);
    const kekFile = path.join(home, "pki/signing-keys.kek");
    expect(statSync(kekFile).mode & 0o777).toBe(0o600);

    // While it runs, the file alone (no -wal) and a backup hold none of the old plaintext.
    const whileRunning = path.join(tempDir(), "running.db");
    copyFileSync(database, whileRunning);
    expect(found(readFileSync(whileRunning), forms)).toEqual([]);
    const backup = path.join(tempDir(), "backup.db");
    const source = new Database(database, { readonly: true, fileMustExist: true });
    await source.backup(backup);
    source.close();
    expect(found(readFileSync(backup), forms)).toEqual([]);
    expect(found(everyCell(backup), forms)).toEqual([]);
    expect(await importableKeys(backup)).toEqual([]);
    const rows = new Database(backup, { readonly: true })
      .prepare("SELECT kid, sealed_private_key AS sealed FROM signing_keys ORDER BY kid")
      .all() as { kid: string; sealed: string }[];
    expect(rows.map((r) => r.kid).sort()).toEqual(["sk_oldprevious", signer.kid].sort());
    for (const row of rows) expect(row.sealed).toMatch(/^ghsk1\.kek_[0-9a-f]{12}\./);

    // A second start finds nothing to seal, and still verifies.
    await stop(migrated);
    expect(found(readFileSync(database), forms)).toEqual([]);
    const restarted = await start(home);
    expect((await validate(restarted, token)).status).toBe(200);
    await stop(restarted);
  });
});
