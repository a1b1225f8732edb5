// The simulated twin of the mirror's disk port (DiskPort in core/ports.ts): one node's
// replicated tree, its page cache, its durable storage and its metadata, on the
// simulator's event queue and clock.
//
// Model. The tree is a table of inodes (files with bytes and a mode, directories, symbolic
// links), each with its names (a file may have several: hard links), kept in two layers: the
// page cache, which every call reads and changes, and durable storage, which only a power
// loss reveals. Calls complete strictly in issue order (one FIFO per disk, across all of
// the port's methods; `aside()` is a second FIFO for applies, as a thread of the node's
// own applying beside the first one would be), each `latencyMs` after the one before it
// in its FIFO (fsync and preserve
// `fsyncMs`, persistMeta `metaMs`), plus a jitter drawn from the disk's PRNG, times the
// slow factor. A call's effect and its callback both happen at its completion, in an
// event of its own, never inside the call.
//
// Durability. fsync(path) makes the inode's data and attributes (for a directory: its
// whole list of entries) durable, together with the entries naming it and each of its
// ancestors; fsync(null) makes everything durable. Background writeback (`writebackMs`;
// null turns it off) does the same for an inode dirty that long, a file without its name,
// a directory (whose data is its entries) with its own. Renames are atomic on
// durable storage, as on a journalling file system: whenever an entry leaves durable
// storage while its inode still has a name in the cache, that name is made durable with
// it, so nothing still in the cache vanishes through a partial sync. A name made durable
// before its file's data leaves an empty file (ext4's delayed-allocation zero-length file).
// preserve() and persistMeta() are durable when they complete; install() is not (a resync
// fsyncs what it installed). Metadata is kept outside the tree and its capacity.
//
// Faults it injects: power loss (powerLoss: the cache is dropped, calls in flight vanish
// without callbacks; with `tornWrites`, each write not yet durable persists a PRNG-chosen
// subset of its 512-byte sectors, each sector whole or not at all, and everything else
// not durable is lost); a process crash (crash: calls in flight still complete into the
// cache, their callbacks are dropped, the cache is kept); a slow disk (slow/unslow); the
// next call of a kind failing with a chosen error (failNext); every call on paths under a
// prefix failing (failUnder/healUnder); a full disk (`capacityBytes`: ENOSPC); a power
// loss during persistMeta, which keeps the previous metadata (atomic replace).
// A failed writeback (loseWriteback: the next fsync of a file with data not durable fails
// with EIO, and that data is gone from the cache too).
// It cannot inject: silent corruption, acknowledged-durable data lost or misdirected,
// completions out of order, writeback errors that no fsync reports, a read-only remount
// (an EROFS rule fails reads too), or inode exhaustion.
// Extended attributes are kept per inode with its mode (durable with it, not counted
// against capacityBytes), in the namespaces Linux keeps (`user.`, not on a symlink:
// EPERM; `trusted.`, `security.`; any other is EOPNOTSUPP). Symbolic links are never
// followed (the interception resolves them before the disk sees a path): a symlink inside
// a path is ENOTDIR, a write, truncate or setattr of one EINVAL.
//
// Incarnations. open() starts the node's process on this disk and returns a fresh port;
// crash() and powerLoss() end it; the next open() returns the next port. Using a port of
// an ended incarnation is an assertion failure: the world let a dead node act.

import { createHash } from "node:crypto";
import { assert, unreachable } from "../../core/assert.ts";
import { isWithin, parentOf, xattrNamespaces, type DiskError, type DiskOp, type DiskResult, type PathSnapshot, type Xattr } from "../../core/mirror/disk-ops.ts";
import type { DiskPort } from "../../core/ports.ts";
import type { EventQueue } from "./event-queue.ts";
import type { Prng } from "./prng.ts";

/** Bytes of one page of the cache, the unit file data is stored and shared in. */
export const pageSize = 4_096;
/** Bytes of one sector, the unit a torn write persists in. */
export const sectorSize = 512;
/** What each name in the tree (and in the preserved area) costs against capacityBytes. */
export const entryCostBytes = 64;
/** Bound on writes remembered for tearing; a write past it is lost whole on power loss. */
export const pendingWritesMax = 100_000;
/** Bound on queued failNext faults. */
export const failNextMax = 1_000;
/** Bound on inodes in the cache, and on copies in the preserved area. */
export const inodeCountMax = 1_000_000;
/** Mode of the root and of the directories install() creates for missing parents. */
export const dirModeDefault = 0o755;
/** The chance that each sector of a write not yet durable persists on power loss. */
export const tornSectorChance = 0.5;

export interface SimDiskSettings {
  /** Time each call takes after the one before it, besides fsync, preserve and persistMeta. */
  readonly latencyMs: number;
  /** Extra time per call drawn uniformly in [0, jitterMs). */
  readonly jitterMs: number;
  /** Time of an fsync and of a preserve. */
  readonly fsyncMs: number;
  /** Time of a persistMeta. */
  readonly metaMs: number;
  /** An inode dirty this long is written back by itself; null: only fsync makes data durable. */
  readonly writebackMs: number | null;
  /** On power loss, writes not yet durable persist a PRNG-chosen subset of their sectors. */
  readonly tornWrites: boolean;
  /** ENOSPC once file sizes + symlink targets + entryCostBytes per name, in the tree and in
   *  the preserved area, would exceed it; null: no limit. Metadata does not count. */
  readonly capacityBytes: number | null;
}

/** A local SSD under the page cache: fast cached calls, 2 ms fsync, Linux-like 5 s writeback. */
export const defaultDiskSettings: SimDiskSettings = Object.freeze({
  latencyMs: 0.05,
  jitterMs: 0,
  fsyncMs: 2,
  metaMs: 2,
  writebackMs: 5_000,
  tornWrites: false,
  capacityBytes: null,
});

/** The port's calls, by the name failNext takes. */
export type DiskCallKind = DiskOp["kind"] | "read" | "install" | "preserve" | "persistMeta" | "loadMeta";
/** What failNext can fail: any call but loadMeta (which has no error to give), or "any". */
export type DiskFaultKind = Exclude<DiskCallKind, "loadMeta"> | "any";
export type DiskLayer = "cache" | "durable";

/** One path of a canonical tree listing: comparable with toEqual, printable as JSON.
 *  `xattrs`: its extended attributes as [name, value in hex], sorted, when it has any. */
export type TreeEntry =
  | { readonly path: string; readonly kind: "dir"; readonly mode: number; readonly xattrs?: readonly (readonly [string, string])[] }
  /** `links`: its other names, when it has any (hard links). */
  | { readonly path: string; readonly kind: "file"; readonly mode: number; readonly size: number; readonly sha256: string; readonly links?: readonly string[]; readonly xattrs?: readonly (readonly [string, string])[] }
  | { readonly path: string; readonly kind: "symlink"; readonly target: string; readonly xattrs?: readonly (readonly [string, string])[] };

export interface SimDiskStats {
  /** apply() calls that completed without error. */
  opsApplied: number;
  /** Calls of any kind that completed with an error, injected or not. */
  errors: number;
  errorsInjected: number;
  bytesWritten: number;
  fsyncs: number;
  writebacks: number;
  reads: number;
  installs: number;
  crashes: number;
  powerLosses: number;
  /** Sectors of writes not yet durable that a power loss persisted. */
  tornSectors: number;
}

export interface SimDiskOptions<Meta = unknown> {
  readonly queue: EventQueue;
  /** The clock of `queue`. */
  readonly clockMs: () => number;
  /** A generator of the disk's own, forked from the run's by the caller (`prng.fork("disk:n1")`). */
  readonly prng: Prng;
  readonly settings?: Partial<SimDiskSettings>;
  /** A copy of metadata that shares nothing with it (what is stored is what was written,
   *  whatever the caller changes after): structuredClone when absent, which keeps plain
   *  data only (not the mirror's grown maps of marks: copyMeta in core/mirror/meta.ts). */
  readonly copyMeta?: (meta: Meta) => Meta;
}

type InodeKind = "file" | "dir" | "symlink";

/** One name of an inode: the directory entry `name` of inode `parent`. */
interface Name {
  readonly parent: number;
  readonly name: string;
}

interface Inode {
  readonly id: number;
  readonly kind: InodeKind;
  mode: number;
  /** The entries naming it: none for the root and a durable orphan, one for a directory or
   *  a symlink, one or more for a file (hard links). */
  names: Name[];
  size: number;
  /** Page index → page of pageSize bytes; absent pages are zeros. Pages are never changed
   *  in place, so the layers and the preserved area share them. */
  pages: Map<number, Uint8Array>;
  readonly entries: Map<string, number>;
  readonly target: string;
  /** Extended attributes, name → value. Values are never changed in place (shared like pages). */
  xattrs: Map<string, Uint8Array>;
}

interface PendingWrite {
  readonly offset: number;
  readonly data: Uint8Array;
}

type Lookup =
  | { readonly error: null; readonly parent: Inode | null; readonly name: string; readonly inode: Inode | null }
  | { readonly error: DiskError };

const rootId = 0;
const zeroPage = new Uint8Array(pageSize);

export class SimDisk<Meta> {
  readonly settings: SimDiskSettings;
  readonly stats: SimDiskStats = {
    opsApplied: 0,
    errors: 0,
    errorsInjected: 0,
    bytesWritten: 0,
    fsyncs: 0,
    writebacks: 0,
    reads: 0,
    installs: 0,
    crashes: 0,
    powerLosses: 0,
    tornSectors: 0,
  };
  readonly #queue: EventQueue;
  readonly #clockMs: () => number;
  readonly #prng: Prng;
  #cache = new Map<number, Inode>();
  #durable = new Map<number, Inode>();
  /** Label → path → copy (ids and names unused). */
  readonly #preserved = new Map<string, Map<string, Inode>>();
  #meta: Meta | null = null;
  readonly #copyMeta: (meta: Meta) => Meta;
  #nextInodeId = rootId + 1;
  #usedBytes = 0;
  #open = false;
  #incarnation = 0;
  #powerEpoch = 0;
  #lastCompletionMs = 0;
  /** The same for the calls of aside(). */
  #asideLastCompletionMs = 0;
  #inFlightCount = 0;
  #slowFactor = 1;
  readonly #failNext: { readonly kind: DiskFaultKind; readonly error: DiskError }[] = [];
  readonly #failUnder = new Map<string, DiskError>();
  /** Inode → the token of its scheduled writeback. */
  readonly #dirty = new Map<number, number>();
  #loseWriteback = false;
  #dirtySeq = 0;
  readonly #pendingWrites = new Map<number, PendingWrite[]>();
  #pendingWriteCount = 0;

  constructor(options: SimDiskOptions<Meta>) {
    this.settings = { ...defaultDiskSettings, ...options.settings };
    this.#copyMeta = options.copyMeta ?? ((meta) => structuredClone(meta));
    checkSettings(this.settings);
    this.#queue = options.queue;
    this.#clockMs = options.clockMs;
    this.#prng = options.prng;
    this.#cache.set(rootId, newInode(rootId, "dir", dirModeDefault, ""));
    this.#durable.set(rootId, newInode(rootId, "dir", dirModeDefault, ""));
  }

  // ---- incarnations ----

  /** Starts the node's process on this disk: a fresh port. The previous one must have ended. */
  open(): DiskPort<Meta> {
    assert(!this.#open, "the disk's node is already running: crash() or powerLoss() it before open()");
    this.#open = true;
    const incarnation = ++this.#incarnation;
    return {
      apply: (op, done) => this.#issueApply(incarnation, op, done),
      read: (path, blocks, blockSize, done) => this.#issueRead(incarnation, path, blocks, blockSize, done),
      install: (path, snapshot, blockSize, done) => this.#issueInstall(incarnation, path, snapshot, blockSize, done),
      preserve: (paths, label, done) => this.#issuePreserve(incarnation, paths, label, done),
      persistMeta: (meta, done) => this.#issuePersistMeta(incarnation, meta, done),
      loadMeta: (done) => this.#issueLoadMeta(incarnation, done),
    };
  }

  /** Applies of the running incarnation on a FIFO of their own: they complete in their
   *  order, not behind the port's calls (the native lane's follower thread beside the disk
   *  port). The caller keeps whatever order it needs between the two. */
  aside(): Pick<DiskPort<Meta>, "apply"> {
    assert(this.#open, "aside() of a disk whose node is not running");
    const incarnation = this.#incarnation;
    return { apply: (op, done) => this.#issueApply(incarnation, op, done, true) };
  }

  get isOpen(): boolean {
    return this.#open;
  }

  /** crash: the process dies, the kernel survives: calls in flight complete into the cache, unanswered. */
  crash(): void {
    assert(this.#open, "crash() of a node that is not running");
    this.#open = false;
    this.stats.crashes++;
  }

  /** powerLoss: the cache and every call in flight vanish; the tree becomes what was durable
   *  (with tornWrites, plus some sectors of writes not yet durable). The node is down until open(). */
  powerLoss(): void {
    if (this.settings.tornWrites) this.#tearPendingWrites();
    this.#durable = reachable(this.#durable);
    // A file keeps the durable names of directories that survived.
    for (const inode of this.#durable.values()) inode.names = inode.names.filter((each) => this.#durable.get(each.parent)?.entries.get(each.name) === inode.id);
    this.#cache = new Map([...this.#durable.values()].map((inode) => [inode.id, cloneInode(inode)]));
    this.#dirty.clear();
    this.#clearPendingWrites();
    this.#open = false;
    this.#powerEpoch++;
    this.#inFlightCount = 0;
    this.#lastCompletionMs = this.#clockMs();
    this.#asideLastCompletionMs = this.#clockMs();
    this.#usedBytes = this.#computeUsedBytes();
    this.stats.powerLosses++;
  }

  // ---- faults ----

  /** slow: every call issued from now on takes `factor` times as long. */
  slow(factor: number): void {
    assert(Number.isFinite(factor) && factor > 0, `slow factor ${factor} must be positive`);
    this.#slowFactor = factor;
  }

  /** unslow: calls issued from now on take their normal time. */
  unslow(): void {
    this.#slowFactor = 1;
  }

  /** failNext: the next call of `kind` issued from now on fails with `error`, changing nothing. */
  failNext(kind: DiskFaultKind, error: DiskError): void {
    assert(this.#failNext.length < failNextMax, `more than ${failNextMax} failNext faults queued`);
    this.#failNext.push({ kind, error });
  }

  /** loseWriteback: the next fsync of a file with data not durable yet fails with EIO and
   *  drops that data, as Linux does when writeback fails (ext4: the pages are clean again,
   *  their data gone, and a later fsync on another descriptor succeeds). */
  loseWriteback(): void {
    this.#loseWriteback = true;
  }

  /** failUnder: every call issued from now on that names a path under `path` ("" for all,
   *  fsync(null) included) fails with `error`, changing nothing. */
  failUnder(path: string, error: DiskError = "EIO"): void {
    checkPath(path);
    this.#failUnder.set(path, error);
  }

  /** healUnder: undoes failUnder(path). */
  healUnder(path: string): void {
    this.#failUnder.delete(path);
  }

  // ---- inspection (for the world and the checker, not part of the port) ----

  /** Every path of a layer, root first then sorted, with kind, mode, size and content hash. */
  snapshotTree(layer: DiskLayer = "cache"): TreeEntry[] {
    const inodes = this.#layer(layer);
    const entries: TreeEntry[] = [];
    const stack: [string, Inode][] = [["", inodes.get(rootId)!]];
    for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
      const [path, inode] = item;
      entries.push(treeEntry(path, inode, inodes));
      for (const [name, id] of inode.entries) stack.push([joinPath(path, name), inodes.get(id)!]);
    }
    return entries.sort(byPath);
  }

  /** A hash of snapshotTree(layer): equal digests, byte-identical trees (without the
   *  paths `leaveOut` names, such as a mirror's not replicated ones). */
  treeDigest(layer: DiskLayer = "cache", leaveOut: (path: string) => boolean = () => false): string {
    return createHash("sha256").update(JSON.stringify(this.snapshotTree(layer).filter((entry) => !leaveOut(entry.path)))).digest("hex");
  }

  /** A copy of the bytes of the file at `path`, or null when it is not a file. */
  fileBytes(path: string, layer: DiskLayer = "cache"): Uint8Array | null {
    checkPath(path);
    const found = lookup(this.#layer(layer), path);
    if (found.error !== null || found.inode === null || found.inode.kind !== "file") return null;
    return readBytes(found.inode, 0, found.inode.size);
  }

  /** How many names the file at `path` has in the cache (hard links); 0 when there is none. */
  nameCount(path: string): number {
    checkPath(path);
    const found = lookup(this.#cache, path);
    return found.error !== null || found.inode === null ? 0 : found.inode.names.length;
  }

  preservedLabels(): string[] {
    return [...this.#preserved.keys()].sort();
  }

  /** What preserve() kept under `label`, by original path; null when nothing was. */
  preserved(label: string): TreeEntry[] | null {
    const area = this.#preserved.get(label);
    if (area === undefined) return null;
    return [...area].map(([path, copy]) => treeEntry(path, copy)).sort(byPath);
  }

  /** A copy of the bytes of the file kept at `path` under `label`, or null. */
  preservedBytes(label: string, path: string): Uint8Array | null {
    const copy = this.#preserved.get(label)?.get(path);
    return copy === undefined || copy.kind !== "file" ? null : readBytes(copy, 0, copy.size);
  }

  /** The durable metadata (what the node reads back after a crash or a power loss); the
   *  caller does not change it. */
  durableMeta(): Readonly<Meta> | null {
    return this.#meta;
  }

  /** What counts against capacityBytes now. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** Calls issued and not yet completed. */
  get inFlightCount(): number {
    return this.#inFlightCount;
  }

  /** Inodes changed in the cache and not yet written back or fsynced (0 without writeback). */
  get dirtyCount(): number {
    return this.#dirty.size;
  }

  /** Asserts that both layers are trees whose inodes know their names, and that usedBytes
   *  is what they hold. For tests: it walks everything. */
  checkInvariants(): void {
    for (const [layer, inodes] of [["cache", this.#cache], ["durable", this.#durable]] as const) {
      for (const inode of inodes.values()) {
        for (const [name, id] of inode.entries) {
          const child = inodes.get(id);
          assert(child !== undefined, `${layer}: entry ${name} of inode ${inode.id} names a missing inode ${id}`);
          assert(child.names.some((each) => each.parent === inode.id && each.name === name), `${layer}: inode ${id} does not know it is ${name} in inode ${inode.id}`);
        }
        assert(inode.kind === "file" || inode.names.length <= 1, `${layer}: ${inode.kind} inode ${inode.id} has ${inode.names.length} names`);
        for (const each of inode.names) assert(inodes.get(each.parent)?.entries.get(each.name) === inode.id, `${layer}: inode ${inode.id} claims a name it does not have`);
      }
    }
    assert(reachable(this.#cache).size === this.#cache.size, "cache: an inode is not reachable from the root");
    const named = reachable(this.#durable);
    for (const inode of this.#durable.values()) {
      // Unreachable durable inodes are files whose data was written back before their name.
      if (!named.has(inode.id)) assert(inode.names.length === 0 && inode.entries.size === 0, `durable: inode ${inode.id} is cut off from the root`);
    }
    assert(this.#computeUsedBytes() === this.#usedBytes, `usedBytes ${this.#usedBytes} is not what the tree holds (${this.#computeUsedBytes()})`);
  }

  // ---- calls ----

  /** Schedules one call behind every call before it in its FIFO; `run` performs it at completion. */
  #call<R>(incarnation: number, kind: DiskCallKind, paths: readonly string[] | null, done: (result: R) => void, run: () => R, fail: (error: DiskError) => R, aside = false): void {
    assert(this.#open && incarnation === this.#incarnation, `disk ${kind} from a port whose node crashed or lost power`);
    assert(typeof done === "function", `disk ${kind} without a callback`);
    const fault = kind === "loadMeta" ? null : this.#faultFor(kind, paths);
    const atMs = Math.max(this.#clockMs(), aside ? this.#asideLastCompletionMs : this.#lastCompletionMs) + this.#durationMs(kind);
    if (aside) this.#asideLastCompletionMs = atMs;
    else this.#lastCompletionMs = atMs;
    const epoch = this.#powerEpoch;
    this.#inFlightCount++;
    this.#queue.push(atMs, () => {
      if (epoch !== this.#powerEpoch) return;
      this.#inFlightCount--;
      const result = fault === null ? run() : this.#injected(fault, fail);
      if (this.#open && incarnation === this.#incarnation) done(result);
    });
  }

  #injected<R>(error: DiskError, fail: (error: DiskError) => R): R {
    this.stats.errorsInjected++;
    this.stats.errors++;
    return fail(error);
  }

  #faultFor(kind: DiskCallKind, paths: readonly string[] | null): DiskError | null {
    const index = this.#failNext.findIndex((fault) => fault.kind === kind || fault.kind === "any");
    if (index >= 0) return this.#failNext.splice(index, 1)[0]!.error;
    for (const [prefix, error] of this.#failUnder) {
      if (paths === null || paths.some((path) => isWithin(path, prefix))) return error;
    }
    return null;
  }

  #durationMs(kind: DiskCallKind): number {
    const { latencyMs, jitterMs, fsyncMs, metaMs } = this.settings;
    const baseMs = kind === "fsync" || kind === "preserve" ? fsyncMs : kind === "persistMeta" ? metaMs : latencyMs;
    const extraMs = jitterMs > 0 ? this.#prng.float() * jitterMs : 0;
    return (baseMs + extraMs) * this.#slowFactor;
  }

  #issueApply(incarnation: number, op: DiskOp, done: (result: DiskResult) => void, aside = false): void {
    const own = ownOp(op);
    const paths = own.kind === "fsync" && own.path === null ? null : opPaths(own);
    this.#call(incarnation, own.kind, paths, done, () => this.#counted(this.#applyOp(own)), (error) => error, aside);
  }

  #issueRead(incarnation: number, path: string, blocks: readonly number[] | "all", blockSize: number, done: (result: PathSnapshot | DiskError) => void): void {
    checkPath(path);
    checkBlockSize(blockSize);
    const wanted = blocks === "all" ? "all" : [...blocks];
    if (wanted !== "all") for (const index of wanted) assert(Number.isSafeInteger(index) && index >= 0, `read ${path}: block index ${index}`);
    const run = (): PathSnapshot => {
      this.stats.reads++;
      return this.#read(path, wanted, blockSize);
    };
    this.#call(incarnation, "read", [path], done, run, (error) => error);
  }

  #issueInstall(incarnation: number, path: string, snapshot: PathSnapshot, blockSize: number, done: (result: DiskResult) => void): void {
    checkPath(path);
    checkBlockSize(blockSize);
    const own = ownSnapshot(path, snapshot, blockSize);
    const run = (): DiskResult => {
      this.stats.installs++;
      return this.#counted(this.#install(path, own, blockSize));
    };
    this.#call(incarnation, "install", [path], done, run, (error) => error);
  }

  #issuePreserve(incarnation: number, paths: readonly string[], label: string, done: (result: { readonly place: string } | DiskError) => void): void {
    for (const path of paths) checkPath(path);
    assert(label !== "" && label !== "." && label !== ".." && !/[/\0]/.test(label), `preserve label ${JSON.stringify(label)} is not a plain name`);
    const own = [...paths];
    const run = (): { readonly place: string } | DiskError => {
      const result = this.#preserve(own, label);
      if (typeof result === "string") this.stats.errors++;
      return result;
    };
    this.#call(incarnation, "preserve", own, done, run, (error) => error);
  }

  #issuePersistMeta(incarnation: number, meta: Meta, done: (result: DiskResult) => void): void {
    const copy = this.#copyMeta(meta);
    const run = (): DiskResult => {
      this.#meta = copy;
      return null;
    };
    this.#call(incarnation, "persistMeta", [], done, run, (error) => error);
  }

  #issueLoadMeta(incarnation: number, done: (meta: Meta | null) => void): void {
    this.#call(incarnation, "loadMeta", [], done, () => (this.#meta === null ? null : this.#copyMeta(this.#meta)), () => null);
  }

  #counted(result: DiskResult): DiskResult {
    if (result !== null) this.stats.errors++;
    return result;
  }

  // ---- operations on the cache ----

  #applyOp(op: DiskOp): DiskResult {
    const result = this.#dispatch(op);
    if (result === null) this.stats.opsApplied++;
    return result;
  }

  #dispatch(op: DiskOp): DiskResult {
    switch (op.kind) {
      case "create":
        return this.#create(op.path, op.mode);
      case "write":
        return this.#write(op.path, op.offset, op.data);
      case "truncate":
        return this.#truncate(op.path, op.size);
      case "rename":
        return this.#rename(op.from, op.to);
      case "unlink":
        return this.#unlink(op.path);
      case "link":
        return this.#hardLink(op.from, op.to);
      case "mkdir":
        return this.#mkdir(op.path, op.mode);
      case "rmdir":
        return this.#rmdir(op.path);
      case "setattr":
        return this.#setattr(op.path, op.mode);
      case "chown":
      case "times":
        return this.#exists(op.path);
      case "setxattr":
        return this.#setxattr(op.path, op.name, op.value, op.how);
      case "removexattr":
        return this.#removexattr(op.path, op.name);
      case "symlink":
        return this.#symlink(op.path, op.target);
      case "fsync":
        return this.#fsync(op.path);
      default:
        return unreachable(op);
    }
  }

  /** O_CREAT|O_EXCL: an existing name of any kind is EEXIST. */
  #create(path: string, mode: number): DiskResult {
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode !== null) return "EEXIST";
    if (!this.#fits(entryCostBytes)) return "ENOSPC";
    this.#link(found.parent!, found.name, this.#newCacheInode("file", mode, ""));
    return null;
  }

  #write(path: string, offset: number, data: Uint8Array): DiskResult {
    const file = this.#fileAt(path);
    if (typeof file === "string") return file;
    if (offset < 0) return "EINVAL";
    if (data.length === 0) return null;
    if (!this.#fits(offset + data.length - file.size)) return "ENOSPC";
    this.#writeFile(file, offset, data);
    return null;
  }

  #truncate(path: string, size: number): DiskResult {
    const file = this.#fileAt(path);
    if (typeof file === "string") return file;
    if (size < 0) return "EINVAL";
    if (!this.#fits(size - file.size)) return "ENOSPC";
    this.#truncateFile(file, size);
    return null;
  }

  /** Linux's order of checks: parents, source, subtree loops, then what the target is. */
  #rename(from: string, to: string): DiskResult {
    if (from === "" || to === "") return "EINVAL";
    const source = lookup(this.#cache, from);
    if (source.error !== null) return source.error;
    const target = lookup(this.#cache, to);
    if (target.error !== null) return target.error;
    const moving = source.inode;
    if (moving === null) return "ENOENT";
    if (from === to) return null;
    if (moving.kind === "dir" && isWithin(to, from)) return "EINVAL";
    const replaced = target.inode;
    // Two names of one file: rename(2) does nothing and succeeds.
    if (replaced === moving) return null;
    if (replaced !== null) {
      if (isWithin(from, to)) return "ENOTEMPTY";
      if (moving.kind === "dir" && replaced.kind !== "dir") return "ENOTDIR";
      if (moving.kind !== "dir" && replaced.kind === "dir") return "EISDIR";
      if (replaced.entries.size > 0) return "ENOTEMPTY";
      this.#remove(replaced, target.parent!, target.name);
    }
    this.#unlinkName(moving, source.parent!, source.name);
    this.#link(target.parent!, target.name, moving);
    return null;
  }

  #unlink(path: string): DiskResult {
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode === null) return "ENOENT";
    if (found.inode.kind === "dir") return "EISDIR";
    this.#remove(found.inode, found.parent!, found.name);
    return null;
  }

  /** Linux's order of checks: the source, the new name's parents, the new name, then what
   *  the source is. A name costs nothing against capacityBytes. */
  #hardLink(from: string, to: string): DiskResult {
    const source = lookup(this.#cache, from);
    if (source.error !== null) return source.error;
    if (source.inode === null) return "ENOENT";
    const target = lookup(this.#cache, to);
    if (target.error !== null) return target.error;
    if (target.inode !== null) return "EEXIST";
    // Hard links to symlinks exist on Linux; the mirror refuses them (docs/replicator.md).
    if (source.inode.kind !== "file") return "EPERM";
    this.#link(target.parent!, target.name, source.inode);
    this.#markDirty(source.inode);
    return null;
  }

  #mkdir(path: string, mode: number): DiskResult {
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode !== null) return "EEXIST";
    if (!this.#fits(entryCostBytes)) return "ENOSPC";
    this.#link(found.parent!, found.name, this.#newCacheInode("dir", mode, ""));
    return null;
  }

  /** The root cannot be removed: EINVAL (Linux says EBUSY, which the port does not have). */
  #rmdir(path: string): DiskResult {
    if (path === "") return "EINVAL";
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode === null) return "ENOENT";
    if (found.inode.kind !== "dir") return "ENOTDIR";
    if (found.inode.entries.size > 0) return "ENOTEMPTY";
    this.#remove(found.inode, found.parent!, found.name);
    return null;
  }

  #setattr(path: string, mode: number): DiskResult {
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode === null) return "ENOENT";
    if (found.inode.kind === "symlink") return "EINVAL";
    found.inode.mode = modeBits(mode);
    this.#markDirty(found.inode);
    return null;
  }

  #setxattr(path: string, name: string, value: Uint8Array, how: "create" | "replace" | undefined): DiskResult {
    const found = this.#xattrTarget(path, name);
    if (typeof found === "string") return found;
    const there = found.xattrs.has(name);
    if (how === "create" && there) return "EEXIST";
    if (how === "replace" && !there) return "ENODATA";
    found.xattrs.set(name, value);
    this.#markDirty(found);
    return null;
  }

  #removexattr(path: string, name: string): DiskResult {
    const found = this.#xattrTarget(path, name);
    if (typeof found === "string") return found;
    if (!found.xattrs.delete(name)) return "ENODATA";
    this.#markDirty(found);
    return null;
  }

  /** The inode whose attribute `name` a call may change, or why not (Linux's rules). */
  #xattrTarget(path: string, name: string): Inode | DiskError {
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode === null) return "ENOENT";
    const namespace = xattrNamespaces.find((prefix) => name.startsWith(prefix) && name.length > prefix.length);
    if (namespace === undefined) return "EOPNOTSUPP";
    if (namespace === "user." && found.inode.kind === "symlink") return "EPERM";
    return found.inode;
  }

  /** Owners and times are not modelled: a chown or a times of an existing path succeeds
   *  and changes nothing. */
  #exists(path: string): DiskResult {
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    return found.inode === null ? "ENOENT" : null;
  }

  #symlink(path: string, target: string): DiskResult {
    if (target === "") return "ENOENT";
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode !== null) return "EEXIST";
    if (!this.#fits(entryCostBytes + target.length)) return "ENOSPC";
    this.#link(found.parent!, found.name, this.#newCacheInode("symlink", 0o777, target));
    return null;
  }

  #fsync(path: string | null): DiskResult {
    this.stats.fsyncs++;
    if (path === null) {
      this.#syncAll();
      return null;
    }
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode === null) return "ENOENT";
    if (this.#loseWriteback && found.inode.kind === "file" && this.#unsyncedData(found.inode)) {
      this.#loseWriteback = false;
      const inode = found.inode;
      const durable = this.#durable.get(inode.id);
      inode.size = durable?.size ?? 0;
      inode.pages = new Map(durable?.pages ?? []);
      this.#dropPendingWrites(inode.id);
      this.#dirty.delete(inode.id);
      this.stats.errorsInjected++;
      this.stats.errors++;
      return "EIO";
    }
    this.#syncInode(found.inode);
    this.#persistName(found.inode);
    return null;
  }

  /** Whether a file's data in the cache is not all durable (pages are shared between the
   *  layers, never changed in place: a page not the durable one is newer). */
  #unsyncedData(inode: Inode): boolean {
    const durable = this.#durable.get(inode.id);
    if (durable === undefined || durable.size !== inode.size || durable.pages.size !== inode.pages.size) return true;
    for (const [index, page] of inode.pages) if (durable.pages.get(index) !== page) return true;
    return false;
  }

  /** The file a write or truncate acts on, or why there is none. */
  #fileAt(path: string): Inode | DiskError {
    const found = lookup(this.#cache, path);
    if (found.error !== null) return found.error;
    if (found.inode === null) return "ENOENT";
    if (found.inode.kind === "dir") return "EISDIR";
    if (found.inode.kind === "symlink") return "EINVAL";
    return found.inode;
  }

  // ---- read, install, preserve ----

  /** A missing path, or one below a non-directory, reads as absent. */
  #read(path: string, blocks: readonly number[] | "all", blockSize: number): PathSnapshot {
    const found = lookup(this.#cache, path);
    if (found.error !== null || found.inode === null) return { kind: "absent" };
    const inode = found.inode;
    switch (inode.kind) {
      case "dir":
        return { kind: "dir", mode: inode.mode, children: [...inode.entries.keys()].sort(), ...xattrsOf(inode) };
      case "symlink":
        return { kind: "symlink", target: inode.target, ...xattrsOf(inode) };
      case "file": {
        const indexes = blocks === "all" ? Array.from({ length: Math.ceil(inode.size / blockSize) }, (_, index) => index) : blocks;
        const read = new Map<number, Uint8Array>();
        for (const index of indexes) {
          const offset = index * blockSize;
          if (offset < inode.size) read.set(index, readBytes(inode, offset, Math.min(blockSize, inode.size - offset)));
        }
        const blocksRead = new Map([...read].sort(([a], [b]) => a - b));
        if (inode.names.length === 1) return { kind: "file", mode: inode.mode, size: inode.size, blocks: blocksRead, ...xattrsOf(inode) };
        return { kind: "file", mode: inode.mode, size: inode.size, blocks: blocksRead, ...xattrsOf(inode), links: pathsOfInode(this.#cache, inode).filter((each) => each !== path) };
      }
      default:
        return unreachable(inode.kind);
    }
  }

  /** Missing parents are created as directories (mode dirModeDefault), replacing any
   *  non-directory in the way; the root can only be emptied or given a mode. */
  #install(path: string, snapshot: PathSnapshot, blockSize: number): DiskResult {
    if (snapshot.kind === "absent") return this.#installAbsent(path);
    if (path === "") return snapshot.kind === "dir" ? this.#setRootMode(snapshot.mode, snapshot.xattrs) : "EINVAL";
    const shared = snapshot.kind === "file" ? this.#sharedFile(path, snapshot.links) : null;
    if (!this.#fits(this.#installGrowth(path, snapshot, shared))) return "ENOSPC";
    const parent = this.#makeParents(parentOf(path));
    const name = path.slice(path.lastIndexOf("/") + 1);
    const existingId = parent.entries.get(name);
    const existing = existingId === undefined ? null : this.#cache.get(existingId)!;
    // Bound to another name's file, or to one of its own when it shares one it should not.
    const detach = snapshot.kind === "file" && snapshot.links !== undefined && shared === null && existing !== null && existing.names.length > 1;
    const keep = existing !== null && (shared !== null ? existing === shared : existing.kind === snapshot.kind && snapshot.kind !== "symlink" && !detach);
    if (existing !== null && !keep) this.#remove(existing, parent, name);
    const inode = keep ? existing! : (shared ?? this.#newCacheInode(snapshot.kind, snapshot.kind === "symlink" ? 0o777 : snapshot.mode, snapshot.kind === "symlink" ? snapshot.target : ""));
    if (!keep) this.#link(parent, name, inode);
    inode.xattrs = new Map(snapshot.xattrs ?? []);
    this.#markDirty(inode);
    if (snapshot.kind === "symlink") return null;
    inode.mode = modeBits(snapshot.mode);
    if (snapshot.kind === "file") {
      this.#truncateFile(inode, snapshot.size);
      for (const [index, bytes] of snapshot.blocks) if (bytes.length > 0) this.#writeFile(inode, index * blockSize, bytes);
    }
    return null;
  }

  #installAbsent(path: string): DiskResult {
    const found = lookup(this.#cache, path);
    if (found.error !== null || found.inode === null) return null;
    if (path !== "") this.#remove(found.inode, found.parent!, found.name);
    else for (const [name, id] of [...found.inode.entries]) this.#remove(this.#cache.get(id)!, found.inode, name);
    return null;
  }

  /** The file that the first of `links` naming a file here names (not `path`'s own name). */
  #sharedFile(path: string, links: readonly string[] | undefined): Inode | null {
    for (const other of links ?? []) {
      if (other === path) continue;
      const found = lookup(this.#cache, other);
      if (found.error === null && found.inode !== null && found.inode.kind === "file") return found.inode;
    }
    return null;
  }

  #setRootMode(mode: number, xattrs: readonly Xattr[] | undefined): DiskResult {
    const root = this.#cache.get(rootId)!;
    root.mode = modeBits(mode);
    root.xattrs = new Map(xattrs ?? []);
    this.#markDirty(root);
    return null;
  }

  /** How much install(path, snapshot) adds to usedBytes (negative when it frees); `shared`:
   *  the file it makes `path` a name of. */
  #installGrowth(path: string, snapshot: Exclude<PathSnapshot, { kind: "absent" }>, shared: Inode | null): number {
    const names = path.split("/");
    let growth = 0;
    let dir: Inode | null = this.#cache.get(rootId)!;
    for (const name of names.slice(0, -1)) {
      const child: Inode | null = dir === null ? null : this.#child(dir, name);
      if (child !== null && child.kind === "dir") {
        dir = child;
        continue;
      }
      if (child !== null) growth -= this.#usageOfTree(child);
      growth += entryCostBytes;
      dir = null;
    }
    const existing = dir === null ? null : this.#child(dir, names[names.length - 1]!);
    const freed = existing === null || existing === shared ? 0 : existing.names.length > 1 ? 0 : this.#usageOfTree(existing);
    if (shared !== null) return growth + (snapshot.kind === "file" ? snapshot.size - shared.size : 0) - freed;
    const contentBytes = snapshot.kind === "file" ? snapshot.size : snapshot.kind === "symlink" ? snapshot.target.length : 0;
    growth += entryCostBytes + contentBytes;
    if (existing === null) return growth;
    const detach = snapshot.kind === "file" && snapshot.links !== undefined && existing.names.length > 1;
    return existing.kind === snapshot.kind && existing.kind !== "symlink" && !detach ? growth - usageOf(existing) : growth - freed;
  }

  #makeParents(dirPath: string): Inode {
    let dir = this.#cache.get(rootId)!;
    if (dirPath === "") return dir;
    for (const name of dirPath.split("/")) {
      const child = this.#child(dir, name);
      if (child !== null && child.kind === "dir") {
        dir = child;
        continue;
      }
      if (child !== null) this.#remove(child, dir, name);
      const made = this.#newCacheInode("dir", dirModeDefault, "");
      this.#link(dir, name, made);
      dir = made;
    }
    return dir;
  }

  /** Copies the cache versions of `paths` (missing ones skipped) under `label`; a path
   *  preserved before under the same label is replaced. Durable when it completes. */
  #preserve(paths: readonly string[], label: string): { readonly place: string } | DiskError {
    const copies = new Map<string, Inode>();
    for (const path of paths) {
      const found = lookup(this.#cache, path);
      if (found.error === null && found.inode !== null) this.#copySubtree(path, found.inode, copies);
    }
    const area = this.#preserved.get(label) ?? new Map<string, Inode>();
    const copyCount = [...this.#preserved.values()].reduce((count, each) => count + each.size, copies.size);
    assert(copyCount <= inodeCountMax, `more than ${inodeCountMax} preserved copies`);
    let growth = 0;
    for (const [path, copy] of copies) growth += usageOf(copy) - (area.has(path) ? usageOf(area.get(path)!) : 0);
    if (!this.#fits(growth)) return "ENOSPC";
    for (const [path, copy] of copies) area.set(path, copy);
    this.#preserved.set(label, area);
    this.#usedBytes += growth;
    return { place: `preserved/${label}` };
  }

  #copySubtree(path: string, inode: Inode, copies: Map<string, Inode>): void {
    const stack: [string, Inode][] = [[path, inode]];
    for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
      const [each, node] = item;
      const copy = cloneInode(node);
      copy.entries.clear();
      copies.set(each, copy);
      for (const [name, id] of node.entries) stack.push([joinPath(each, name), this.#cache.get(id)!]);
    }
  }

  // ---- cache mutations ----

  #newCacheInode(kind: InodeKind, mode: number, target: string): Inode {
    assert(this.#cache.size < inodeCountMax, `more than ${inodeCountMax} inodes on one disk`);
    const inode = newInode(this.#nextInodeId++, kind, modeBits(mode), target);
    this.#cache.set(inode.id, inode);
    this.#usedBytes += usageOf(inode);
    return inode;
  }

  #link(parent: Inode, name: string, inode: Inode): void {
    assert(parent.kind === "dir" && !parent.entries.has(name), `link ${name}: the name is taken or the parent is not a directory`);
    assert(inode.kind === "file" || inode.names.length === 0, `link ${name}: a ${inode.kind} has one name`);
    parent.entries.set(name, inode.id);
    inode.names.push({ parent: parent.id, name });
    this.#markDirty(parent);
  }

  #unlinkName(inode: Inode, parent: Inode, name: string): void {
    assert(parent.entries.get(name) === inode.id, `inode ${inode.id} is not ${name} in inode ${parent.id}`);
    parent.entries.delete(name);
    inode.names = withoutName(inode.names, parent.id, name);
    this.#markDirty(parent);
  }

  /** Removes the name `parent/name` of `inode`; an inode left without a name goes from the
   *  cache with everything below it that has no other name; their unwritten data is
   *  dropped as the kernel drops the pages of a deleted file. */
  #remove(inode: Inode, parent: Inode, name: string): void {
    this.#unlinkName(inode, parent, name);
    if (inode.names.length > 0) return;
    const stack = [inode];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      this.#cache.delete(node.id);
      this.#usedBytes -= usageOf(node);
      this.#dirty.delete(node.id);
      this.#dropPendingWrites(node.id);
      for (const [childName, id] of node.entries) {
        const child = this.#cache.get(id)!;
        child.names = withoutName(child.names, node.id, childName);
        if (child.names.length === 0) stack.push(child);
      }
    }
  }

  #writeFile(file: Inode, offset: number, data: Uint8Array): void {
    this.#usedBytes += Math.max(0, offset + data.length - file.size);
    writeBytes(file, offset, data);
    this.stats.bytesWritten += data.length;
    this.#markDirty(file);
    if (this.settings.tornWrites && this.#pendingWriteCount < pendingWritesMax) {
      const writes = this.#pendingWrites.get(file.id) ?? [];
      writes.push({ offset, data });
      this.#pendingWrites.set(file.id, writes);
      this.#pendingWriteCount++;
    }
  }

  #truncateFile(file: Inode, size: number): void {
    this.#usedBytes += size - file.size;
    truncateBytes(file, size);
    this.#markDirty(file);
  }

  #fits(growthBytes: number): boolean {
    const capacityBytes = this.settings.capacityBytes;
    return growthBytes <= 0 || capacityBytes === null || this.#usedBytes + growthBytes <= capacityBytes;
  }

  #child(dir: Inode, name: string): Inode | null {
    const id = dir.entries.get(name);
    return id === undefined ? null : this.#cache.get(id)!;
  }

  #usageOfTree(inode: Inode): number {
    let total = 0;
    const stack = [inode];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      total += usageOf(node);
      for (const id of node.entries.values()) stack.push(this.#cache.get(id)!);
    }
    return total;
  }

  #computeUsedBytes(): number {
    let total = 0;
    for (const inode of this.#cache.values()) if (inode.id !== rootId) total += usageOf(inode);
    for (const area of this.#preserved.values()) for (const copy of area.values()) total += usageOf(copy);
    return total;
  }

  // ---- durability ----

  /** Schedules the writeback of an inode that has just become dirty. */
  #markDirty(inode: Inode): void {
    const writebackMs = this.settings.writebackMs;
    if (writebackMs === null || this.#dirty.has(inode.id)) return;
    const token = ++this.#dirtySeq;
    const id = inode.id;
    const epoch = this.#powerEpoch;
    this.#dirty.set(id, token);
    this.#queue.push(this.#clockMs() + writebackMs, () => {
      if (epoch !== this.#powerEpoch || this.#dirty.get(id) !== token) return;
      this.#dirty.delete(id);
      const current = this.#cache.get(id);
      if (current === undefined) return;
      this.#syncInode(current);
      this.stats.writebacks++;
    });
  }

  /** Makes the inode's data and attributes durable; a directory's data is its entries. */
  #syncInode(inode: Inode): void {
    const durable = this.#ensureDurable(inode);
    durable.mode = inode.mode;
    durable.xattrs = new Map(inode.xattrs);
    if (inode.kind === "file") {
      durable.size = inode.size;
      durable.pages = new Map(inode.pages);
    }
    if (inode.kind === "dir") this.#syncEntries(inode, durable);
    this.#dropPendingWrites(inode.id);
    this.#dirty.delete(inode.id);
  }

  /** Its own name first: a directory made durable where the cache no longer has it could
   *  take what is moved into it out of the durable tree (a cycle after two renames). */
  #syncEntries(dir: Inode, durable: Inode): void {
    this.#persistName(dir);
    for (const [name, id] of [...durable.entries]) {
      // An orphan's new name, made durable just now, may already have taken this entry.
      if (durable.entries.get(name) !== id || dir.entries.get(name) === id) continue;
      durable.entries.delete(name);
      this.#durableOrphan(id, durable.id, name);
    }
    for (const [name, id] of dir.entries) this.#setDurableEntry(durable, name, this.#cache.get(id)!);
  }

  /** Makes the names of `inode` (all of a file's) and of each of its ancestors durable. */
  #persistName(inode: Inode): void {
    for (const each of [...inode.names]) {
      const parent = this.#cache.get(each.parent)!;
      if (parent.id !== rootId) this.#persistName(parent);
      this.#setDurableEntry(this.#ensureDurable(parent), each.name, inode);
    }
  }

  /** Durable `parent/name` becomes `inode` (its cache version), leaving the durable names
   *  the cache no longer gives it (a rename moves a name). */
  #setDurableEntry(parent: Inode, name: string, inode: Inode): void {
    const durable = this.#ensureDurable(inode);
    if (parent.entries.get(name) === inode.id) {
      assert(durable.names.some((each) => each.parent === parent.id && each.name === name), `durable inode ${inode.id} is not named where its parent says`);
      return;
    }
    for (const old of [...durable.names]) {
      if (inode.names.some((each) => each.parent === old.parent && each.name === old.name)) continue;
      const oldParent = this.#durable.get(old.parent);
      if (oldParent?.entries.get(old.name) === inode.id) oldParent.entries.delete(old.name);
      durable.names = withoutName(durable.names, old.parent, old.name);
    }
    const replaced = parent.entries.get(name);
    parent.entries.set(name, inode.id);
    durable.names.push({ parent: parent.id, name });
    if (replaced !== undefined) this.#durableOrphan(replaced, parent.id, name);
  }

  /** A durable inode lost its durable name `parent/name`: when it has no other, if the cache
   *  still names it, those names become durable (renames are atomic); otherwise it is gone,
   *  and so is what is below it. */
  #durableOrphan(id: number, parentId: number, name: string): void {
    const durable = this.#durable.get(id);
    if (durable === undefined) return;
    durable.names = withoutName(durable.names, parentId, name);
    if (durable.names.length > 0) return;
    const cached = this.#cache.get(id);
    if (cached !== undefined) {
      this.#persistName(cached);
      return;
    }
    this.#durable.delete(id);
    for (const [childName, child] of [...durable.entries]) this.#durableOrphan(child, id, childName);
  }

  /** The durable version of an inode, created as an empty stub of its kind when it has none. */
  #ensureDurable(inode: Inode): Inode {
    const durable = this.#durable.get(inode.id);
    if (durable !== undefined) return durable;
    const stub = newInode(inode.id, inode.kind, inode.mode, inode.target);
    this.#durable.set(inode.id, stub);
    return stub;
  }

  #syncAll(): void {
    this.#durable = new Map([...this.#cache.values()].map((inode) => [inode.id, cloneInode(inode)]));
    this.#dirty.clear();
    this.#clearPendingWrites();
  }

  #tearPendingWrites(): void {
    for (const [id, writes] of this.#pendingWrites) {
      const file = this.#durable.get(id);
      if (file === undefined || file.kind !== "file") continue;
      for (const write of writes) this.#tearWrite(file, write);
    }
  }

  /** Persists each sector of `write` with probability tornSectorChance, extending the file to cover it. */
  #tearWrite(file: Inode, write: PendingWrite): void {
    const endOffset = write.offset + write.data.length;
    for (let sector = Math.floor(write.offset / sectorSize); sector * sectorSize < endOffset; sector++) {
      if (!this.#prng.chance(tornSectorChance)) continue;
      const from = Math.max(write.offset, sector * sectorSize);
      const to = Math.min(endOffset, (sector + 1) * sectorSize);
      writeBytes(file, from, write.data.subarray(from - write.offset, to - write.offset));
      this.stats.tornSectors++;
    }
  }

  #dropPendingWrites(id: number): void {
    const writes = this.#pendingWrites.get(id);
    if (writes === undefined) return;
    this.#pendingWriteCount -= writes.length;
    this.#pendingWrites.delete(id);
  }

  #clearPendingWrites(): void {
    this.#pendingWrites.clear();
    this.#pendingWriteCount = 0;
  }

  #layer(layer: DiskLayer): Map<number, Inode> {
    return layer === "cache" ? this.#cache : this.#durable;
  }
}

// ---- pure helpers ----

function checkSettings(settings: SimDiskSettings): void {
  const { latencyMs, jitterMs, fsyncMs, metaMs, writebackMs, capacityBytes } = settings;
  for (const [name, value] of Object.entries({ latencyMs, jitterMs, fsyncMs, metaMs })) assert(Number.isFinite(value) && value >= 0, `disk setting ${name} = ${value} must be a finite non-negative number`);
  assert(writebackMs === null || (Number.isFinite(writebackMs) && writebackMs > 0), `disk setting writebackMs = ${writebackMs} must be positive or null`);
  assert(capacityBytes === null || (Number.isSafeInteger(capacityBytes) && capacityBytes >= 0), `disk setting capacityBytes = ${capacityBytes} must be a non-negative integer or null`);
}

/** Paths are relative, `/`-separated plain names; "" is the root. */
function checkPath(path: string): void {
  assert(typeof path === "string", `disk path ${String(path)} is not a string`);
  if (path === "") return;
  for (const name of path.split("/")) assert(name !== "" && name !== "." && name !== ".." && !name.includes("\0"), `disk path ${JSON.stringify(path)} is not a relative path of plain names`);
}

function checkBlockSize(blockSize: number): void {
  assert(Number.isSafeInteger(blockSize) && blockSize > 0, `block size ${blockSize} must be a positive integer`);
}

/** A copy of `op` the caller can no longer change, checked for programmer errors. */
function ownOp(op: DiskOp): DiskOp {
  for (const path of opPaths(op)) checkPath(path);
  switch (op.kind) {
    case "write":
      assert(op.data instanceof Uint8Array, `write ${op.path}: data is not a Uint8Array`);
      assert(Number.isSafeInteger(op.offset) && Number.isSafeInteger(op.offset + op.data.length), `write ${op.path}: offset ${op.offset} is not a safe integer`);
      return { ...op, data: op.data.slice() };
    case "truncate":
      assert(Number.isSafeInteger(op.size), `truncate ${op.path}: size ${op.size} is not a safe integer`);
      return { ...op };
    case "create":
    case "mkdir":
    case "setattr":
      assert(Number.isSafeInteger(op.mode) && op.mode >= 0, `${op.kind} ${op.path}: mode ${op.mode} is not a mode`);
      return { ...op };
    case "symlink":
      assert(typeof op.target === "string", `symlink ${op.path}: target is not a string`);
      return { ...op };
    case "times":
      for (const time of [op.atime, op.mtime]) assert(time === null || (Number.isSafeInteger(time.s) && Number.isInteger(time.ns) && time.ns >= 0 && time.ns < 1e9), `times ${op.path}: ${JSON.stringify(time)} is not a time`);
      return { ...op };
    case "setxattr":
      assert(typeof op.name === "string" && op.name !== "" && op.value instanceof Uint8Array, `setxattr ${op.path}: ${op.name} is not an attribute`);
      return { ...op, value: op.value.slice() };
    default:
      return { ...op };
  }
}

function opPaths(op: DiskOp): string[] {
  if (op.kind === "rename" || op.kind === "link") return [op.from, op.to];
  if (op.kind === "fsync") return op.path === null ? [] : [op.path];
  return [op.path];
}

/** A copy of `snapshot` the caller can no longer change, with its blocks checked against its size. */
function ownSnapshot(path: string, snapshot: PathSnapshot, blockSize: number): PathSnapshot {
  switch (snapshot.kind) {
    case "absent":
      return snapshot;
    case "dir":
      assert(Number.isSafeInteger(snapshot.mode) && snapshot.mode >= 0, `install ${path}: mode ${snapshot.mode}`);
      return { kind: "dir", mode: snapshot.mode, children: [...snapshot.children], ...ownXattrs(path, snapshot.xattrs) };
    case "symlink":
      assert(typeof snapshot.target === "string" && snapshot.target !== "", `install ${path}: empty symlink target`);
      return { kind: "symlink", target: snapshot.target, ...ownXattrs(path, snapshot.xattrs) };
    case "file": {
      assert(Number.isSafeInteger(snapshot.size) && snapshot.size >= 0, `install ${path}: size ${snapshot.size}`);
      assert(Number.isSafeInteger(snapshot.mode) && snapshot.mode >= 0, `install ${path}: mode ${snapshot.mode}`);
      const blocks = new Map<number, Uint8Array>();
      for (const [index, bytes] of snapshot.blocks) {
        assert(Number.isSafeInteger(index) && index >= 0, `install ${path}: block index ${index}`);
        assert(bytes.length <= blockSize && index * blockSize + bytes.length <= snapshot.size, `install ${path}: block ${index} of ${bytes.length} bytes lies beyond size ${snapshot.size}`);
        blocks.set(index, bytes.slice());
      }
      if (snapshot.links === undefined) return { kind: "file", mode: snapshot.mode, size: snapshot.size, blocks, ...ownXattrs(path, snapshot.xattrs) };
      for (const other of snapshot.links) checkPath(other);
      return { kind: "file", mode: snapshot.mode, size: snapshot.size, blocks, ...ownXattrs(path, snapshot.xattrs), links: [...snapshot.links] };
    }
    default:
      return unreachable(snapshot);
  }
}

function lookup(inodes: Map<number, Inode>, path: string): Lookup {
  const root = inodes.get(rootId)!;
  if (path === "") return { error: null, parent: null, name: "", inode: root };
  const names = path.split("/");
  let dir = root;
  for (let index = 0; index < names.length - 1; index++) {
    const id = dir.entries.get(names[index]!);
    if (id === undefined) return { error: "ENOENT" };
    const next = inodes.get(id)!;
    if (next.kind !== "dir") return { error: "ENOTDIR" };
    dir = next;
  }
  const name = names[names.length - 1]!;
  const id = dir.entries.get(name);
  return { error: null, parent: dir, name, inode: id === undefined ? null : inodes.get(id)! };
}

function newInode(id: number, kind: InodeKind, mode: number, target: string): Inode {
  return { id, kind, mode, names: [], size: 0, pages: new Map(), entries: new Map(), target, xattrs: new Map() };
}

function cloneInode(inode: Inode): Inode {
  return { ...inode, names: [...inode.names], pages: new Map(inode.pages), entries: new Map(inode.entries), xattrs: new Map(inode.xattrs) };
}

/** An inode's extended attributes as a snapshot carries them: sorted, none when empty. */
function xattrsOf(inode: Inode): { xattrs?: readonly Xattr[] } {
  if (inode.xattrs.size === 0) return {};
  return { xattrs: [...inode.xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) };
}

/** A snapshot's attributes, copied and checked (sorted, no repeats, none empty). */
function ownXattrs(path: string, xattrs: readonly Xattr[] | undefined): { xattrs?: readonly Xattr[] } {
  if (xattrs === undefined) return {};
  assert(xattrs.length > 0, `install ${path}: an empty list of extended attributes (absent means none)`);
  xattrs.forEach(([name, value], index) => {
    assert(typeof name === "string" && name !== "" && value instanceof Uint8Array, `install ${path}: attribute ${index} is not a name and bytes`);
    assert(index === 0 || xattrs[index - 1]![0] < name, `install ${path}: attributes not sorted by name at ${name}`);
  });
  return { xattrs: xattrs.map(([name, value]) => [name, value.slice()] as const) };
}

/** A tree entry's attributes: [name, hex], sorted, none when empty. */
function xattrEntries(inode: Inode): { xattrs?: readonly (readonly [string, string])[] } {
  const xattrs = xattrsOf(inode).xattrs;
  return xattrs === undefined ? {} : { xattrs: xattrs.map(([name, value]) => [name, Buffer.from(value).toString("hex")] as const) };
}

function withoutName(names: readonly Name[], parent: number, name: string): Name[] {
  return names.filter((each) => each.parent !== parent || each.name !== name);
}

/** Every path naming `inode` in `inodes`, sorted. */
function pathsOfInode(inodes: Map<number, Inode>, inode: Inode): string[] {
  const paths = inode.names.map((each) => {
    const parts = [each.name];
    for (let dir = inodes.get(each.parent)!; dir.id !== rootId; dir = inodes.get(dir.names[0]!.parent)!) parts.push(dir.names[0]!.name);
    return parts.reverse().join("/");
  });
  return paths.sort();
}

/** The inodes reachable from the root by their entries. */
function reachable(inodes: Map<number, Inode>): Map<number, Inode> {
  const kept = new Map<number, Inode>();
  const stack = [inodes.get(rootId)!];
  for (let inode = stack.pop(); inode !== undefined; inode = stack.pop()) {
    kept.set(inode.id, inode);
    for (const id of inode.entries.values()) stack.push(inodes.get(id)!);
  }
  return kept;
}

function usageOf(inode: Inode): number {
  return entryCostBytes + (inode.kind === "file" ? inode.size : inode.target.length);
}

function modeBits(mode: number): number {
  return mode & 0o7777;
}

function joinPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

function byPath(a: { readonly path: string }, b: { readonly path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** Writes into fresh pages (never in place: pages are shared), extending the size. */
function writeBytes(file: Inode, offset: number, data: Uint8Array): void {
  for (let done = 0; done < data.length; ) {
    const at = offset + done;
    const index = Math.floor(at / pageSize);
    const within = at - index * pageSize;
    const count = Math.min(pageSize - within, data.length - done);
    let page: Uint8Array;
    if (count === pageSize) page = data.slice(done, done + pageSize);
    else {
      page = new Uint8Array(pageSize);
      const old = file.pages.get(index);
      if (old !== undefined) page.set(old);
      page.set(data.subarray(done, done + count), within);
    }
    file.pages.set(index, page);
    done += count;
  }
  file.size = Math.max(file.size, offset + data.length);
}

/** Cuts or extends a file; the bytes past a cut are zeroed, so a later extension reads zeros. */
function truncateBytes(file: Inode, size: number): void {
  if (size < file.size) {
    for (const index of [...file.pages.keys()]) if (index * pageSize >= size) file.pages.delete(index);
    const last = Math.floor(size / pageSize);
    const page = file.pages.get(last);
    if (page !== undefined) {
      const cut = new Uint8Array(pageSize);
      cut.set(page.subarray(0, size - last * pageSize));
      file.pages.set(last, cut);
    }
  }
  file.size = size;
}

function readBytes(file: Inode, offset: number, length: number): Uint8Array {
  assert(offset >= 0 && offset + length <= file.size, `read of ${length} bytes at ${offset} past size ${file.size}`);
  const out = new Uint8Array(length);
  for (let done = 0; done < length; ) {
    const at = offset + done;
    const index = Math.floor(at / pageSize);
    const within = at - index * pageSize;
    const count = Math.min(pageSize - within, length - done);
    const page = file.pages.get(index);
    if (page !== undefined) out.set(page.subarray(within, within + count), done);
    done += count;
  }
  return out;
}

function fileSha256(file: Inode): string {
  const hash = createHash("sha256");
  for (let index = 0; index * pageSize < file.size; index++) {
    const page = file.pages.get(index) ?? zeroPage;
    hash.update(page.subarray(0, Math.min(pageSize, file.size - index * pageSize)));
  }
  return hash.digest("hex");
}

/** `inodes`: the layer naming it, for a file's other names (none for a preserved copy). */
function treeEntry(path: string, inode: Inode, inodes: Map<number, Inode> | null = null): TreeEntry {
  switch (inode.kind) {
    case "dir":
      return { path, kind: "dir", mode: inode.mode, ...xattrEntries(inode) };
    case "file": {
      const entry = { path, kind: "file", mode: inode.mode, size: inode.size, sha256: fileSha256(inode), ...xattrEntries(inode) } as const;
      if (inodes === null || inode.names.length <= 1) return entry;
      return { ...entry, links: pathsOfInode(inodes, inode).filter((each) => each !== path) };
    }
    case "symlink":
      return { path, kind: "symlink", target: inode.target, ...xattrEntries(inode) };
    default:
      return unreachable(inode.kind);
  }
}
