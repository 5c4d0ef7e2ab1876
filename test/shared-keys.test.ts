/**
 * Shared keys without a shared disk: the CA, the token hash key and the signing keys of a gateway
 * whose instances share one database live there sealed under the key-encryption key, so a copy
 * of the database alone can sign nothing. Run on both stores (the material is the Store's), and
 * the PostgreSQL-only parts (an unreachable database named, never its password) against a real
 * server (test/fixtures/postgres.ts).
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { keyEncryptionKey } from "../src/auth/key-encryption.js";
import { SigningKeys } from "../src/auth/signing-keys.js";
import { gatewayConfigSchema, resolveGatewaySecrets, type GatewayConfigInput } from "../src/config/index.js";
import {
  SHARED_MATERIAL,
  createSharedState,
  loadSharedCa,
  loadSharedHashKey,
  readSharedGateway,
} from "../src/gateway/cluster/shared-material.js";
import { gatewayKekSource } from "../src/gateway/home.js";
import { openGatewayStore } from "../src/gateway/open-store.js";
import { issueServerCertificate, generateKeyPair } from "../src/pki/index.js";
import { GatehouseError } from "../src/protocol/errors.js";
import type { Store } from "../src/store/index.js";
import { postgresAvailable } from "./fixtures/postgres.js";
import { openDialectStore } from "./fixtures/store-dialects.js";
import { refusal } from "./fixtures/refusal.js";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A migrated, empty store of each kind, closed and removed after the tests. */
const DIALECTS = (["sqlite", "postgres"] as const).map((dialect) => ({
  dialect,
  open: async (): Promise<Store> => {
    const opened = await openDialectStore(dialect);
    cleanups.push(() => opened.close());
    return opened.store;
  },
}));

/** Every shared_material row, as text: what a refusal must leave as it was. */
async function sharedRows(store: Store): Promise<string> {
  const names = Object.values(SHARED_MATERIAL);
  return JSON.stringify(await Promise.all(names.map((name) => store.getSharedMaterial(name))));
}

const kekOf = (label: string) => keyEncryptionKey(randomBytes(32), `tokens.keyEncryptionKey (${label})`);
const NOW = new Date("2026-11-30T12:00:00Z");
const init = (store: Store, kek: ReturnType<typeof kekOf>, gatewayId = "gw_first") =>
  createSharedState(
    store,
    kek,
    { gatewayId, name: "gatehouse" },
    { now: NOW, hashKeyConfigured: false, describeStore: "postgres://gh@db:5432/gh" },
  );

describe.each(DIALECTS)("shared key material on $dialect", ({ dialect, open }) => {
  const skip = dialect === "postgres" && !postgresAvailable();

  it.skipIf(skip)(
    "holds the CA key, the hash key and the signing keys sealed: no row holds a private key in the clear",
    async () => {
      const store = await open();
      const kek = kekOf("env://KEK");
      const ca = await init(store, kek);
      await new SigningKeys(store.tokens, "ES256", () => NOW, {
        describe: kek.source,
        load: () => kek,
      }).load();
      const hashKey = await loadSharedHashKey(store, kek);
      expect(hashKey).toHaveLength(32);

      const rows = [
        ...(await Promise.all(Object.values(SHARED_MATERIAL).map((name) => store.getSharedMaterial(name)))),
      ];
      expect(rows.map((row) => row?.name).sort()).toEqual(
        ["cluster/gateway", "pki/ca.key", "pki/ca.pem", "pki/token-hmac.key"].sort(),
      );
      const everything = JSON.stringify([rows, await store.tokens.listSigningKeys()]);
      expect(everything).not.toContain("PRIVATE KEY");
      expect(everything).not.toContain(ca.keyPem.split("\n")[1]);
      expect(everything).not.toContain(hashKey.toString("hex"));
      expect(rows.find((row) => row?.name === "pki/ca.key")?.sealed).toBe(1);
      expect(rows.find((row) => row?.name === "pki/ca.pem")?.value).toBe(ca.certPem);
      expect(await readSharedGateway(store)).toEqual({ gatewayId: "gw_first", name: "gatehouse" });

      // Another instance with the same key gets the same CA, and it signs.
      const loaded = await loadSharedCa(store, kek, "db");
      expect(loaded.fingerprint).toBe(ca.fingerprint);
      const { publicKey } = await generateKeyPair();
      const issued = await issueServerCertificate(loaded, {
        publicKey,
        sans: [],
        now: NOW,
        ttlMs: 86_400_000,
      });
      expect(issued.pem).toContain("BEGIN CERTIFICATE");
    },
  );

  it.skipIf(skip)("opens nothing with another key-encryption key, and says which keys differ", async () => {
    const store = await open();
    const kek = kekOf("env://KEK");
    await init(store, kek);
    const other = kekOf("env://OTHER");
    const before = await sharedRows(store);
    const ca = await refusal(loadSharedCa(store, other, "db"));
    expect(ca.code).toBe("config_invalid");
    expect(ca.message).toContain("pki/ca.key");
    expect(ca.message).toContain(kek.id);
    expect(ca.message).toContain(other.id);
    expect(ca.message).toContain("env://OTHER");
    expect((await refusal(loadSharedHashKey(store, other))).code).toBe("config_invalid");
    expect(await sharedRows(store)).toBe(before);
  });

  it.skipIf(skip)("refuses a sealed row moved under another name", async () => {
    const store = await open();
    const kek = kekOf("env://KEK");
    await init(store, kek);
    const caKey = (await store.getSharedMaterial(SHARED_MATERIAL.caKey))!;
    await store.putSharedMaterial({ ...caKey, name: SHARED_MATERIAL.tokenHashKey });
    const moved = await refusal(loadSharedHashKey(store, kek));
    expect(moved.code).toBe("config_invalid");
    expect(moved.message).toContain("altered or moved");
  });

  it.skipIf(skip)("refuses a second init on a database that holds a gateway, changing nothing", async () => {
    const store = await open();
    const kek = kekOf("env://KEK");
    await init(store, kek);
    const before = await sharedRows(store);
    const again = await refusal(init(store, kek, "gw_second"));
    expect(again.code).toBe("invalid_request");
    expect(again.message).toContain("gw_first");
    expect(again.hint).toContain("gateway join");
    expect(await sharedRows(store)).toBe(before);
  });

  it.skipIf(skip)("lets exactly one of two inits racing on one database go on", async () => {
    const store = await open();
    const kek = kekOf("env://KEK");
    const results = await Promise.allSettled([init(store, kek, "gw_a"), init(store, kek, "gw_b")]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const refused = results.find((r) => r.status === "rejected")!.reason as GatehouseError;
    expect(refused.code).toBe("invalid_request");
    const winner = (await readSharedGateway(store))!.gatewayId;
    expect(["gw_a", "gw_b"]).toContain(winner);
    // The CA in the database is the winner's, whole.
    expect((await loadSharedCa(store, kek, "db")).cert.subjectName.toString()).toContain(winner);
  });
});

describe("the settings of a postgres store", () => {
  const home = "/nonexistent/gateway-home";
  const postgresConfig = (over: Partial<GatewayConfigInput> = {}) =>
    gatewayConfigSchema.parse({
      gatewayId: "gw_x",
      store: { kind: "postgres", url: "env://GATEHOUSE_DATABASE_URL" },
      cluster: { instanceId: "gi_abcdefghijklmnop" },
      ...over,
    });

  it("need tokens.keyEncryptionKey: no key file of one home can serve several instances", async () => {
    const refused = await refusal(() => gatewayKekSource(home, postgresConfig(), {}));
    expect(refused.code).toBe("config_invalid");
    expect(refused.message).toContain("tokens.keyEncryptionKey");
    expect(refused.hint).toContain("openssl rand -hex 32");
    // Alone, the home's key file serves as before.
    const solo = gatewayKekSource(home, gatewayConfigSchema.parse({ gatewayId: "gw_x" }), {});
    expect(solo.describe).toBe(path.join(home, "pki/signing-keys.kek"));
  });

  it("need cluster.instanceId, which init --store and join write", async () => {
    const config = postgresConfig({ cluster: {} });
    const refused = await refusal(
      openGatewayStore(home, config, { storeUrl: "postgres://gh@127.0.0.1:1/gh" }),
    );
    expect(refused.code).toBe("config_invalid");
    expect(refused.message).toContain("cluster.instanceId");
    expect(refused.hint).toContain("gateway join");
  });

  it("resolve store.url like every secret, and name one that is no postgres URL without printing it", async () => {
    const config = postgresConfig();
    const secrets = await resolveGatewaySecrets(config, {
      env: { GATEHOUSE_DATABASE_URL: "postgres://gh:pw@db:5432/gh" },
    });
    expect(secrets.storeUrl).toBe("postgres://gh:pw@db:5432/gh");
    const unset = await refusal(resolveGatewaySecrets(config, { env: {} }));
    expect(unset.code).toBe("config_invalid");
    expect(unset.message).toContain("store.url");
    expect(unset.message).toContain("GATEHOUSE_DATABASE_URL");
    const wrong = await refusal(openGatewayStore(home, config, { storeUrl: "mysql://gh:hunter2@db/gh" }));
    expect(wrong.code).toBe("config_invalid");
    expect(wrong.message).toContain("store.url");
    expect(`${wrong.message} ${wrong.hint}`).not.toContain("hunter2");
  });
});

describe.skipIf(!postgresAvailable())("a postgres store that cannot be used", () => {
  it("is named unavailable with its host, port and database, never its password", async () => {
    const config = gatewayConfigSchema.parse({
      gatewayId: "gw_x",
      store: { kind: "postgres", url: "env://GATEHOUSE_DATABASE_URL" },
      cluster: { instanceId: "gi_abcdefghijklmnop" },
    });
    // A port nothing listens on (the shared server's port + a few would be a guess: port 1 is never served).
    const url = "postgres://gh:topsecret@127.0.0.1:1/ghdb";
    const refused = await refusal(async () => {
      const store = await openGatewayStore("/nonexistent", config, { storeUrl: url });
      try {
        await store.migrate();
      } finally {
        await store.close().catch(() => undefined);
      }
    });
    expect(refused.code).toBe("unavailable");
    expect(refused.message).toContain("127.0.0.1:1");
    expect(refused.message).toContain("ghdb");
    expect(`${refused.message} ${refused.hint}`).not.toContain("topsecret");
  });
});
