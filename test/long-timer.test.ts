import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_TIMER_MS, setLongTimeout } from "../src/protocol/long-timer.js";

const DAY = 86_400_000;

describe("setLongTimeout", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a plain setTimeout of 30 days fires at once (the fault it exists for)", () => {
    const fired = vi.fn();
    setTimeout(fired, 30 * DAY);
    vi.advanceTimersByTime(10);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  for (const days of [30, 400]) {
    it(`waits the whole ${days} days, then fires once`, () => {
      const fired = vi.fn();
      setLongTimeout(fired, days * DAY);
      vi.advanceTimersByTime(1);
      expect(fired).not.toHaveBeenCalled();
      vi.advanceTimersByTime(MAX_TIMER_MS);
      expect(fired).not.toHaveBeenCalled();
      vi.advanceTimersByTime(days * DAY - MAX_TIMER_MS - 2);
      expect(fired).not.toHaveBeenCalled();
      vi.advanceTimersByTime(1);
      expect(fired).toHaveBeenCalledTimes(1);
      vi.advanceTimersByTime(1000 * DAY);
      expect(fired).toHaveBeenCalledTimes(1);
    });
  }

  it("fires a short delay like setTimeout", () => {
    const fired = vi.fn();
    setLongTimeout(fired, 1500);
    vi.advanceTimersByTime(1499);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it("never fires once cancelled, before or after a re-arm", () => {
    const early = vi.fn();
    setLongTimeout(early, 30 * DAY).cancel();
    const late = vi.fn();
    const timer = setLongTimeout(late, 400 * DAY);
    vi.advanceTimersByTime(100 * DAY);
    expect(timer.pending).toBe(true);
    timer.cancel();
    expect(timer.pending).toBe(false);
    vi.advanceTimersByTime(400 * DAY);
    expect(early).not.toHaveBeenCalled();
    expect(late).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("stays unref'd across re-arms, so a waiting timer never keeps a process alive", () => {
    const armed: NodeJS.Timeout[] = [];
    const original = globalThis.setTimeout;
    const spy = vi.spyOn(globalThis, "setTimeout").mockImplementation(((fire: () => void, ms: number) => {
      const timer = original(fire, ms);
      armed.push(timer);
      return timer;
    }) as typeof setTimeout);
    setLongTimeout(() => undefined, 60 * DAY, { unref: true });
    vi.advanceTimersByTime(MAX_TIMER_MS + 1);
    spy.mockRestore();
    expect(armed.length).toBeGreaterThanOrEqual(2);
    expect(armed.every((timer) => !timer.hasRef())).toBe(true);
  });

  it("treats a negative or NaN delay as 0 and never fires on Infinity", () => {
    const negative = vi.fn();
    const nan = vi.fn();
    const never = vi.fn();
    setLongTimeout(negative, -5);
    setLongTimeout(nan, Number.NaN);
    setLongTimeout(never, Number.POSITIVE_INFINITY);
    vi.advanceTimersByTime(0);
    expect(negative).toHaveBeenCalledTimes(1);
    expect(nan).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(10_000 * DAY);
    expect(never).not.toHaveBeenCalled();
  });
});
