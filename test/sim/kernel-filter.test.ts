// The kernel model of one node (drivers/sim/kernel-filter.ts): which client packets the
// filter accepts, resets or drops; the lease; what a process crash and a power loss
// leave behind; and the planted bug "filter-keeps-buckets" the simulator's self-test
// relies on.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BucketSet } from "../../core/bucket-set.ts";
import type { FilterSettings } from "../../core/ports.ts";
import { SimKernelFilter } from "../../drivers/sim/kernel-filter.ts";

const bucketCount = 16;
const leaseMs = 200;
const set = (...indices: number[]) => BucketSet.of(bucketCount, indices);
const empty = BucketSet.empty(bucketCount);

// Bucket roles used throughout: 0-3 owned (2-3 also reset), 4-5 lingering, 6+ neither.
const ownedBucket = 0;
const resetBucket = 2;
const lingeringBucket = 4;
const foreignBucket = 6;
const settings: FilterSettings = { owned: set(0, 1, 2, 3), lingering: set(4, 5), reset: set(2, 3), leaseMs };

/** A kernel with the VIP up and `settings` applied at time 0 (lease until 200 ms). */
function kernel(bug: "none" | "filter-keeps-buckets" = "none"): SimKernelFilter {
  const filter = new SimKernelFilter(bucketCount, bug);
  filter.vip = "up";
  filter.apply(settings, 0);
  return filter;
}

describe("SimKernelFilter: a new kernel", () => {
  it("owns nothing, has no lease, no VIP and no conntrack entries, and accepts nothing", () => {
    const filter = new SimKernelFilter(bucketCount, "none");
    expect(filter.owned.isEmpty() && filter.lingering.isEmpty() && filter.reset.isEmpty()).toBe(true);
    expect(filter.vipUp).toBe(false);
    expect(filter.leaseValid(0)).toBe(false);
    expect(filter.conntrack.size).toBe(0);
    expect(filter.acceptsAnything(0)).toBe(false);
    expect(filter.decide(0, "f", true, 0)).toBe("drop");
  });
});

describe("SimKernelFilter.decide: SYN", () => {
  it("accepts a SYN in an owned bucket and tracks the flow as syn", () => {
    const filter = kernel();
    expect(filter.decide(ownedBucket, "f", true, 10)).toBe("accept");
    expect(filter.conntrack.get("f")).toBe("syn");
  });

  it("accepts a SYN in an owned reset bucket (reset is only for mid-stream strangers)", () => {
    const filter = kernel();
    expect(filter.decide(resetBucket, "f", true, 10)).toBe("accept");
    expect(filter.conntrack.get("f")).toBe("syn");
  });

  it("accepts a retransmitted SYN of a tracked flow without downgrading an established one", () => {
    const filter = kernel();
    filter.decide(ownedBucket, "f", true, 10);
    filter.establish("f");
    expect(filter.decide(ownedBucket, "f", true, 20)).toBe("accept");
    expect(filter.conntrack.get("f")).toBe("established");
  });

  it("drops a SYN in a lingering bucket, even for a flow established here, and does not track it", () => {
    const filter = kernel();
    expect(filter.decide(lingeringBucket, "new", true, 10)).toBe("drop");
    expect(filter.conntrack.has("new")).toBe(false);
    filter.decide(ownedBucket, "old", true, 10);
    filter.establish("old");
    expect(filter.decide(lingeringBucket, "old", true, 20)).toBe("drop");
  });

  it("drops a SYN in a bucket it neither owns nor lingers on, and does not track it", () => {
    const filter = kernel();
    expect(filter.decide(foreignBucket, "f", true, 10)).toBe("drop");
    expect(filter.conntrack.has("f")).toBe(false);
  });
});

describe("SimKernelFilter.decide: mid-stream packets", () => {
  it("accepts a tracked flow in an owned bucket, whether syn or established", () => {
    const filter = kernel();
    filter.decide(ownedBucket, "syn-only", true, 10);
    filter.decide(ownedBucket, "answered", true, 10);
    filter.establish("answered");
    expect(filter.decide(ownedBucket, "syn-only", false, 20)).toBe("accept");
    expect(filter.decide(ownedBucket, "answered", false, 20)).toBe("accept");
  });

  it("accepts a tracked flow in an owned reset bucket", () => {
    const filter = kernel();
    filter.decide(resetBucket, "f", true, 10);
    expect(filter.decide(resetBucket, "f", false, 20)).toBe("accept");
  });

  it("in a lingering bucket accepts only flows marked established", () => {
    const filter = kernel();
    filter.conntrack.set("answered", "syn");
    filter.establish("answered");
    filter.conntrack.set("syn-only", "syn");
    expect(filter.decide(lingeringBucket, "answered", false, 20)).toBe("accept");
    expect(filter.decide(lingeringBucket, "syn-only", false, 20)).toBe("drop");
    expect(filter.decide(lingeringBucket, "stranger", false, 20)).toBe("drop");
  });

  it("resets a mid-stream stranger in a reset bucket", () => {
    expect(kernel().decide(resetBucket, "stranger", false, 20)).toBe("reset");
  });

  it("drops a mid-stream stranger in an owned bucket that is not a reset bucket", () => {
    expect(kernel().decide(ownedBucket, "stranger", false, 20)).toBe("drop");
  });

  it("drops a mid-stream stranger, and even an established flow, in a foreign bucket", () => {
    const filter = kernel();
    filter.conntrack.set("f", "established");
    expect(filter.decide(foreignBucket, "stranger", false, 20)).toBe("drop");
    expect(filter.decide(foreignBucket, "f", false, 20)).toBe("drop");
  });

  it("never tracks a flow from a mid-stream packet", () => {
    const filter = kernel();
    for (const bucket of [ownedBucket, resetBucket, lingeringBucket, foreignBucket]) filter.decide(bucket, "stranger", false, 20);
    expect(filter.conntrack.size).toBe(0);
  });
});

describe("SimKernelFilter.establish", () => {
  it("marks a tracked flow established and ignores an untracked one", () => {
    const filter = kernel();
    filter.decide(ownedBucket, "f", true, 10);
    filter.establish("f");
    filter.establish("unknown");
    expect(filter.conntrack.get("f")).toBe("established");
    expect(filter.conntrack.has("unknown")).toBe(false);
  });
});

describe("SimKernelFilter: VIP and lease", () => {
  /** Every packet kind in every bucket role, with conntrack entries of both states. */
  function anyAccepted(filter: SimKernelFilter, nowMs: number): boolean {
    filter.conntrack.set("syn-only", "syn");
    filter.conntrack.set("answered", "established");
    const verdicts: string[] = [];
    for (let bucket = 0; bucket < bucketCount; bucket++) {
      for (const flow of ["syn-only", "answered", "stranger"]) {
        for (const isSyn of [true, false]) verdicts.push(filter.decide(bucket, flow, isSyn, nowMs));
      }
    }
    return verdicts.some((verdict) => verdict !== "drop");
  }

  it("accepts and resets nothing with the VIP down", () => {
    const filter = kernel();
    filter.vip = "down";
    expect(anyAccepted(filter, 10)).toBe(false);
    expect(filter.acceptsAnything(10)).toBe(false);
    expect(filter.effectiveOwned(10).isEmpty()).toBe(true);
  });

  it("apply starts a lease of leaseMs: valid just before, expired at and after", () => {
    const filter = kernel();
    expect(filter.leaseValid(leaseMs - 0.001)).toBe(true);
    expect(anyAccepted(filter, leaseMs - 0.001)).toBe(true);
    expect(filter.leaseValid(leaseMs)).toBe(false);
    expect(anyAccepted(filter, leaseMs)).toBe(false);
    expect(anyAccepted(filter, 10 * leaseMs)).toBe(false);
    expect(filter.acceptsAnything(leaseMs)).toBe(false);
    expect(filter.effectiveOwned(leaseMs).isEmpty()).toBe(true);
    expect(filter.effectiveOwned(leaseMs - 1).equals(settings.owned)).toBe(true);
  });

  it("renew extends the lease to leaseMs from the renewal", () => {
    const filter = kernel();
    filter.renew(leaseMs, 150);
    expect(filter.leaseValid(150 + leaseMs - 0.001)).toBe(true);
    expect(filter.decide(ownedBucket, "f", true, 300)).toBe("accept");
    expect(filter.leaseValid(150 + leaseMs)).toBe(false);
    expect(filter.decide(ownedBucket, "g", true, 150 + leaseMs)).toBe("drop");
  });

  it("a new apply restarts the lease from its own time", () => {
    const filter = kernel();
    filter.apply(settings, 1000);
    expect(filter.leaseValid(1000 + leaseMs - 1)).toBe(true);
    expect(filter.leaseValid(1000 + leaseMs)).toBe(false);
  });

  it("an apply replaces the buckets as a whole", () => {
    const filter = kernel();
    filter.apply({ owned: set(9), lingering: set(0), reset: empty, leaseMs }, 10);
    expect(filter.decide(0, "f", true, 20)).toBe("drop");
    expect(filter.decide(9, "g", true, 20)).toBe("accept");
    expect(filter.decide(2, "stranger", false, 20)).toBe("drop");
  });

  it("acceptsAnything needs the VIP, a valid lease and some owned or lingering bucket", () => {
    const filter = kernel();
    expect(filter.acceptsAnything(10)).toBe(true);
    filter.apply({ owned: empty, lingering: set(4), reset: empty, leaseMs }, 10);
    expect(filter.acceptsAnything(20)).toBe(true);
    filter.apply({ owned: empty, lingering: empty, reset: empty, leaseMs }, 20);
    expect(filter.acceptsAnything(30)).toBe(false);
  });

  it("accepts nothing once the lease lapsed, whatever the buckets and flows (property)", () => {
    const bucketsArb = fc.uniqueArray(fc.integer({ min: 0, max: bucketCount - 1 }), { maxLength: bucketCount, size: "max" });
    fc.assert(
      fc.property(bucketsArb, bucketsArb, fc.integer({ min: 1, max: 1000 }), fc.double({ min: 0, max: 1e6, noNaN: true }), (owned, lingering, lease, afterMs) => {
        const filter = new SimKernelFilter(bucketCount, "none");
        filter.vip = "up";
        const ownedSet = set(...owned);
        filter.apply({ owned: ownedSet, lingering: set(...lingering).minus(ownedSet), reset: ownedSet, leaseMs: lease }, 0);
        expect(anyAccepted(filter, lease + afterMs)).toBe(false);
      }),
      { numRuns: 100 },
    );
  });
});

describe("SimKernelFilter: crash and power loss", () => {
  it("flushRules (process crash) empties the rules and the lease but keeps conntrack and the VIP flag", () => {
    const filter = kernel();
    filter.decide(ownedBucket, "f", true, 10);
    filter.establish("f");
    filter.flushRules();
    expect(filter.owned.isEmpty() && filter.lingering.isEmpty() && filter.reset.isEmpty()).toBe(true);
    expect(filter.leaseValid(20)).toBe(false);
    expect(filter.conntrack.get("f")).toBe("established");
    expect(filter.vipUp).toBe(true);
    expect(filter.acceptsAnything(20)).toBe(false);
    expect(filter.decide(ownedBucket, "f", false, 20)).toBe("drop");
  });

  it("after flushRules a renew alone still accepts nothing (no rules to renew)", () => {
    const filter = kernel();
    filter.flushRules();
    filter.renew(leaseMs, 20);
    expect(filter.acceptsAnything(30)).toBe(false);
    expect(filter.decide(ownedBucket, "f", true, 30)).toBe("drop");
  });

  it("keeps conntrack across a crash so that a restarted node serves its flows again", () => {
    const filter = kernel();
    filter.decide(ownedBucket, "f", true, 10);
    filter.flushRules();
    filter.apply(settings, 50);
    expect(filter.decide(ownedBucket, "f", false, 60)).toBe("accept");
  });

  it("wipe (power loss) clears rules, lease, conntrack and the VIP", () => {
    const filter = kernel();
    filter.decide(ownedBucket, "f", true, 10);
    filter.wipe();
    expect(filter.owned.isEmpty() && filter.lingering.isEmpty() && filter.reset.isEmpty()).toBe(true);
    expect(filter.leaseValid(20)).toBe(false);
    expect(filter.conntrack.size).toBe(0);
    expect(filter.vipUp).toBe(false);
    expect(filter.acceptsAnything(20)).toBe(false);
  });
});

describe('SimKernelFilter planted bug "filter-keeps-buckets"', () => {
  const emptying: FilterSettings = { owned: empty, lingering: empty, reset: empty, leaseMs };

  it("without the bug, an emptying apply empties the filter", () => {
    const filter = kernel("none");
    filter.apply(emptying, 50);
    expect(filter.owned.isEmpty()).toBe(true);
    expect(filter.decide(ownedBucket, "f", true, 60)).toBe("drop");
  });

  it("ignores an apply that would empty a non-empty owned set, and keeps all three sets", () => {
    const filter = kernel("filter-keeps-buckets");
    filter.apply(emptying, 50);
    expect(filter.owned.equals(settings.owned)).toBe(true);
    expect(filter.lingering.equals(settings.lingering)).toBe(true);
    expect(filter.reset.equals(settings.reset)).toBe(true);
    expect(filter.decide(ownedBucket, "f", true, 60)).toBe("accept");
  });

  it("never lets the lease expire after such an apply, not even with renewals", () => {
    const filter = kernel("filter-keeps-buckets");
    filter.apply(emptying, 50);
    filter.renew(leaseMs, 100);
    expect(filter.leaseExpiresMs).toBe(Number.POSITIVE_INFINITY);
    expect(filter.leaseValid(1e12)).toBe(true);
    expect(filter.acceptsAnything(1e12)).toBe(true);
    expect(filter.decide(ownedBucket, "f", true, 1e12)).toBe("accept");
  });

  it("lets the lease expire as usual when no emptying apply happened", () => {
    const filter = kernel("filter-keeps-buckets");
    filter.renew(leaseMs, 100);
    expect(filter.leaseValid(100 + leaseMs)).toBe(false);
    expect(filter.decide(ownedBucket, "f", true, 100 + leaseMs)).toBe("drop");
  });

  it("applies an emptying apply normally when nothing was owned", () => {
    const filter = new SimKernelFilter(bucketCount, "filter-keeps-buckets");
    filter.vip = "up";
    filter.apply({ owned: empty, lingering: set(4), reset: empty, leaseMs }, 0);
    filter.apply(emptying, 10);
    expect(filter.lingering.isEmpty()).toBe(true);
    expect(filter.leaseValid(10 + leaseMs)).toBe(false);
  });

  it("takes a non-empty apply normally, which also ends the endless lease", () => {
    const filter = kernel("filter-keeps-buckets");
    filter.apply(emptying, 50);
    filter.apply({ owned: set(9), lingering: empty, reset: empty, leaseMs }, 100);
    expect(filter.owned.equals(set(9))).toBe(true);
    expect(filter.leaseValid(100 + leaseMs)).toBe(false);
  });

  it("also keeps the rules through flushRules (a crash), while wipe still clears conntrack and the VIP", () => {
    const filter = kernel("filter-keeps-buckets");
    filter.decide(ownedBucket, "f", true, 10);
    filter.flushRules();
    expect(filter.owned.equals(settings.owned)).toBe(true);
    expect(filter.leaseValid(100)).toBe(true);
    filter.wipe();
    expect(filter.owned.equals(settings.owned)).toBe(true);
    expect(filter.conntrack.size).toBe(0);
    expect(filter.vipUp).toBe(false);
    expect(filter.acceptsAnything(100)).toBe(false);
  });
});
