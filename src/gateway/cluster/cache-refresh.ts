import type { Logger } from "pino";
import type { DeviceRecord } from "../../store/types.js";
import type { DeviceDirectory } from "../device-directory.js";
import type { SessionRegistry } from "../sessions.js";
import type { TokenService } from "../../auth/token-service.js";
import type { SigningKeys } from "../../auth/signing-keys.js";
import type { TlsState } from "../tls-state.js";
import type { EventHub } from "../events.js";
import type { ChangeFeedHandlers, ClusterChange } from "./change-feed.js";

/** The caches an instance keeps that another instance's writes can make stale. */
export interface CachedState {
  devices: DeviceDirectory;
  sessions: SessionRegistry;
  tokens: TokenService;
  signingKeys: SigningKeys;
  tls: TlsState;
  events?: Pick<EventHub, "emit">;
  logger: Logger;
}

/** The close code of a session whose device is no longer approved (as a local revoke closes it). */
const DEVICE_NOT_APPROVED_CLOSE = 4403;

/**
 * What an instance does when another one changed something: re-read the record named in the
 * change (never trust more than its id) and bring every cache up to date; a device no longer
 * approved loses its sessions here (4403 `device_revoked`, as a local revoke does) and the CRL is
 * re-issued, so its certificate fails every later handshake on this instance too. After a
 * reconnect of the change feed, and every RECONCILE_EVERY_MS, `listening` re-reads everything,
 * for changes it did not hear of.
 */
export function cacheRefresher(state: CachedState): ChangeFeedHandlers {
  return {
    async change(change: ClusterChange): Promise<void> {
      switch (change.kind) {
        case "device": {
          const before = state.devices.get(change.deviceId);
          const after = await state.devices.refresh(change.deviceId);
          if (after) closeUnapproved(state, [after]);
          if (after?.status === "revoked" && before?.status !== "revoked") await state.tls.issueCrls();
          state.events?.emit("devices");
          return;
        }
        case "api_key":
          await state.tokens.refreshApiKey(change.keyId);
          return;
        case "token_family":
          await state.tokens.refreshRevokedFamilies();
          return;
        case "signing_keys":
          await state.signingKeys.refresh();
          return;
        case "enroll_token":
          // Enroll tokens are read from the store at each use: nothing cached to refresh.
          return;
        case "nodes":
          // Node lists read the sessions table afresh: the dashboards watching this one refetch.
          state.events?.emit("nodes");
          return;
      }
    },

    async listening(): Promise<void> {
      // Each step on its own: a signing-key row refused (signing-keys.ts) must not hold back the
      // CRL or the sessions of a revoked device. The first failure is thrown after all have run,
      // so the feed tries the whole re-read again soon.
      let failure: unknown;
      const step = async (work: () => Promise<unknown>) => {
        try {
          await work();
        } catch (error) {
          failure ??= error;
        }
      };
      const devicesBefore = deviceStates(state.devices.list());
      let closed = 0;
      await step(async () => {
        await state.devices.load();
        closed = closeUnapproved(
          state,
          [...new Set([...state.sessions.each()].map((session) => session.deviceId))]
            .map((id) => state.devices.get(id))
            .filter((device): device is DeviceRecord => device !== undefined),
        );
      });
      await step(() => state.tokens.load());
      await step(() => state.signingKeys.refresh());
      await step(() => state.tls.issueCrlsIfChanged());
      // Dashboards refetch only when a device changed, not at every periodic re-read.
      if (deviceStates(state.devices.list()) !== devicesBefore) state.events?.emit("devices");
      // Nodes may have come and gone on the others meanwhile, unheard.
      state.events?.emit("nodes");
      // Every RECONCILE_EVERY_MS too: a line at info only when the re-read changed something live.
      state.logger[closed > 0 ? "info" : "debug"](
        { sessionsClosed: closed },
        "caches re-read from the shared database",
      );
      if (failure !== undefined) throw failure;
    },
  };
}

/** What a dashboard shows of the devices, as one string to compare before and after a re-read. */
function deviceStates(devices: DeviceRecord[]): string {
  return devices
    .map((d) => `${d.deviceId}:${d.status}:${d.updatedAt}:${d.role}:${d.name}`)
    .sort()
    .join("\n");
}

/** Closes this instance's sessions of every device in `devices` that is not approved; returns how many. */
function closeUnapproved(state: CachedState, devices: DeviceRecord[]): number {
  let closed = 0;
  for (const device of devices) {
    if (device.status === "approved" || !state.sessions.isOnline(device.deviceId)) continue;
    const count = state.sessions.closeDevice(
      device.deviceId,
      DEVICE_NOT_APPROVED_CLOSE,
      device.status === "revoked" ? "device_revoked" : `device_${device.status}`,
    );
    closed += count;
    state.logger.info(
      { deviceId: device.deviceId, sessionsClosed: count, status: device.status },
      "device no longer approved (changed on another instance): sessions closed",
    );
  }
  return closed;
}
