// The FilterPort contract (core/ports.ts), one suite run against the simulated kernel
// filter (filter-sim.test.ts) and the real one in network namespaces (filter-real.test.ts):
// two nodes hold the same VIP, clients open TCP connections from many source ports, and
// each connection must be answered by exactly the node whose filter owns its bucket; an
// established connection stays with its node when its bucket moves to lingering; a
// mid-stream packet nobody tracks gets a reset in reset buckets; nothing is accepted once
// the lease lapsed, the VIP is down, or the node's service died; a draining VIP accepts
// nothing but still carries the application's answers on connections it accepted.
//
// Buckets are the kernel's (drivers/real/filter.ts kernelBucket, the nftables jhash), in
// both harnesses, so a test knows which connection belongs to which bucket.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BucketSet } from "../../core/bucket-set.ts";
import type { FilterSettings, VipState } from "../../core/ports.ts";

/** A client connection, named by its source port (the client address is fixed). */
export interface Flow {
  readonly sourcePort: number;
  readonly bucket: number;
}

export type ExchangeOutcome =
  | { readonly kind: "answered"; readonly node: number }
  /** The client got a TCP reset. */
  | { readonly kind: "reset" }
  /** Nothing came back within the harness's wait. */
  | { readonly kind: "silent" };

export interface FilterHarness {
  readonly nodeCount: number;
  readonly bucketCount: number;
  /** The next `count` flows, never used before, with their buckets. */
  newFlows(count: number): Flow[];
  apply(node: number, settings: FilterSettings): Promise<void>;
  renew(node: number, leaseMs: number): Promise<void>;
  setVip(node: number, state: VipState): Promise<void>;
  /** The node's service dies (its process is killed); reset() starts a new one. */
  crash(node: number): Promise<void>;
  /** Opens each flow's connection to the VIP; per flow, the node that answered the
   *  handshake, or null when none did within the harness's wait. */
  connect(flows: readonly Flow[]): Promise<(number | null)[]>;
  /** Sends data on an answered flow and reports what came back. */
  exchange(flow: Flow): Promise<ExchangeOutcome>;
  /** The node's application writes a line, unasked, on the flow's connection (which it
   *  accepted); reports whether the client received it. */
  answerFrom(node: number, flow: Flow): Promise<ExchangeOutcome>;
  /** Connections the node's application accepted since the harness started. */
  acceptedCount(node: number): Promise<number>;
  /** Lets `ms` of the harness's time pass. */
  sleep(ms: number): Promise<void>;
  /** Between tests: every connection closed, crashed services restarted, every filter
   *  empty, every VIP down. */
  reset(): Promise<void>;
  dispose(): Promise<void>;
}

/** Longer than any test; a test about leases sets its own. */
const longLeaseMs = 120_000;

export function settings(bucketCount: number, fields: { owned?: Iterable<number>; lingering?: Iterable<number>; reset?: Iterable<number>; leaseMs?: number }): FilterSettings {
  return {
    owned: BucketSet.of(bucketCount, fields.owned ?? []),
    lingering: BucketSet.of(bucketCount, fields.lingering ?? []),
    reset: BucketSet.of(bucketCount, fields.reset ?? []),
    leaseMs: fields.leaseMs ?? longLeaseMs,
  };
}

function allBuckets(bucketCount: number): number[] {
  return Array.from({ length: bucketCount }, (_, index) => index);
}

/** Registers the contract suite; `makeHarness` builds a two-node world once for the suite. */
export function filterPortContract(name: string, makeHarness: () => Promise<FilterHarness>, options: { flowCount: number; leaseMs: number }): void {
  describe(`FilterPort contract: ${name}`, () => {
    let harness: FilterHarness;
    const { flowCount, leaseMs } = options;

    beforeAll(async () => {
      harness = await makeHarness();
    });
    afterAll(async () => {
      await harness?.dispose();
    });
    beforeEach(async () => {
      await harness.reset();
    });

    const bringUp = async (node: number, fields: Parameters<typeof settings>[1]) => {
      await harness.apply(node, settings(harness.bucketCount, fields));
      await harness.setVip(node, "up");
    };

    it("a node owning a subset of the buckets answers exactly the connections in them", async () => {
      const owned = allBuckets(harness.bucketCount).filter((bucket) => bucket % 4 < 2);
      await bringUp(0, { owned });
      const flows = harness.newFlows(flowCount);
      const answered = await harness.connect(flows);
      const inOwned = flows.map((flow) => owned.includes(flow.bucket));
      expect(answered).toEqual(inOwned.map((isOwned) => (isOwned ? 0 : null)));
      const share = inOwned.filter(Boolean).length / flows.length;
      expect(share, "the flows spread over the buckets as the hash promises").toBeGreaterThan(0.3);
      expect(share).toBeLessThan(0.7);
    });

    it("two nodes owning complementary buckets answer each connection exactly once, by its owner", async () => {
      const owned0 = allBuckets(harness.bucketCount).filter((bucket) => bucket % 3 === 0);
      const owned1 = allBuckets(harness.bucketCount).filter((bucket) => bucket % 3 !== 0);
      await bringUp(0, { owned: owned0 });
      await bringUp(1, { owned: owned1 });
      const before = [await harness.acceptedCount(0), await harness.acceptedCount(1)];
      const flows = harness.newFlows(flowCount);
      const answered = await harness.connect(flows);
      expect(answered).toEqual(flows.map((flow) => (owned0.includes(flow.bucket) ? 0 : 1)));
      const accepted = [(await harness.acceptedCount(0)) - before[0]!, (await harness.acceptedCount(1)) - before[1]!];
      expect(accepted, "no connection was accepted by both nodes").toEqual([answered.filter((node) => node === 0).length, answered.filter((node) => node === 1).length]);
    });

    it("an established connection stays with its node when its bucket moves to lingering; new ones go to the new owner", async () => {
      const all = allBuckets(harness.bucketCount);
      await bringUp(0, { owned: all });
      await bringUp(1, {});
      const old = harness.newFlows(Math.min(flowCount, 24));
      expect(await harness.connect(old)).toEqual(old.map(() => 0));
      await harness.apply(0, settings(harness.bucketCount, { lingering: all }));
      await harness.apply(1, settings(harness.bucketCount, { owned: all }));
      for (const flow of old) expect(await harness.exchange(flow), `flow ${flow.sourcePort}`).toEqual({ kind: "answered", node: 0 });
      const fresh = harness.newFlows(Math.min(flowCount, 24));
      expect(await harness.connect(fresh)).toEqual(fresh.map(() => 1));
    });

    it("a lingering bucket takes no new connection", async () => {
      const all = allBuckets(harness.bucketCount);
      await bringUp(0, { lingering: all });
      const flows = harness.newFlows(8);
      expect(await harness.connect(flows)).toEqual(flows.map(() => null));
    });

    it("a mid-stream packet that no node tracks gets a reset in a reset bucket, and nothing in a merely owned one", async () => {
      const all = allBuckets(harness.bucketCount);
      await bringUp(0, { owned: all });
      await bringUp(1, {});
      const flows = harness.newFlows(8);
      expect(await harness.connect(flows)).toEqual(flows.map(() => 0));
      // Node 0 leaves; node 1 inherits every bucket, half of them as reset buckets.
      await harness.apply(0, settings(harness.bucketCount, {}));
      const resetBuckets = all.filter((bucket) => bucket % 2 === 0);
      await harness.apply(1, settings(harness.bucketCount, { owned: all, reset: resetBuckets }));
      for (const flow of flows) {
        const expected: ExchangeOutcome = resetBuckets.includes(flow.bucket) ? { kind: "reset" } : { kind: "silent" };
        expect(await harness.exchange(flow), `flow ${flow.sourcePort} in bucket ${flow.bucket}`).toEqual(expected);
      }
    });

    it("the lease: renewals keep the filter, and once it lapses nothing is accepted", async () => {
      await bringUp(0, { owned: allBuckets(harness.bucketCount), leaseMs });
      const old = harness.newFlows(4);
      expect(await harness.connect(old)).toEqual(old.map(() => 0));
      await harness.sleep(leaseMs / 2);
      await harness.renew(0, leaseMs);
      await harness.sleep((leaseMs * 2) / 3);
      const renewed = harness.newFlows(4);
      expect(await harness.connect(renewed), "past the first lease, within the renewed one").toEqual(renewed.map(() => 0));
      await harness.sleep(leaseMs);
      const late = harness.newFlows(4);
      expect(await harness.connect(late), "after the lease lapsed").toEqual(late.map(() => null));
      expect(await harness.exchange(old[0]!), "established connections too").toEqual({ kind: "silent" });
    });

    it("a renewal after the lease lapsed restores the filter", async () => {
      await bringUp(0, { owned: allBuckets(harness.bucketCount), leaseMs });
      await harness.sleep(leaseMs * 1.5);
      await harness.renew(0, leaseMs);
      const flows = harness.newFlows(4);
      expect(await harness.connect(flows)).toEqual(flows.map(() => 0));
    });

    it("a node whose VIP is down answers nothing, whatever its filter", async () => {
      await bringUp(0, { owned: allBuckets(harness.bucketCount) });
      await harness.setVip(0, "down");
      const flows = harness.newFlows(8);
      expect(await harness.connect(flows)).toEqual(flows.map(() => null));
      await harness.setVip(0, "up");
      const again = harness.newFlows(8);
      expect(await harness.connect(again)).toEqual(again.map(() => 0));
    });

    it("a node that left with its VIP draining accepts nothing, yet its application's answers on connections it accepted reach their clients; with the VIP down they do not", async () => {
      await bringUp(0, { owned: allBuckets(harness.bucketCount) });
      const flows = harness.newFlows(4);
      expect(await harness.connect(flows)).toEqual(flows.map(() => 0));
      await harness.apply(0, settings(harness.bucketCount, {}));
      await harness.setVip(0, "draining");
      expect(await harness.answerFrom(0, flows[0]!), "an answer written after the node left").toEqual({ kind: "answered", node: 0 });
      const fresh = harness.newFlows(4);
      expect(await harness.connect(fresh), "new connections").toEqual(fresh.map(() => null));
      expect(await harness.exchange(flows[1]!), "a request on an old connection").toEqual({ kind: "silent" });
      await harness.setVip(0, "down");
      expect(await harness.answerFrom(0, flows[2]!), "an answer written once the VIP is down").toEqual({ kind: "silent" });
    });

    it("a node whose service died answers nothing, new connections or old", async () => {
      await bringUp(0, { owned: allBuckets(harness.bucketCount) });
      const old = harness.newFlows(4);
      expect(await harness.connect(old)).toEqual(old.map(() => 0));
      await harness.crash(0);
      const flows = harness.newFlows(8);
      expect(await harness.connect(flows)).toEqual(flows.map(() => null));
      expect(await harness.exchange(old[0]!)).toEqual({ kind: "silent" });
    });
  });
}
