// Bucket ownership for farm modules. A pure function of its inputs: it performs no I/O.
//
// Weighted rendezvous hashing with integer arithmetic only: a member of weight w gets w
// "replicas"; each bucket goes to the member owning the replica with the highest hash of
// (seed, bucket, member, replica). Every node computes the same map from the same member
// set, a member's expected share is w / Σw, and adding or removing one member only moves
// buckets to or from that member (the other members' relative order is untouched).

import { assert } from "./assert.ts";
import { BucketSet } from "./bucket-set.ts";
import { combine32, hashString32 } from "./hash.ts";
import type { NodeId } from "./types.ts";

/** The largest weight (SafeKit's `power`) a member may have. */
export const weightMax = 100;

export interface WeightedMember {
  readonly id: NodeId;
  /** Share of the traffic, an integer in [0, weightMax]; 0 means "no traffic". */
  readonly weight: number;
}

/** owners[bucketIndex] is the owning node, or null when no member has a weight above 0. */
export type OwnerMap = readonly (NodeId | null)[];

export function computeOwners(members: readonly WeightedMember[], bucketCount: number, seed: number): OwnerMap {
  assert(Number.isInteger(bucketCount) && bucketCount >= 1, `bucketCount ${bucketCount} invalid`);
  const ids = new Set<NodeId>();
  for (const member of members) {
    assert(!ids.has(member.id), `member ${member.id} listed twice`);
    assert(Number.isInteger(member.weight), `member ${member.id} weight ${member.weight} not an integer`);
    assert(member.weight >= 0 && member.weight <= weightMax, `member ${member.id} weight ${member.weight} out of range`);
    ids.add(member.id);
  }
  // Sorting by id makes the result independent of the order members were listed in.
  const sorted = [...members].filter((member) => member.weight > 0).sort((a, b) => compareIds(a.id, b.id));
  const keys = sorted.map((member) => hashString32(member.id));
  // Two members with one key would score alike everywhere and the first would take both
  // shares; validateFarmConfig rejects such names, so here it is a programmer error.
  assert(new Set(keys).size === keys.length, `member names ${sorted.map((member) => member.id).join(",")} include a hash collision`);
  const owners: (NodeId | null)[] = new Array(bucketCount).fill(null);
  for (let bucketIndex = 0; bucketIndex < bucketCount; bucketIndex++) {
    const bucketKey = combine32(seed >>> 0, bucketIndex);
    let bestScore = -1;
    for (let memberIndex = 0; memberIndex < sorted.length; memberIndex++) {
      const memberKey = combine32(bucketKey, keys[memberIndex]!);
      const weight = sorted[memberIndex]!.weight;
      for (let replicaIndex = 0; replicaIndex < weight; replicaIndex++) {
        const score = combine32(memberKey, replicaIndex);
        // Ties go to the member sorted first, so the map stays a function of the set.
        if (score > bestScore) {
          bestScore = score;
          owners[bucketIndex] = sorted[memberIndex]!.id;
        }
      }
    }
  }
  assert(owners.length === bucketCount, "owner map has the wrong size");
  assert(sorted.length === 0 || owners.every((owner) => owner !== null), "a bucket has no owner");
  return owners;
}

export function bucketsOwnedBy(owners: OwnerMap, id: NodeId): BucketSet {
  const indices: number[] = [];
  owners.forEach((owner, bucketIndex) => owner === id && indices.push(bucketIndex));
  return BucketSet.of(owners.length, indices);
}

/** Buckets whose owner differs between two maps of the same size. */
export function movedBuckets(before: OwnerMap, after: OwnerMap): number[] {
  assert(before.length === after.length, "owner maps of different sizes");
  const moved: number[] = [];
  for (let bucketIndex = 0; bucketIndex < before.length; bucketIndex++) {
    if (before[bucketIndex] !== after[bucketIndex]) moved.push(bucketIndex);
  }
  return moved;
}

export function compareIds(a: NodeId, b: NodeId): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
