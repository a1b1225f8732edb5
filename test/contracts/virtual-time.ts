// Virtual time for a simulated driver's contract test: the queue's events run in time
// order as the harness advances the clock, and waitFor steps until its condition holds.

import type { EventQueue } from "../../drivers/sim/event-queue.ts";

export interface VirtualTime {
  /** The virtual clock: pass `() => time.nowMs` to the drivers. */
  readonly nowMs: number;
  /** Runs every event due up to `timeMs`; the clock ends there. */
  runUntil(timeMs: number): void;
  advance(ms: number): Promise<void>;
  /** Advances `stepMs` at a time until `condition` holds; false when `limitMs` passed first. */
  waitFor(condition: () => boolean, limitMs: number): Promise<boolean>;
}

export function virtualTime(queue: EventQueue, stepMs: number): VirtualTime {
  let nowMs = 0;
  const runUntil = (timeMs: number): void => {
    for (let next = queue.peekTimeMs(); next !== undefined && next <= timeMs; next = queue.peekTimeMs()) {
      const event = queue.pop()!;
      nowMs = event.atMs;
      event.run();
    }
    nowMs = timeMs;
  };
  return {
    get nowMs() {
      return nowMs;
    },
    runUntil,
    advance: async (ms) => runUntil(nowMs + ms),
    waitFor: async (condition, limitMs) => {
      const deadlineMs = nowMs + limitMs;
      while (!condition()) {
        if (nowMs >= deadlineMs) return false;
        runUntil(Math.min(deadlineMs, nowMs + stepMs));
      }
      return true;
    },
  };
}
