// An immutable set of bucket indices in [0, bucketCount). A pure module: it performs no I/O.
//
// Buckets are the unit of farm load balancing: a client packet hashes into one bucket and
// only the node owning that bucket accepts it. A BucketSet is never mutated after it is
// built; every operation returns a new set.

import { assert } from "./assert.ts";

export const bucketCountMax = 65_536;

const emptySets = new Map<number, BucketSet>();

export class BucketSet {
  readonly bucketCount: number;
  readonly #words: Uint32Array;

  private constructor(bucketCount: number, words: Uint32Array) {
    this.bucketCount = bucketCount;
    this.#words = words;
  }

  /** The empty set of this size; one shared instance, since sets are immutable. */
  static empty(bucketCount: number): BucketSet {
    let set = emptySets.get(bucketCount);
    if (set === undefined) {
      set = BucketSet.#blank(bucketCount);
      emptySets.set(bucketCount, set);
    }
    return set;
  }

  static #blank(bucketCount: number): BucketSet {
    assert(Number.isInteger(bucketCount), "bucketCount must be an integer");
    assert(bucketCount >= 1 && bucketCount <= bucketCountMax, `bucketCount ${bucketCount} out of range`);
    return new BucketSet(bucketCount, new Uint32Array(Math.ceil(bucketCount / 32)));
  }

  static of(bucketCount: number, indices: Iterable<number>): BucketSet {
    const set = BucketSet.#blank(bucketCount);
    for (const index of indices) {
      set.#check(index);
      const wordIndex = index >>> 5;
      set.#words[wordIndex] = set.#words[wordIndex]! | (1 << (index & 31));
    }
    return set;
  }

  static all(bucketCount: number): BucketSet {
    return BucketSet.of(bucketCount, Array.from({ length: bucketCount }, (_, index) => index));
  }

  #check(index: number): void {
    assert(Number.isInteger(index), `bucket index ${index} is not an integer`);
    assert(index >= 0 && index < this.bucketCount, `bucket index ${index} out of [0, ${this.bucketCount})`);
  }

  #combine(other: BucketSet, op: (a: number, b: number) => number): BucketSet {
    assert(other.bucketCount === this.bucketCount, "bucket sets of different sizes");
    const words = new Uint32Array(this.#words.length);
    for (let i = 0; i < words.length; i++) words[i] = op(this.#words[i]!, other.#words[i]!);
    return new BucketSet(this.bucketCount, words);
  }

  has(index: number): boolean {
    this.#check(index);
    return (this.#words[index >>> 5]! & (1 << (index & 31))) !== 0;
  }

  union(other: BucketSet): BucketSet {
    return this.#combine(other, (a, b) => a | b);
  }

  minus(other: BucketSet): BucketSet {
    return this.#combine(other, (a, b) => a & ~b);
  }

  intersect(other: BucketSet): BucketSet {
    return this.#combine(other, (a, b) => a & b);
  }

  equals(other: BucketSet): boolean {
    if (other.bucketCount !== this.bucketCount) return false;
    for (let i = 0; i < this.#words.length; i++) if (this.#words[i] !== other.#words[i]) return false;
    return true;
  }

  isEmpty(): boolean {
    return this.#words.every((word) => word === 0);
  }

  size(): number {
    let count = 0;
    for (let word of this.#words) {
      while (word !== 0) {
        word &= word - 1;
        count++;
      }
    }
    return count;
  }

  toArray(): number[] {
    const indices: number[] = [];
    for (let index = 0; index < this.bucketCount; index++) {
      if ((this.#words[index >>> 5]! & (1 << (index & 31))) !== 0) indices.push(index);
    }
    return indices;
  }

  /** Compact text form for traces: ranges such as `0-3,7,9-12`. */
  toString(): string {
    const parts: string[] = [];
    const indices = this.toArray();
    for (let i = 0; i < indices.length; ) {
      let j = i;
      while (j + 1 < indices.length && indices[j + 1] === indices[j]! + 1) j++;
      parts.push(i === j ? `${indices[i]}` : `${indices[i]}-${indices[j]}`);
      i = j + 1;
    }
    return parts.length === 0 ? "-" : parts.join(",");
  }
}
