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
 * The devices, in memory. Authentication reads only this; every change goes through `remember`
 * or `update`, which follow the store's write (so the cache never shows what is not durable) and
 * tell the other gateway instances (`publish`) to re-read the device. `refresh` and `load` are
 * how this instance hears of theirs.
 */
export class DeviceDirectory {
  private devices = new Map<string, DeviceRecord>();
  /** Device ids by the canonical fingerprint of their key (a key never changes under an id). */
  private idsByKey = new Map<string, Set<string>>();
  /** The records cached while a `load` or `refresh` reads, one map per read in flight. */
  private readonly writtenDuringRead = new Set<Map<string, DeviceRecord>>();

  /**
   * @param publish told of each device this instance changed, once the change is durable (the
   *   cluster's NOTIFY to the other instances); nothing by default
   */
  constructor(
    private readonly store: Store,
    private readonly publish: (change: { kind: "device"; deviceId: string }) => void = () => undefined,
  ) {}

  /**
   * Reads every device. The cache is swapped whole once the read is done: handshakes in the
   * meantime (a reload after another instance's changes) see the old cache, never an empty one.
   */
  async load(): Promise<void> {
    // Records cached while the list is read (a revocation here, say) are newer than the list.
    const during = new Map<string, DeviceRecord>();
    this.writtenDuringRead.add(during);
    let devices: DeviceRecord[];
    try {
      devices = await this.store.listDevices();
    } finally {
      this.writtenDuringRead.delete(during);
    }
    this.devices = new Map();
    this.idsByKey = new Map();
    for (const device of devices) this.cache(device);
    for (const device of during.values()) this.cache(device);
  }

  /**
   * Re-reads one device that another instance changed, without telling anyone.
   * @returns the record now cached, or undefined when the store has no such device.
   */
  async refresh(deviceId: string): Promise<DeviceRecord | undefined> {
    const during = new Map<string, DeviceRecord>();
    this.writtenDuringRead.add(during);
    let device: DeviceRecord | undefined;
    try {
      device = await this.store.getDevice(deviceId);
    } finally {
      this.writtenDuringRead.delete(during);
    }
    // A write here during the read is newer than what was read.
    device = during.get(deviceId) ?? device;
    if (device) this.cache(device);
    return device;
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
    const byId = this.byId(idOrName);
    if (byId) return byId;
    const named = this.named(idOrName, (device) => device.kind === "node" && device.status === "approved");
    if (named.length > 1) throw ambiguousName(idOrName, named, "nodes", "nodes exec", " -- …");
    return named[0];
  }

  /**
   * The device an operator means by a device name, as `devices show|approve|deny|revoke` take it
   * (after an id and a user code, which `Registrations.resolveDevice` tries first). Compared as a
   * person reads it (`nameKey`), among the devices one acts on (pending and approved, nodes and
   * operators); only when none of those has the name, among denied and revoked ones, so that a
   * device that registered again under its old name is not made ambiguous by its own past.
   * @returns the device, or undefined when no device has that name.
   * @throws GatehouseError `invalid_request` naming every device id when several devices of the
   *   same standing share the name.
   */
  resolveByName(name: string, verb = "show"): DeviceRecord | undefined {
    const live = this.named(name, (device) => device.status === "pending" || device.status === "approved");
    const named = live.length > 0 ? live : this.named(name, () => true);
    if (named.length > 1) throw ambiguousName(name, named, "devices", `devices ${verb}`, "");
    return named[0];
  }

  /** A device by its id, as typed (ids are lowercase; an id pasted in capitals still finds it). */
  private byId(id: string): DeviceRecord | undefined {
    return this.devices.get(id) ?? this.devices.get(id.toLowerCase());
  }

  private named(name: string, which: (device: DeviceRecord) => boolean): DeviceRecord[] {
    const key = nameKey(name.trim());
    return this.list().filter((device) => which(device) && nameKey(device.name) === key);
  }

  /** Keeps the cache in step with a record the store has just written, and tells the other instances. */
  remember(device: DeviceRecord): void {
    this.cache(device);
    this.publish({ kind: "device", deviceId: device.deviceId });
  }

  private cache(device: DeviceRecord): void {
    for (const during of this.writtenDuringRead) during.set(device.deviceId, device);
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

  /**
   * A device's last seen time and address, already written by the session journal's batch: the
   * cached record follows without another read. A null address keeps the last one known.
   */
  noteSeen(deviceId: string, lastSeen: string, address: string | null): void {
    const device = this.devices.get(deviceId);
    if (device) this.devices.set(deviceId, { ...device, lastSeen, ...(address === null ? {} : { address }) });
  }

  async update(deviceId: string, patch: Partial<Omit<DeviceRecord, "deviceId" | "createdAt">>) {
    const updated = await this.store.updateDevice(deviceId, patch);
    if (updated) this.remember(updated);
    return updated;
  }
}

/**
 * The refusal of a name several devices share: an operator's command must never go to whichever
 * of them comes first. Names every id, and shows the command again with the first id.
 */
function ambiguousName(
  input: string,
  named: DeviceRecord[],
  what: "nodes" | "devices",
  command: string,
  rest: string,
): GatehouseError {
  const name = safeJson(input);
  const ids = named.map((device) => device.deviceId);
  return new GatehouseError(
    "invalid_request",
    `${name} is ambiguous: ${named.length} ${what} are named ${name} (${ids.join(", ")})`,
    `Use the device id, e.g. \`gatehouse ${command} ${ids[0]}${rest}\`; \`gatehouse devices list\` shows each ${what === "nodes" ? "node" : "device"}'s name and id.`,
  );
}
