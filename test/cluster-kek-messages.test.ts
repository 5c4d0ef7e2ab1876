/**
 * What a gateway says when its key-encryption key is not the one its database was sealed under:
 * the remedy names where the key comes from. From tokens.keyEncryptionKey (required with a postgres
 * store, possible alone) there is no file to restore: the message names the setting and its
 * reference; from the home's key file (alone, by default) it names the file and its backup.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SigningKeys } from "../src/auth/signing-keys.js";
import { gatewayConfigSchema } from "../src/config/index.js";
import { gatewayKekSource } from "../src/gateway/home.js";
import type { Store } from "../src/store/index.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import { openDialectStore, type Dialect } from "./fixtures/store-dialects.js";
import { refusal } from "./fixtures/refusal.js";

const NOW = new Date("2026-03-01T12:00:00Z");
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-kek-messages-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A gateway home as init leaves it for the key file: with its pki/ folder. */
function homeDir(): string {
  const home = tempDir();
  mkdirSync(path.join(home, "pki"), { mode: 0o700 });
  return home;
}

/** A migrated, empty store of `dialect`, closed and removed after the tests. */
async function freshStore(dialect: Dialect): Promise<Store> {
  const opened = await openDialectStore(dialect);
  cleanups.push(() => opened.close());
  return opened.store;
}

/** The signing keys of `store` loaded as a gateway with this config and key would load them. */
async function loadSigningKeys(
  store: Store,
  home: string,
  settings: { kind: "postgres" | "sqlite"; reference?: string; key?: Buffer },
): Promise<void> {
  const config = gatewayConfigSchema.parse({
    gatewayId: "gw_x",
    ...(settings.kind === "postgres"
      ? {
          store: { kind: "postgres", url: "env://GATEHOUSE_DATABASE_URL" },
          cluster: { instanceId: "gi_abcdefghijklmnop" },
        }
      : {}),
    ...(settings.reference ? { tokens: { keyEncryptionKey: settings.reference } } : {}),
  });
  const source = gatewayKekSource(home, config, { keyEncryptionKey: settings.key });
  await new SigningKeys(store.tokens, "ES256", () => NOW, source).load();
}

const STORES = [
  { kind: "postgres" as const, open: () => freshStore("postgres"), skip: !postgresAvailable() },
  { kind: "sqlite" as const, open: () => freshStore("sqlite"), skip: false },
];

describe.each(STORES)("signing keys sealed under another key ($kind store)", ({ kind, open, skip }) => {
  it.skipIf(skip)(
    "name tokens.keyEncryptionKey and its reference as the remedy, never a file to restore",
    async () => {
      const store = await open();
      await loadSigningKeys(store, tempDir(), {
        kind,
        reference: "env://GH_FIRST_KEK",
        key: randomBytes(32),
      });

      const refused = await refusal(
        loadSigningKeys(store, tempDir(), { kind, reference: "env://GH_OTHER_KEK", key: randomBytes(32) }),
      );
      expect(refused.code).toBe("config_invalid");
      expect(refused.message).toContain("tokens.keyEncryptionKey (env://GH_OTHER_KEK)");
      expect(refused.hint).toContain("tokens.keyEncryptionKey");
      expect(refused.hint).toContain("env://GH_OTHER_KEK");
      expect(refused.hint).not.toMatch(/backup|file/i);
    },
  );
});

describe("signing keys sealed under the home's key file, on a gateway alone", () => {
  it("name that file and its backup as the remedy", async () => {
    const store = await freshStore("sqlite");
    const home = homeDir();
    await loadSigningKeys(store, home, { kind: "sqlite" });
    rmSync(path.join(home, "pki", "signing-keys.kek"));

    const missing = await refusal(loadSigningKeys(store, home, { kind: "sqlite" }));
    expect(missing.code).toBe("config_missing");
    expect(missing.hint).toContain("from the home's backup");

    const other = homeDir();
    await loadSigningKeys(await freshStore("sqlite"), other, { kind: "sqlite" });
    const refused = await refusal(loadSigningKeys(store, other, { kind: "sqlite" }));
    expect(refused.code).toBe("config_invalid");
    expect(refused.hint).toContain(path.join(other, "pki", "signing-keys.kek"));
    expect(refused.hint).toContain("from the home's backup");
  });
});
