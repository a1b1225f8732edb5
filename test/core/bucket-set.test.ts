// BucketSet against a plain Set<number> model: every operation must give the same answer
// as the obvious set computation, and out-of-range input is a programmer error.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import { BucketSet, bucketCountMax } from "../../core/bucket-set.ts";

/** The model's text form, written independently of BucketSet.toString: ranges `a-b`, singles `a`, `-` when empty. */
function modelToString(model: ReadonlySet<number>): string {
  const sorted = [...model].sort((a, b) => a - b);
  if (sorted.length === 0) return "-";
  const parts: string[] = [];
  let start = sorted[0]!;
  let previous = start;
  for (const index of [...sorted.slice(1), Number.NaN]) {
    if (index === previous + 1) {
      previous = index;
      continue;
    }
    parts.push(start === previous ? String(start) : `${start}-${previous}`);
    start = index;
    previous = index;
  }
  return parts.join(",");
}

function modelToArray(model: ReadonlySet<number>): number[] {
  return [...model].sort((a, b) => a - b);
}

// Sizes around word boundaries (31/32/33, 64/65) matter most for a bitmap of 32-bit words.
const bucketCountArbitrary = fc.oneof(
  fc.constantFrom(1, 2, 31, 32, 33, 63, 64, 65, 256),
  fc.integer({ min: 1, max: 1_100 }),
);

/** Two index lists for one bucketCount, biased towards the last bucket and word edges. */
const twoSetsArbitrary = bucketCountArbitrary.chain((bucketCount) => {
  const index = fc.oneof(
    fc.integer({ min: 0, max: bucketCount - 1 }),
    fc.constantFrom(...new Set([0, bucketCount - 1, Math.min(31, bucketCount - 1), Math.min(32, bucketCount - 1)])),
  );
  const indices = fc.array(index, { maxLength: Math.min(bucketCount * 2, 300) });
  return fc.record({ bucketCount: fc.constant(bucketCount), a: indices, b: indices });
});

describe("BucketSet agrees with a Set<number> model", () => {
  it("has, size, isEmpty, toArray and toString match the model for any set of indices", () => {
    fc.assert(
      fc.property(twoSetsArbitrary, ({ bucketCount, a }) => {
        const model = new Set(a);
        const set = BucketSet.of(bucketCount, a);
        expect(set.bucketCount).toBe(bucketCount);
        expect(set.size()).toBe(model.size);
        expect(set.isEmpty()).toBe(model.size === 0);
        expect(set.toArray()).toEqual(modelToArray(model));
        expect(set.toString()).toBe(modelToString(model));
        for (let index = 0; index < bucketCount; index++) expect(set.has(index)).toBe(model.has(index));
      }),
    );
  });

  it("union, minus and intersect match the model's set operations", () => {
    fc.assert(
      fc.property(twoSetsArbitrary, ({ bucketCount, a, b }) => {
        const modelA = new Set(a);
        const modelB = new Set(b);
        const setA = BucketSet.of(bucketCount, a);
        const setB = BucketSet.of(bucketCount, b);
        const union = new Set([...modelA, ...modelB]);
        const minus = new Set([...modelA].filter((index) => !modelB.has(index)));
        const intersect = new Set([...modelA].filter((index) => modelB.has(index)));
        expect(setA.union(setB).toArray()).toEqual(modelToArray(union));
        expect(setA.minus(setB).toArray()).toEqual(modelToArray(minus));
        expect(setA.intersect(setB).toArray()).toEqual(modelToArray(intersect));
        expect(setA.union(setB).size()).toBe(union.size);
        expect(setA.minus(setB).size()).toBe(minus.size);
        expect(setA.intersect(setB).size()).toBe(intersect.size);
      }),
    );
  });

  it("equals is true exactly when the models hold the same indices", () => {
    fc.assert(
      fc.property(twoSetsArbitrary, ({ bucketCount, a, b }) => {
        const modelA = new Set(a);
        const modelB = new Set(b);
        const sameModel = modelA.size === modelB.size && [...modelA].every((index) => modelB.has(index));
        expect(BucketSet.of(bucketCount, a).equals(BucketSet.of(bucketCount, b))).toBe(sameModel);
        // A set built from the same indices in another order and with duplicates is equal.
        expect(BucketSet.of(bucketCount, [...a].reverse().concat(a)).equals(BucketSet.of(bucketCount, a))).toBe(true);
      }),
    );
  });

  it("operations return new sets and leave their operands unchanged", () => {
    fc.assert(
      fc.property(twoSetsArbitrary, ({ bucketCount, a, b }) => {
        const setA = BucketSet.of(bucketCount, a);
        const setB = BucketSet.of(bucketCount, b);
        const beforeA = setA.toArray();
        const beforeB = setB.toArray();
        setA.union(setB);
        setA.minus(setB);
        setA.intersect(setB);
        expect(setA.toArray()).toEqual(beforeA);
        expect(setB.toArray()).toEqual(beforeB);
      }),
    );
  });
});

describe("BucketSet constructors", () => {
  it("empty has no bucket and prints as '-'", () => {
    const set = BucketSet.empty(256);
    expect(set.size()).toBe(0);
    expect(set.isEmpty()).toBe(true);
    expect(set.toString()).toBe("-");
  });

  it("all holds every bucket, including the last one of a partial word", () => {
    for (const bucketCount of [1, 31, 32, 33, 256, 1000]) {
      const set = BucketSet.all(bucketCount);
      expect(set.size()).toBe(bucketCount);
      expect(set.has(bucketCount - 1)).toBe(true);
      expect(set.toString()).toBe(bucketCount === 1 ? "0" : `0-${bucketCount - 1}`);
    }
  });

  it("all minus a set is its complement within bucketCount", () => {
    const set = BucketSet.of(70, [0, 31, 32, 69]);
    const complement = BucketSet.all(70).minus(set);
    expect(complement.size()).toBe(66);
    expect(complement.union(set).equals(BucketSet.all(70))).toBe(true);
    expect(complement.intersect(set).isEmpty()).toBe(true);
  });

  it("toString prints runs as ranges", () => {
    expect(BucketSet.of(16, [0, 1, 2, 3, 7, 9, 10, 11, 12]).toString()).toBe("0-3,7,9-12");
    expect(BucketSet.of(64, [31, 32]).toString()).toBe("31-32");
  });

  it("accepts the largest bucketCount", () => {
    expect(BucketSet.all(bucketCountMax).size()).toBe(bucketCountMax);
  });
});

describe("BucketSet rejects programmer errors with AssertionError", () => {
  it("an index at or above bucketCount, below 0 or not an integer", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000 }),
        fc.oneof(fc.integer({ min: -1_000_000, max: -1 }), fc.integer({ min: 0, max: 1_000_000 }), fc.double({ noInteger: true })),
        (bucketCount, offset) => {
          const index = Number.isInteger(offset) && offset >= 0 ? bucketCount + offset : offset;
          expect(() => BucketSet.of(bucketCount, [index])).toThrow(AssertionError);
          expect(() => BucketSet.empty(bucketCount).has(index)).toThrow(AssertionError);
        },
      ),
    );
  });

  it("a bucketCount of 0, above bucketCountMax or not an integer", () => {
    for (const bucketCount of [0, -1, bucketCountMax + 1, 1.5, Number.NaN]) {
      expect(() => BucketSet.empty(bucketCount)).toThrow(AssertionError);
      expect(() => BucketSet.all(bucketCount)).toThrow(AssertionError);
    }
  });

  it("combining sets of different bucketCount", () => {
    const small = BucketSet.of(32, [1]);
    const large = BucketSet.of(64, [1]);
    expect(() => small.union(large)).toThrow(AssertionError);
    expect(() => small.minus(large)).toThrow(AssertionError);
    expect(() => small.intersect(large)).toThrow(AssertionError);
  });

  it("equals is false, not an error, for sets of different bucketCount", () => {
    expect(BucketSet.of(32, [1]).equals(BucketSet.of(64, [1]))).toBe(false);
  });
});
