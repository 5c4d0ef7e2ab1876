/**
 * A whole re-read of the device cache (what an instance does after its change feed reconnects)
 * must not undo a change made here while the list was being read: a device revoked during the
 * read stays revoked in the cache, so its certificate is not accepted again until the next change.
 * The same for the API keys and the signing keys. A real SQLite store; only the list read is
 * held open, to make the window.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DeviceDirectory } from "../src/gateway/device-directory.js";
import { TokenService, type TokenChange } from "../src/auth/token-service.js";
import type { TokenStore } from "../src/store/token-types.js";
import { SigningKeys } from "../src/auth/signing-keys.js";
import { keyEncryptionKey } from "../src/auth/key-encryption.js";
import type { Store } from "../src/store/types.js";
import { closeTempStore, deviceRecord, openTempStore, type TempStore } from "./fixtures/store.js";

/** The store, with its device list held until `release` (the read a reload waits on). */
function heldListing(store: Store) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const reading = new Promise<void>((resolve) => (started = resolve));
  const held: Store = Object.create(store) as Store;
  held.listDevices = async (filter) => {
    const devices = await store.listDevices(filter);
    started();
    await gate;
    return devices;
  };
  return { store: held, reading, release };
}

describe("a device cache re-read while devices change here", () => {
  let temp: TempStore;
  beforeEach(async () => {
    temp = await openTempStore("gh-cache-reload-");
  });
  afterEach(async () => closeTempStore(temp.dir, temp.store));

  it("keeps a revocation made during the re-read, and tells the other instances of it", async () => {
    await temp.store.upsertDevice(deviceRecord("dev_1", { status: "approved" }));
    const listing = heldListing(temp.store);
    const published: string[] = [];
    const directory = new DeviceDirectory(listing.store, (change) => published.push(change.deviceId));
    const reload = directory.load();
    await listing.reading;
    // The list read holds dev_1 approved; the revocation lands before the read is applied.
    await directory.update("dev_1", { status: "revoked", revokedAt: "2026-03-01T12:00:00.000Z" });
    listing.release();
    await reload;
    expect(directory.get("dev_1")?.status).toBe("revoked");
    expect(published).toEqual(["dev_1"]);
  });

  it("keeps an API key revoked during a re-read of the keys, and tells the other instances", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const reading = new Promise<void>((resolve) => (started = resolve));
    const tokens: TokenStore = Object.create(temp.store.tokens) as TokenStore;
    let holdNext = false;
    tokens.listApiKeys = async () => {
      const keys = await temp.store.tokens.listApiKeys();
      if (holdNext) {
        started();
        await gate;
      }
      return keys;
    };
    const published: TokenChange[] = [];
    const service = new TokenService({
      store: tokens,
      signingKeys: { ring: undefined as never, signer: () => undefined as never },
      pepper: Buffer.alloc(32, 7),
      gatewayId: "gw_test",
      accessTtlMs: 3_600_000,
      refreshTtlMs: 86_400_000,
      devices: () => undefined,
      now: () => new Date("2026-03-01T12:00:00.000Z"),
      publish: (change) => published.push(change),
    });
    await service.load();
    const { record } = await service.createApiKey({ name: "ci", role: "operator" });
    holdNext = true;
    const reload = service.load();
    await reading;
    await service.revokeApiKey(record.keyId, "leaked");
    release();
    await reload;
    expect(service.findApiKey(record.keyId).revokedAt).not.toBeNull();
    expect(published).toEqual([
      { kind: "api_key", keyId: record.keyId },
      { kind: "api_key", keyId: record.keyId },
    ]);
  });

  it("keeps a signing key rotated here during a re-read of the keys another instance changed", async () => {
    let hold: { reading: () => void; gate: Promise<void> } | undefined;
    const tokens: TokenStore = Object.create(temp.store.tokens) as TokenStore;
    tokens.listSigningKeys = async () => {
      const keys = await temp.store.tokens.listSigningKeys();
      const held = hold;
      hold = undefined;
      if (held) {
        held.reading();
        await held.gate;
      }
      return keys;
    };
    const kek = keyEncryptionKey(Buffer.alloc(32, 9), "test");
    const keys = new SigningKeys(tokens, "ES256", () => new Date(), { describe: "test", load: () => kek });
    await keys.load();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const reading = new Promise<void>((resolve) => (hold = { reading: resolve, gate }));
    const refresh = keys.refresh();
    await reading;
    const rotated = await keys.rotate(60_000);
    release();
    await refresh;
    expect(keys.signer().kid).toBe(rotated.kid);
  });
});
