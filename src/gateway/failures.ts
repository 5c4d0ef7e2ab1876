import type { ErrorCode } from "../protocol/errors.js";

export interface RecordedFailure {
  at: string;
  code: ErrorCode;
  address: string;
  route: string;
  credential: string;
  fingerprint?: string;
  deviceId?: string;
}

const PER_KEY = 5;
const MAX_KEYS = 2000;

/** The last few of something per key, forgetting the least recently touched key when full. */
class RecentByKey {
  private readonly entries = new Map<string, RecordedFailure[]>();

  add(key: string, failure: RecordedFailure): void {
    const list = this.entries.get(key) ?? [];
    this.entries.delete(key);
    list.unshift(failure);
    list.length = Math.min(list.length, PER_KEY);
    this.entries.set(key, list);
    if (this.entries.size > MAX_KEYS) this.entries.delete(this.entries.keys().next().value as string);
  }

  get(key: string): RecordedFailure[] {
    return this.entries.get(key) ?? [];
  }
}

/**
 * The last refused attempts per device and per remote address, in memory, so `devices show`
 * answers "why can't this node connect?" without anyone reading logs. The audit log keeps all.
 */
export class FailureLog {
  private readonly byDevice = new RecentByKey();
  private readonly byAddress = new RecentByKey();

  record(failure: RecordedFailure): void {
    this.byAddress.add(failure.address, failure);
    if (failure.deviceId) this.byDevice.add(failure.deviceId, failure);
  }

  forDevice(deviceId: string): RecordedFailure[] {
    return this.byDevice.get(deviceId);
  }

  forAddress(address: string): RecordedFailure[] {
    return this.byAddress.get(address);
  }
}
