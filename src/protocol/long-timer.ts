/**
 * One timer for any delay, however long.
 *
 * Node's setTimeout holds at most 2^31-1 ms (about 24.8 days): a longer delay fires after 1 ms with
 * a TimeoutOverflowWarning. A certificate or token lifetime from the config can be longer than
 * that (a 30-day client certificate, a 365-day server certificate), so every timer whose delay
 * comes from a configured or credential-derived duration goes through here. Long delays are
 * chained: the timer re-arms in steps of at most 2^31-1 ms until the whole delay has passed.
 *
 * It lives in protocol/ because both the gateway and the node use it and neither imports the other.
 */

/** The longest delay one Node timer holds: 2^31-1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A pending long timeout. */
export interface LongTimer {
  /** Stops the timer; `fire` will not run. Calling it again (or after it fired) does nothing. */
  cancel(): void;
  /** The timer no longer keeps the process alive (as `Timeout.unref()`); returns itself. */
  unref(): LongTimer;
  /** The timer keeps the process alive again (the default); returns itself. */
  ref(): LongTimer;
  /** True until it fires or is cancelled. */
  readonly pending: boolean;
}

/**
 * Runs `fire` once after `delayMs` milliseconds, for any delay: up to 2^31-1 ms it is one
 * setTimeout, beyond that the timeout is re-armed in steps until the whole delay has passed.
 * Time is counted as setTimeout counts it (Node's monotonic clock), step by step.
 *
 * @param fire what to run when the delay has passed
 * @param delayMs milliseconds; negative or NaN is 0 (fire on the next turn), Infinity never fires
 * @param options `unref: true` to not keep the process alive while waiting
 */
export function setLongTimeout(
  fire: () => void,
  delayMs: number,
  options: { unref?: boolean } = {},
): LongTimer {
  let remaining = Number.isNaN(delayMs) ? 0 : Math.max(0, delayMs);
  let referenced = !options.unref;
  let timer: NodeJS.Timeout | undefined;
  let pending = true;

  const arm = () => {
    const step = Math.min(remaining, MAX_TIMER_MS);
    remaining -= step; // Infinity stays Infinity: such a timer re-arms forever and never fires
    timer = setTimeout(() => {
      if (!pending) return;
      if (remaining > 0) {
        arm();
        return;
      }
      pending = false;
      timer = undefined;
      fire();
    }, step);
    if (!referenced) timer.unref();
  };
  arm();

  const handle: LongTimer = {
    cancel() {
      pending = false;
      clearTimeout(timer);
      timer = undefined;
    },
    unref() {
      referenced = false;
      timer?.unref();
      return handle;
    },
    ref() {
      referenced = true;
      timer?.ref();
      return handle;
    },
    get pending() {
      return pending;
    },
  };
  return handle;
}
