// The operations a mirror module intercepts on its replicated trees, the results a disk
// gives them, and what a resync reads and installs. Shared by the core (which decides
// where each operation goes), the disk port's simulated and real twins, and the checker.
// A pure module: types and small pure helpers.
//
// Paths are relative to the module's replicated root, `/`-separated, without a leading
// or trailing `/`, `.` or `..` segments (`pg/base/1/112`); "" names the root itself.

/** Who owns a path. Absent on an operation or a snapshot: the disk's own ids (the
 *  simulator does not model owners; the real disk gives a new path the ids of the process
 *  that created it through the replicator). */
export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

/** A time of a path: seconds since the epoch (negative before it) and nanoseconds. */
export interface FileTime {
  readonly s: number;
  readonly ns: number;
}

/** One modifying operation on the replicated tree, as the application issued it. */
export type DiskOp =
  | { readonly kind: "create"; readonly path: string; readonly mode: number; readonly owner?: Owner }
  /** Writes `data` at `offset`, extending the file (with zeros) when needed. */
  | { readonly kind: "write"; readonly path: string; readonly offset: number; readonly data: Uint8Array }
  | { readonly kind: "truncate"; readonly path: string; readonly size: number }
  /** Replaces `to` if it exists (a file, or an empty directory when `from` is one). */
  | { readonly kind: "rename"; readonly from: string; readonly to: string }
  | { readonly kind: "unlink"; readonly path: string }
  /** link(2): `to` becomes another name of the file `from` (a regular file: a directory or a
   *  symlink is EPERM; an existing `to` is EEXIST). */
  | { readonly kind: "link"; readonly from: string; readonly to: string }
  | { readonly kind: "mkdir"; readonly path: string; readonly mode: number; readonly owner?: Owner }
  | { readonly kind: "rmdir"; readonly path: string }
  | { readonly kind: "setattr"; readonly path: string; readonly mode: number }
  /** chown(2) without following a symlink; -1 leaves that id as it is. */
  | { readonly kind: "chown"; readonly path: string; readonly uid: number; readonly gid: number }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string; readonly owner?: Owner }
  /** utimensat(2) without following a symlink: null leaves that time as it is (UTIME_OMIT);
   *  "now" comes resolved by the node that took the call, so both nodes set the same. */
  | { readonly kind: "times"; readonly path: string; readonly atime: FileTime | null; readonly mtime: FileTime | null }
  /** lsetxattr(2): sets the extended attribute `name` (with its namespace: `user.mime`) of
   *  `path`, never through a symlink; `how` "create" fails with EEXIST when it is there,
   *  "replace" with ENODATA when it is not; absent, either. */
  | { readonly kind: "setxattr"; readonly path: string; readonly name: string; readonly value: Uint8Array; readonly how?: "create" | "replace" }
  /** lremovexattr(2): ENODATA when `path` has no attribute `name`. */
  | { readonly kind: "removexattr"; readonly path: string; readonly name: string }
  /** Makes what was written to `path` durable (the whole tree when `path` is null). */
  | { readonly kind: "fsync"; readonly path: string | null };

/** The errors a local disk gives, by their POSIX names. */
export type DiskError = "ENOENT" | "EEXIST" | "ENOTDIR" | "EISDIR" | "ENOTEMPTY" | "EINVAL" | "ENOSPC" | "EIO" | "EROFS" | "EPERM" | "EXDEV" | "ENODATA" | "EOPNOTSUPP";

/** Every DiskError, for codecs and drivers that check a name they were given. */
export const diskErrors: readonly DiskError[] = ["ENOENT", "EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "EINVAL", "ENOSPC", "EIO", "EROFS", "EPERM", "EXDEV", "ENODATA", "EOPNOTSUPP"];

/** An operation's result: null when it succeeded. */
export type DiskResult = DiskError | null;

/** Errors that mean the disk itself failed, not that the operation made no sense for the
 *  tree: EIO, ENOSPC, and EROFS (the file system under the tree made read-only, as ext4
 *  does after errors: nothing will succeed there until an operator steps in). */
export function isMediaError(error: DiskResult): boolean {
  return error === "ENOSPC" || error === "EIO" || error === "EROFS";
}

/** One extended attribute: its name (with its namespace) and value. */
export type Xattr = readonly [name: string, value: Uint8Array];

/** What a resync copies of one path: its kind and attributes, and the blocks asked for.
 *  `xattrs`: its extended attributes sorted by name, absent when it has none; an install
 *  gives the path exactly these (with every chunk of a file: they are attributes). */
export type PathSnapshot =
  | { readonly kind: "absent" }
  | { readonly kind: "dir"; readonly mode: number; readonly children: readonly string[]; readonly owner?: Owner; readonly xattrs?: readonly Xattr[] }
  /** `mtime`: its modification time (absent: the disk does not keep times, as the simulator's). */
  | { readonly kind: "symlink"; readonly target: string; readonly owner?: Owner; readonly mtime?: FileTime; readonly xattrs?: readonly Xattr[] }
  | {
      readonly kind: "file";
      readonly mode: number;
      readonly owner?: Owner;
      readonly mtime?: FileTime;
      readonly xattrs?: readonly Xattr[];
      readonly size: number;
      /** Block index → the block's bytes (the last block may be short). */
      readonly blocks: ReadonlyMap<number, Uint8Array>;
      /** The file's other names in the tree (hard links), sorted. A read gives them when
       *  there are any. On an install they bind `path`: present (even empty), `path` is made
       *  a name of the file one of them names here, or, when none does, of a file of its own
       *  (no longer sharing another name's); absent, the blocks go into whatever file
       *  `path` names. The resync sends them with every chunk of a path sent whole (its
       *  name may have changed), never with a path's changed blocks alone. */
      readonly links?: readonly string[];
    };

/** The paths an operation changes (a rename changes both names). */
export function pathsOf(op: DiskOp): readonly string[] {
  switch (op.kind) {
    case "rename":
    case "link":
      return [op.from, op.to];
    case "fsync":
      return op.path === null ? [] : [op.path];
    default:
      return [op.path];
  }
}

/** Whether `op` changes only its path's attributes (mode, owner, times, extended
 *  attributes): never its contents, its name or its parent directory. */
export function isAttributeOp(op: DiskOp): op is Extract<DiskOp, { kind: "setattr" | "chown" | "times" | "setxattr" | "removexattr" }> {
  return op.kind === "setattr" || op.kind === "chown" || op.kind === "times" || op.kind === "setxattr" || op.kind === "removexattr";
}

/** The namespaces of extended attributes a tree keeps (others are EOPNOTSUPP); `user.`
 *  ones only on regular files and directories (EPERM elsewhere), as Linux's. */
export const xattrNamespaces: readonly string[] = ["user.", "trusted.", "security."];

/** The blocks of `blockSize` bytes a write covers, or null for an operation that is not a write. */
export function blocksOfWrite(op: DiskOp, blockSize: number): { first: number; last: number } | null {
  if (op.kind !== "write" || op.data.length === 0) return null;
  return { first: Math.floor(op.offset / blockSize), last: Math.floor((op.offset + op.data.length - 1) / blockSize) };
}

/** The parent directory of a path ("" for a top-level name). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/** Whether `path` is `ancestor` or lies under it. */
export function isWithin(path: string, ancestor: string): boolean {
  return ancestor === "" || path === ancestor || path.startsWith(`${ancestor}/`);
}

/** One line for logs and traces: `write pg/x @4096+512`. */
export function describeOp(op: DiskOp): string {
  switch (op.kind) {
    case "write":
      return `write ${op.path} @${op.offset}+${op.data.length}`;
    case "truncate":
      return `truncate ${op.path} ${op.size}`;
    case "rename":
      return `rename ${op.from} ${op.to}`;
    case "link":
      return `link ${op.from} ${op.to}`;
    case "fsync":
      return `fsync ${op.path ?? "(all)"}`;
    case "symlink":
      return `symlink ${op.path} -> ${op.target}`;
    case "setxattr":
    case "removexattr":
      return `${op.kind} ${op.path} ${op.name}`;
    default:
      return `${op.kind} ${op.path}`;
  }
}
