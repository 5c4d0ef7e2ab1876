import type { DeviceRecord, Store } from "../store/types.js";
import { GatehouseError } from "../protocol/errors.js";
import { nameKey } from "../protocol/device-name.js";
import { safeJson } from "../protocol/safe-text.js";
import { spkiIdentity } from "../pki/fingerprint.js";

/** The canonical SPKI of a P-256 key starts with these bytes and is 91 long (RFC 5480). */
const CANONICAL_P256_SPKI_HEADER = Buffer.from(
  "3059301306072a8648ce3d020106082a8648ce3d03010703420004",
  "hex",
);

/**
 * The canonical fingerprint of a stored device key. Records written since keys are canonicalised
 * hold the canonical SPKI already (checked by its fixed header, without parsing); an older record
 * may hold another encoding of its key.
 */
function canonicalKeyFingerprint(device: DeviceRecord): string | undefined {
  const der = Buffer.from(device.publicKey, "base64");
  if (
    der.length === 91 &&
    der.subarray(0, CANONICAL_P256_SPKI_HEADER.length).equals(CANONICAL_P256_SPKI_HEADER)
  )
    return device.keyFingerprint;
  try {
    return spkiIdentity(der).keyFingerprint;
  } catch {
    return undefined;
  }
}

/**
 * The devices, in memory. Authentication reads only this; every change goes through `save`,
 * which writes the store first and then the cache, so the cache never shows what is not durable.
 */
export class DeviceDirectory {
  private readonly devices = new Map<string, DeviceRecord>();
  /** Device ids by the canonical fingerprint of their key (a key never changes under an id). */
  private readonly idsByKey = new Map<string, Set<string>>();

  constructor(private readonly store: Store) {}

  async load(): Promise<void> {
    this.devices.clear();
    this.idsByKey.clear();
    for (const device of await this.store.listDevices()) this.remember(device);
  }

  get(deviceId: string): DeviceRecord | undefined {
    return this.devices.get(deviceId);
  }

  list(): DeviceRecord[] {
    return [...this.devices.values()];
  }

  /**
   * The device a key belongs to, given the key's canonical identity (`spkiIdentity`): a record
   * under another id holding the same key in another encoding wins when it is revoked or denied,
   * so such a key stays refused whatever encoding it arrives in; otherwise the record under its id.
   */
  forKey(key: { deviceId: string; keyFingerprint: string }): DeviceRecord | undefined {
    const twins = [...(this.idsByKey.get(key.keyFingerprint) ?? [])]
      .map((id) => this.devices.get(id))
      .filter((device): device is DeviceRecord => device !== undefined);
    return (
      twins.find((device) => device.status === "revoked") ??
      twins.find((device) => device.status === "denied") ??
      this.devices.get(key.deviceId)
    );
  }

  /**
   * The device an operator means by an id or a name, as `resolveNodeTarget` (node-target.ts) asks
   * for it. An id wins (any status and kind, so a revoked node's history stays readable). A name is
   * compared as a person reads it (`nameKey`), among approved nodes only: a pending, denied or
   * revoked registration can neither take an approved node's name nor make it ambiguous.
   * @returns the device, or undefined when no device has that id and no approved node that name.
   * @throws GatehouseError `invalid_request` naming every device id when several approved nodes
   *   share the name (an operator's command must never go to whichever of them is online).
   */
  resolveNode(idOrName: string): DeviceRecord | undefined {
    const byId = this.devices.get(idOrName) ?? this.devices.get(idOrName.toLowerCase());
    if (byId) return byId;
    const key = nameKey(idOrName.trim());
    const named = this.list().filter(
      (device) => device.kind === "node" && device.status === "approved" && nameKey(device.name) === key,
    );
    if (named.length > 1) {
      const name = safeJson(idOrName);
      const ids = named.map((device) => device.deviceId);
      throw new GatehouseError(
        "invalid_request",
        `${name} is ambiguous: ${named.length} nodes are named ${name} (${ids.join(", ")})`,
        `Use the device id, e.g. \`gatehouse nodes exec ${ids[0]} -- …\`; \`gatehouse devices list\` shows each node's name and id.`,
      );
    }
    return named[0];
  }

  /** Keeps the cache in step with a record the store has just written. */
  remember(device: DeviceRecord): void {
    if (!this.devices.has(device.deviceId)) {
      const fingerprint = canonicalKeyFingerprint(device);
      if (fingerprint) {
        const ids = this.idsByKey.get(fingerprint) ?? new Set<string>();
        ids.add(device.deviceId);
        this.idsByKey.set(fingerprint, ids);
      }
    }
    this.devices.set(device.deviceId, device);
  }

  async update(deviceId: string, patch: Partial<Omit<DeviceRecord, "deviceId" | "createdAt">>) {
    const updated = await this.store.updateDevice(deviceId, patch);
    if (updated) this.remember(updated);
    return updated;
  }
}
