// A mirror node's durable metadata: data generations (DRBD's idea) and dirty maps.
//
// A generation names one history of the replicated tree. A node that goes on writing
// without its peer (ALONE) starts a new generation, so two trees with the same
// generation hold the same acknowledged data, and a node whose generation appears in
// the other's history is behind it. Two nodes whose latest generations are each
// missing from the other's history have diverged (a split brain).
//
// The dirty map records, per path, which blocks changed since `dirtyBase` (a generation
// both nodes had): while the peer is away every change, while it is attached only the
// changes not yet durable on both. It is precise and kept in memory; what makes it safe
// across a crash is the hot map (DRBD's activity log): the same marks in extents of many
// blocks, made durable before any change they cover is applied. A write into an extent
// already hot needs no metadata write; each metadata write stores the precise map too.
// After a crash the hot extents count as dirty whole (expandHot), so the durable dirty
// map and hot map together are always a superset of what differs. A resync sends the
// union of both nodes' maps when each covers their common generation, and everything
// otherwise.
//
// A pure module.

import { blocksOfWrite, parentOf, type DiskOp } from "./disk-ops.ts";

/** `<counter>@<node>`: the node that started it and a counter larger than any it follows. */
export type Gen = string;

export type FileDirty = {
  /** The whole path must be sent: every block, and for a directory everything below it. */
  readonly all: boolean;
  /** Blocks (of the module's block size) changed; with no block, only the path's kind,
   *  size and attributes. */
  readonly blocks: ReadonlySet<number>;
};

export type DirtyMap = ReadonlyMap<string, FileDirty>;

/** The role a node had when it last wrote its metadata: decides whether it may start alone. */
export type LastRole = "ALONE" | "PRIM" | "SECOND" | null;

export interface MirrorMeta {
  /** null: a new node that has never been part of this mirror's data. */
  readonly gen: Gen | null;
  /** Earlier generations, oldest first (bounded: see historyMax). */
  readonly history: readonly Gen[];
  /** false while a resync into this node is unfinished, or after the primary went on
   *  without this node (outdated): such a node never becomes primary on its own. */
  readonly consistent: boolean;
  readonly lastRole: LastRole;
  /** The generation the dirty map counts from; null: nothing is known (full resync). */
  readonly dirtyBase: Gen | null;
  readonly dirty: DirtyMap;
  /** The activity log: `dirty`'s marks in extents (block indexes here are extent indexes
   *  of the module's hotExtentBlocks), durable before the changes they cover. */
  readonly hot: DirtyMap;
  /** The host's boot (Linux: /proc/sys/kernel/random/boot_id) when this was written: a
   *  different boot at the next start means the page cache, and with it what was not yet
   *  durable, may be gone. */
  readonly bootId: string | null;
  /** This node's tree may lack writes it had applied (its host rebooted since), until a
   *  resync or its promotion makes its tree the reference again. */
  readonly cacheLost: boolean;
  /** The replicated directories the marks are named in (MirrorConfig.layout; empty: one
   *  directory); null: not known (metadata written before it was kept). */
  readonly layout: readonly string[] | null;
}

export const historyMax = 256;

export const emptyDirty: DirtyMap = new Map();

export function newMeta(): MirrorMeta {
  return { gen: null, history: [], consistent: true, lastRole: null, dirtyBase: null, dirty: emptyDirty, hot: emptyDirty, bootId: null, cacheLost: false, layout: null };
}

export function genCounter(gen: Gen): number {
  return Number(gen.slice(0, gen.indexOf("@")));
}

export function lineage(meta: MirrorMeta): readonly Gen[] {
  return meta.gen === null ? meta.history : [...meta.history, meta.gen];
}

/** A generation newer than any this node has seen, started by `node`. */
export function nextGen(meta: MirrorMeta, node: string, peerSeen: Gen | null): Gen {
  let top = 0;
  for (const gen of lineage(meta)) top = Math.max(top, genCounter(gen));
  if (peerSeen !== null) top = Math.max(top, genCounter(peerSeen));
  return `${top + 1}@${node}`;
}

/** Moves to a new generation: the current one joins the history. */
export function withNewGen(meta: MirrorMeta, gen: Gen, role: LastRole): MirrorMeta {
  const history = meta.gen === null ? meta.history : [...meta.history, meta.gen].slice(-historyMax);
  return { ...meta, gen, history, lastRole: role };
}

/** The latest generation both lineages hold, or null. */
export function commonGen(a: MirrorMeta, b: MirrorMeta): Gen | null {
  const theirs = new Set(lineage(b));
  const mine = lineage(a);
  for (let index = mine.length - 1; index >= 0; index--) if (theirs.has(mine[index]!)) return mine[index]!;
  return null;
}

/** Whether this node's dirty map holds every change it made since `common`. */
export function dirtyCovers(meta: MirrorMeta, common: Gen): boolean {
  if (meta.dirtyBase === null) return false;
  const mine = lineage(meta);
  const base = mine.indexOf(meta.dirtyBase);
  const since = mine.indexOf(common);
  return base >= 0 && since >= 0 && base <= since;
}

export type Relation = "same" | "ahead" | "behind" | "diverged" | "unrelated";

/** How `a`'s data relates to `b`'s. */
export function relation(a: MirrorMeta, b: MirrorMeta): Relation {
  if (a.gen === null || b.gen === null) return a.gen === b.gen ? "same" : a.gen === null ? "behind" : "ahead";
  if (a.gen === b.gen) return "same";
  if (lineage(a).includes(b.gen)) return "ahead";
  if (lineage(b).includes(a.gen)) return "behind";
  return commonGen(a, b) === null ? "unrelated" : "diverged";
}

/** How many blocks (and paths) a dirty map names: the measure of "more changes". A path
 *  marked whole counts as 2³² blocks (16 TiB of 4 KiB blocks), more than a file's marks
 *  name (they are runs, not counted); a million such paths still add up exactly. */
export function dirtyWeight(dirty: DirtyMap): number {
  let weight = 0;
  for (const entry of dirty.values()) weight += 1 + (entry.all ? 2 ** 32 : entry.blocks.size);
  return weight;
}

// ---- Marks that grow cheaply ----
//
// A node alone marks every write in its dirty map, and a map (or a file's set of blocks)
// copied whole at each addition made the rewrite of a large file quadratic: alone, a file
// rewritten in 1 MiB writes went at 124 MiB/s for its first 64 MiB and 17 MiB/s past
// 192 MiB (each write copied the file's set of dirty blocks, and each metadata record
// wrote it whole). A map made by adding to another keeps that other one as its base
// (shared, never changed) and holds only what it added, copied at each addition; once
// they outgrow 2·√(n·a) (n the base's size, a the size of an addition, plus a constant),
// they are folded into a new base: an addition costs O(√(n·a)) amortized instead of
// O(n), a lookup two, and iteration is that of a Map copied and added to: the base's
// order, then what was added, in order. A file's blocks grow the same way but without
// the copy (GrownBlocks: the additions in a log shared along the line) and fold into
// runs (RunBlocks), and they iterate in no promised order. The journal's change records
// write what was added (addedBlocks, changedEntries), not whole entries.

/** Additions kept over a base of `size`, added `step` at a time, before they are folded
 *  into a new base (copying them costs them at each step, folding the base once). */
function foldsAt(size: number, step: number): number {
  return 32 + 2 * Math.sqrt(size * Math.max(1, step));
}

/** A map of marks made by adding entries to `base` (a plain map, never one of these). */
class GrownDirty implements DirtyMap {
  readonly base: DirtyMap;
  /** Entries added or replaced, over the base. */
  readonly top: ReadonlyMap<string, FileDirty>;
  readonly size: number;

  constructor(base: DirtyMap, top: ReadonlyMap<string, FileDirty>, size: number) {
    this.base = base;
    this.top = top;
    this.size = size;
  }

  get(path: string): FileDirty | undefined {
    return this.top.get(path) ?? this.base.get(path);
  }

  has(path: string): boolean {
    return this.top.has(path) || this.base.has(path);
  }

  *entries(): MapIterator<[string, FileDirty]> {
    for (const [path, entry] of this.base) yield [path, this.top.get(path) ?? entry];
    for (const [path, entry] of this.top) if (!this.base.has(path)) yield [path, entry];
  }

  *keys(): MapIterator<string> {
    for (const [path] of this.entries()) yield path;
  }

  *values(): MapIterator<FileDirty> {
    for (const [, entry] of this.entries()) yield entry;
  }

  [Symbol.iterator](): MapIterator<[string, FileDirty]> {
    return this.entries();
  }

  forEach(each: (entry: FileDirty, path: string, map: DirtyMap) => void): void {
    for (const [path, entry] of this.entries()) each(entry, path, this);
  }
}

/** A set of blocks that is not a Set: what it holds, and the rest of ReadonlySet from it. */
abstract class BlockSet implements ReadonlySet<number> {
  abstract readonly size: number;
  abstract has(block: number): boolean;
  abstract values(): SetIterator<number>;

  keys(): SetIterator<number> {
    return this.values();
  }

  *entries(): SetIterator<[number, number]> {
    for (const block of this.values()) yield [block, block];
  }

  [Symbol.iterator](): SetIterator<number> {
    return this.values();
  }

  forEach(each: (block: number, same: number, set: ReadonlySet<number>) => void): void {
    for (const block of this.values()) each(block, block, this);
  }
}

/** The blocks added over one base by a line of sets grown one from the other, in order,
 *  with where each is: a set of the line holds the first `length` of them. */
interface AddLog {
  readonly blocks: number[];
  readonly at: Map<number, number>;
}

/** A set of blocks made by adding blocks to `base` (never one of these). The additions go
 *  into a log shared along the line of sets grown one from the other, each set seeing its
 *  own first part: adding to the latest set appends (it costs the blocks added, where a
 *  copy of the additions at each step cost √n); adding to an earlier one copies its part. */
class GrownBlocks extends BlockSet {
  readonly base: ReadonlySet<number>;
  readonly #log: AddLog;
  readonly #length: number;

  private constructor(base: ReadonlySet<number>, log: AddLog, length: number) {
    super();
    this.base = base;
    this.#log = log;
    this.#length = length;
  }

  /** `base` with `added` (none of them in it). */
  static over(base: ReadonlySet<number>, added: Iterable<number>): GrownBlocks {
    return new GrownBlocks(base, { blocks: [], at: new Map() }, 0).grown(added);
  }

  /** This set with `added` (none of them in it). */
  grown(added: Iterable<number>): GrownBlocks {
    let log = this.#log;
    if (this.#length !== log.blocks.length) {
      // Another set grew from this one already: this line goes on with a copy of its part.
      const blocks = log.blocks.slice(0, this.#length);
      log = { blocks, at: new Map(blocks.map((block, index) => [block, index])) };
    }
    for (const block of added) {
      log.at.set(block, log.blocks.length);
      log.blocks.push(block);
    }
    return new GrownBlocks(this.base, log, log.blocks.length);
  }

  /** How many blocks were added over the base. */
  get added(): number {
    return this.#length;
  }

  /** The blocks added over the base, in order. */
  top(): number[] {
    return this.#log.blocks.slice(0, this.#length);
  }

  /** The blocks this set has beyond `earlier`, when `earlier` is this set or one it grew
   *  from; null otherwise. */
  addedSince(earlier: GrownBlocks): readonly number[] | null {
    if (earlier.base !== this.base || earlier.#log !== this.#log || earlier.#length > this.#length) return null;
    return this.#log.blocks.slice(earlier.#length, this.#length);
  }

  get size(): number {
    return this.base.size + this.#length;
  }

  has(block: number): boolean {
    if (this.base.has(block)) return true;
    const at = this.#log.at.get(block);
    return at !== undefined && at < this.#length;
  }

  *values(): SetIterator<number> {
    yield* this.base;
    for (let index = 0; index < this.#length; index++) yield this.#log.blocks[index]!;
  }
}

/** A set of blocks kept sorted, as runs, from a point on: what a resync has left to send
 *  of a file whose marks it sends a chunk at a time. Sorting the blocks left and filtering
 *  out the chunk sent, at each chunk, made the resync of a file with many marked blocks
 *  quadratic; this is sorted once and goes on from where the last chunk ended. */
export class SortedBlocks extends BlockSet {
  /** `[first, count, ...]`, increasing and apart. */
  readonly #runs: readonly number[];
  /** The run it starts in (an even index of #runs), and the blocks of it already past. */
  readonly #at: number;
  readonly #skip: number;
  readonly #size: number;

  private constructor(runs: readonly number[], at: number, skip: number, size: number) {
    super();
    this.#runs = runs;
    this.#at = at;
    this.#skip = skip;
    this.#size = size;
  }

  /** `blocks` sorted (itself when it is one of these). */
  static of(blocks: ReadonlySet<number>): SortedBlocks {
    return blocks instanceof SortedBlocks ? blocks : new SortedBlocks(RunBlocks.runsOf(blocks), 0, 0, blocks.size);
  }

  get size(): number {
    return this.#size;
  }

  /** Its runs, `[first, count, ...]`. */
  runs(): readonly number[] {
    if (this.#at === 0 && this.#skip === 0) return this.#runs;
    const rest = this.#runs.slice(this.#at);
    if (rest.length > 0) {
      rest[0]! += this.#skip;
      rest[1]! -= this.#skip;
    }
    return rest;
  }

  /** The `count` lowest blocks. */
  first(count: number): number[] {
    const out: number[] = [];
    let skip = this.#skip;
    for (let at = this.#at; at < this.#runs.length && out.length < count; at += 2, skip = 0) {
      const end = this.#runs[at]! + this.#runs[at + 1]!;
      for (let block = this.#runs[at]! + skip; block < end && out.length < count; block++) out.push(block);
    }
    return out;
  }

  /** The blocks past the `count` lowest. */
  after(count: number): SortedBlocks {
    let left = Math.min(count, this.#size);
    let at = this.#at;
    let skip = this.#skip;
    while (left > 0) {
      const inRun = this.#runs[at + 1]! - skip;
      if (left < inRun) {
        skip += left;
        break;
      }
      left -= inRun;
      at += 2;
      skip = 0;
    }
    return new SortedBlocks(this.#runs, at, skip, this.#size - Math.min(count, this.#size));
  }

  has(block: number): boolean {
    const at = runHolding(this.#runs, block);
    return at > this.#at || (at === this.#at && block >= this.#runs[at]! + this.#skip);
  }

  *values(): SetIterator<number> {
    let skip = this.#skip;
    for (let at = this.#at; at < this.#runs.length; at += 2, skip = 0) for (let block = this.#runs[at]! + skip, end = this.#runs[at]! + this.#runs[at + 1]!; block < end; block++) yield block;
  }
}

/** The index (even) of the run of `runs` that holds `block`, or -1. */
function runHolding(runs: readonly number[], block: number): number {
  // The last run that begins at or before `block`.
  let low = 0;
  let high = runs.length / 2;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (runs[2 * middle]! <= block) low = middle + 1;
    else high = middle;
  }
  if (low === 0) return -1;
  const at = 2 * (low - 1);
  return block < runs[at]! + runs[at + 1]! ? at : -1;
}

/** The runs of blocks sorted, none twice. */
function runsOfSorted(sorted: readonly number[]): number[] {
  const runs: number[] = [];
  for (const block of sorted) {
    const last = runs.length - 2;
    if (last >= 0 && runs[last]! + runs[last + 1]! === block) runs[last + 1]!++;
    else runs.push(block, 1);
  }
  return runs;
}

/** The union of two lists of runs (each increasing and apart), increasing and apart. */
function mergeRuns(a: readonly number[], b: readonly number[]): readonly number[] {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const fromA = j >= b.length || (i < a.length && a[i]! <= b[j]!);
    const first = fromA ? a[i]! : b[j]!;
    const end = first + (fromA ? a[i + 1]! : b[j + 1]!);
    if (fromA) i += 2;
    else j += 2;
    const last = out.length - 2;
    if (last >= 0 && first <= out[last]! + out[last + 1]!) out[last + 1] = Math.max(out[last]! + out[last + 1]!, end) - out[last]!;
    else out.push(first, end - first);
  }
  return out;
}

/** The runs of `a` without the blocks of `b` (each increasing and apart). */
function subtractRuns(a: readonly number[], b: readonly number[]): readonly number[] {
  if (b.length === 0 || a.length === 0) return a;
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    let first = a[i]!;
    const end = first + a[i + 1]!;
    // Runs of b wholly before this one are behind every later run of a too.
    while (j < b.length && b[j]! + b[j + 1]! <= first) j += 2;
    for (let k = j; k < b.length && b[k]! < end; k += 2) {
      if (b[k]! > first) out.push(first, b[k]! - first);
      first = Math.max(first, b[k]! + b[k + 1]!);
    }
    if (first < end) out.push(first, end - first);
  }
  return out;
}

function blocksInRuns(runs: readonly number[]): number {
  let size = 0;
  for (let at = 1; at < runs.length; at += 2) size += runs[at]!;
  return size;
}

/** A set of blocks as runs, increasing and apart: what marks are folded into (a file
 *  written in sequence is one run, where a Set of its blocks held 262,144 numbers per GiB
 *  of 4 KiB blocks), and what a map of marks decodes to (drivers/real/mirror-codec.ts). */
export class RunBlocks extends BlockSet {
  /** `[first, count, ...]`. */
  readonly #runs: readonly number[];
  readonly #size: number;

  private constructor(runs: readonly number[], size: number) {
    super();
    this.#runs = runs;
    this.#size = size;
  }

  /** From `[first, count, ...]`: counts of at least one, each run past the end of the one
   *  before it and not touching it; null otherwise. */
  static of(runs: readonly number[]): RunBlocks | null {
    if (runs.length % 2 !== 0) return null;
    let size = 0;
    let next = 0;
    for (let at = 0; at < runs.length; at += 2) {
      const first = runs[at]!;
      const count = runs[at + 1]!;
      if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || first < 0 || count < 1 || (at > 0 && first <= next) || !Number.isSafeInteger(first + count)) return null;
      size += count;
      next = first + count;
    }
    return new RunBlocks(runs, size);
  }

  /** The `count` blocks from `first` on (none when `count` is 0). */
  static range(first: number, count: number): RunBlocks {
    return count <= 0 ? new RunBlocks([], 0) : new RunBlocks([first, count], count);
  }

  /** `blocks` as runs (itself when it is one of these). */
  static from(blocks: ReadonlySet<number>): RunBlocks {
    return blocks instanceof RunBlocks ? blocks : new RunBlocks(RunBlocks.runsOf(blocks), blocks.size);
  }

  /** The blocks of both. */
  static union(a: ReadonlySet<number>, b: ReadonlySet<number>): RunBlocks {
    const runs = mergeRuns(RunBlocks.runsOf(a), RunBlocks.runsOf(b));
    return new RunBlocks(runs, blocksInRuns(runs));
  }

  /** The blocks of `a` not in `b`. */
  static minus(a: ReadonlySet<number>, b: ReadonlySet<number>): RunBlocks {
    const runs = subtractRuns(RunBlocks.runsOf(a), RunBlocks.runsOf(b));
    return new RunBlocks(runs, blocksInRuns(runs));
  }

  /** The runs of `blocks`, `[first, count, ...]`: what they hold as runs when they are
   *  kept so (the additions over runs sorted and merged in), else sorted. */
  static runsOf(blocks: ReadonlySet<number>): readonly number[] {
    if (blocks instanceof RunBlocks) return blocks.#runs;
    if (blocks instanceof SortedBlocks) return blocks.runs();
    if (blocks instanceof GrownBlocks) return mergeRuns(RunBlocks.runsOf(blocks.base), runsOfSorted(blocks.top().sort((a, b) => a - b)));
    return runsOfSorted([...blocks].sort((a, b) => a - b));
  }

  get size(): number {
    return this.#size;
  }

  get runCount(): number {
    return this.#runs.length / 2;
  }

  has(block: number): boolean {
    return runHolding(this.#runs, block) >= 0;
  }

  *values(): SetIterator<number> {
    for (let at = 0; at < this.#runs.length; at += 2) for (let block = this.#runs[at]!, end = block + this.#runs[at + 1]!; block < end; block++) yield block;
  }
}

/** `blocks` with those of `add` it lacks; `blocks` itself when it has them all. The
 *  additions are kept apart from a base (GrownBlocks) until they pass a quarter of its
 *  runs (and 1024), then folded with it into runs (RunBlocks): a fold costs the runs and
 *  the additions sorted, once per that many additions; a file written in sequence is one
 *  run however long. */
function grownBlocks(blocks: ReadonlySet<number>, add: ReadonlySet<number>): ReadonlySet<number> {
  if (blocks instanceof RunBlocks && add instanceof RunBlocks && blocks.runCount + add.runCount <= add.size) {
    // Runs merged cost less than the blocks added one by one (a write in sequence).
    const union = RunBlocks.union(blocks, add);
    return union.size === blocks.size ? blocks : union;
  }
  // A set yields each block once.
  const added: number[] = [];
  for (const block of add) if (!blocks.has(block)) added.push(block);
  if (added.length === 0) return blocks;
  const grown = blocks instanceof GrownBlocks ? blocks.grown(added) : GrownBlocks.over(blocks, added);
  if (grown.added <= 1024 + runsAtMost(grown.base) / 4) return grown;
  return RunBlocks.from(grown);
}

/** At least as many runs as `blocks` makes, found without sorting. */
function runsAtMost(blocks: ReadonlySet<number>): number {
  if (blocks instanceof RunBlocks) return blocks.runCount;
  if (blocks instanceof GrownBlocks) return runsAtMost(blocks.base) + blocks.added;
  return blocks.size;
}

/** `blocks`, as runs when they make more than fileRunsMax of them at most; null when
 *  they make more exactly (the path is then marked whole). */
function withinRuns(blocks: ReadonlySet<number>): ReadonlySet<number> | null {
  if (runsAtMost(blocks) <= fileRunsMax) return blocks;
  const runs = RunBlocks.from(blocks);
  return runs.runCount > fileRunsMax ? null : runs;
}

/** The most runs of blocks one path's marks make (RunBlocks); past it the path is marked
 *  whole (a resync sends the whole file). The metadata's encoding takes a million runs at
 *  most (entryCountMax in drivers/real/mirror-codec.ts): a set past it once made every
 *  metadata write after it fail (mirror.meta_failed), the node writing on with its
 *  durable marks left behind. A file rewritten in sequence is one run whatever its size;
 *  a million runs is a million scattered writes. */
export const fileRunsMax = 1_000_000;

function mergeEntry(into: FileDirty | undefined, add: FileDirty): FileDirty {
  if (into === undefined) {
    const blocks = withinRuns(add.blocks);
    return blocks === null ? wholePath : blocks === add.blocks ? add : { all: false, blocks };
  }
  if (into.all || add.all) return into.all ? into : { all: true, blocks: new Set() };
  const grown = grownBlocks(into.blocks, add.blocks);
  if (grown === into.blocks) return into;
  const blocks = withinRuns(grown);
  return blocks === null ? wholePath : { all: false, blocks };
}

/** The union of two maps; `a` itself when `b` adds nothing. */
export function unionDirty(a: DirtyMap, b: DirtyMap): DirtyMap {
  let changes: Map<string, FileDirty> | null = null;
  for (const [path, entry] of b) {
    const before = changes?.get(path) ?? a.get(path);
    const after = mergeEntry(before, entry);
    if (after !== before) (changes ??= new Map()).set(path, after);
  }
  if (changes === null) return a;
  const base = a instanceof GrownDirty ? a.base : a;
  const top = a instanceof GrownDirty ? new Map(a.top) : new Map<string, FileDirty>();
  let size = a.size;
  for (const [path, entry] of changes) {
    if (!a.has(path)) size++;
    top.set(path, entry);
  }
  if (top.size <= foldsAt(base.size, changes.size)) return new GrownDirty(base, top, size);
  const folded = new Map(base);
  for (const [path, entry] of top) folded.set(path, entry);
  return folded;
}

/** The paths whose entries differ between two maps (set in `after`, or gone from it),
 *  compared by identity. When both grew from one base, only what each added is looked
 *  at: a metadata record after adding one path to a large map costs that path. */
export function changedEntries(before: DirtyMap, after: DirtyMap): { readonly set: readonly (readonly [string, FileDirty])[]; readonly del: readonly string[] } {
  const set: [string, FileDirty][] = [];
  const del: string[] = [];
  if (before === after) return { set, del };
  const baseOf = (map: DirtyMap) => (map instanceof GrownDirty ? map.base : map);
  if (baseOf(before) === baseOf(after)) {
    const candidates = new Set<string>();
    if (before instanceof GrownDirty) for (const path of before.top.keys()) candidates.add(path);
    if (after instanceof GrownDirty) for (const path of after.top.keys()) candidates.add(path);
    for (const path of candidates) {
      const entry = after.get(path);
      if (entry === undefined) del.push(path);
      else if (before.get(path) !== entry) set.push([path, entry]);
    }
    return { set, del };
  }
  for (const [path, entry] of after) if (before.get(path) !== entry) set.push([path, entry]);
  for (const path of before.keys()) if (!after.has(path)) del.push(path);
  return { set, del };
}

/** The blocks `after` adds to `before` when it holds all of them (both entries of blocks,
 *  not whole): when it grew from them, found without walking the blocks they share; after
 *  a fold, by their runs. Null otherwise (the entry is then written whole). */
export function addedBlocks(before: FileDirty, after: FileDirty): ReadonlySet<number> | null {
  if (before.all || after.all) return null;
  const from = before.blocks;
  const to = after.blocks;
  if (from === to) return new Set();
  if (to instanceof GrownBlocks) {
    if (from === to.base) return new Set(to.top());
    const since = from instanceof GrownBlocks ? to.addedSince(from) : null;
    if (since !== null) return new Set(since);
  }
  // Folded into runs since (RunBlocks): the difference of the runs, so that the record
  // still holds the additions, not the whole set again.
  if (to.size < from.size) return null;
  const added = RunBlocks.minus(to, from);
  return added.size === to.size - from.size ? added : null;
}

/** A bound of the dirty map a node sends its peer in its summary (hello), in bytes of
 *  JSON: half the largest frame of the real stream (16 MiB, drivers/real/wire.ts). */
export const summaryDirtyBytesMax = 8 << 20;

/** The bytes of JSON a dirty map takes at most as `[[path, {all, blocks}], ...]` in UTF-8,
 *  blocks as runs `{"runs":[first,count,...]}`. */
export function dirtyJsonBytes(dirty: DirtyMap): number {
  let bytes = 2;
  for (const [path, entry] of dirty) bytes += entryJsonBytes(path, entry);
  return bytes;
}

function entryJsonBytes(path: string, entry: FileDirty): number {
  // `["path",{"all":false,"blocks":{"runs":[]}}],` around the path's string and the blocks.
  let bytes = 45;
  for (let index = 0; index < path.length; index++) {
    const unit = path.charCodeAt(index);
    bytes += unit < 0x20 ? 6 : unit === 0x22 || unit === 0x5c ? 2 : unit < 0x80 ? 1 : unit < 0x800 ? 2 : 3;
  }
  if (entry.all || entry.blocks.size === 0) return bytes;
  // Each number and a comma.
  for (const value of RunBlocks.runsOf(entry.blocks)) bytes += String(value).length + 1;
  return bytes;
}

/** `dirty`, coarser, within `budgetBytes` of JSON: first the files whose marks take the
 *  most bytes (the most runs) marked whole, then the deepest paths folded into their directory marked whole
 *  (everything below it), level by level, at worst the root whole. It covers everything
 *  `dirty` marks, so a resync planned from it sends at least what is needed. A primary
 *  alone for hours under a database's writes can mark millions of blocks, and a summary
 *  over the stream's largest frame would be dropped at each attempt (the stream refuses a
 *  message larger than a frame and resets the connection): the nodes would never pair. */
export function coarsenToFit(dirty: DirtyMap, budgetBytes: number): DirtyMap {
  let bytes = dirtyJsonBytes(dirty);
  // An empty map cannot be made smaller (the folding below would never end on it).
  if (bytes <= budgetBytes || dirty.size === 0) return dirty;
  const out = new Map(dirty);
  const byBytes = [...out]
    .filter(([, entry]) => !entry.all && entry.blocks.size > 0)
    .map(([path, entry]) => ({ path, bytes: entryJsonBytes(path, entry) }))
    .sort((x, y) => y.bytes - x.bytes || (x.path < y.path ? -1 : 1));
  for (const { path, bytes: entryBytes } of byBytes) {
    if (bytes <= budgetBytes) return out;
    bytes += entryJsonBytes(path, wholePath) - entryBytes;
    out.set(path, wholePath);
  }
  while (bytes > budgetBytes && !(out.size === 1 && out.has(""))) {
    const depthOf = (path: string) => (path === "" ? 0 : path.split("/").length);
    let deepest = 0;
    for (const path of out.keys()) deepest = Math.max(deepest, depthOf(path));
    for (const path of [...out.keys()]) {
      if (depthOf(path) !== deepest) continue;
      bytes -= entryJsonBytes(path, out.get(path)!);
      out.delete(path);
      const parent = parentOf(path);
      const had = out.get(parent);
      if (had?.all === true) continue;
      bytes += entryJsonBytes(parent, wholePath) - (had === undefined ? 0 : entryJsonBytes(parent, had));
      out.set(parent, wholePath);
    }
  }
  return out;
}

/** `meta` as plain data sharing nothing with it (plain maps and sets of marks), for a store
 *  that keeps what was written (the simulated disk). */
export function copyMeta(meta: MirrorMeta): MirrorMeta {
  const plain = (map: DirtyMap): DirtyMap => new Map([...map].map(([path, entry]) => [path, { all: entry.all, blocks: new Set(entry.blocks) }]));
  return { ...meta, history: [...meta.history], layout: meta.layout === null ? null : [...meta.layout], dirty: plain(meta.dirty), hot: plain(meta.hot) };
}

/** `entry` with `blocks` added (a change record's additions, read back). */
export function withBlocks(entry: FileDirty, blocks: ReadonlySet<number>): FileDirty {
  return mergeEntry(entry, { all: false, blocks });
}

const pathOnly: FileDirty = Object.freeze({ all: false, blocks: new Set<number>() });
const wholePath: FileDirty = Object.freeze({ all: true, blocks: new Set<number>() });

/** What an operation dirties: the blocks of a write; the whole of a path whose identity
 *  changed (created, truncated, renamed to or from, linked to, unlinked, removed): when the other
 *  node changed such a path, this node's version must be sent whole (the other may have
 *  no file there at all), and when this node did, the other's version is replaced or
 *  removed; only the kind and attributes of a parent directory or a setattr. */
export function dirtyOf(op: DiskOp, blockSize: number): DirtyMap {
  const out = new Map<string, FileDirty>();
  const add = (path: string, entry: FileDirty): void => {
    out.set(path, mergeEntry(out.get(path), entry));
  };
  switch (op.kind) {
    case "write": {
      const range = blocksOfWrite(op, blockSize);
      add(op.path, { all: false, blocks: range === null ? new Set() : RunBlocks.range(range.first, range.last - range.first + 1) });
      break;
    }
    case "truncate":
    case "create":
    case "symlink":
    case "mkdir":
      add(op.path, wholePath);
      break;
    case "rename":
      add(op.from, wholePath);
      add(op.to, wholePath);
      add(parentOf(op.from), pathOnly);
      add(parentOf(op.to), pathOnly);
      break;
    case "link":
      // A new name of a file: sent whole, with the file's other names (install binds it).
      add(op.to, wholePath);
      add(parentOf(op.to), pathOnly);
      break;
    case "unlink":
    case "rmdir":
      add(op.path, wholePath);
      break;
    case "setattr":
    case "chown":
    case "times":
    case "setxattr":
    case "removexattr":
      add(op.path, pathOnly);
      break;
    case "fsync":
      break;
  }
  if (op.kind === "create" || op.kind === "symlink" || op.kind === "mkdir" || op.kind === "unlink" || op.kind === "rmdir") add(parentOf(op.path), pathOnly);
  return out;
}

/** The same marks in extents of `extentBlocks` blocks (what the hot map records). */
export function coarsenDirty(marks: DirtyMap, extentBlocks: number): DirtyMap {
  if (extentBlocks === 1) return marks;
  const out = new Map<string, FileDirty>();
  for (const [path, entry] of marks) {
    if (entry.all || entry.blocks.size === 0) {
      out.set(path, entry);
      continue;
    }
    const runs = RunBlocks.runsOf(entry.blocks);
    const extents: number[] = [];
    for (let at = 0; at < runs.length; at += 2) {
      const first = Math.floor(runs[at]! / extentBlocks);
      const last = Math.floor((runs[at]! + runs[at + 1]! - 1) / extentBlocks);
      const end = extents.length - 2;
      if (end >= 0 && first <= extents[end]! + extents[end + 1]!) extents[end + 1] = last + 1 - extents[end]!;
      else extents.push(first, last - first + 1);
    }
    out.set(path, { all: false, blocks: RunBlocks.of(extents)! });
  }
  return out;
}

/** A hot map's extents as blocks: every block of each extent (past a file's end, the
 *  disk port omits them). */
export function expandHot(hot: DirtyMap, extentBlocks: number): DirtyMap {
  if (extentBlocks === 1) return hot;
  const out = new Map<string, FileDirty>();
  for (const [path, entry] of hot) {
    if (entry.all || entry.blocks.size === 0) {
      out.set(path, entry);
      continue;
    }
    // Runs of extents apart stay apart as runs of blocks. Past the largest safe integer
    // (extents read back from damaged metadata), the path is resent whole.
    const runs = RunBlocks.runsOf(entry.blocks);
    const blocks = runs.length / 2 > fileRunsMax ? null : RunBlocks.of(runs.map((value) => value * extentBlocks));
    out.set(path, blocks === null ? wholePath : { all: false, blocks });
  }
  return out;
}

/** Drops the entries `keep` rejects; the same map when it keeps them all. */
export function filterDirty(dirty: DirtyMap, keep: (path: string, entry: FileDirty) => boolean): DirtyMap {
  let out: Map<string, FileDirty> | null = null;
  for (const [path, entry] of dirty) {
    if (keep(path, entry)) continue;
    out ??= new Map(dirty);
    out.delete(path);
  }
  return out ?? dirty;
}
