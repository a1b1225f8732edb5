// The simulator's single event queue, ordered by (virtual time, insertion sequence), so
// events at the same instant run in the order they were scheduled: deterministic.

import { assert } from "../../core/assert.ts";

export interface SimEvent {
  readonly atMs: number;
  readonly seq: number;
  readonly run: () => void;
}

/** Bound on queued events: a run that exceeds it has a runaway feedback loop. */
export const eventQueueMax = 5_000_000;

export class EventQueue {
  readonly #heap: SimEvent[] = [];
  #seq = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(atMs: number, run: () => void): void {
    assert(Number.isFinite(atMs), `event time ${atMs} not finite`);
    assert(this.#heap.length < eventQueueMax, `event queue over ${eventQueueMax} events`);
    const heap = this.#heap;
    heap.push({ atMs, seq: this.#seq++, run });
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!before(heap[index]!, heap[parent]!)) break;
      [heap[index], heap[parent]] = [heap[parent]!, heap[index]!];
      index = parent;
    }
  }

  peekTimeMs(): number | undefined {
    return this.#heap[0]?.atMs;
  }

  pop(): SimEvent | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    heap[0] = last;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let smallest = index;
      if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left;
      if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right;
      if (smallest === index) break;
      [heap[index], heap[smallest]] = [heap[smallest]!, heap[index]!];
      index = smallest;
    }
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}

/** Runs every event of `queue` up to and including `timeMs`, telling `setNow` each event's
 *  time before it runs (the worlds' virtual clocks); returns how many ran. */
export function runEventsUntil(queue: EventQueue, timeMs: number, setNow: (atMs: number) => void): number {
  let count = 0;
  for (let next = queue.peekTimeMs(); next !== undefined && next <= timeMs; next = queue.peekTimeMs()) {
    const event = queue.pop()!;
    setNow(event.atMs);
    count++;
    event.run();
  }
  return count;
}

/** Runs a world in steps of `stepMs` until `condition` holds (checked before each step) or
 *  `deadlineMs` passes; returns whether it held. */
export function runUntilHolds(condition: () => boolean, deadlineMs: number, stepMs: number, nowMs: () => number, runUntil: (timeMs: number) => void): boolean {
  while (!condition()) {
    if (nowMs() >= deadlineMs) return false;
    runUntil(Math.min(deadlineMs, nowMs() + stepMs));
  }
  return true;
}
