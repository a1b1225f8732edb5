// Bucket ownership (weighted rendezvous hashing): the properties the farm relies on.
//
// (a) every bucket has exactly one owner among the members of weight > 0, none when all
//     weights are 0; (b) the map does not depend on member order; (c) adding, removing or
//     reweighting ONE member only moves buckets to or from that member; (d) shares are
//     proportional to weight; (e) the map is deterministic, pinned across versions, and
//     changes with the seed.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import { BucketSet } from "../../core/bucket-set.ts";
import { combine32, hashString32, mix32 } from "../../core/hash.ts";
import {
  bucketsOwnedBy,
  computeOwners,
  movedBuckets,
  weightMax,
  type OwnerMap,
  type WeightedMember,
} from "../../core/ownership.ts";

// ---------------------------------------------------------------------------------------
// Arbitraries

const seedArbitrary = fc.integer({ min: 0, max: 0xffff_ffff });
const bucketCountArbitrary = fc.oneof(fc.constant(256), fc.integer({ min: 1, max: 300 }));
/** Node names as operators write them (s1, node-07) and arbitrary strings. */
const idArbitrary = fc.oneof(
  fc.integer({ min: 1, max: 99 }).map((n) => `s${n}`),
  fc.integer({ min: 1, max: 99 }).map((n) => `node-${String(n).padStart(2, "0")}`),
  fc.string({ minLength: 1, maxLength: 6 }),
);
const memberArbitrary = fc.record({ id: idArbitrary, weight: fc.integer({ min: 0, max: 10 }) });

function membersArbitrary(minLength: number, maxLength: number): fc.Arbitrary<WeightedMember[]> {
  return fc.uniqueArray(memberArbitrary, { minLength, maxLength, selector: (member) => member.id });
}

/** A member set of 2..16 nodes plus the index of one of them. */
const membersWithIndexArbitrary = membersArbitrary(2, 16).chain((members) =>
  fc.record({ members: fc.constant(members), index: fc.integer({ min: 0, max: members.length - 1 }) }),
);

/** A member set of 1..15 nodes plus one more node that is not in it. */
const membersWithNewcomerArbitrary = membersArbitrary(2, 16).map((members) => ({
  members: members.slice(1),
  newcomer: members[0]!,
}));

function countsOf(owners: OwnerMap): Map<string, number> {
  const counts = new Map<string, number>();
  for (const owner of owners) if (owner !== null) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

// ---------------------------------------------------------------------------------------
// (a) exactly one owner

describe("every bucket has exactly one owner among the members with weight > 0", () => {
  it("the owner of each bucket is a member of weight > 0, and the owned sets partition all buckets", () => {
    fc.assert(
      fc.property(membersArbitrary(1, 16), bucketCountArbitrary, seedArbitrary, (members, bucketCount, seed) => {
        fc.pre(members.some((member) => member.weight > 0));
        const owners = computeOwners(members, bucketCount, seed);
        const eligible = new Set(members.filter((member) => member.weight > 0).map((member) => member.id));
        expect(owners).toHaveLength(bucketCount);
        for (const owner of owners) expect(eligible.has(owner as string)).toBe(true);
        let union = BucketSet.empty(bucketCount);
        let total = 0;
        for (const member of members) {
          const owned = bucketsOwnedBy(owners, member.id);
          expect(owned.intersect(union).isEmpty()).toBe(true);
          union = union.union(owned);
          total += owned.size();
        }
        expect(total).toBe(bucketCount);
        expect(union.equals(BucketSet.all(bucketCount))).toBe(true);
      }),
    );
  });

  it("a member of weight 0 owns no bucket", () => {
    fc.assert(
      fc.property(membersArbitrary(1, 16), seedArbitrary, (members, seed) => {
        const owners = computeOwners(members, 256, seed);
        for (const member of members.filter((m) => m.weight === 0)) {
          expect(bucketsOwnedBy(owners, member.id).isEmpty()).toBe(true);
        }
      }),
    );
  });

  it("no bucket has an owner when every weight is 0 or there is no member", () => {
    fc.assert(
      fc.property(membersArbitrary(0, 16), bucketCountArbitrary, seedArbitrary, (members, bucketCount, seed) => {
        const idle = members.map((member) => ({ id: member.id, weight: 0 }));
        const owners = computeOwners(idle, bucketCount, seed);
        expect(owners).toHaveLength(bucketCount);
        expect(owners.every((owner) => owner === null)).toBe(true);
      }),
    );
  });

  it("a single member of weight > 0 owns every bucket", () => {
    const owners = computeOwners([{ id: "s1", weight: 0 }, { id: "s2", weight: 1 }, { id: "s3", weight: 0 }], 256, 7);
    expect(bucketsOwnedBy(owners, "s2").equals(BucketSet.all(256))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------
// (b) order independence

describe("the owner map does not depend on member order", () => {
  it("any permutation of the members gives the same map", () => {
    const arbitrary = membersArbitrary(1, 16).chain((members) =>
      fc.record({
        members: fc.constant(members),
        shuffled: fc.shuffledSubarray(members, { minLength: members.length, maxLength: members.length }),
      }),
    );
    fc.assert(
      fc.property(arbitrary, seedArbitrary, ({ members, shuffled }, seed) => {
        expect(computeOwners(shuffled, 256, seed)).toEqual(computeOwners(members, 256, seed));
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------
// (c) minimal disruption

describe("a change of one member moves only that member's buckets", () => {
  it("removing a member moves exactly the buckets it owned, and nothing else", () => {
    fc.assert(
      fc.property(membersWithIndexArbitrary, seedArbitrary, ({ members, index }, seed) => {
        const removed = members[index]!;
        const before = computeOwners(members, 256, seed);
        const after = computeOwners(members.filter((_, i) => i !== index), 256, seed);
        expect(movedBuckets(before, after)).toEqual(bucketsOwnedBy(before, removed.id).toArray());
      }),
    );
  });

  it("adding a member moves exactly the buckets it now owns, and nothing else", () => {
    fc.assert(
      fc.property(membersWithNewcomerArbitrary, seedArbitrary, ({ members, newcomer }, seed) => {
        const before = computeOwners(members, 256, seed);
        const after = computeOwners([...members, newcomer], 256, seed);
        expect(movedBuckets(before, after)).toEqual(bucketsOwnedBy(after, newcomer.id).toArray());
      }),
    );
  });

  it("raising one member's weight only moves buckets to it; lowering it only moves buckets from it", () => {
    fc.assert(
      fc.property(membersWithIndexArbitrary, fc.integer({ min: 0, max: 10 }), seedArbitrary, ({ members, index }, weight, seed) => {
        const changed = members[index]!;
        const reweighted = members.map((member, i) => (i === index ? { id: member.id, weight } : member));
        const before = computeOwners(members, 256, seed);
        const after = computeOwners(reweighted, 256, seed);
        for (const bucketIndex of movedBuckets(before, after)) {
          if (weight > changed.weight) expect(after[bucketIndex]).toBe(changed.id);
          else expect(before[bucketIndex]).toBe(changed.id);
        }
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------
// (d) proportional shares

/**
 * For a correct hash, a member's bucket count is Binomial(n, p) with p = w / Σw (each
 * bucket goes independently to the member holding the highest of Σw uniform replica
 * scores). Returns [low, high] = n·p ∓ sigmas·√(n·p·(1−p)).
 */
function binomialBounds(n: number, p: number, sigmas: number): [number, number] {
  const mean = n * p;
  const deviation = sigmas * Math.sqrt(n * p * (1 - p));
  return [mean - deviation, mean + deviation];
}

describe("shares are proportional to weight", () => {
  // 64 members of equal weight, 4096 buckets: the fair share is 64, and each count is
  // Binomial(4096, 1/64): mean 64, σ ≈ 7.94. The bounds 0.3× (19.2, so ≥ 20) and 2.5× (160)
  // are 5.6σ below and 12σ above the mean. Chernoff bounds the chance that a correct hash
  // misses them: P(X ≤ 19) ≤ exp(−64·0.70²/2) ≈ 1.4e-7 and P(X ≥ 160) ≤ exp(−64·1.5²/3.5)
  // ≈ 1e-18 per member; over 64 members and the 8 runs below that is < 1e-4 even by this
  // loose bound (the exact binomial tail is ~1e-11 per member). The test is deterministic
  // anyway: the same seeds give the same counts on every run. A broken hash fails it at
  // once: ignoring the bucket gives one member all 4096 buckets, ignoring the member gives
  // all to the first one, and a hash with only a few distinct outputs leaves members empty.
  const equalShareCases = [1, 10].flatMap((weight) => [0, 1, 0xdead_beef, 0xffff_ffff].map((seed) => ({ weight, seed })));
  it.each(equalShareCases)("64 members of weight $weight, seed $seed: each gets 0.3x..2.5x of 4096/64", ({ weight, seed }) => {
    const members = Array.from({ length: 64 }, (_, i) => ({ id: `s${i + 1}`, weight }));
    const counts = countsOf(computeOwners(members, 4096, seed));
    const fairShare = 4096 / 64;
    for (const member of members) {
      const count = counts.get(member.id) ?? 0;
      expect(count, member.id).toBeGreaterThanOrEqual(Math.ceil(0.3 * fairShare));
      expect(count, member.id).toBeLessThanOrEqual(2.5 * fairShare);
    }
  });

  // Weights 1, 2, 3, 4 over 4096 buckets: expected shares 10 %, 20 %, 30 %, 40 % (σ from 19
  // to 31 buckets). ±6σ fails a correct hash with probability ~2e-9 per member, and fails a
  // hash that ignored weights (25 % each: 1024 vs 409.6 ± 115 for weight 1).
  it.each([0, 7, 99, 0xffff_ffff])("weights 1,2,3,4, seed %i: each share within 6 sigma of w/sum(w)", (seed) => {
    const members = [1, 2, 3, 4].map((weight) => ({ id: `w${weight}`, weight }));
    const counts = countsOf(computeOwners(members, 4096, seed));
    for (const member of members) {
      const [low, high] = binomialBounds(4096, member.weight / 10, 6);
      const count = counts.get(member.id) ?? 0;
      expect(count, member.id).toBeGreaterThanOrEqual(low);
      expect(count, member.id).toBeLessThanOrEqual(high);
    }
  });

  // Random weights 1..10 on 2..8 members. 7σ keeps the per-member false-failure chance near
  // 1e-12 (a few buckets of skew in the binomial's upper tail included), so 50 random runs
  // of up to 8 members stay safe, while a weight-blind hash (e.g. weights 1 and 10 → 50/50
  // instead of 9/91 %: 2048 vs 372 ± 128) fails.
  it("random weights: each member's share is within 7 sigma of w/sum(w)", () => {
    const weighted = fc.uniqueArray(fc.record({ id: idArbitrary, weight: fc.integer({ min: 1, max: 10 }) }), {
      minLength: 2,
      maxLength: 8,
      selector: (member) => member.id,
    });
    fc.assert(
      fc.property(weighted, seedArbitrary, (members, seed) => {
        fc.pre(new Set(members.map((member) => hashString32(member.id))).size === members.length);
        const total = members.reduce((sum, member) => sum + member.weight, 0);
        const counts = countsOf(computeOwners(members, 4096, seed));
        for (const member of members) {
          const [low, high] = binomialBounds(4096, member.weight / total, 7);
          const count = counts.get(member.id) ?? 0;
          expect(count, member.id).toBeGreaterThanOrEqual(low);
          expect(count, member.id).toBeLessThanOrEqual(high);
        }
      }),
      { numRuns: 50 },
    );
  });

  // FNV-1a collides for "costarring" and "liquid" (a published pair): both names would get
  // the same member key and the first would take both shares. Such names are rejected by
  // validateFarmConfig, and computeOwners refuses them rather than split the load wrongly.
  it("refuses two members whose names' 32-bit hashes collide", () => {
    expect(hashString32("costarring")).toBe(hashString32("liquid"));
    expect(() => computeOwners([{ id: "costarring", weight: 1 }, { id: "liquid", weight: 1 }], 256, 0)).toThrow(AssertionError);
  });
});

// ---------------------------------------------------------------------------------------
// (e) determinism and seed

describe("the owner map is deterministic and depends on the seed", () => {
  it("the same members, bucketCount and seed always give the same map", () => {
    fc.assert(
      fc.property(membersArbitrary(1, 16), bucketCountArbitrary, seedArbitrary, (members, bucketCount, seed) => {
        const copy = members.map((member) => ({ ...member }));
        expect(computeOwners(copy, bucketCount, seed)).toEqual(computeOwners(members, bucketCount, seed));
      }),
    );
  });

  it("two different seeds give different maps (2+ members of weight > 0, 256 buckets)", () => {
    fc.assert(
      fc.property(membersArbitrary(2, 16), seedArbitrary, seedArbitrary, (members, seedA, seedB) => {
        fc.pre(seedA !== seedB);
        fc.pre(members.filter((member) => member.weight > 0).length >= 2);
        fc.pre(new Set(members.map((member) => hashString32(member.id))).size === members.length);
        expect(computeOwners(members, 256, seedA)).not.toEqual(computeOwners(members, 256, seedB));
      }),
    );
  });

  // Every node of a cluster must compute the same map, also during a rolling upgrade from
  // one tandem version to the next: this pins the map for one input. If it changes on
  // purpose, the upgrade notes must say that mixed-version farms misroute packets.
  it("the map for s1:1, s2:2, s3:3, 32 buckets, seed 42 is pinned", () => {
    const members = [{ id: "s1", weight: 1 }, { id: "s2", weight: 2 }, { id: "s3", weight: 3 }];
    const owners = computeOwners(members, 32, 42);
    expect(owners.map((owner) => owner!.slice(1)).join("")).toBe("33232233312222333233233232333331");
  });
});

describe("computeOwners rejects programmer errors with AssertionError", () => {
  it.each([
    ["a member listed twice", [{ id: "s1", weight: 1 }, { id: "s1", weight: 2 }], 256],
    ["a negative weight", [{ id: "s1", weight: -1 }], 256],
    ["a weight above weightMax", [{ id: "s1", weight: weightMax + 1 }], 256],
    ["a fractional weight", [{ id: "s1", weight: 1.5 }], 256],
    ["bucketCount 0", [{ id: "s1", weight: 1 }], 0],
    ["a fractional bucketCount", [{ id: "s1", weight: 1 }], 2.5],
  ])("%s", (_, members, bucketCount) => {
    expect(() => computeOwners(members, bucketCount, 0)).toThrow(AssertionError);
  });

  it("weightMax is accepted", () => {
    expect(() => computeOwners([{ id: "s1", weight: weightMax }], 16, 0)).not.toThrow();
  });

  it("movedBuckets of maps of different sizes", () => {
    expect(() => movedBuckets([null], [null, null])).toThrow(AssertionError);
  });
});

// ---------------------------------------------------------------------------------------
// The integer hashes under the map, against BigInt reference implementations: the map is
// only the same on every node if these are exact 32-bit integer functions.

const mask32 = (1n << 32n) - 1n;

function mix32Reference(value: number): number {
  let h = BigInt(value >>> 0);
  h ^= h >> 16n;
  h = (h * 0x85eb_ca6bn) & mask32;
  h ^= h >> 13n;
  h = (h * 0xc2b2_ae35n) & mask32;
  h ^= h >> 16n;
  return Number(h);
}

function fnv1aReference(text: string): number {
  let h = 0x811c_9dc5n;
  for (let index = 0; index < text.length; index++) {
    h ^= BigInt(text.charCodeAt(index));
    h = (h * 0x0100_0193n) & mask32;
  }
  return Number(h);
}

describe("integer hashes", () => {
  it("mix32 is murmur3's fmix32 and returns an unsigned 32-bit integer", () => {
    fc.assert(
      fc.property(fc.integer({ min: -0x8000_0000, max: 0xffff_ffff }), (value) => {
        const h = mix32(value);
        expect(h).toBe(mix32Reference(value));
        expect(Number.isInteger(h) && h >= 0 && h <= 0xffff_ffff).toBe(true);
      }),
    );
  });

  it("hashString32 is FNV-1a over UTF-16 code units, finalised with mix32", () => {
    // FNV-1a("a") = 0xe40c292c is the published test vector.
    expect(fnv1aReference("a")).toBe(0xe40c_292c);
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 20 }), (text) => {
        expect(hashString32(text)).toBe(mix32Reference(fnv1aReference(text)));
      }),
    );
  });

  it("combine32 returns an unsigned 32-bit integer and depends on both arguments", () => {
    fc.assert(
      fc.property(seedArbitrary, seedArbitrary, seedArbitrary, (a, b, c) => {
        const h = combine32(a, b);
        expect(Number.isInteger(h) && h >= 0 && h <= 0xffff_ffff).toBe(true);
        if (b !== c) expect(combine32(a, c)).not.toBe(h);
        if (a !== c) expect(combine32(c, b)).not.toBe(h);
      }),
    );
  });
});
