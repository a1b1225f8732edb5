// The simulator's seeded generator (drivers/sim/prng.ts): reproducible from its seed,
// forks independent of the parent's draws, ranges respected, and roughly uniform.
//
// Statistical bounds. Every statistical check below runs on fixed seeds, so it either
// always passes or always fails; the bounds are chosen so that a truly uniform generator
// would fail one of them with probability below about 1e-8 per check (each bound sits at a
// tail probability of 1e-9, and each check applies it to at most ten seeds):
// - chi-square with 15 degrees of freedom: P(X > 73.63) = 1e-9 and P(X < 0.463) = 1e-9,
//   so a statistic outside [0.47, 73.7] means "not uniform" (or suspiciously too uniform,
//   e.g. a counter);
// - a binomial count: the normal tail beyond 6 standard deviations is 1e-9.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import { Prng } from "../../drivers/sim/prng.ts";

const seedArb = fc.integer({ min: 0, max: 0xffff_ffff });

function draws(prng: Prng, count: number): number[] {
  return Array.from({ length: count }, () => prng.u32());
}

/** Pearson's chi-square statistic of `counts` against equal expected counts. */
function chiSquare(counts: readonly number[]): number {
  const total = counts.reduce((sum, count) => sum + count, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
}

/** Bounds for 15 degrees of freedom at tail probability 1e-9 on each side (see header). */
const chiSquare15Low = 0.47;
const chiSquare15High = 73.7;

/** Six standard deviations of a binomial(n, p) count. */
function sixSigma(n: number, p: number): number {
  return 6 * Math.sqrt(n * p * (1 - p));
}

const statSeeds = [0, 1, 2, 42, 1234, 0x7fff_ffff, 0x8000_0000, 0xdead_beef, 0xffff_fffe, 0xffff_ffff];

describe("Prng determinism", () => {
  it("produces the same sequence for the same seed", () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        expect(draws(new Prng(seed), 64)).toEqual(draws(new Prng(seed), 64));
      }),
    );
  });

  it("keeps the seed it was built with", () => {
    fc.assert(fc.property(seedArb, (seed) => new Prng(seed).seed === seed));
  });

  it("produces different sequences for different seeds", () => {
    fc.assert(
      fc.property(seedArb, seedArb, (a, b) => {
        fc.pre(a !== b);
        expect(draws(new Prng(a), 8)).not.toEqual(draws(new Prng(b), 8));
      }),
    );
  });

  it("produces different sequences for adjacent seeds", () => {
    // Adjacent seeds are what a fuzzer feeding seed, seed+1, ... uses.
    const firsts = new Set<string>();
    for (let seed = 0; seed < 1000; seed++) firsts.add(draws(new Prng(seed), 4).join(","));
    expect(firsts.size).toBe(1000);
  });
});

describe("Prng.fork", () => {
  it("does not depend on how many numbers the parent drew", () => {
    fc.assert(
      fc.property(seedArb, fc.string(), fc.nat({ max: 200 }), (seed, name, drawn) => {
        const fresh = new Prng(seed).fork(name);
        const parent = new Prng(seed);
        draws(parent, drawn);
        const late = parent.fork(name);
        expect(late.seed).toBe(fresh.seed);
        expect(draws(late, 16)).toEqual(draws(fresh, 16));
      }),
    );
  });

  it("does not disturb the parent's sequence", () => {
    fc.assert(
      fc.property(seedArb, fc.string(), (seed, name) => {
        const forked = new Prng(seed);
        forked.fork(name).u32();
        expect(draws(forked, 16)).toEqual(draws(new Prng(seed), 16));
      }),
    );
  });

  it("is the same for the same name and seed", () => {
    fc.assert(fc.property(seedArb, fc.string(), (seed, name) => new Prng(seed).fork(name).seed === new Prng(seed).fork(name).seed));
  });

  it("differs per name", () => {
    fc.assert(
      fc.property(seedArb, fc.string(), fc.string(), (seed, a, b) => {
        fc.pre(a !== b);
        const root = new Prng(seed);
        expect(draws(root.fork(a), 8)).not.toEqual(draws(root.fork(b), 8));
      }),
    );
  });

  it("gives the simulator's driver names distinct streams, distinct from the parent's", () => {
    const names = ["network", "clients", "plan", "faults", "app", "n1", "n2", "n3", "lan", "private"];
    fc.assert(
      fc.property(seedArb, (seed) => {
        const root = new Prng(seed);
        const streams = new Set([draws(new Prng(seed), 4).join(","), ...names.map((name) => draws(root.fork(name), 4).join(","))]);
        expect(streams.size).toBe(names.length + 1);
      }),
    );
  });

  it("differs per seed for the same name", () => {
    fc.assert(
      fc.property(seedArb, seedArb, fc.string(), (a, b, name) => {
        fc.pre(a !== b);
        expect(new Prng(a).fork(name).seed).not.toBe(new Prng(b).fork(name).seed);
      }),
    );
  });
});

describe("Prng ranges", () => {
  it("u32 returns unsigned 32-bit integers", () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        expect(draws(new Prng(seed), 200).filter((value) => !Number.isInteger(value) || value < 0 || value > 0xffff_ffff)).toEqual([]);
      }),
    );
  });

  it("float() stays in [0, 1)", () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        const prng = new Prng(seed);
        const values = Array.from({ length: 200 }, () => prng.float());
        expect(values.filter((value) => !(value >= 0 && value < 1))).toEqual([]);
      }),
    );
  });

  it("int(min, max) stays in range and hits both ends of a small range", () => {
    // With at most 11 values, missing one end in 600 draws has probability (10/11)^600 < 1e-24.
    fc.assert(
      fc.property(seedArb, fc.integer({ min: -1_000_000, max: 1_000_000 }), fc.nat({ max: 10 }), (seed, min, width) => {
        const prng = new Prng(seed);
        const max = min + width;
        const seen = new Set<number>();
        let outside = 0;
        for (let i = 0; i < 600; i++) {
          const value = prng.int(min, max);
          if (!Number.isInteger(value) || value < min || value > max) outside++;
          seen.add(value);
        }
        expect(outside).toBe(0);
        expect(seen.has(min)).toBe(true);
        expect(seen.has(max)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });

  it("int(min, max) stays in range for ranges up to 2^32 values anywhere on the number line", () => {
    const bound = 2 ** 40;
    fc.assert(
      fc.property(seedArb, fc.integer({ min: -bound, max: bound }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (seed, min, width) => {
        const max = min + width;
        const prng = new Prng(seed);
        const values = Array.from({ length: 50 }, () => prng.int(min, max));
        expect(values.filter((value) => !Number.isInteger(value) || value < min || value > max)).toEqual([]);
      }),
    );
  });

  // float() carries 32 random bits, so int() refuses ranges it could not draw uniformly
  // (int(0, 3 * 2^32 - 1) would only ever return multiples of 3).
  it("int refuses a range of more than 2^32 values instead of drawing it unevenly", () => {
    const prng = new Prng(1);
    expect(() => prng.int(0, 3 * 2 ** 32 - 1)).toThrow(AssertionError);
    expect(() => prng.int(0, 2 ** 32)).toThrow(AssertionError);
    expect(prng.int(0, 2 ** 32 - 1)).toBeGreaterThanOrEqual(0);
  });

  it("int(n, n) is n", () => {
    fc.assert(fc.property(seedArb, fc.integer(), (seed, n) => new Prng(seed).int(n, n) === n));
  });

  it("int rejects non-integer bounds and min > max", () => {
    const prng = new Prng(1);
    expect(() => prng.int(2, 1)).toThrow(AssertionError);
    expect(() => prng.int(0.5, 3)).toThrow(AssertionError);
    expect(() => prng.int(0, 3.5)).toThrow(AssertionError);
    expect(() => prng.int(0, Number.NaN)).toThrow(AssertionError);
    expect(() => prng.int(0, Number.POSITIVE_INFINITY)).toThrow(AssertionError);
  });

  it("chance(0) is never true and chance(1) always", () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        const prng = new Prng(seed);
        let wrong = 0;
        for (let i = 0; i < 200; i++) if (prng.chance(0) || !prng.chance(1) || prng.chance(-0.5)) wrong++;
        expect(wrong).toBe(0);
      }),
    );
  });

  it("pick returns an element of the list and rejects an empty list", () => {
    fc.assert(
      fc.property(seedArb, fc.array(fc.integer(), { minLength: 1, maxLength: 20, size: "max" }), (seed, items) => {
        const prng = new Prng(seed);
        const picked = Array.from({ length: 20 }, () => prng.pick(items));
        expect(picked.filter((item) => !items.includes(item))).toEqual([]);
      }),
    );
    expect(() => new Prng(1).pick([])).toThrow(AssertionError);
  });
});

describe("Prng uniformity (bounds explained in the header)", () => {
  const samples = 16_000;

  it.each(statSeeds)("int(0, 15) is uniform over 16 buckets for seed %i", (seed) => {
    const prng = new Prng(seed);
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < samples; i++) counts[prng.int(0, 15)]!++;
    const statistic = chiSquare(counts);
    expect(statistic).toBeGreaterThan(chiSquare15Low);
    expect(statistic).toBeLessThan(chiSquare15High);
  });

  it.each(statSeeds)("the low and high 4 bits of u32 are uniform for seed %i", (seed) => {
    const prng = new Prng(seed);
    const low = new Array<number>(16).fill(0);
    const high = new Array<number>(16).fill(0);
    for (let i = 0; i < samples; i++) {
      const value = prng.u32();
      low[value & 15]!++;
      high[value >>> 28]!++;
    }
    for (const counts of [low, high]) {
      const statistic = chiSquare(counts);
      expect(statistic).toBeGreaterThan(chiSquare15Low);
      expect(statistic).toBeLessThan(chiSquare15High);
    }
  });

  it.each(statSeeds)("a forked stream is uniform too for seed %i", (seed) => {
    const prng = new Prng(seed).fork("network");
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < samples; i++) counts[Math.floor(prng.float() * 16)]!++;
    const statistic = chiSquare(counts);
    expect(statistic).toBeGreaterThan(chiSquare15Low);
    expect(statistic).toBeLessThan(chiSquare15High);
  });

  it.each([0.01, 0.3, 0.5, 0.9])("chance(%f) comes true at that rate within six standard deviations", (p) => {
    const n = 20_000;
    for (const seed of statSeeds) {
      const prng = new Prng(seed);
      let hits = 0;
      for (let i = 0; i < n; i++) if (prng.chance(p)) hits++;
      expect(Math.abs(hits - n * p)).toBeLessThan(sixSigma(n, p));
    }
  });
});

describe("Prng seed validation", () => {
  it.each([-1, 0x1_0000_0000, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53])("rejects seed %d with an AssertionError", (seed) => {
    expect(() => new Prng(seed)).toThrow(AssertionError);
  });

  it("accepts both ends of the 32-bit range", () => {
    expect(new Prng(0).seed).toBe(0);
    expect(new Prng(0xffff_ffff).seed).toBe(0xffff_ffff);
  });
});
