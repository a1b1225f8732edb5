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

/** How many blocks (and paths) a dirty map names: the measure of "more changes". */
export function dirtyWeight(dirty: DirtyMap): number {
  let weight = 0;
  for (const entry of dirty.values()) weight += 1 + (entry.all ? 1_000_000 : entry.blocks.size);
  return weight;
}

// ---- Marks that grow cheaply ----
//
// A node alone marks every write in its dirty map, and a map (or a file's set of blocks)
// copied whole at each addition made the rewrite of a large file quadratic: alone, a file
// rewritten in 1 MiB writes went at 124 MiB/s for its first 64 MiB and 17 MiB/s past
// 192 MiB (each write copied the file's set of dirty blocks, and each metadata record
// wrote it whole). A map or a set made by adding to another keeps that other one as its
// base (shared, never changed) and holds only what it added, copied at each addition;
// once they outgrow 2·√(n·a) (n the base's size, a the size of an addition, plus a
// constant), they are folded into a new base: an addition costs O(√(n·a)) amortized
// instead of O(n), a lookup two, and iteration is that of a Map or Set copied and added
// to: the base's order, then what was added, in order. The journal's change records
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

/** A set of blocks made by adding blocks to `base` (a plain set, never one of these). */
class GrownBlocks extends BlockSet {
  readonly base: ReadonlySet<number>;
  /** Blocks added, none of them in the base. */
  readonly top: ReadonlySet<number>;

  constructor(base: ReadonlySet<number>, top: ReadonlySet<number>) {
    super();
    this.base = base;
    this.top = top;
  }

  get size(): number {
    return this.base.size + this.top.size;
  }

  has(block: number): boolean {
    return this.base.has(block) || this.top.has(block);
  }

  *values(): SetIterator<number> {
    yield* this.base;
    yield* this.top;
  }
}

/** A set of blocks kept sorted, from `start` on: what a resync has left to send of a file
 *  whose marks it sends a chunk at a time. Sorting the blocks left and filtering out the
 *  chunk sent, at each chunk, made the resync of a file with many marked blocks
 *  quadratic; this is sorted once and goes on from where the last chunk ended. */
export class SortedBlocks extends BlockSet {
  readonly #sorted: readonly number[];
  readonly #start: number;

  private constructor(sorted: readonly number[], start: number) {
    super();
    this.#sorted = sorted;
    this.#start = start;
  }

  /** `blocks` sorted (itself when it is one of these). */
  static of(blocks: ReadonlySet<number>): SortedBlocks {
    return blocks instanceof SortedBlocks ? blocks : new SortedBlocks([...blocks].sort((a, b) => a - b), 0);
  }

  get size(): number {
    return this.#sorted.length - this.#start;
  }

  /** The `count` lowest blocks. */
  first(count: number): number[] {
    return this.#sorted.slice(this.#start, this.#start + count);
  }

  /** The blocks past the `count` lowest. */
  after(count: number): SortedBlocks {
    return new SortedBlocks(this.#sorted, Math.min(this.#sorted.length, this.#start + count));
  }

  has(block: number): boolean {
    let low = this.#start;
    let high = this.#sorted.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#sorted[middle]! < block) low = middle + 1;
      else high = middle;
    }
    return low < this.#sorted.length && this.#sorted[low] === block;
  }

  *values(): SetIterator<number> {
    for (let index = this.#start; index < this.#sorted.length; index++) yield this.#sorted[index]!;
  }

}

/** A set of blocks as runs, increasing and apart: what a map of marks decodes to
 *  (drivers/real/mirror-codec.ts). A file written in sequence is one run, where a Set of
 *  its blocks took 45 ms to build per 262,144 of them (a GiB of 4 KiB blocks), at each
 *  summary a node received and at each it sent (the sender checks what it encodes). */
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

  /** The runs of `blocks`, `[first, count, ...]` (its own when it is one of these). */
  static runsOf(blocks: ReadonlySet<number>): readonly number[] {
    if (blocks instanceof RunBlocks) return blocks.#runs;
    const runs: number[] = [];
    for (const block of [...blocks].sort((a, b) => a - b)) {
      const last = runs.length - 2;
      if (last >= 0 && runs[last]! + runs[last + 1]! === block) runs[last + 1]!++;
      else runs.push(block, 1);
    }
    return runs;
  }

  get size(): number {
    return this.#size;
  }

  has(block: number): boolean {
    // The last run that begins at or before `block`.
    let low = 0;
    let high = this.#runs.length / 2;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#runs[2 * middle]! <= block) low = middle + 1;
      else high = middle;
    }
    if (low === 0) return false;
    const at = 2 * (low - 1);
    return block < this.#runs[at]! + this.#runs[at + 1]!;
  }

  *values(): SetIterator<number> {
    for (let at = 0; at < this.#runs.length; at += 2) for (let block = this.#runs[at]!, end = block + this.#runs[at + 1]!; block < end; block++) yield block;
  }
}

/** `blocks` with those of `add` it lacks; `blocks` itself when it has them all. */
function grownBlocks(blocks: ReadonlySet<number>, add: Iterable<number>): ReadonlySet<number> {
  let added: Set<number> | null = null;
  for (const block of add) if (!blocks.has(block) && !(added?.has(block) ?? false)) (added ??= new Set()).add(block);
  if (added === null) return blocks;
  const base = blocks instanceof GrownBlocks ? blocks.base : blocks;
  const top = blocks instanceof GrownBlocks ? new Set([...blocks.top, ...added]) : added;
  if (top.size <= foldsAt(base.size, added.size)) return new GrownBlocks(base, top);
  const folded = new Set(base);
  for (const block of top) folded.add(block);
  return folded;
}

/** The most blocks one path's marks name; past it the path is marked whole (a resync
 *  sends the whole file). A node alone that rewrote more than 4 GiB of one file (of 4 KiB
 *  blocks: a VM's disk image) made a set the metadata's encoding refuses (a million
 *  entries at most, entryCountMax in drivers/real/mirror-codec.ts): every metadata write
 *  after it failed (mirror.meta_failed), and the node went on writing with its durable
 *  marks left behind. */
export const fileBlocksMax = 1_000_000;

function mergeEntry(into: FileDirty | undefined, add: FileDirty): FileDirty {
  if (into === undefined) return add.blocks.size > fileBlocksMax ? wholePath : add;
  if (into.all || add.all) return into.all ? into : { all: true, blocks: new Set() };
  const blocks = grownBlocks(into.blocks, add.blocks);
  if (blocks === into.blocks) return into;
  return blocks.size > fileBlocksMax ? wholePath : { all: false, blocks };
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
 *  a fold, by a walk of both. Null otherwise (the entry is then written whole). */
export function addedBlocks(before: FileDirty, after: FileDirty): readonly number[] | null {
  if (before.all || after.all) return null;
  const from = before.blocks;
  const to = after.blocks;
  if (from === to) return [];
  if (to instanceof GrownBlocks) {
    if (from === to.base) return [...to.top];
    if (from instanceof GrownBlocks && from.base === to.base) {
      for (const block of from.top) if (!to.top.has(block)) return null;
      return [...to.top].filter((block) => !from.top.has(block));
    }
  }
  // Folded into a new base since (once every 2·√(n·a) blocks added): a walk of both, so
  // that the record still holds the additions, not the whole set again.
  if (to.size < from.size) return null;
  for (const block of from) if (!to.has(block)) return null;
  const added: number[] = [];
  for (const block of to) if (!from.has(block)) added.push(block);
  return added;
}

/** A bound of the dirty map a node sends its peer in its summary (hello), in bytes of
 *  JSON: half the largest frame of the real stream (16 MiB, drivers/real/wire.ts). */
export const summaryDirtyBytesMax = 8 << 20;

/** The bytes of JSON a dirty map takes at most as `[[path, {all, blocks}], ...]` in UTF-8,
 *  blocks as runs `{"runs":[first,count,...]}` (each block counted as a run of its own, as
 *  long as the path's largest, with a count of one digit: a count of more digits stands
 *  for that many blocks). */
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
  // Each block a run of one: as long as the largest, a comma, a count of one and a comma.
  let largest = 0;
  for (const block of entry.blocks) if (block > largest) largest = block;
  return bytes + entry.blocks.size * (String(largest).length + 3);
}

/** `dirty`, coarser, within `budgetBytes` of JSON: first the files with the most marked
 *  blocks marked whole, then the deepest paths folded into their directory marked whole
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
  const byBlocks = [...out].filter(([, entry]) => !entry.all && entry.blocks.size > 0).sort(([a, x], [b, y]) => y.blocks.size - x.blocks.size || (a < b ? -1 : 1));
  for (const [path, entry] of byBlocks) {
    if (bytes <= budgetBytes) return out;
    bytes += entryJsonBytes(path, wholePath) - entryJsonBytes(path, entry);
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
export function withBlocks(entry: FileDirty, blocks: Iterable<number>): FileDirty {
  return mergeEntry(entry, { all: false, blocks: new Set(blocks) });
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
      const blocks = new Set<number>();
      if (range !== null) for (let block = range.first; block <= range.last; block++) blocks.add(block);
      add(op.path, { all: false, blocks });
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
    if (entry.all || entry.blocks.size === 0) out.set(path, entry);
    else out.set(path, { all: false, blocks: new Set([...entry.blocks].map((block) => Math.floor(block / extentBlocks))) });
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
    if (entry.blocks.size * extentBlocks > fileBlocksMax) {
      out.set(path, wholePath);
      continue;
    }
    const blocks = new Set<number>();
    for (const extent of entry.blocks) for (let block = extent * extentBlocks; block < (extent + 1) * extentBlocks; block++) blocks.add(block);
    out.set(path, { all: false, blocks });
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
