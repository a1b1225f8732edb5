// The simulated heartbeat rings (drivers/sim/network.ts): delays within the configured
// latency and jitter, loss and duplication at their configured rates, one-way partitions
// per ring, heal, per-ring link settings and consistent counters.
//
// Statistical bounds: a rate over n independent datagrams is binomial; the checks allow
// six standard deviations, whose normal tail is about 1e-9, on fixed seeds. A correct
// network therefore fails them with negligible probability, while a rate off by a few
// percent (for n = 20,000) fails them.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { lanLink, SimNetwork, type LinkSettings } from "../../drivers/sim/network.ts";
import { Prng } from "../../drivers/sim/prng.ts";

const rings = ["lan", "private"] as const;
const quiet: LinkSettings = { latencyMs: 1, jitterMs: 0, lossRate: 0, duplicateRate: 0, reorderRate: 0 };

/** A network over its own queue and clock, with a helper that runs every queued delivery. */
class Bench {
  readonly queue = new EventQueue();
  readonly network: SimNetwork;
  nowMs = 0;

  constructor(link: LinkSettings, seed = 1) {
    this.network = new SimNetwork(this.queue, new Prng(seed).fork("network"), rings, link, () => this.nowMs);
  }

  /** Runs every queued event in order, advancing the clock to each event's time. */
  drain(): void {
    for (let event = this.queue.pop(); event !== undefined; event = this.queue.pop()) {
      this.nowMs = event.atMs;
      event.run();
    }
  }

  /** Sends one datagram now; returns the arrival times of its copies (filled by drain). */
  send(ring: string, from: string, to: string): number[] {
    const arrivals: number[] = [];
    this.network.transmit(ring, from, to, () => arrivals.push(this.nowMs));
    return arrivals;
  }

  /** Sends one datagram, drains, and returns how many copies arrived. */
  copies(ring: string, from: string, to: string): number {
    const arrivals = this.send(ring, from, to);
    this.drain();
    return arrivals.length;
  }
}

function sixSigma(n: number, p: number): number {
  return 6 * Math.sqrt(n * p * (1 - p));
}

describe("SimNetwork delays", () => {
  it("delivers each datagram once, between latency and latency + jitter after it was sent", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 1000, noNaN: true }), { minLength: 1, maxLength: 30, size: "max" }),
        (seed, latencyMs, jitterMs, gaps) => {
          const bench = new Bench({ ...quiet, latencyMs, jitterMs }, seed);
          const sent: { atMs: number; arrivals: number[] }[] = [];
          for (const gapMs of gaps) {
            bench.nowMs += gapMs;
            sent.push({ atMs: bench.nowMs, arrivals: bench.send("lan", "a", "b") });
          }
          bench.drain();
          for (const { atMs, arrivals } of sent) {
            expect(arrivals.length).toBe(1);
            const delayMs = arrivals[0]! - atMs;
            // A small epsilon: the delay is added to the send time in floating point.
            expect(delayMs).toBeGreaterThanOrEqual(latencyMs - 1e-9);
            expect(delayMs).toBeLessThanOrEqual(latencyMs + jitterMs + 1e-9);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("spreads delays over the jitter range rather than using one fixed delay", () => {
    const bench = new Bench({ ...quiet, latencyMs: 5, jitterMs: 10 });
    const arrivals = Array.from({ length: 1000 }, () => bench.send("lan", "a", "b"));
    bench.drain();
    const delays = arrivals.map((each) => each[0]!);
    // Uniform over [5, 15]: each third of the range holds 333 ± 90 (six sigma) of 1000.
    for (const [low, high] of [[5, 5 + 10 / 3], [5 + 10 / 3, 5 + 20 / 3], [5 + 20 / 3, 15]] as const) {
      const inside = delays.filter((delay) => delay >= low && delay < high).length;
      expect(Math.abs(inside - 1000 / 3)).toBeLessThan(sixSigma(1000, 1 / 3));
    }
  });

  it("holds reordered datagrams back by at most ten latencies (at least 1 ms), letting later ones overtake", () => {
    const bench = new Bench({ ...quiet, latencyMs: 2, jitterMs: 1, reorderRate: 0.5 });
    const arrivals: number[][] = [];
    for (let index = 0; index < 1000; index++) {
      bench.nowMs = index;
      arrivals.push(bench.send("lan", "a", "b"));
    }
    bench.drain();
    const delays = arrivals.map((each, index) => each[0]! - index);
    expect(delays.every((delay) => delay >= 2 - 1e-9 && delay <= 2 + 1 + 10 * 2 + 1e-9)).toBe(true);
    const overtaken = delays.filter((delay, index) => index + 1 < delays.length && index + delay > index + 1 + delays[index + 1]!).length;
    expect(overtaken).toBeGreaterThan(0);
  });
});

describe("SimNetwork loss and duplication", () => {
  const n = 20_000;

  it.each([0.05, 0.3])("loses datagrams at lossRate %f", (lossRate) => {
    const bench = new Bench({ ...quiet, lossRate }, 7);
    let arrived = 0;
    for (let index = 0; index < n; index++) bench.network.transmit("lan", "a", "b", () => arrived++);
    bench.drain();
    expect(Math.abs(bench.network.stats.lost - n * lossRate)).toBeLessThan(sixSigma(n, lossRate));
    expect(arrived).toBe(n - bench.network.stats.lost);
  });

  it.each([0.05, 0.3])("duplicates delivered datagrams at duplicateRate %f", (duplicateRate) => {
    const bench = new Bench({ ...quiet, lossRate: 0.1, duplicateRate }, 11);
    let arrived = 0;
    for (let index = 0; index < n; index++) bench.network.transmit("lan", "a", "b", () => arrived++);
    bench.drain();
    const { lost, duplicated } = bench.network.stats;
    const kept = n - lost;
    // Duplication is drawn only for datagrams that were not lost.
    expect(Math.abs(duplicated - kept * duplicateRate)).toBeLessThan(sixSigma(kept, duplicateRate));
    expect(arrived).toBe(kept + duplicated);
  });

  it("loses nothing and duplicates nothing with the quiet LAN defaults", () => {
    const bench = new Bench(lanLink);
    let arrived = 0;
    for (let index = 0; index < 5000; index++) bench.network.transmit("private", "a", "b", () => arrived++);
    bench.drain();
    expect(arrived).toBe(5000);
    expect(bench.network.stats).toEqual({ sent: 5000, delivered: 5000, lost: 0, cut: 0, duplicated: 0 });
  });
});

describe("SimNetwork partitions", () => {
  it("a one-way partition cuts from → to on that ring only", () => {
    const bench = new Bench(quiet);
    bench.network.partition("lan", "a", "b");
    expect(bench.copies("lan", "a", "b")).toBe(0);
    expect(bench.copies("lan", "b", "a")).toBe(1);
    expect(bench.copies("private", "a", "b")).toBe(1);
    expect(bench.copies("lan", "a", "c")).toBe(1);
    expect(bench.copies("lan", "c", "b")).toBe(1);
    expect(bench.network.isCut("lan", "a", "b")).toBe(true);
    expect(bench.network.isCut("lan", "b", "a")).toBe(false);
    expect(bench.network.isCut("private", "a", "b")).toBe(false);
  });

  it('"*" cuts that direction on every ring', () => {
    const bench = new Bench(quiet);
    bench.network.partition("*", "a", "b");
    for (const ring of rings) {
      expect(bench.copies(ring, "a", "b")).toBe(0);
      expect(bench.copies(ring, "b", "a")).toBe(1);
    }
  });

  it("heal restores that direction on that ring only", () => {
    const bench = new Bench(quiet);
    bench.network.partition("*", "a", "b");
    bench.network.partition("*", "b", "a");
    bench.network.heal("lan", "a", "b");
    expect(bench.copies("lan", "a", "b")).toBe(1);
    expect(bench.copies("private", "a", "b")).toBe(0);
    expect(bench.copies("lan", "b", "a")).toBe(0);
    bench.network.heal("*", "b", "a");
    expect(bench.copies("lan", "b", "a")).toBe(1);
    expect(bench.copies("private", "b", "a")).toBe(1);
    expect(bench.copies("private", "a", "b")).toBe(0);
  });

  it("healAll restores every direction on every ring", () => {
    const bench = new Bench(quiet);
    for (const [from, to] of [["a", "b"], ["b", "a"], ["a", "c"], ["c", "b"]] as const) bench.network.partition("*", from, to);
    bench.network.healAll();
    for (const ring of rings) {
      for (const [from, to] of [["a", "b"], ["b", "a"], ["a", "c"], ["c", "b"]] as const) {
        expect(bench.network.isCut(ring, from, to)).toBe(false);
        expect(bench.copies(ring, from, to)).toBe(1);
      }
    }
  });

  it("does not deliver a datagram that was cut when sent, even after a heal", () => {
    const bench = new Bench(quiet);
    bench.network.partition("lan", "a", "b");
    const arrivals = bench.send("lan", "a", "b");
    bench.network.heal("lan", "a", "b");
    bench.drain();
    expect(arrivals).toEqual([]);
  });

  it("delivers a datagram already in flight when a partition starts", () => {
    // The cut applies at send time: what is on the wire arrives.
    const bench = new Bench(quiet);
    const arrivals = bench.send("lan", "a", "b");
    bench.network.partition("lan", "a", "b");
    bench.drain();
    expect(arrivals.length).toBe(1);
  });
});

describe("SimNetwork stats", () => {
  type Op =
    | { readonly kind: "send"; readonly ring: number; readonly from: number; readonly to: number }
    | { readonly kind: "partition" | "heal"; readonly ring: number | "*"; readonly from: number; readonly to: number }
    | { readonly kind: "healAll" };
  const node = fc.integer({ min: 0, max: 2 });
  const ring = fc.integer({ min: 0, max: 1 });
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("send" as const), ring, from: node, to: node }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom("partition" as const, "heal" as const), ring: fc.oneof(ring, fc.constant("*" as const)), from: node, to: node }) },
    { weight: 1, arbitrary: fc.constant({ kind: "healAll" as const }) },
  );

  it("sent = delivered - duplicated + lost + cut, and cut counts exactly the sends across a cut", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.array(opArb, { maxLength: 200, size: "max" }),
        (seed, lossRate, duplicateRate, reorderRate, ops) => {
          const bench = new Bench({ latencyMs: 1, jitterMs: 2, lossRate, duplicateRate, reorderRate }, seed);
          const cuts = new Set<string>();
          const ringName = (index: number | "*") => (index === "*" ? "*" : rings[index]!);
          const ringsOf = (index: number | "*") => (index === "*" ? [0, 1] : [index]);
          let expectedCut = 0;
          let arrived = 0;
          for (const op of ops) {
            if (op.kind === "send") {
              if (cuts.has(`${op.ring}|${op.from}|${op.to}`)) expectedCut++;
              bench.network.transmit(rings[op.ring]!, `n${op.from}`, `n${op.to}`, () => arrived++);
              // Drain now and then, so some deliveries happen between other operations.
              if (op.from === op.to) bench.drain();
            } else if (op.kind === "healAll") {
              cuts.clear();
              bench.network.healAll();
            } else {
              for (const index of ringsOf(op.ring)) {
                if (op.kind === "partition") cuts.add(`${index}|${op.from}|${op.to}`);
                else cuts.delete(`${index}|${op.from}|${op.to}`);
              }
              bench.network[op.kind](ringName(op.ring), `n${op.from}`, `n${op.to}`);
            }
          }
          bench.drain();
          const stats = bench.network.stats;
          expect(stats.sent).toBe(ops.filter((op) => op.kind === "send").length);
          expect(stats.cut).toBe(expectedCut);
          expect(stats.delivered).toBe(arrived);
          expect(stats.sent).toBe(stats.delivered - stats.duplicated + stats.lost + stats.cut);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("SimNetwork link settings", () => {
  it("setLink on one ring merges the given fields and leaves the other ring unchanged", () => {
    const bench = new Bench(lanLink);
    bench.network.setLink("lan", { lossRate: 0.5, latencyMs: 3 });
    expect(bench.network.link("lan")).toEqual({ ...lanLink, lossRate: 0.5, latencyMs: 3 });
    expect(bench.network.link("private")).toEqual(lanLink);
  });

  it('setLink("*") changes every ring', () => {
    const bench = new Bench(lanLink);
    bench.network.setLink("*", { jitterMs: 9 });
    for (const ring of rings) expect(bench.network.link(ring)).toEqual({ ...lanLink, jitterMs: 9 });
  });

  it("applies a ring's own settings to its datagrams", () => {
    const bench = new Bench(quiet);
    bench.network.setLink("lan", { lossRate: 1 });
    expect(bench.copies("lan", "a", "b")).toBe(0);
    expect(bench.copies("private", "a", "b")).toBe(1);
    bench.network.setLink("private", { duplicateRate: 1 });
    expect(bench.copies("private", "a", "b")).toBe(2);
  });

  it("does not change the shared lanLink default", () => {
    const bench = new Bench(lanLink);
    bench.network.setLink("*", { lossRate: 0.9 });
    expect(lanLink.lossRate).toBe(0);
  });

  it("throws an AssertionError for an unknown ring", () => {
    const bench = new Bench(quiet);
    expect(() => bench.network.setLink("wan", { lossRate: 1 })).toThrow(AssertionError);
    expect(() => bench.network.link("wan")).toThrow(AssertionError);
    expect(() => bench.network.partition("wan", "a", "b")).toThrow(AssertionError);
    expect(() => bench.network.heal("wan", "a", "b")).toThrow(AssertionError);
    expect(() => bench.network.transmit("wan", "a", "b", () => undefined)).toThrow(AssertionError);
  });
});

describe("SimNetwork determinism", () => {
  it("gives the same arrival times for the same seed and different ones for another seed", () => {
    const run = (seed: number) => {
      const bench = new Bench({ latencyMs: 1, jitterMs: 5, lossRate: 0.1, duplicateRate: 0.1, reorderRate: 0.1 }, seed);
      const arrivals: number[][] = [];
      for (let index = 0; index < 200; index++) {
        bench.nowMs = index;
        arrivals.push(bench.send(index % 2 === 0 ? "lan" : "private", "a", "b"));
      }
      bench.drain();
      return arrivals;
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });
});
