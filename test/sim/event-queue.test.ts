// The simulator's event queue (drivers/sim/event-queue.ts): events come out in (time,
// insertion order) order, checked against a model that is a plain list sorted on demand,
// with pushes and pops interleaved by fast-check.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";

interface Pending {
  readonly atMs: number;
  readonly label: number;
}

/** The model: every pending event with its insertion rank; the next one is the minimum. */
interface Model {
  pending: Pending[];
  nextLabel: number;
}

interface Real {
  readonly queue: EventQueue;
  /** Labels of the events run so far, in order. */
  readonly ran: number[];
}

function modelNext(model: Model): Pending | undefined {
  let best: Pending | undefined;
  for (const each of model.pending) {
    if (best === undefined || each.atMs < best.atMs || (each.atMs === best.atMs && each.label < best.label)) best = each;
  }
  return best;
}

class PushCommand implements fc.Command<Model, Real> {
  readonly atMs: number;
  constructor(atMs: number) {
    this.atMs = atMs;
  }
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const label = model.nextLabel++;
    model.pending.push({ atMs: this.atMs, label });
    real.queue.push(this.atMs, () => real.ran.push(label));
    expect(real.queue.size).toBe(model.pending.length);
    expect(real.queue.peekTimeMs()).toBe(modelNext(model)!.atMs);
  }
  toString(): string {
    return `push(${this.atMs})`;
  }
}

class PopCommand implements fc.Command<Model, Real> {
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const expected = modelNext(model);
    const event = real.queue.pop();
    if (expected === undefined) {
      expect(event).toBeUndefined();
      expect(real.queue.peekTimeMs()).toBeUndefined();
      return;
    }
    model.pending.splice(model.pending.indexOf(expected), 1);
    expect(event).toBeDefined();
    expect(event!.atMs).toBe(expected.atMs);
    event!.run();
    expect(real.ran.at(-1)).toBe(expected.label);
    expect(real.queue.size).toBe(model.pending.length);
    expect(real.queue.peekTimeMs()).toBe(modelNext(model)?.atMs);
  }
  toString(): string {
    return "pop()";
  }
}

// Few distinct times so that ties are common, plus arbitrary finite doubles (negative
// times and -0 included: the queue itself does not forbid them).
const timeArb = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.double({ noNaN: true, noDefaultInfinity: true }));

const commandsArb = fc.commands([timeArb.map((atMs) => new PushCommand(atMs)), fc.constant(new PopCommand())], { maxCommands: 300, size: "max" });

describe("EventQueue", () => {
  it("pops in (time, insertion order) order, like the model, under interleaved pushes and pops", () => {
    fc.assert(
      fc.property(commandsArb, (commands) => {
        fc.modelRun(() => ({ model: { pending: [], nextLabel: 0 }, real: { queue: new EventQueue(), ran: [] } }), commands);
      }),
      { numRuns: 100 },
    );
  });

  it("drains every pushed event in sorted order with ties in insertion order", () => {
    fc.assert(
      fc.property(fc.array(timeArb, { maxLength: 500, size: "max" }), (times) => {
        const queue = new EventQueue();
        times.forEach((atMs, index) => queue.push(atMs, () => undefined));
        const popped: { atMs: number; seq: number }[] = [];
        for (let event = queue.pop(); event !== undefined; event = queue.pop()) popped.push({ atMs: event.atMs, seq: event.seq });
        const expected = times.map((atMs, seq) => ({ atMs, seq })).sort((a, b) => a.atMs - b.atMs || a.seq - b.seq);
        expect(popped).toEqual(expected);
        expect(queue.size).toBe(0);
      }),
    );
  });

  it("runs events at the same time in the order they were pushed", () => {
    const queue = new EventQueue();
    const ran: number[] = [];
    for (let label = 0; label < 1000; label++) queue.push(7, () => ran.push(label));
    for (let event = queue.pop(); event !== undefined; event = queue.pop()) event.run();
    expect(ran).toEqual(Array.from({ length: 1000 }, (_, label) => label));
  });

  it("keeps insertion order among equal times pushed between pops", () => {
    const queue = new EventQueue();
    const ran: string[] = [];
    queue.push(5, () => ran.push("a"));
    queue.push(1, () => ran.push("first"));
    queue.pop()!.run();
    queue.push(5, () => ran.push("b"));
    queue.push(3, () => ran.push("early"));
    queue.push(5, () => ran.push("c"));
    for (let event = queue.pop(); event !== undefined; event = queue.pop()) event.run();
    expect(ran).toEqual(["first", "early", "a", "b", "c"]);
  });

  it("gives sequence numbers that grow with every push", () => {
    const queue = new EventQueue();
    queue.push(2, () => undefined);
    queue.push(1, () => undefined);
    queue.push(2, () => undefined);
    const seqs = [queue.pop()!, queue.pop()!, queue.pop()!].map((event) => event.seq);
    expect(seqs).toEqual([1, 0, 2]);
  });

  it("is empty when new: size 0, nothing to peek or pop", () => {
    const queue = new EventQueue();
    expect(queue.size).toBe(0);
    expect(queue.peekTimeMs()).toBeUndefined();
    expect(queue.pop()).toBeUndefined();
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])("rejects the non-finite time %d with an AssertionError and stays unchanged", (atMs) => {
    const queue = new EventQueue();
    queue.push(1, () => undefined);
    expect(() => queue.push(atMs, () => undefined)).toThrow(AssertionError);
    expect(queue.size).toBe(1);
    expect(queue.pop()!.atMs).toBe(1);
    expect(queue.pop()).toBeUndefined();
  });
});
