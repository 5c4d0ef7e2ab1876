import type { DeviceRecord, Store } from "../store/types.js";

/**
 * The devices, in memory. Authentication reads only this; every change goes through `save`,
 * which writes the store first and then the cache, so the cache never shows what is not durable.
 */
export class DeviceDirectory {
  private readonly devices = new Map<string, DeviceRecord>();

  constructor(private readonly store: Store) {}

  async load(): Promise<void> {
    this.devices.clear();
    for (const device of await this.store.listDevices()) this.devices.set(device.deviceId, device);
  }

  get(deviceId: string): DeviceRecord | undefined {
    return this.devices.get(deviceId);
  }

  list(): DeviceRecord[] {
    return [...this.devices.values()];
  }

  /** Keeps the cache in step with a record the store has just written. */
  remember(device: DeviceRecord): void {
    this.devices.set(device.deviceId, device);
  }

  async update(deviceId: string, patch: Partial<Omit<DeviceRecord, "deviceId" | "createdAt">>) {
    const updated = await this.store.updateDevice(deviceId, patch);
    if (updated) this.remember(updated);
    return updated;
  }
}
