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

function mergeEntry(into: FileDirty | undefined, add: FileDirty): FileDirty {
  if (into === undefined) return add;
  if (into.all || add.all) return into.all ? into : { all: true, blocks: new Set() };
  let grows = false;
  for (const block of add.blocks) if (!into.blocks.has(block)) grows = true;
  if (!grows) return into;
  return { all: false, blocks: new Set([...into.blocks, ...add.blocks]) };
}

/** The union of two maps; `a` itself when `b` adds nothing. */
export function unionDirty(a: DirtyMap, b: DirtyMap): DirtyMap {
  let out: Map<string, FileDirty> | null = null;
  for (const [path, entry] of b) {
    const before = (out ?? a).get(path);
    const after = mergeEntry(before, entry);
    if (after !== before) {
      out ??= new Map(a);
      out.set(path, after);
    }
  }
  return out ?? a;
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
