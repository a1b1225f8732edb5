// A mirror node's metadata (core/mirror/meta.ts): generations and dirty maps.
//
// (a) relation(a, b) and relation(b, a) are mirror images; a node that went alone from a
//     common generation is ahead of the one that stayed, two that both went alone have
//     diverged, lineages with nothing in common are unrelated; commonGen is the latest
//     shared generation; (b) nextGen is newer than anything either side has seen, and
//     withNewGen moves the current generation into a bounded history; (c) dirtyCovers says
//     whether the map counts from the common generation or earlier; (d) dirtyOf marks what
//     each operation changes; (e) unionDirty and filterDirty behave as set operations and
//     keep the identity of a map they do not change.
//
// Lineage pairs are generated the way two nodes make them: a shared prefix of generations
// (started by either node, counters increasing), then each node's own generations.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { blocks, dirtyMapArbitrary, fileDirtyArbitrary, lineagePairArbitrary, pathArbitrary, pathOnly, plain, plainUnion, wholePath, type LineagePair, type Plain } from "./mirror-arbitraries.ts";
import type { DiskOp } from "../../core/mirror/disk-ops.ts";
import {
  coarsenDirty,
  commonGen,
  dirtyCovers,
  dirtyOf,
  dirtyWeight,
  emptyDirty,
  expandHot,
  filterDirty,
  genCounter,
  historyMax,
  lineage,
  newMeta,
  nextGen,
  relation,
  unionDirty,
  withBlocks,
  withNewGen,
  addedBlocks,
  changedEntries,
  copyMeta,
  SortedBlocks,
  coarsenToFit,
  dirtyJsonBytes,
  fileRunsMax,
  RunBlocks,
  type DirtyMap,
  type FileDirty,
  type Gen,
  type MirrorMeta,
  type Relation,
} from "../../core/mirror/meta.ts";

// ---------------------------------------------------------------------------------------
// Helpers and arbitraries

/** A meta whose lineage is `gens` (the last one current), with the given dirty map. */
function metaOf(gens: readonly Gen[], dirtyBase: Gen | null = null, dirty: DirtyMap = emptyDirty): MirrorMeta {
  return { ...newMeta(), gen: gens.at(-1) ?? null, history: gens.slice(0, -1), dirtyBase, dirty };
}

/** What relation(a, b) must say, from how the pair was built. */
function expectedRelation({ shared, a, b }: LineagePair): Relation {
  if (a.length === 0 && b.length === 0) return "same";
  if (a.length === 0) return "behind";
  if (b.length === 0) return "ahead";
  const ownA = a.length - shared.length;
  const ownB = b.length - shared.length;
  if (ownA === 0 && ownB === 0) return "same";
  if (ownB === 0) return "ahead";
  if (ownA === 0) return "behind";
  return shared.length === 0 ? "unrelated" : "diverged";
}

function expectedCommon({ shared, a, b }: LineagePair): Gen | null {
  return a.length > 0 && b.length > 0 ? (shared.at(-1) ?? null) : null;
}

const mirrorImage: Record<Relation, Relation> = { same: "same", ahead: "behind", behind: "ahead", diverged: "diverged", unrelated: "unrelated" };

// ---------------------------------------------------------------------------------------
// (a) relation and commonGen

describe("relation and commonGen", () => {
  it("relation(a, b) is what the lineages say, and relation(b, a) is its mirror image", () => {
    fc.assert(
      fc.property(lineagePairArbitrary, (pair) => {
        const a = metaOf(pair.a);
        const b = metaOf(pair.b);
        expect(relation(a, b)).toBe(expectedRelation(pair));
        expect(relation(b, a)).toBe(mirrorImage[relation(a, b)]);
      }),
    );
  });

  it("commonGen is the last shared generation, null when a side has no data or nothing is shared, and does not depend on the order", () => {
    fc.assert(
      fc.property(lineagePairArbitrary, (pair) => {
        const a = metaOf(pair.a);
        const b = metaOf(pair.b);
        expect(commonGen(a, b)).toBe(expectedCommon(pair));
        expect(commonGen(b, a)).toBe(commonGen(a, b));
      }),
    );
  });

  it("relation is diverged or unrelated exactly when neither lineage holds the other's generation", () => {
    fc.assert(
      fc.property(lineagePairArbitrary, (pair) => {
        fc.pre(pair.a.length > 0 && pair.b.length > 0);
        const a = metaOf(pair.a);
        const b = metaOf(pair.b);
        const split = !lineage(a).includes(b.gen!) && !lineage(b).includes(a.gen!);
        expect(relation(a, b) === "diverged" || relation(a, b) === "unrelated").toBe(split);
        if (split) expect(relation(a, b)).toBe(commonGen(a, b) === null ? "unrelated" : "diverged");
      }),
    );
  });

  it("a node that went alone from the common generation is ahead of the one that stayed", () => {
    const stayed = metaOf(["1@n1", "2@n2", "3@n1"]);
    const alone = withNewGen(stayed, nextGen(stayed, "n2", stayed.gen), "ALONE");
    expect(alone.gen).toBe("4@n2");
    expect(relation(alone, stayed)).toBe("ahead");
    expect(relation(stayed, alone)).toBe("behind");
    expect(commonGen(alone, stayed)).toBe("3@n1");
  });

  it("two nodes that both went alone from the same generation diverged, and their common generation is the one they left", () => {
    const start = metaOf(["1@n1", "2@n2", "3@n1"]);
    const one = withNewGen(start, nextGen(start, "n1", start.gen), "ALONE");
    const two = withNewGen(start, nextGen(start, "n2", start.gen), "ALONE");
    expect([one.gen, two.gen]).toEqual(["4@n1", "4@n2"]);
    expect(relation(one, two)).toBe("diverged");
    expect(relation(two, one)).toBe("diverged");
    expect(commonGen(one, two)).toBe("3@n1");
    expect(commonGen(two, one)).toBe("3@n1");
  });

  it("a node that went alone twice is still ahead of the one that stayed", () => {
    const stayed = metaOf(["1@n1"]);
    const once = withNewGen(stayed, nextGen(stayed, "n1", null), "ALONE");
    const twice = withNewGen(once, nextGen(once, "n1", null), "ALONE");
    expect(lineage(twice)).toEqual(["1@n1", "2@n1", "3@n1"]);
    expect(relation(twice, stayed)).toBe("ahead");
    expect(relation(stayed, twice)).toBe("behind");
  });

  it("a new node (no generation) is behind any node with data; two new nodes are the same", () => {
    const fresh = newMeta();
    const data = metaOf(["1@n1"]);
    expect(relation(fresh, data)).toBe("behind");
    expect(relation(data, fresh)).toBe("ahead");
    expect(relation(fresh, newMeta())).toBe("same");
    expect(commonGen(fresh, data)).toBeNull();
  });

  it("lineages that share no generation are unrelated", () => {
    const a = metaOf(["1@n1", "2@n1"]);
    const b = metaOf(["1@n2"]);
    expect(relation(a, b)).toBe("unrelated");
    expect(relation(b, a)).toBe("unrelated");
    expect(commonGen(a, b)).toBeNull();
  });

  it("commonGen picks the latest of several shared generations", () => {
    const a = metaOf(["1@n1", "2@n2", "3@n1", "4@n1"]);
    const b = metaOf(["1@n1", "2@n2", "3@n1", "4@n2", "5@n2"]);
    expect(commonGen(a, b)).toBe("3@n1");
    expect(commonGen(b, a)).toBe("3@n1");
  });
});

// ---------------------------------------------------------------------------------------
// (b) nextGen and withNewGen

describe("nextGen and withNewGen", () => {
  it("genCounter reads the counter before the @", () => {
    expect(genCounter("12@n1")).toBe(12);
    expect(genCounter("7@node-07")).toBe(7);
  });

  it("the first generation of a new node is 1@node", () => {
    expect(nextGen(newMeta(), "n1", null)).toBe("1@n1");
  });

  it("nextGen counts past the peer's generation when the peer has seen more", () => {
    expect(nextGen(metaOf(["1@n1", "2@n1"]), "n1", "9@n2")).toBe("10@n1");
    expect(nextGen(metaOf(["1@n1", "5@n1"]), "n1", "3@n2")).toBe("6@n1");
  });

  it("nextGen is newer than every generation either side has seen, started by the node, and in neither lineage", () => {
    fc.assert(
      fc.property(lineagePairArbitrary, fc.constantFrom("n1", "n2"), (pair, node) => {
        const a = metaOf(pair.a);
        const b = metaOf(pair.b);
        const gen = nextGen(a, node, b.gen);
        expect(gen.endsWith(`@${node}`)).toBe(true);
        for (const seen of [...pair.a, ...pair.b]) expect(genCounter(gen)).toBeGreaterThan(genCounter(seen));
        expect(lineage(a)).not.toContain(gen);
        expect(lineage(b)).not.toContain(gen);
      }),
    );
  });

  it("withNewGen appends the current generation to the history, sets the role and keeps the rest", () => {
    fc.assert(
      fc.property(lineagePairArbitrary, dirtyMapArbitrary, fc.constantFrom("ALONE", "PRIM", "SECOND", null), fc.boolean(), (pair, dirty, role, consistent) => {
        const before: MirrorMeta = { ...metaOf(pair.a, pair.a[0] ?? null, dirty), consistent };
        const gen = nextGen(before, "n1", null);
        const after = withNewGen(before, gen, role);
        expect(after.gen).toBe(gen);
        expect(lineage(after)).toEqual([...pair.a, gen]);
        expect(after.lastRole).toBe(role);
        expect(after.consistent).toBe(consistent);
        expect(after.dirtyBase).toBe(before.dirtyBase);
        expect(after.dirty).toBe(dirty);
        expect(lineage(before)).toEqual(pair.a);
      }),
    );
  });

  it(`withNewGen keeps at most historyMax (${historyMax}) earlier generations, dropping the oldest`, () => {
    const gens = Array.from({ length: historyMax + 1 }, (_, index) => `${index + 1}@n1`);
    const full = metaOf(gens);
    expect(full.history).toHaveLength(historyMax);
    const after = withNewGen(full, nextGen(full, "n1", null), "ALONE");
    expect(after.history).toHaveLength(historyMax);
    expect(after.history[0]).toBe("2@n1");
    expect(after.history.at(-1)).toBe(`${historyMax + 1}@n1`);
    expect(after.gen).toBe(`${historyMax + 2}@n1`);
  });
});

// ---------------------------------------------------------------------------------------
// (c) dirtyCovers

describe("dirtyCovers", () => {
  it("is true exactly when the dirty base is in the lineage at or before the common generation", () => {
    const baseChoice = fc.oneof(fc.constant<"none">("none"), fc.constant<"foreign">("foreign"), fc.nat(8));
    fc.assert(
      fc.property(lineagePairArbitrary, baseChoice, (pair, choice) => {
        const common = expectedCommon(pair);
        fc.pre(common !== null);
        const baseIndex = typeof choice === "number" ? choice % pair.a.length : null;
        const dirtyBase = choice === "none" ? null : choice === "foreign" ? "99@n9" : pair.a[baseIndex!]!;
        const meta = metaOf(pair.a, dirtyBase);
        const covers = baseIndex !== null && baseIndex <= pair.shared.length - 1;
        expect(dirtyCovers(meta, common)).toBe(covers);
      }),
    );
  });

  it("a map with no base covers nothing", () => {
    expect(dirtyCovers(metaOf(["1@n1"], null), "1@n1")).toBe(false);
  });

  it("a generation not in the node's lineage is not covered", () => {
    expect(dirtyCovers(metaOf(["1@n1", "2@n1"], "1@n1"), "2@n2")).toBe(false);
  });

  it("a base later than the common generation does not cover it; the same or an earlier one does", () => {
    const meta = (base: Gen): MirrorMeta => metaOf(["1@n1", "2@n2", "3@n1"], base);
    expect(dirtyCovers(meta("3@n1"), "2@n2")).toBe(false);
    expect(dirtyCovers(meta("2@n2"), "2@n2")).toBe(true);
    expect(dirtyCovers(meta("1@n1"), "2@n2")).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------
// (d) dirtyOf

const write = (path: string, offset: number, length: number): DiskOp => ({ kind: "write", path, offset, data: new Uint8Array(length) });

describe("dirtyOf", () => {
  it("a write marks exactly the blocks its bytes fall in, and nothing else", () => {
    const blockSizeArbitrary = fc.oneof(fc.constantFrom(1, 512, 4096), fc.integer({ min: 1, max: 5_000 }));
    fc.assert(
      fc.property(blockSizeArbitrary, fc.nat(20_000), fc.integer({ min: 1, max: 10_000 }), (blockSize, offset, length) => {
        const expected = new Set<number>();
        for (let byte = offset; byte < offset + length; byte++) expected.add(Math.floor(byte / blockSize));
        expect(plain(dirtyOf(write("d/f", offset, length), blockSize))).toEqual({ "d/f": [...expected].sort((x, y) => x - y) });
      }),
    );
  });

  it("a write that starts on a block boundary and fills one block marks that block only", () => {
    expect(plain(dirtyOf(write("f", 4096, 4096), 4096))).toEqual({ f: [1] });
  });

  it("a write that ends exactly on a block boundary does not mark the next block", () => {
    expect(plain(dirtyOf(write("f", 0, 8192), 4096))).toEqual({ f: [0, 1] });
  });

  it("a write crossing one block boundary marks the two blocks on either side", () => {
    expect(plain(dirtyOf(write("f", 4000, 200), 4096))).toEqual({ f: [0, 1] });
    expect(plain(dirtyOf(write("f", 4095, 2), 4096))).toEqual({ f: [0, 1] });
  });

  it("a zero-length write marks no block (only the path)", () => {
    expect(plain(dirtyOf(write("f", 8192, 0), 4096))).toEqual({ f: [] });
  });

  it("truncate marks the whole path (the peer may still hold the old tail)", () => {
    expect(plain(dirtyOf({ kind: "truncate", path: "d/f", size: 10 }, 4096))).toEqual({ "d/f": "all" });
  });

  it("create, symlink and mkdir mark the whole path and its parent's entry", () => {
    for (const op of [
      { kind: "create", path: "d/f", mode: 0o644 },
      { kind: "symlink", path: "d/f", target: "../x" },
      { kind: "mkdir", path: "d/f", mode: 0o755 },
    ] as const satisfies readonly DiskOp[]) {
      expect(plain(dirtyOf(op, 4096)), op.kind).toEqual({ "d/f": "all", d: [] });
    }
  });

  it("a top-level create marks the root's entry as its parent", () => {
    expect(plain(dirtyOf({ kind: "create", path: "f", mode: 0o644 }, 4096))).toEqual({ f: "all", "": [] });
  });

  // A path whose identity changed is sent whole: if the other node made the change, this
  // node's version is all the other lacks (a rename away or an unlink there left nothing).
  it("rename marks `from` and `to` whole, and both parents", () => {
    expect(plain(dirtyOf({ kind: "rename", from: "a/x", to: "b/y" }, 4096))).toEqual({ "a/x": "all", "b/y": "all", a: [], b: [] });
  });

  it("rename within one directory marks that directory once", () => {
    expect(plain(dirtyOf({ kind: "rename", from: "d/x", to: "d/y" }, 4096))).toEqual({ "d/x": "all", "d/y": "all", d: [] });
  });

  it("unlink and rmdir mark the path whole and its parent", () => {
    expect(plain(dirtyOf({ kind: "unlink", path: "d/f" }, 4096))).toEqual({ "d/f": "all", d: [] });
    expect(plain(dirtyOf({ kind: "rmdir", path: "d/e" }, 4096))).toEqual({ "d/e": "all", d: [] });
  });

  it("setattr marks the path only", () => {
    expect(plain(dirtyOf({ kind: "setattr", path: "d/f", mode: 0o600 }, 4096))).toEqual({ "d/f": [] });
  });

  it("fsync marks nothing", () => {
    expect(dirtyOf({ kind: "fsync", path: "d/f" }, 4096).size).toBe(0);
    expect(dirtyOf({ kind: "fsync", path: null }, 4096).size).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// (e) unionDirty, filterDirty, dirtyWeight

describe("unionDirty", () => {
  it("holds every path of both maps, a path whole when either has it whole, else the union of the blocks", () => {
    fc.assert(
      fc.property(dirtyMapArbitrary, dirtyMapArbitrary, (a, b) => {
        expect(plain(unionDirty(a, b))).toEqual(plainUnion(plain(a), plain(b)));
      }),
    );
  });

  it("is commutative in content", () => {
    fc.assert(
      fc.property(dirtyMapArbitrary, dirtyMapArbitrary, (a, b) => {
        expect(plain(unionDirty(a, b))).toEqual(plain(unionDirty(b, a)));
      }),
    );
  });

  it("is idempotent and returns the same object when nothing is added", () => {
    fc.assert(
      fc.property(dirtyMapArbitrary, dirtyMapArbitrary, (a, b) => {
        expect(unionDirty(a, a)).toBe(a);
        expect(unionDirty(a, emptyDirty)).toBe(a);
        const ab = unionDirty(a, b);
        expect(unionDirty(ab, b)).toBe(ab);
        expect(unionDirty(ab, a)).toBe(ab);
      }),
    );
  });

  it("returns the same object when the second map is contained in the first", () => {
    fc.assert(
      fc.property(dirtyMapArbitrary, fc.infiniteStream(fc.boolean()), (a, keeps) => {
        const part = new Map<string, FileDirty>();
        for (const [path, entry] of a) {
          if (!keeps.next().value) continue;
          part.set(path, entry.all ? wholePath() : blocks(...[...entry.blocks].filter(() => keeps.next().value)));
        }
        expect(unionDirty(a, part)).toBe(a);
      }),
    );
  });

  it("does not change its arguments", () => {
    fc.assert(
      fc.property(dirtyMapArbitrary, dirtyMapArbitrary, (a, b) => {
        const before = [plain(a), plain(b)];
        unionDirty(a, b);
        expect([plain(a), plain(b)]).toEqual(before);
      }),
    );
  });

  it("a whole path absorbs blocks, in either order", () => {
    const whole: DirtyMap = new Map([["f", wholePath()]]);
    const some: DirtyMap = new Map([["f", blocks(1, 2)]]);
    expect(unionDirty(whole, some)).toBe(whole);
    expect(unionDirty(some, whole).get("f")?.all).toBe(true);
    expect(plain(unionDirty(some, whole))).toEqual({ f: "all" });
  });

  it("adding a block to a path makes a new map and leaves the first unchanged", () => {
    const first: DirtyMap = new Map([["f", blocks(1)], ["g", pathOnly()]]);
    const out = unionDirty(first, new Map([["f", blocks(2)]]));
    expect(out).not.toBe(first);
    expect(plain(out)).toEqual({ f: [1, 2], g: [] });
    expect(plain(first)).toEqual({ f: [1], g: [] });
  });
});

describe("maps and block sets grown by unions", () => {
  /** What unionDirty did before it kept additions apart: a Map copied and added to. */
  function copiedUnion(a: DirtyMap, b: DirtyMap): DirtyMap {
    const out = new Map(a);
    for (const [path, entry] of b) {
      const before = out.get(path);
      if (before === undefined) out.set(path, entry);
      else if (before.all || entry.all) out.set(path, before.all ? before : entry);
      else out.set(path, { all: false, blocks: new Set([...before.blocks, ...entry.blocks]) });
    }
    return out;
  }
  /** Entries in iteration order, blocks in increasing order (folded into runs, they
   *  iterate so). */
  const ordered = (map: DirtyMap) => [...map].map(([path, entry]) => [path, entry.all ? "all" : [...entry.blocks].sort((a, b) => a - b)]);
  const pathsArbitrary = fc.constantFrom(...Array.from({ length: 40 }, (_, index) => `d/${index}`));
  // Small sets, and runs and scattered sets large enough that a file's blocks fold into
  // runs within a history (past 1024 blocks added over a base).
  const stepOver = (paths: fc.Arbitrary<string>) => fc.array(
    fc.tuple(
      paths,
      fc.oneof(
        { arbitrary: fc.constant(null).map(wholePath), weight: 1 },
        { arbitrary: fc.uniqueArray(fc.nat(400), { maxLength: 40 }).map((indexes) => blocks(...indexes)), weight: 5 },
        { arbitrary: fc.tuple(fc.nat(6000), fc.integer({ min: 1, max: 1500 })).map(([first, count]) => ({ all: false, blocks: RunBlocks.range(first, count) })), weight: 1 },
        { arbitrary: fc.uniqueArray(fc.nat(6000), { minLength: 100, maxLength: 700 }).map((indexes) => blocks(...indexes)), weight: 1 },
      ),
    ),
    { minLength: 1, maxLength: 3 },
  );
  const stepArbitrary = stepOver(pathsArbitrary);

  it("read and iterate paths in the order of a Map copied and added to, through folds into new bases", () => {
    fc.assert(
      fc.property(fc.array(stepArbitrary, { maxLength: 300 }), (steps) => {
        let grown: DirtyMap = emptyDirty;
        let copied: DirtyMap = emptyDirty;
        for (const step of steps) {
          const marks = new Map(step);
          grown = unionDirty(grown, marks);
          copied = copiedUnion(copied, marks);
          expect(grown.size).toBe(copied.size);
        }
        expect(ordered(grown)).toEqual(ordered(copied));
        for (const [path, entry] of copied) {
          expect(grown.has(path)).toBe(true);
          expect(grown.get(path)?.all).toBe(entry.all);
          expect(grown.get(path)?.blocks.size).toBe(entry.blocks.size);
          for (const block of entry.blocks) expect(grown.get(path)?.blocks.has(block)).toBe(true);
        }
        expect(grown.has("elsewhere")).toBe(false);
        expect([...grown.keys()]).toEqual([...copied.keys()]);
        const visited: string[] = [];
        grown.forEach((_, path) => visited.push(path));
        expect(visited).toEqual([...copied.keys()]);
      }),
      { numRuns: 60 },
    );
  });

  it("every map of a history of unions stays as it was (a base is shared, never changed)", () => {
    fc.assert(
      fc.property(fc.array(stepArbitrary, { maxLength: 200 }), (steps) => {
        const history: { map: DirtyMap; seen: ReturnType<typeof ordered> }[] = [];
        let grown: DirtyMap = emptyDirty;
        for (const step of steps) {
          grown = unionDirty(grown, new Map(step));
          history.push({ map: grown, seen: ordered(grown) });
        }
        for (const { map, seen } of history) expect(ordered(map)).toEqual(seen);
      }),
      { numRuns: 40 },
    );
  });

  it("every map of a branching history stays as it was: adding to an earlier map after a later one grew from it", () => {
    fc.assert(
      // Three paths, each step from one of the last four maps: lines of sets that branch.
      fc.property(fc.array(fc.tuple(fc.nat(3), stepOver(fc.constantFrom("a", "b", "c"))), { minLength: 30, maxLength: 200 }), (steps) => {
        const history: { map: DirtyMap; model: Plain }[] = [{ map: emptyDirty, model: {} }];
        const earlierOf = (index: number) => Math.max(0, index - 1 - steps[index - 1]![0]);
        for (const [, step] of steps) {
          const earlier = history[earlierOf(history.length)]!;
          const marks = new Map(step);
          history.push({ map: unionDirty(earlier.map, marks), model: plainUnion(earlier.model, plain(marks)) });
        }
        for (const { map, model } of history) {
          expect(plain(map)).toEqual(model);
          for (const [path, entry] of map) expect(entry.blocks.size).toBe(model[path] === "all" ? 0 : (model[path] as number[]).length);
        }
        // Each map's additions over the one it grew from, read back as a record would.
        for (let index = 1; index < history.length; index++) {
          const earlier = history[earlierOf(index)]!.map;
          const { set } = changedEntries(earlier, history[index]!.map);
          for (const [path, entry] of set) {
            const was = earlier.get(path);
            const added = was === undefined ? null : addedBlocks(was, entry);
            if (was !== undefined && added !== null) expect(plain(new Map([[path, withBlocks(was, added)]]))).toEqual(plain(new Map([[path, entry]])));
          }
        }
      }),
      { numRuns: 100 },
    );
  });

  it("changedEntries between any two maps of a history (or unrelated maps) is the plain diff, and addedBlocks the blocks added", () => {
    fc.assert(
      fc.property(fc.array(stepArbitrary, { minLength: 1, maxLength: 200 }), fc.nat(), fc.nat(), dirtyMapArbitrary, (steps, i, j, other) => {
        const history: DirtyMap[] = [emptyDirty];
        for (const step of steps) history.push(unionDirty(history.at(-1)!, new Map(step)));
        const before = history[i % history.length]!;
        const after = history[j % history.length]!;
        for (const [from, to] of [[before, after], [after, before], [other, after], [after, other]] as const) {
          const { set, del } = changedEntries(from, to);
          const plainSet = [...to].filter(([path, entry]) => from.get(path) !== entry);
          const plainDel = [...from.keys()].filter((path) => !to.has(path));
          expect(new Map(set)).toEqual(new Map(plainSet));
          expect(new Set(del)).toEqual(new Set(plainDel));
          for (const [path, entry] of set) {
            const was = from.get(path);
            const added = was === undefined ? null : addedBlocks(was, entry);
            if (added === null || was === undefined) continue;
            // The additions are exactly what the entry holds beyond the earlier one.
            expect(new Set([...was.blocks, ...added])).toEqual(new Set(entry.blocks));
            for (const block of added) expect(was.blocks.has(block)).toBe(false);
            expect(plain(new Map([[path, withBlocks(was, added)]]))).toEqual(plain(new Map([[path, entry]])));
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it("a file's blocks grown one write at a time are told apart from the blocks it had: a record of one write costs that write", () => {
    let dirty: DirtyMap = emptyDirty;
    for (let write = 0; write < 2000; write++) {
      const before = dirty;
      dirty = unionDirty(dirty, new Map([["big", blocks(...Array.from({ length: 16 }, (_, index) => write * 16 + index))]]));
      expect(changedEntries(before, dirty).set.map(([path]) => path)).toEqual(["big"]);
      if (write === 0) continue; // a new entry: written whole
      // Through the folds into runs too (past 1024 additions over a base).
      expect([...addedBlocks(before.get("big")!, dirty.get("big")!)!]).toEqual(Array.from({ length: 16 }, (_, index) => write * 16 + index));
    }
    expect(dirty.get("big")?.blocks.size).toBe(32000);
    // Blocks gone (a clear, a hot extent left) are not an addition: the entry is written whole.
    expect(addedBlocks(blocks(1, 2, 3), blocks(1, 3, 4))).toBeNull();
    expect(addedBlocks(blocks(1, 2), wholePath())).toBeNull();
  });

  it("copyMeta gives plain maps and sets with the same marks, sharing nothing", () => {
    let dirty: DirtyMap = emptyDirty;
    for (let index = 0; index < 300; index++) dirty = unionDirty(dirty, new Map([[`f${index % 7}`, blocks(index)]]));
    const meta: MirrorMeta = { ...newMeta(), gen: "1@n1", dirty, hot: dirty, layout: ["a"] };
    const copy = copyMeta(meta);
    expect(copy.dirty).toBeInstanceOf(Map);
    expect(structuredClone(copy)).toEqual(copy);
    expect(plain(copy.dirty)).toEqual(plain(dirty));
    expect(copy.layout).not.toBe(meta.layout);
    for (const entry of copy.hot.values()) expect(entry.blocks).toBeInstanceOf(Set);
  });
});

describe("SortedBlocks (what a resync has left of a file's marked blocks)", () => {
  it("holds the blocks in increasing order, and each chunk taken leaves exactly the rest", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(5000), { maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (indexes, chunk) => {
        let left: SortedBlocks = SortedBlocks.of(new Set(indexes));
        expect(SortedBlocks.of(left)).toBe(left);
        const order = [...indexes].sort((a, b) => a - b);
        const taken: number[] = [];
        while (left.size > 0) {
          expect([...left]).toEqual(order.slice(taken.length));
          for (const block of order) expect(left.has(block)).toBe(order.indexOf(block) >= taken.length);
          expect(left.has(5001)).toBe(false);
          const first = left.first(chunk);
          expect(first).toEqual(order.slice(taken.length, taken.length + chunk));
          taken.push(...first);
          left = left.after(first.length);
        }
        expect(taken).toEqual(order);
      }),
      { numRuns: 50 },
    );
  });
});

describe("a path's marks past fileRunsMax runs", () => {
  const range = (from: number, count: number) => ({ all: false, blocks: new Set(Array.from({ length: count }, (_, index) => from + index)) });
  /** `count` blocks, every other one from `from` on: as many runs. */
  const scattered = (from: number, count: number) => ({ all: false, blocks: new Set(Array.from({ length: count }, (_, index) => from + 2 * index)) });

  it("make the path whole, whether they grow by unions, come at once, or from a crash's hot extents", () => {
    let dirty: DirtyMap = new Map([["vm.img", scattered(0, fileRunsMax - 10)]]);
    dirty = unionDirty(dirty, new Map([["vm.img", scattered(2 * (fileRunsMax - 10), 10)]]));
    expect(dirty.get("vm.img")).toMatchObject({ all: false });
    expect(dirty.get("vm.img")?.blocks.size).toBe(fileRunsMax);
    // A block that joins two runs makes one fewer; one apart makes the run too many.
    dirty = unionDirty(dirty, new Map([["vm.img", range(1, 1)]]));
    expect(dirty.get("vm.img")).toMatchObject({ all: false });
    expect(RunBlocks.runsOf(dirty.get("vm.img")!.blocks).length / 2).toBe(fileRunsMax - 1);
    dirty = unionDirty(dirty, new Map([["vm.img", range(2 * fileRunsMax + 10, 1)]]));
    expect(dirty.get("vm.img")).toMatchObject({ all: false });
    dirty = unionDirty(dirty, new Map([["vm.img", range(2 * fileRunsMax + 20, 1)], ["other", range(0, 1)]]));
    expect(plain(dirty)).toEqual({ "vm.img": "all", other: [0] });
    expect(plain(unionDirty(emptyDirty, new Map([["vm.img", scattered(0, fileRunsMax + 1)]])))).toEqual({ "vm.img": "all" });
    const hot: DirtyMap = new Map([["vm.img", scattered(0, fileRunsMax + 1)], ["small", range(3, 2)]]);
    expect(plain(expandHot(hot, 16))).toEqual({ "vm.img": "all", small: Array.from({ length: 32 }, (_, index) => 48 + index) });
    // An extent whose blocks lie past the largest safe integer (damaged metadata): whole.
    const far: DirtyMap = new Map([["vm.img", { all: false, blocks: RunBlocks.of([2 ** 50, 1])! }]]);
    expect(plain(expandHot(far, 16))).toEqual({ "vm.img": "all" });
  });

  it("do not count blocks: a file rewritten in 1 MiB writes past a million 4 KiB blocks stays marked by block, one run", () => {
    let dirty: DirtyMap = emptyDirty;
    const writes = Math.ceil((fileRunsMax + 1) / 256) + 1;
    for (let write = 0; write < writes; write++) dirty = unionDirty(dirty, dirtyOf({ kind: "write", path: "vm.img", offset: write * 2 ** 20, data: new Uint8Array(1 << 20) }, 4096));
    const entry = dirty.get("vm.img")!;
    expect(entry.all).toBe(false);
    expect(entry.blocks.size).toBe(writes * 256);
    expect(RunBlocks.runsOf(entry.blocks)).toEqual([0, writes * 256]);
    // The hot map of it is one run of extents; after a crash, one run of blocks again.
    const hot = coarsenDirty(dirty, 16);
    expect(RunBlocks.runsOf(hot.get("vm.img")!.blocks)).toEqual([0, writes * 16]);
    expect(RunBlocks.runsOf(expandHot(hot, 16).get("vm.img")!.blocks)).toEqual([0, writes * 256]);
  });
});

describe("RunBlocks (blocks as runs) against a Set of the same blocks", () => {
  const blockSetArbitrary = fc.uniqueArray(fc.nat(300), { maxLength: 120 }).map((indexes) => new Set(indexes));
  const sorted = (set: Iterable<number>) => [...set].sort((a, b) => a - b);

  it("union, minus, runsOf and has agree with the Set, from plain sets, runs, grown sets and sorted ones", () => {
    fc.assert(
      fc.property(blockSetArbitrary, blockSetArbitrary, fc.array(blockSetArbitrary, { maxLength: 20 }), fc.nat(40), (a, b, grows, taken) => {
        // Sets of each kind holding `a`: plain, runs, grown by unions, and sorted with a few taken.
        let grown: DirtyMap = emptyDirty;
        for (const step of [...grows, a]) grown = unionDirty(grown, new Map([["f", { all: false, blocks: step }]]));
        const grownSet = new Set([...grows.flatMap((step) => [...step]), ...a]);
        const sortedLeft = SortedBlocks.of(new Set([...a, ...b])).after(taken);
        const left = new Set(sorted(new Set([...a, ...b])).slice(taken));
        for (const [kind, model] of [[a, a], [RunBlocks.from(a), a], [grown.get("f")?.blocks ?? new Set<number>(), grownSet], [sortedLeft, left]] as const) {
          const runs = RunBlocks.runsOf(kind);
          expect(RunBlocks.of(runs)?.size).toBe(model.size);
          expect([...RunBlocks.of(runs)!]).toEqual(sorted(model));
          expect(kind.size).toBe(model.size);
          expect(sorted(kind)).toEqual(sorted(model));
          for (let block = 0; block <= 301; block++) expect(kind.has(block)).toBe(model.has(block));
          const union = RunBlocks.union(kind, b);
          expect([...union]).toEqual(sorted(new Set([...model, ...b])));
          expect(union.size).toBe(new Set([...model, ...b]).size);
          const minus = RunBlocks.minus(kind, b);
          expect([...minus]).toEqual(sorted(model).filter((block) => !b.has(block)));
          expect(RunBlocks.minus(b, kind).size).toBe([...b].filter((block) => !model.has(block)).length);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a sorted set taken from one chunk at a time gives its blocks in order, over runs", () => {
    let left = SortedBlocks.of(RunBlocks.of([2, 3, 10, 1, 20, 4])!);
    const chunks: number[][] = [];
    while (left.size > 0) {
      chunks.push(left.first(3));
      left = left.after(3);
    }
    expect(chunks).toEqual([[2, 3, 4], [10, 20, 21], [22, 23]]);
    expect(SortedBlocks.of(RunBlocks.of([2, 3, 10, 1, 20, 4])!).after(4).has(10)).toBe(false);
    expect(RunBlocks.runsOf(SortedBlocks.of(RunBlocks.of([2, 3, 10, 1, 20, 4])!).after(4))).toEqual([20, 4]);
    expect(RunBlocks.runsOf(SortedBlocks.of(RunBlocks.of([2, 3, 10, 1, 20, 4])!).after(5))).toEqual([21, 3]);
  });
});

describe("coarsenToFit (a summary's dirty map within a frame)", () => {
  const deepPathArbitrary = fc.array(fc.constantFrom("a", "b", "c", "d"), { minLength: 1, maxLength: 5 }).map((names) => names.join("/"));
  const entryArbitrary = fc.oneof({ arbitrary: fc.constant(null).map(wholePath), weight: 1 }, { arbitrary: fc.uniqueArray(fc.nat(100_000), { maxLength: 50 }).map((indexes) => blocks(...indexes)), weight: 4 });
  /** Whether `out` marks at least what `entry` marks at `path`. */
  function covers(out: DirtyMap, path: string, entry: FileDirty): boolean {
    for (let at: string | null = path; at !== null; at = at === "" ? null : at.includes("/") ? at.slice(0, at.lastIndexOf("/")) : "") {
      const mark = out.get(at);
      if (mark?.all === true) return true;
      if (at === path && mark !== undefined && !entry.all && [...entry.blocks].every((block) => mark.blocks.has(block))) return true;
    }
    return false;
  }

  it("covers every mark, and fits its budget unless only the root whole is left", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(deepPathArbitrary, entryArbitrary), { maxLength: 40, selector: ([path]) => path }), fc.integer({ min: 0, max: 4000 }), (entries, budget) => {
        const dirty: DirtyMap = new Map(entries);
        const out = coarsenToFit(dirty, budget);
        for (const [path, entry] of dirty) expect(covers(out, path, entry)).toBe(true);
        if (dirtyJsonBytes(dirty) <= budget || dirty.size === 0) expect(out).toBe(dirty);
        else if (!(out.size === 1 && out.get("")?.all === true)) expect(dirtyJsonBytes(out)).toBeLessThanOrEqual(budget);
      }),
    );
  });

  it("makes the files whose marks take the most bytes whole first, and folds paths into directories only when that is not enough", () => {
    // 500 blocks apart (500 runs) against 2 in one run, and 5,000 in one run.
    const dirty: DirtyMap = new Map([["d/big", blocks(...Array.from({ length: 500 }, (_, index) => 2 * index))], ["d/small", blocks(1, 2)], ["d/long", blocks(...Array.from({ length: 5000 }, (_, index) => index))], ["e/f", pathOnly()]]);
    const out = coarsenToFit(dirty, dirtyJsonBytes(dirty) - 100);
    expect(plain(out)).toEqual({ "d/big": "all", "d/small": [1, 2], "d/long": Array.from({ length: 5000 }, (_, index) => index), "e/f": [] });
    expect(plain(coarsenToFit(dirty, 120))).toEqual({ d: "all", e: "all" });
    expect(plain(coarsenToFit(dirty, 0))).toEqual({ "": "all" });
    // Nothing marked, a budget below even "[]": returned as is (this once looped for ever,
    // hanging the suite whenever fast-check drew it).
    const empty: DirtyMap = new Map();
    expect(coarsenToFit(empty, 0)).toBe(empty);
  });
});

describe("filterDirty", () => {
  it("keeps exactly the entries `keep` accepts, and returns the same map when it keeps them all", () => {
    fc.assert(
      fc.property(dirtyMapArbitrary, fc.func(fc.boolean()), (dirty, keep) => {
        const before = plain(dirty);
        const out = filterDirty(dirty, (path, entry) => keep(path, entry.all));
        const expected = Object.fromEntries(Object.entries(before).filter(([path]) => keep(path, dirty.get(path)!.all)));
        expect(plain(out)).toEqual(expected);
        if (out.size === dirty.size) expect(out).toBe(dirty);
        expect(plain(dirty)).toEqual(before);
      }),
    );
  });

  it("keeping everything returns the same map; keeping nothing returns an empty one", () => {
    const dirty: DirtyMap = new Map([["a", blocks(1)], ["b", wholePath()]]);
    expect(filterDirty(dirty, () => true)).toBe(dirty);
    expect(filterDirty(dirty, () => false).size).toBe(0);
  });
});

describe("dirtyWeight", () => {
  it("counts one per path plus its blocks, and a whole path outweighs any number of blocks", () => {
    expect(dirtyWeight(emptyDirty)).toBe(0);
    expect(dirtyWeight(new Map([["a", blocks(1, 2, 3)], ["b", pathOnly()]]))).toBe(5);
    const manyBlocks = new Map([["a", blocks(...Array.from({ length: 10_000 }, (_, index) => index))]]);
    expect(dirtyWeight(new Map([["b", wholePath()]]))).toBeGreaterThan(dirtyWeight(manyBlocks));
    // Marks are runs, not bounded in blocks: 4 TiB of 4 KiB blocks rewritten in place.
    const terabytes = new Map([["a", { all: false, blocks: RunBlocks.range(0, 2 ** 30) }]]);
    expect(dirtyWeight(terabytes)).toBe(2 ** 30 + 1);
    expect(dirtyWeight(new Map([["b", wholePath()]]))).toBeGreaterThan(dirtyWeight(terabytes));
  });
});

describe("the activity log: coarsenDirty and expandHot", () => {
  it("expanding the extents of any marks covers every mark (what a crash relies on), and no more than their extents", () => {
    fc.assert(
      fc.property(dirtyMapArbitrary, fc.integer({ min: 1, max: 300 }), (dirty, extentBlocks) => {
        const expanded = expandHot(coarsenDirty(dirty, extentBlocks), extentBlocks);
        expect(unionDirty(expanded, dirty)).toBe(expanded);
        for (const [path, entry] of expanded) {
          const mark = dirty.get(path)!;
          expect(entry.all).toBe(mark.all);
          for (const block of entry.blocks) expect([...mark.blocks].some((marked) => Math.floor(marked / extentBlocks) === Math.floor(block / extentBlocks))).toBe(true);
        }
      }),
    );
  });

  it("names extents: blocks 0-255 are extent 0, 256 extent 1; a whole path stays whole, a path-only mark path-only", () => {
    const hot = coarsenDirty(new Map([["wal", blocks(0, 255, 256, 1000)], ["new", wholePath()], ["dir", pathOnly()]]), 256);
    expect(plain(hot)).toEqual({ wal: [0, 1, 3], new: "all", dir: [] });
    expect(plain(expandHot(new Map([["f", blocks(1)]]), 4))).toEqual({ f: [4, 5, 6, 7] });
    expect(coarsenDirty(new Map([["f", blocks(7)]]), 1)).toEqual(new Map([["f", blocks(7)]]));
  });
});
