// The real DiskPort (core/ports.ts): a mirror module's replicated tree on this node's file
// system, below the interception. The core uses it on a secondary (applying what the
// primary ships), for a resync (reading and installing paths) and for its metadata.
//
// What it guarantees: calls complete in the order they were issued, one at a time (a read
// issued after a write sees it); each result is the error the file system gave, by its
// POSIX name (errors the core has no name for are EIO, and the driver's `problem` hook
// hears the original); `fsync` of a path returns once fsync(2) of it has; `fsync` of the
// whole tree (`path: null`) fsyncs every path this port changed since the last one (and
// those the native lane wrote: `writtenElsewhere`), and their directories, then the root
// (more than fsyncPathsMax of them: one syncfs of the file system instead). Metadata is
// appended to a journal, a whole record then records of what changed (sequence number,
// length, CRC-32), each fdatasynced: one write and one sync where a rewrite of a file
// costs two syncs and a rename (3–4× the time here); a crash leaves the old metadata or
// the new, never half of either (a torn record fails its CRC and is ignored). At 1 MiB
// the journal is compacted into one whole record (written aside, fsynced, renamed over,
// the directory fsynced).
//
// `root` is the tree as this process reaches it. When the FUSE replicator is mounted over
// the directory, it is the replicator's directory handle seen through /proc
// (`/proc/self/fd/N`): a walk from it starts below the mount, so this port changes the
// files underneath, not through the interception. The metadata file and the preserved
// copies live outside the tree.

import { constants, writeSync, type BigIntStats, type Stats } from "node:fs";
import { crc32 } from "node:zlib";
import type { FileHandle } from "node:fs/promises";
import { chmod, cp, lchown, link, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, rmdir, symlink, unlink } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { dirname, join } from "node:path";
import { assert, AssertionError } from "../../core/assert.ts";
import type { DiskError, DiskOp, DiskResult, FileTime, Owner, PathSnapshot, Xattr } from "../../core/mirror/disk-ops.ts";
import { diskErrors, isWithin, parentOf } from "../../core/mirror/disk-ops.ts";
import type { DiskPort } from "../../core/ports.ts";
import { fuseBinding } from "../../native/fuse.ts";

/** How metadata is written to and read from its file. */
export interface MetaCodec<Meta> {
  encode(meta: Meta): unknown;
  /** null: the value is not valid metadata. */
  decode(value: unknown): Meta | null;
  /** What changed from `before` to `after`, as JSON (with patch: the journal then records
   *  changes after a whole record, not the whole metadata every time). */
  diff?(before: Meta, after: Meta): unknown;
  /** `base` with `changes` (values diff returned) made in order; null when one is not valid. */
  patch?(base: Meta, changes: readonly unknown[]): Meta | null;
}

export interface RealDiskOptions<Meta> {
  /** The replicated tree's root directory as this process reaches it. */
  readonly root: string;
  /** The metadata file, outside the tree; its directory must exist. The journal is
   *  `<metaFile>.journal`; a `metaFile` of an older version is read while no journal
   *  exists, and removed once one does. */
  readonly metaFile: string;
  /** The journal's size beyond which it is compacted (default journalBytesMax). */
  readonly journalBytesMax?: number;
  /** Where preserved copies go (`<preserveDir>/<label>`), outside the tree. */
  readonly preserveDir: string;
  readonly codec: MetaCodec<Meta>;
  /** Hears file-system errors that the port reports as EIO, with their real code. */
  readonly problem?: (what: string, error: unknown) => void;
  /** The paths another writer (the native lane) changed in the tree since the last call,
   *  or null when it lost count: a whole-tree fsync covers them too (it walks the tree on
   *  null). Without it, what the lane wrote stayed in the page cache of both nodes while
   *  a checkpoint cleared its marks. */
  readonly writtenElsewhere?: () => readonly string[] | null;
  /** Paths left out of replication, whose names the mount may change without this port
   *  (drivers/real/mirror-volume.ts): never indexed as names of a file with several. */
  readonly excludes?: (path: string) => boolean;
}

/** Calls waiting for their turn; the core keeps far fewer in flight. */
export const queuedCallsMax = 100_000;
/** Files kept open for writes and fsyncs (the least recently used is closed first). */
export const openFilesMax = 64;
/** Paths remembered for the next whole-tree fsync before one is forced. */
export const unsyncedPathsMax = 100_000;
/** A whole-tree fsync of more paths than this is one syncfs(2) of the file system. */
export const fsyncPathsMax = 32;
/** A metadata journal larger than this is compacted at the next write. */
export const journalBytesMax = 1 << 20;

// A journal record: magic, sequence number, length and CRC-32 of the JSON, the JSON. A
// whole record holds the metadata; a change record what changed since the record before
// it (MetaCodec.diff), and follows it with the next sequence number. The magics carry the
// journal's version: 1 had whole records only ("TMJ1"), 2 change records ("TMJ2",
// "TMC2"), 3 change records that may add blocks to an entry ("TMJ3", "TMC3"), which a
// version-2 reader would ignore. This version reads all three, and its first write
// compacts an older journal into one of its own, which an older version refuses as
// unreadable (rather than reading the last whole record it knows and missing the changes
// after it).
export const journalMagics = {
  legacy: 0x314a4d54, // "TMJ1" (little-endian)
  whole2: 0x324a4d54, // "TMJ2"
  change2: 0x32434d54, // "TMC2"
  whole: 0x334a4d54, // "TMJ3"
  change: 0x33434d54, // "TMC3"
} as const;
const journalVersion = 3;
/** S_ISGID (Node's fs.constants has no set-ID bits). */
const setGroupIdBit = 0o2000;
/** A whole record's magic → its version, and the magic of the change records that may follow it. */
const wholeMagics = new Map<number, { readonly version: number; readonly change: number | null }>([
  [journalMagics.legacy, { version: 1, change: null }],
  [journalMagics.whole2, { version: 2, change: journalMagics.change2 }],
  [journalMagics.whole, { version: journalVersion, change: journalMagics.change }],
]);
const { whole: wholeMagic, change: changeMagic } = journalMagics;
const recordHeaderBytes = 20;
const recordBytesMax = 256 << 20;

export function journalRecord(seq: number, text: string, magic: number): Buffer {
  const payload = Buffer.from(text, "utf8");
  const record = Buffer.alloc(recordHeaderBytes + payload.length);
  record.writeUInt32LE(magic, 0);
  record.writeBigUInt64LE(BigInt(seq), 4);
  record.writeUInt32LE(payload.length, 12);
  record.writeUInt32LE(crc32(payload), 16);
  payload.copy(record, recordHeaderBytes);
  return record;
}

/** What the intact records of a journal hold: the last whole record and the change
 *  records after it, the last sequence number, where the intact records end, and whether
 *  they are of an older version. */
interface JournalRead {
  readonly whole: string;
  readonly changes: readonly string[];
  readonly seq: number;
  readonly end: number;
  readonly legacy: boolean;
}

function readJournal(bytes: Buffer): JournalRead | null {
  let read: { whole: string; changes: string[]; seq: number; change: number | null; legacy: boolean } | null = null;
  let at = 0;
  while (at + recordHeaderBytes <= bytes.length) {
    const magic = bytes.readUInt32LE(at);
    const whole = wholeMagics.get(magic);
    if (whole === undefined && magic !== journalMagics.change2 && magic !== journalMagics.change) break;
    const length = bytes.readUInt32LE(at + 12);
    const start = at + recordHeaderBytes;
    if (length > recordBytesMax || start + length > bytes.length) break;
    const payload = bytes.subarray(start, start + length);
    if (crc32(payload) !== bytes.readUInt32LE(at + 16)) break;
    const seq = Number(bytes.readBigUInt64LE(at + 4));
    if (whole === undefined) {
      // A change continues the record before it (a whole record of its version, or a change
      // after one), or the journal ends before it.
      if (read === null || read.change !== magic || seq !== read.seq + 1) break;
      read.changes.push(payload.toString("utf8"));
      read.seq = seq;
    } else if (read === null || seq > read.seq) {
      read = { whole: payload.toString("utf8"), changes: [], seq, change: whole.change, legacy: whole.version < journalVersion };
    }
    at = start + length;
  }
  return read === null ? null : { whole: read.whole, changes: read.changes, seq: read.seq, end: at, legacy: read.legacy };
}

const errorNames: ReadonlySet<string> = new Set<string>(diskErrors);

/** The metadata file cannot be read or does not hold valid metadata: the module must not
 *  start as a new node (it could take a stale tree for the reference). */
export class MetaUnreadableError extends Error {
  readonly code = "MIRROR_META_UNREADABLE";
  readonly file: string;
  constructor(file: string, reason: string) {
    super(`mirror metadata ${file} is unreadable (${reason}); move it aside only if this node's tree is to be resent whole from its peer`);
    this.file = file;
  }
}

export class RealDisk<Meta> implements DiskPort<Meta> {
  readonly #options: RealDiskOptions<Meta>;
  #tail: Promise<void> = Promise.resolve();
  #queued = 0;
  /** Paths changed since the last whole-tree fsync. */
  readonly #unsynced = new Set<string>();
  /** Regular files kept open (read-write, by path) so that a write or an fsync is one
   *  call, not three; dropped before anything that changes what a path names. */
  readonly #files = new Map<string, FileHandle>();
  /** More than unsyncedPathsMax changed: the next whole-tree fsync is a syncfs. */
  #overflowed = false;
  /** The names of each file with several (inode → paths), from one walk of the tree, kept
   *  up to date by the operations applied here (an unlink of one of a mail spool's second
   *  names must not walk the tree again); null until a read needs it, and after an install. */
  #links: Map<number, string[]> | null = null;
  #preserveCount = 0;
  /** The metadata journal: its open handle (null until the first write of this port),
   *  where its intact records end, the last sequence number, and whether its records are
   *  of an older version (the next write compacts them). */
  #journal: { handle: FileHandle | null; end: number; seq: number; legacy: boolean; wholeBytes: number } | null = null;
  /** The metadata the journal's records add up to, which the next change record is made
   *  against; null when not known (after a failed write: the next record is a whole one). */
  #persisted: Meta | null = null;

  constructor(options: RealDiskOptions<Meta>) {
    this.#options = options;
  }

  /** Reads the metadata file now; throws MetaUnreadableError when it exists but is not
   *  valid. Call before starting the module so a damaged file stops it with a message. */
  async checkMeta(): Promise<Meta | null> {
    return this.#loadMeta();
  }

  apply(op: DiskOp, done: (result: DiskResult) => void): void {
    // The data is the caller's: copy it now (the contract), not when the write runs.
    const owned: DiskOp = op.kind === "write" ? { ...op, data: op.data.slice() } : op;
    this.#enqueue(() => this.#apply(owned), done, (error) => this.#errorOf(`apply ${op.kind}`, error));
  }

  read(path: string, blocks: readonly number[] | "all", blockSize: number, done: (result: PathSnapshot | DiskError) => void): void {
    assert(blockSize > 0, `block size ${blockSize} is not positive`);
    this.#enqueue(() => this.#read(path, blocks, blockSize), done, (error) => this.#errorOf(`read ${path}`, error));
  }

  install(path: string, snapshot: PathSnapshot, blockSize: number, done: (result: DiskResult) => void): void {
    assert(blockSize > 0, `block size ${blockSize} is not positive`);
    this.#enqueue(() => this.#install(path, snapshot, blockSize), done, (error) => this.#errorOf(`install ${path}`, error));
  }

  preserve(paths: readonly string[], label: string, done: (result: { readonly place: string } | DiskError) => void): void {
    this.#enqueue(() => this.#preserve(paths, label), done, (error) => this.#errorOf(`preserve ${label}`, error));
  }

  persistMeta(meta: Meta, done: (result: DiskResult) => void): void {
    // The core never changes a metadata value it handed over: encoded when its turn comes.
    this.#enqueue(() => this.#persistMeta(meta), done, (error) => this.#errorOf("persist metadata", error));
  }

  loadMeta(done: (meta: Meta | null) => void): void {
    // The core's port has no error answer here; checkMeta() refused a damaged file before
    // the module started, so a failure now is the disk failing under us: crash loudly.
    this.#enqueue(() => this.#loadMeta(), done, (error) => {
      throw error;
    });
  }

  /** Runs `work` after every call issued before it; `done` gets its result on a later tick. */
  #enqueue<R>(work: () => Promise<R>, done: (result: R) => void, failed: (error: unknown) => R): void {
    assert(this.#queued < queuedCallsMax, `more than ${queuedCallsMax} disk calls queued`);
    this.#queued += 1;
    this.#tail = this.#tail.then(async () => {
      let result: R;
      try {
        result = await work();
      } catch (error) {
        // A broken assertion is a bug, not the disk's answer: it crashes.
        if (error instanceof AssertionError) throw error;
        result = failed(error);
      }
      this.#queued -= 1;
      done(result);
    });
  }

  #errorOf(what: string, error: unknown): DiskError {
    const given = (error as NodeJS.ErrnoException | null)?.code;
    // Linux's ENOTSUP is EOPNOTSUPP (one number, two names).
    const code = given === "ENOTSUP" ? "EOPNOTSUPP" : given;
    if (code !== undefined && errorNames.has(code)) return code as DiskError;
    this.#options.problem?.(what, error);
    return "EIO";
  }

  #at(path: string): string {
    // The root itself as `root/.`: `root` may be a symlink (/proc/self/fd/N), which lstat
    // and unlink would take for what they act on.
    return path === "" ? `${this.#options.root}/.` : join(this.#options.root, path);
  }

  #changed(path: string): void {
    if (this.#overflowed) return;
    this.#unsynced.add(path);
    if (this.#unsynced.size <= unsyncedPathsMax) return;
    // Too many to remember: the next whole-tree fsync walks the whole tree instead.
    this.#overflowed = true;
    this.#unsynced.clear();
  }

  async #apply(op: DiskOp): Promise<DiskResult> {
    if (op.kind === "rename") await this.#forget(op.from, op.to);
    if (op.kind === "unlink" || op.kind === "rmdir") await this.#forget(op.path);
    const relinked = this.#links === null ? null : await this.#beforeNames(op);
    switch (op.kind) {
      case "create":
        // Exactly the mode asked for, whatever our umask, after the owner; in one call on
        // this thread (a few microseconds), where four trips through libuv's pool cost the
        // module's creates a third of their time.
        throwErrno(fuseBinding().createFile(this.#at(op.path), op.mode, op.owner?.uid ?? -1, op.owner?.gid ?? -1), `create ${op.path}`);
        break;
      case "write":
        await this.#writeAt(op.path, op.offset, op.data);
        break;
      case "truncate":
        await (await this.#file(op.path)).truncate(op.size);
        break;
      case "rename":
        await this.#rename(op.from, op.to);
        this.#changed(op.from);
        break;
      case "unlink":
        await unlink(this.#at(op.path));
        break;
      case "link": {
        // link(2) itself gives EPERM for a directory, not for a symlink: the mirror does not
        // replicate a second name of a symlink (docs/replicator.md).
        const source = await lstat(this.#at(op.from));
        if (!source.isFile()) {
          await lstat(this.#at(op.to)).then(
            () => throwErrno(osConstants.errno.EEXIST, `link ${op.to}`),
            () => undefined,
          );
          return "EPERM";
        }
        await link(this.#at(op.from), this.#at(op.to));
        break;
      }
      case "mkdir":
        await mkdir(this.#at(op.path), op.mode);
        await this.#own(op.path, op.owner);
        // Exactly the mode asked for, whatever our umask, with the set-group-ID bit a
        // set-group-ID parent gives (mkdir's mode never carries it); but under a default
        // ACL the new directory's bits are the inherited ACL's, masked by the mode, as on a
        // local disk (no umask applies there; a chmod would rewrite the inherited mask).
        if (!this.#inheritedAcl(op.path)) await chmod(this.#at(op.path), op.mode | ((await lstat(this.#at(op.path))).mode & setGroupIdBit));
        break;
      case "rmdir":
        await rmdir(this.#at(op.path));
        break;
      case "setattr":
        await chmod(this.#at(op.path), op.mode);
        break;
      case "chown":
        await lchown(this.#at(op.path), op.uid, op.gid);
        break;
      case "times":
        await this.#times(op.path, op.atime, op.mtime);
        break;
      case "setxattr":
        throwErrno(fuseBinding().setXattr(this.#at(op.path), op.name, op.value, op.how === "create" ? 1 : op.how === "replace" ? 2 : 0), `setxattr ${op.path} ${op.name}`);
        break;
      case "removexattr":
        throwErrno(fuseBinding().removeXattr(this.#at(op.path), op.name), `removexattr ${op.path} ${op.name}`);
        break;
      case "symlink":
        await symlink(op.target, this.#at(op.path));
        await this.#own(op.path, op.owner);
        break;
      case "fsync":
        await (op.path === null ? this.#syncTree() : this.#fsync(op.path));
        return null;
    }
    if (relinked !== null) await relinked();
    this.#changed(op.kind === "rename" || op.kind === "link" ? op.to : op.path);
    return null;
  }

  /** What `op` will do to the names of files with several (before it is applied: the
   *  inode of a name it removes), as a step to run once it succeeded; null for none. */
  async #beforeNames(op: DiskOp): Promise<(() => Promise<void>) | null> {
    const links = this.#links!;
    const inodeAt = async (path: string): Promise<number | null> => {
      const stats = await lstatOrNull(this.#at(path));
      return stats !== null && stats.isFile() && stats.nlink > 1 ? stats.ino : null;
    };
    const drop = (ino: number | null, path: string): void => {
      const names = ino === null ? undefined : links.get(ino);
      if (names === undefined) return;
      const left = names.filter((each) => each !== path);
      if (left.length > 1) links.set(ino!, left);
      else links.delete(ino!);
    };
    switch (op.kind) {
      case "unlink": {
        const ino = await inodeAt(op.path);
        return async () => drop(ino, op.path);
      }
      case "link":
        return async () => {
          const stats = await lstatOrNull(this.#at(op.to));
          if (stats === null) return;
          links.set(stats.ino, [...(links.get(stats.ino) ?? [op.from]), op.to]);
        };
      case "rename": {
        if (op.from === op.to) return null;
        const replaced = await inodeAt(op.to);
        // Two names of one file: rename(2) does nothing.
        if (replaced !== null && replaced === (await inodeAt(op.from))) return null;
        return async () => {
          drop(replaced, op.to);
          for (const [ino, names] of links) links.set(ino, names.map((each) => (isWithin(each, op.from) ? op.to + each.slice(op.from.length) : each)));
        };
      }
      default:
        return null;
    }
  }

  /** utimensat without following a symlink, to the nanosecond (the FUSE addon's: Node's
   *  utimes takes seconds as a double); null keeps that time. */
  async #times(path: string, atime: FileTime | null, mtime: FileTime | null): Promise<void> {
    throwErrno(fuseBinding().setTimes(this.#at(path), atime, mtime), `utimensat ${path}`);
  }

  /** Gives a path its owner (never through a symlink); nothing when none is given. */
  async #own(path: string, owner: Owner | undefined): Promise<void> {
    if (owner !== undefined) await lchown(this.#at(path), owner.uid, owner.gid);
  }

  async #writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    const file = await this.#file(path);
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await file.write(data, written, data.length - written, offset + written);
      assert(bytesWritten > 0, `write of ${path} made no progress`);
      written += bytesWritten;
    }
  }

  /** The open file at `path` (a regular file: a directory answers EISDIR, a symlink ELOOP). */
  async #file(path: string): Promise<FileHandle> {
    const kept = this.#files.get(path);
    if (kept !== undefined) {
      this.#files.delete(path);
      this.#files.set(path, kept);
      return kept;
    }
    const file = await open(this.#at(path), constants.O_RDWR | constants.O_NOFOLLOW);
    if (this.#files.size >= openFilesMax) {
      const [oldest, handle] = this.#files.entries().next().value!;
      this.#files.delete(oldest);
      await handle.close();
    }
    this.#files.set(path, file);
    return file;
  }

  /** Closes the kept files at or under these paths (before they name something else). */
  async #forget(...paths: readonly string[]): Promise<void> {
    for (const [path, handle] of [...this.#files]) {
      if (!paths.some((each) => isWithin(path, each))) continue;
      this.#files.delete(path);
      await handle.close();
    }
  }

  /** Closes the files kept open; the port can be used again afterwards. */
  async close(): Promise<void> {
    await this.#forget("");
    const handle = this.#journal?.handle ?? null;
    if (handle !== null) {
      this.#journal!.handle = null;
      await handle.close();
    }
  }

  get #journalFile(): string {
    return `${this.#options.metaFile}.journal`;
  }

  async #rename(from: string, to: string): Promise<void> {
    try {
      await rename(this.#at(from), this.#at(to));
    } catch (error) {
      // A directory over a non-empty directory: Linux may say EEXIST; POSIX's name is ENOTEMPTY.
      if ((error as NodeJS.ErrnoException).code === "EEXIST") throw Object.assign(new Error("rename: target not empty"), { code: "ENOTEMPTY" });
      throw error;
    }
  }

  async #fsync(path: string): Promise<void> {
    const kept = this.#files.get(path);
    if (kept !== undefined) {
      await kept.sync();
      return;
    }
    const file = await open(this.#at(path), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      await file.sync();
    } finally {
      await file.close();
    }
  }

  /** fsyncs what this port changed since the last whole-tree fsync, then their
   *  directories (which hold the names), then the root. */
  async #syncTree(): Promise<void> {
    const elsewhere = this.#options.writtenElsewhere?.();
    if (elsewhere === null) {
      this.#overflowed = true;
      this.#unsynced.clear();
    } else {
      for (const path of elsewhere ?? []) this.#changed(path);
    }
    const paths = [...this.#unsynced];
    if (this.#overflowed || paths.length > fsyncPathsMax) {
      // One journal commit for the lot, where each path's fsync forced one of its own
      // (a checkpoint after a thousand creates stalled the tree for 40 ms here).
      this.#overflowed = false;
      throwErrno(await fuseBinding().syncFs(this.#options.root), "syncfs of the tree");
      for (const path of paths) this.#unsynced.delete(path);
      return;
    }
    const directories = new Set<string>([""]);
    for (const path of paths) {
      directories.add(parentOf(path));
      await this.#fsyncIfThere(path);
    }
    for (const directory of directories) await this.#fsyncIfThere(directory);
    for (const path of paths) this.#unsynced.delete(path);
  }

  async #fsyncIfThere(path: string): Promise<void> {
    try {
      await this.#fsync(path);
    } catch (error) {
      // Gone since (renamed or removed: its directory's fsync covers that), or a symlink.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR" && code !== "ELOOP") throw error;
    }
  }

  async #read(path: string, blocks: readonly number[] | "all", blockSize: number): Promise<PathSnapshot> {
    // One lstat, in nanoseconds (a symlink's modification time is read from it).
    const stats = await lstatOrNull(this.#at(path), { bigint: true });
    if (stats === null) return { kind: "absent" };
    const owner: Owner = { uid: Number(stats.uid), gid: Number(stats.gid) };
    const mode = Number(stats.mode) & 0o7777;
    if (stats.isDirectory()) return { kind: "dir", mode, owner, children: (await readdir(this.#at(path))).sort(), ...this.#xattrsOf(path) };
    if (stats.isSymbolicLink()) return { kind: "symlink", target: await readlink(this.#at(path)), owner, mtime: timeOf(stats.mtimeNs), ...this.#xattrsOf(path) };
    assert(stats.isFile(), `${path} is neither a file, a directory nor a symlink`);
    const file = await open(this.#at(path), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const fileStats = await file.stat({ bigint: true });
      const size = Number(fileStats.size);
      const count = Math.ceil(size / blockSize);
      const wanted = blocks === "all" ? Array.from({ length: count }, (_, index) => index) : blocks.filter((index) => index < count);
      const read = new Map<number, Uint8Array>();
      // One read per run of consecutive blocks (a resync chunk is one run): a read per
      // block cost a thread-pool round trip per 4 KiB, a quarter of the resync's time.
      for (const [first, count] of runsOf(wanted)) {
        const length = Math.min(count * blockSize, size - first * blockSize);
        const buffer = new Uint8Array(length);
        let bytesRead = 0;
        while (bytesRead < length) {
          const { bytesRead: got } = await file.read(buffer, bytesRead, length - bytesRead, first * blockSize + bytesRead);
          if (got === 0) break; // the file shrank meanwhile: what is there
          bytesRead += got;
        }
        for (let index = first; index < first + count && (index - first) * blockSize < bytesRead; index++) {
          const start = (index - first) * blockSize;
          read.set(index, buffer.subarray(start, Math.min(start + blockSize, bytesRead)));
        }
      }
      const snapshot = { kind: "file", mode, owner, mtime: timeOf(fileStats.mtimeNs), size, blocks: read, ...this.#xattrsOf(path) } as const;
      if (fileStats.nlink <= 1n) return snapshot;
      const names = (await this.#namesOf(Number(fileStats.ino))).filter((each) => each !== path);
      return names.length === 0 ? snapshot : { ...snapshot, links: names };
    } finally {
      await file.close();
    }
  }

  async #install(path: string, snapshot: PathSnapshot, blockSize: number): Promise<DiskResult> {
    await this.#forget(path);
    const at = this.#at(path);
    const stats = await lstatOrNull(at);
    this.#changed(path);
    // An install may remove a tree or bind a name: the next read of several names walks again.
    this.#links = null;
    if (snapshot.kind === "absent") {
      if (stats !== null) await rm(at, { recursive: true, force: true });
      return null;
    }
    // Bound to the file another listed name has here, or to one of its own (docs/replicator.md).
    const shared = snapshot.kind === "file" && snapshot.links !== undefined ? await this.#sharedFile(path, snapshot.links) : null;
    const detach = snapshot.kind === "file" && snapshot.links !== undefined && shared === null && stats !== null && stats.isFile() && stats.nlink > 1;
    const keep = stats !== null && (shared !== null ? stats.isFile() && stats.ino === shared.ino : (snapshot.kind === "dir" && stats.isDirectory()) || (snapshot.kind === "file" && stats.isFile() && !detach));
    if (stats !== null && !keep) await rm(at, { recursive: true, force: true });
    if (path !== "") await this.#makeParents(parentOf(path));
    if (shared !== null && !keep) await link(this.#at(shared.path), at);
    switch (snapshot.kind) {
      case "dir":
        if (!keep) await mkdir(at, snapshot.mode);
        await this.#own(path, snapshot.owner);
        await chmod(at, snapshot.mode);
        this.#installXattrs(path, snapshot.xattrs);
        return null;
      case "symlink":
        await symlink(snapshot.target, at);
        await this.#own(path, snapshot.owner);
        this.#installXattrs(path, snapshot.xattrs);
        if (snapshot.mtime !== undefined) await this.#times(path, null, snapshot.mtime);
        return null;
      case "file":
        await this.#installFile(at, snapshot, blockSize);
        this.#installXattrs(path, snapshot.xattrs);
        // After its blocks: each chunk of a file carries the time read with it, the last one's stays.
        if (snapshot.mtime !== undefined) await this.#times(path, null, snapshot.mtime);
        return null;
    }
  }

  async #installFile(at: string, snapshot: PathSnapshot & { kind: "file" }, blockSize: number): Promise<void> {
    const file = await open(at, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, snapshot.mode);
    try {
      await file.truncate(snapshot.size);
      // One write per run of consecutive whole blocks (and the partial one that may end it).
      let run: { first: number; parts: Uint8Array[] } | null = null;
      const flush = async () => {
        if (run === null) return;
        const { first, parts } = run;
        run = null;
        let done = 0;
        const total = parts.reduce((sum, part) => sum + part.length, 0);
        while (done < total) {
          const { bytesWritten } = await file.writev(done === 0 ? parts : [Buffer.concat(parts).subarray(done)], first * blockSize + done);
          done += bytesWritten;
        }
      };
      for (const [index, data] of [...snapshot.blocks].sort((a, b) => a[0] - b[0])) {
        assert(index * blockSize + data.length <= snapshot.size, `block ${index} of ${at} lies past its size ${snapshot.size}`);
        const last: Uint8Array | undefined = run?.parts.at(-1);
        if (run !== null && index === run.first + run.parts.length && last !== undefined && last.length === blockSize) run.parts.push(data);
        else {
          await flush();
          run = { first: index, parts: [data] };
        }
      }
      await flush();
      if (snapshot.owner !== undefined) await file.chown(snapshot.owner.uid, snapshot.owner.gid);
      await file.chmod(snapshot.mode);
    } finally {
      await file.close();
    }
  }

  /** Whether the directory `path` was given a default ACL by its parent's (a new one has
   *  one only by inheritance). */
  #inheritedAcl(path: string): boolean {
    const found = fuseBinding().xattrs(this.#at(path));
    return typeof found !== "number" && found.some(([name]) => name === "system.posix_acl_default");
  }

  /** The extended attributes of `path` as a snapshot carries them: sorted by name, none
   *  when it has none (a file system without them, EOPNOTSUPP, has none). */
  #xattrsOf(path: string): { xattrs?: readonly Xattr[] } {
    const found = fuseBinding().xattrs(this.#at(path));
    if (typeof found === "number") {
      if (found === osConstants.errno.EOPNOTSUPP) return {};
      throwErrno(found, `listxattr ${path}`);
    }
    const xattrs = found as readonly Xattr[];
    return xattrs.length === 0 ? {} : { xattrs: [...xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) };
  }

  /** Gives `path` exactly these extended attributes: the others removed, the changed set. */
  #installXattrs(path: string, xattrs: readonly Xattr[] | undefined): void {
    const at = this.#at(path);
    const wanted = new Map(xattrs ?? []);
    const current = this.#xattrsOf(path).xattrs ?? [];
    for (const [name, value] of current) {
      const want = wanted.get(name);
      if (want === undefined) throwErrno(fuseBinding().removeXattr(at, name), `removexattr ${path} ${name}`);
      else if (Buffer.compare(want, value) === 0) wanted.delete(name);
    }
    for (const [name, value] of wanted) throwErrno(fuseBinding().setXattr(at, name, value, 0), `setxattr ${path} ${name}`);
  }

  /** The first of `links` (not `path`) that names a regular file here, with its inode. */
  async #sharedFile(path: string, links: readonly string[]): Promise<{ readonly path: string; readonly ino: number } | null> {
    for (const other of links) {
      if (other === path) continue;
      const stats = await lstatOrNull(this.#at(other));
      if (stats?.isFile() === true) return { path: other, ino: stats.ino };
    }
    return null;
  }

  /** Every name of the file `ino` in the tree, sorted: one walk of the whole tree, kept until
   *  something names or unnames a file (a resync reads many files with several names). */
  async #namesOf(ino: number): Promise<readonly string[]> {
    if (this.#links === null) {
      const found = new Map<number, string[]>();
      const walk = async (dir: string): Promise<void> => {
        const entries = await readdir(this.#at(dir), { withFileTypes: true }).catch(() => []);
        for (const entry of entries) {
          const path = dir === "" ? entry.name : `${dir}/${entry.name}`;
          if (entry.isDirectory()) await walk(path);
          else if (entry.isFile() && this.#options.excludes?.(path) !== true) {
            const stats = await lstatOrNull(this.#at(path));
            if (stats === null || stats.nlink <= 1) continue;
            const names = found.get(stats.ino) ?? [];
            names.push(path);
            found.set(stats.ino, names);
          }
        }
      };
      await walk("");
      this.#links = found;
    }
    return [...(this.#links.get(ino) ?? [])].sort();
  }

  /** Creates `path` and its missing ancestors as directories (mode 0755, as a resync
   *  installs each directory's own attributes when it reaches it). */
  async #makeParents(path: string): Promise<void> {
    if (path === "") return;
    const stats = await lstatOrNull(this.#at(path));
    if (stats?.isDirectory() === true) return;
    if (stats !== null) await rm(this.#at(path), { recursive: true, force: true });
    await this.#makeParents(parentOf(path));
    await mkdir(this.#at(path), 0o755);
    this.#changed(path);
  }

  async #preserve(paths: readonly string[], label: string): Promise<{ readonly place: string }> {
    this.#preserveCount += 1;
    // The core's label names generations (`splitbrain-2@n1-n1`): one directory name.
    const name = label.replace(/[^A-Za-z0-9._@-]/g, "_");
    const place = join(this.#options.preserveDir, `${name}-${Date.now()}-${this.#preserveCount}`);
    await mkdir(place, { recursive: true, mode: 0o700 });
    for (const path of paths) {
      if ((await lstatOrNull(this.#at(path))) === null) continue;
      const target = join(place, path);
      await mkdir(dirname(target), { recursive: true });
      await cp(this.#at(path), target, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
      await this.#copyXattrs(this.#at(path), target);
    }
    return { place };
  }

  /** Gives the copy at `to` (a tree cp made) the extended attributes of `from`, which cp
   *  leaves behind. Best effort: a copy that cannot take one (the preserved area's file
   *  system keeps no such namespace) is still the copy; the problem hook hears why. */
  async #copyXattrs(from: string, to: string): Promise<void> {
    const found = fuseBinding().xattrs(from);
    if (typeof found === "number") {
      if (found !== osConstants.errno.EOPNOTSUPP) this.#options.problem?.(`preserve: listxattr ${from}`, Object.assign(new Error(`errno ${found}`), { errno: found }));
    } else {
      for (const [name, value] of found) {
        const errno = fuseBinding().setXattr(to, name, value, 0);
        if (errno !== 0) this.#options.problem?.(`preserve: setxattr ${to} ${name}`, Object.assign(new Error(`errno ${errno}`), { errno }));
      }
    }
    const stats = await lstat(from);
    if (!stats.isDirectory()) return;
    for (const name of await readdir(from)) await this.#copyXattrs(join(from, name), join(to, name));
  }

  async #persistMeta(meta: Meta): Promise<DiskResult> {
    // Where the last record ends, when no call of this port read the journal yet.
    if (this.#journal === null) await this.#loadMeta();
    const journal = this.#journal ?? { handle: null, end: 0, seq: 0, legacy: false, wholeBytes: 0 };
    this.#journal = journal;
    const { codec } = this.#options;
    const base = this.#persisted;
    // Not known again until this record is written: after a failure, a whole record.
    this.#persisted = null;
    const whole = () => journalRecord(journal.seq + 1, JSON.stringify(codec.encode(meta)), wholeMagic);
    const record = base !== null && codec.diff !== undefined && codec.patch !== undefined ? journalRecord(journal.seq + 1, JSON.stringify(codec.diff(base, meta)), changeMagic) : whole();
    if (journal.handle === null && journal.end > 0 && !journal.legacy) journal.handle = await open(this.#journalFile, constants.O_WRONLY);
    // Compacted once its changes add up to its whole record again (past the bound): a whole
    // record of more than the bound (a file with a million marked blocks) was otherwise
    // rewritten at every write.
    const bound = Math.max(this.#options.journalBytesMax ?? journalBytesMax, 2 * journal.wholeBytes);
    if (journal.handle === null || journal.legacy || journal.end + record.length > bound) {
      await this.#compact(record.readUInt32LE(0) === wholeMagic ? record : whole());
      journal.legacy = false;
    } else {
      // Into the page cache on this thread (a few microseconds for a change record), then
      // the sync in the pool: one trip there, not two.
      for (let done = 0; done < record.length; ) done += writeSync(journal.handle.fd, record, done, record.length - done, journal.end + done);
      await journal.handle.datasync();
      journal.end += record.length;
    }
    journal.seq++;
    this.#persisted = meta;
    return null;
  }

  /** A new journal holding `record` alone, in place of the old one (and of a metadata file
   *  of an older version). */
  async #compact(record: Buffer): Promise<void> {
    const file = this.#journalFile;
    const temporary = `${file}.new`;
    const journal = this.#journal!;
    if (journal.handle !== null) {
      await journal.handle.close();
      journal.handle = null;
    }
    const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
    try {
      await handle.write(record, 0, record.length, 0);
      await handle.sync();
    } catch (error) {
      await handle.close();
      throw error;
    }
    await rename(temporary, file);
    journal.handle = handle;
    journal.end = record.length;
    journal.wholeBytes = record.length;
    await rm(this.#options.metaFile, { force: true });
    const directory = await open(dirname(file), constants.O_RDONLY);
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }

  async #loadMeta(): Promise<Meta | null> {
    let file = this.#journalFile;
    let text: string;
    let changes: readonly string[] = [];
    try {
      const bytes = await readFile(file);
      const read = readJournal(bytes);
      if (read === null) throw new MetaUnreadableError(file, `no intact record in its ${bytes.length} bytes`);
      this.#journal = { handle: this.#journal?.handle ?? null, end: read.end, seq: read.seq, legacy: read.legacy, wholeBytes: recordHeaderBytes + Buffer.byteLength(read.whole, "utf8") };
      text = read.whole;
      changes = read.changes;
    } catch (error) {
      if (error instanceof MetaUnreadableError) throw error;
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw new MetaUnreadableError(file, (error as Error).message);
      // No journal: the metadata file of an older version, if any.
      file = this.#options.metaFile;
      try {
        text = await readFile(file, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw new MetaUnreadableError(file, (error as Error).message);
      }
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new MetaUnreadableError(file, `not JSON: ${(error as Error).message}`);
    }
    const { codec } = this.#options;
    const whole = codec.decode(value);
    if (whole === null) throw new MetaUnreadableError(file, "not valid mirror metadata");
    if (changes.length === 0) {
      this.#persisted = file === this.#journalFile ? whole : null;
      return whole;
    }
    if (codec.patch === undefined) throw new MetaUnreadableError(file, `${changes.length} change records, which this codec cannot read`);
    let parsed: unknown[];
    try {
      parsed = changes.map((change) => JSON.parse(change) as unknown);
    } catch (error) {
      throw new MetaUnreadableError(file, `a change record is not JSON: ${(error as Error).message}`);
    }
    const meta = codec.patch(whole, parsed);
    if (meta === null) throw new MetaUnreadableError(file, "a change record is not a valid change of mirror metadata");
    this.#persisted = meta;
    return meta;
  }
}

/** Throws an addon call's errno (0: nothing) as Node's fs calls do, by its code. */
function throwErrno(errno: number, what: string): void {
  if (errno === 0) return;
  const code = errno === osConstants.errno.EOPNOTSUPP ? "EOPNOTSUPP" : (Object.entries(osConstants.errno).find(([, value]) => value === errno)?.[0] ?? "EIO");
  throw Object.assign(new Error(`${what}: ${code}`), { code });
}

/** Sorted block indexes as runs of consecutive ones: [first, count]. */
function runsOf(indexes: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const index of [...indexes].sort((a, b) => a - b)) {
    const last = runs.at(-1);
    if (last !== undefined && index === last[0] + last[1]) last[1] += 1;
    else if (last === undefined || index >= last[0] + last[1]) runs.push([index, 1]); // not a repeat
  }
  return runs;
}

/** A time in nanoseconds since the epoch as the port's FileTime. */
function timeOf(ns: bigint): FileTime {
  const s = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  return { s: Number(s), ns: Number(ns - s * 1_000_000_000n) };
}

async function lstatOrNull(path: string): Promise<Stats | null>;
async function lstatOrNull(path: string, options: { bigint: true }): Promise<BigIntStats | null>;
async function lstatOrNull(path: string, options?: { bigint: true }): Promise<Stats | BigIntStats | null> {
  try {
    return options === undefined ? await lstat(path) : await lstat(path, options);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw error;
  }
}
