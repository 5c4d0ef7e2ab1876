import type { ErrorCode } from "../protocol/errors.js";

export interface RecordedFailure {
  at: string;
  code: ErrorCode;
  address: string;
  route: string;
  credential: string;
  fingerprint?: string;
  deviceId?: string;
  /**
   * The refusal's own description and hint, as its reply said them (a login link "already used",
   * "Run `gatehouse dashboard` …"), not the catalogue's generic text for the code. Capped at
   * MAX_REFUSAL_TEXT characters by FailureLog.record; absent only when a caller records none.
   */
  description?: string;
  hint?: string;
}

/** Characters of a refusal's description or hint kept in memory (the rest is cut, with "…"). */
export const MAX_REFUSAL_TEXT = 300;

/** `text` cut to at most `max` characters (UTF-16 units), ending in "…" when it was longer. */
export function boundedText(text: string, max = MAX_REFUSAL_TEXT): string {
  if (text.length <= max) return text;
  // Never split a surrogate pair: the cut text must still be valid UTF-16 for the JSON reply.
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end) + "…";
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

  /**
   * When this log began (ISO 8601): it lives in memory, so a gateway restart empties it and the
   * dashboard says the refusals it lists are those since then.
   */
  readonly since: string;

  /**
   * @param recorded called after each refusal is recorded (the dashboard's `refusals` notice).
   * @param now the clock whose reading is `since`.
   */
  constructor(
    private readonly recorded: () => void = () => undefined,
    now: () => Date = () => new Date(),
  ) {
    this.since = now().toISOString();
  }

  /** Keeps `failure`, its description and hint capped at MAX_REFUSAL_TEXT characters each. */
  record(input: RecordedFailure): void {
    const failure: RecordedFailure = { ...input };
    if (input.description !== undefined) failure.description = boundedText(input.description);
    if (input.hint !== undefined) failure.hint = boundedText(input.hint);
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
