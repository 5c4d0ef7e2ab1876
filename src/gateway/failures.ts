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
/** Refusals the dashboard's list (`GET /api/v1/refusals`) can show at most. */
export const MAX_RECENT_REFUSALS = 200;

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
 * The last refused attempts per device, per remote address and overall, in memory, so `devices
 * show` and the dashboard answer "why can't this node connect?" without anyone reading logs. The
 * audit log keeps all.
 */
export class FailureLog {
  private readonly byDevice = new RecentByKey();
  private readonly byAddress = new RecentByKey();
  /** A ring of the last MAX_RECENT_REFUSALS; `next` is where the next one goes. */
  private readonly ring: RecordedFailure[] = [];
  private next = 0;

  /** @param recorded called after each refusal is recorded (the dashboard's `refusals` notice). */
  constructor(private readonly recorded: () => void = () => undefined) {}

  record(failure: RecordedFailure): void {
    this.byAddress.add(failure.address, failure);
    if (failure.deviceId) this.byDevice.add(failure.deviceId, failure);
    this.ring[this.next] = failure;
    this.next = (this.next + 1) % MAX_RECENT_REFUSALS;
    this.recorded();
  }

  /** The last `limit` refusals (at most MAX_RECENT_REFUSALS), newest first. */
  recent(limit = MAX_RECENT_REFUSALS): RecordedFailure[] {
    const newestFirst: RecordedFailure[] = [];
    const count = Math.min(limit, this.ring.length);
    for (let i = 1; i <= count; i++)
      newestFirst.push(this.ring[(this.next - i + MAX_RECENT_REFUSALS) % MAX_RECENT_REFUSALS]!);
    return newestFirst;
  }

  forDevice(deviceId: string): RecordedFailure[] {
    return this.byDevice.get(deviceId);
  }

  forAddress(address: string): RecordedFailure[] {
    return this.byAddress.get(address);
  }
}
