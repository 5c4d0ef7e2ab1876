// The periodic re-read of several instances (cluster/cache-refresh.ts `listening`): each step runs
// on its own, so a refused signing-key row cannot hold back the CRL or a revoked device's sessions,
// and a re-read that changed no device does not make every dashboard refetch.
import { describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { cacheRefresher, type CachedState } from "../src/gateway/cluster/cache-refresh.js";
import { deviceRecord } from "./fixtures/store.js";
import type { DeviceRecord } from "../src/store/types.js";

function cachedState(stored: DeviceRecord[], options: { signingKeysFail?: boolean } = {}) {
  let cache = new Map(stored.map((d) => [d.deviceId, d]));
  const online = new Set(["dev_revoked"]);
  const state = {
    devices: {
      list: () => [...cache.values()],
      get: (id: string) => cache.get(id),
      load: vi.fn(async () => {
        cache = new Map(stored.map((d) => [d.deviceId, d]));
      }),
    },
    sessions: {
      each: () => [...online].map((deviceId) => ({ deviceId })),
      isOnline: (id: string) => online.has(id),
      closeDevice: vi.fn((id: string) => (online.delete(id) ? 1 : 0)),
    },
    tokens: { load: vi.fn(async () => undefined) },
    signingKeys: {
      refresh: vi.fn(async () => {
        if (options.signingKeysFail) throw new Error("signing key sk_x is not sealed under this key");
      }),
    },
    tls: { issueCrlsIfChanged: vi.fn(async () => undefined) },
    events: { emit: vi.fn() },
    logger: pino({ level: "silent" }),
  };
  return { state, stored, handlers: cacheRefresher(state as unknown as CachedState) };
}

describe("the periodic re-read", () => {
  it("still re-issues the CRL and closes a revoked device's sessions when a signing-key row is refused, then fails so it is tried again", async () => {
    const { state, stored, handlers } = cachedState([deviceRecord("dev_revoked", { status: "approved" })], {
      signingKeysFail: true,
    });
    stored[0] = { ...stored[0]!, status: "revoked" };
    await expect(handlers.listening()).rejects.toThrow(/sk_x/);
    expect(state.sessions.closeDevice).toHaveBeenCalledWith("dev_revoked", 4403, "device_revoked");
    expect(state.tls.issueCrlsIfChanged).toHaveBeenCalledTimes(1);
    expect(state.tokens.load).toHaveBeenCalledTimes(1);
  });

  it("tells dashboards of devices only when a device changed", async () => {
    const { state, stored, handlers } = cachedState([deviceRecord("dev_a", { status: "approved" })]);
    await handlers.listening();
    expect(state.events.emit).not.toHaveBeenCalledWith("devices");
    stored[0] = { ...stored[0]!, status: "revoked", updatedAt: "2026-11-30T05:00:00.000Z" };
    await handlers.listening();
    expect(state.events.emit).toHaveBeenCalledWith("devices");
  });
});
