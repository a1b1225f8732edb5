// What the mirror core's tests share: dirty maps as plain values, and fast-check
// arbitraries for paths, dirty entries and pairs of lineages that two real nodes could have.

import fc from "fast-check";
import type { DirtyMap, FileDirty, Gen } from "../../core/mirror/meta.ts";

/** A dirty map as a plain value: path → "all" or its sorted blocks ("all" absorbs blocks). */
export type Plain = Record<string, "all" | number[]>;

export function plain(dirty: DirtyMap): Plain {
  const out: Plain = {};
  for (const [path, entry] of dirty) out[path] = entry.all ? "all" : [...entry.blocks].sort((x, y) => x - y);
  return out;
}

export function plainUnion(a: Plain, b: Plain): Plain {
  const out: Plain = { ...a };
  for (const [path, entry] of Object.entries(b)) {
    const before = out[path];
    if (before === undefined) out[path] = entry;
    else if (before === "all" || entry === "all") out[path] = "all";
    else out[path] = [...new Set([...before, ...entry])].sort((x, y) => x - y);
  }
  return out;
}

export const pathOnly = (): FileDirty => ({ all: false, blocks: new Set() });
export const wholePath = (): FileDirty => ({ all: true, blocks: new Set() });
export const blocks = (...indexes: number[]): FileDirty => ({ all: false, blocks: new Set(indexes) });

export const pathArbitrary = fc.constantFrom("", "a", "a/b", "a/b/c", "d", "d/e", "pg/base/1/112");
export const fileDirtyArbitrary: fc.Arbitrary<FileDirty> = fc.oneof(
  { arbitrary: fc.constant(null).map(wholePath), weight: 1 },
  { arbitrary: fc.uniqueArray(fc.nat(12), { maxLength: 6 }).map((indexes) => blocks(...indexes)), weight: 4 },
);
/** Dirty maps of various weights: empty, a few paths, whole paths. */
export const dirtyEntriesArbitrary = fc.uniqueArray(fc.tuple(pathArbitrary, fileDirtyArbitrary), { maxLength: 6, selector: ([path]) => path });
export const dirtyMapArbitrary: fc.Arbitrary<DirtyMap> = dirtyEntriesArbitrary.map((entries) => new Map(entries));

export interface LineagePair {
  readonly shared: readonly Gen[];
  /** n1's lineage: the shared prefix, then generations n1 started alone. */
  readonly a: readonly Gen[];
  /** n2's lineage: the shared prefix, then generations n2 started alone. */
  readonly b: readonly Gen[];
}

const stepArbitrary = fc.integer({ min: 1, max: 3 });
/** Half the time a node started no generation of its own since the shared prefix. */
const ownArbitrary: fc.Arbitrary<number[]> = fc.oneof(fc.constant<number[]>([]), fc.array(stepArbitrary, { minLength: 1, maxLength: 3 }));
export const lineagePairArbitrary: fc.Arbitrary<LineagePair> = fc
  .record({
    shared: fc.array(fc.record({ step: stepArbitrary, node: fc.constantFrom("n1", "n2") }), { maxLength: 5 }),
    ownA: ownArbitrary,
    ownB: ownArbitrary,
  })
  .map(({ shared, ownA, ownB }) => {
    let counter = 0;
    const prefix = shared.map(({ step, node }) => `${(counter += step)}@${node}`);
    let counterA = counter;
    let counterB = counter;
    return {
      shared: prefix,
      a: [...prefix, ...ownA.map((step) => `${(counterA += step)}@n1`)],
      b: [...prefix, ...ownB.map((step) => `${(counterB += step)}@n2`)],
    };
  });
