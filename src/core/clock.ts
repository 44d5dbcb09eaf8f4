/**
 * Time as policy code sees it: a monotonic reading and one-shot timers. The
 * real clock is Node's; unit tests pass a fake one that they advance by hand,
 * so a timeout or a backoff is checked in microseconds instead of waited for.
 *
 * @module
 */

/** A timer started by {@link Clock.setTimeout}; only ever handed back to {@link Clock.clearTimeout}. */
export type TimerHandle = { readonly __batonTimer: unique symbol };

/** A source of time and timers. */
export interface Clock {
  /** Milliseconds on a monotonic scale (differences matter, not the origin). */
  now(): number;
  /**
   * Calls `fn` once after `ms` ms. With `unref`, the timer does not keep the
   * event loop alive (Node's `timer.unref()`).
   */
  setTimeout(fn: () => void, ms: number, unref?: boolean): TimerHandle;
  /** Cancels a timer; a handle already fired, cancelled, or undefined is ignored. */
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** Node's clock: `performance.now()` and the global timers. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms, unref = false) {
    const timer = setTimeout(fn, ms);
    if (unref) timer.unref();
    return timer as unknown as TimerHandle;
  },
  clearTimeout(handle) {
    if (handle !== undefined) clearTimeout(handle as unknown as NodeJS.Timeout);
  },
};
