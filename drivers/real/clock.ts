// The real ClockPort: monotonic milliseconds and one-shot named timers over the event loop.
//
// `nowMs` is `performance.now()`: milliseconds since this process started, read from the
// kernel's CLOCK_MONOTONIC through libuv's high-resolution timer. It never goes backwards
// and does not jump when an administrator or NTP sets the wall clock. Every real driver
// that stamps times for the core (the datagram port's `receivedAtMs`) reads this same
// clock, so that times from different drivers can be compared.
//
// A timer fires at the earliest `afterMs` after `arm`, later when the event loop is busy:
// Node timers are not real-time. Re-arming a timer replaces the previous arm (the core
// relies on it: a re-armed tick must not fire twice).

import { performance } from "node:perf_hooks";
import { assert } from "../../core/assert.ts";
import type { ClockPort } from "../../core/ports.ts";

/** Node's setTimeout clamps longer delays to 1 ms; refuse them instead. */
export const timerDelayMsMax = 2 ** 31 - 1;
/** Named timers armed at once; the core uses a handful per component. */
export const armedTimersMax = 10_000;

export class RealClockPort implements ClockPort {
  readonly #timers = new Map<string, NodeJS.Timeout>();

  nowMs(): number {
    return performance.now();
  }

  arm(timer: string, afterMs: number, onFire: () => void): void {
    assert(Number.isFinite(afterMs), `timer ${timer}: delay ${afterMs} is not finite`);
    assert(afterMs >= 0 && afterMs <= timerDelayMsMax, `timer ${timer}: delay ${afterMs} ms out of [0, ${timerDelayMsMax}]`);
    this.cancel(timer);
    assert(this.#timers.size < armedTimersMax, `more than ${armedTimersMax} timers armed`);
    const handle = setTimeout(() => {
      // A handle that fired is no longer armed; a later arm of the same name is another handle.
      if (this.#timers.get(timer) === handle) this.#timers.delete(timer);
      onFire();
    }, afterMs);
    this.#timers.set(timer, handle);
  }

  cancel(timer: string): void {
    const handle = this.#timers.get(timer);
    if (handle === undefined) return;
    clearTimeout(handle);
    this.#timers.delete(timer);
  }

  /** Whether `timer` is armed and has not fired yet. */
  armed(timer: string): boolean {
    return this.#timers.has(timer);
  }

  /** Disarms every timer (the service is stopping). */
  cancelAll(): void {
    for (const handle of this.#timers.values()) clearTimeout(handle);
    this.#timers.clear();
  }
}
