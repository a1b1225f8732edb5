// Typed access to the replicator's FUSE addon (native/src/fuse-*.cc, built into
// native/build/Release/tandem_fuse.node by `npm ci` or `node native/build.ts`): a passthrough
// file system mounted over an existing directory and served from native threads, so that
// the application's reads and writes never wait for the event loop. Loaded on first use,
// apart from the network addon (native/index.ts): each builds and loads on its own.
// docs/replicator.md describes the design and what comes next.

import { closeSync, existsSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DiskOp, FileTime } from "../core/mirror/disk-ops.ts";

/** What the mount does with operations that change the tree. */
export type FuseMode =
  /** Applies them to the files underneath (a plain passthrough). */
  | "passthrough"
  /** Refuses them with EROFS, opens for writing included; caches nothing (the tree may
   *  change underneath: a secondary's). */
  | "readonly"
  /** Hands each to `intercept` and answers the application what `answer` says. */
  | "intercept";

export interface FuseMountOptions {
  /** Default "passthrough". */
  readonly mode?: FuseMode;
  /** Intercept mode: called on the JavaScript thread for each change, in DiskOp form,
   *  while the application's call waits for `answer(id, errno)`. Never do I/O through
   *  the mount on this thread: the worker that serves it would wait for this thread. */
  readonly intercept?: (id: number, op: DiskOp) => void;
  /** Intercept mode: the module's lane (docs/replicator.md, "The lane"): writes and
   *  fsyncs it admits never reach `intercept`. */
  readonly lane?: FuseLane;
  /** Intercept mode: paths (relative, as a DiskOp names them) left out of replication,
   *  with everything below them: a change whose paths all lie there is applied here, as by
   *  the passthrough, and never reaches `intercept` (counted in `excludedOps`). */
  readonly excluded?: readonly string[];
  /** Lets every user reach the mount (FUSE's allow_other); the default when root. The
   *  kernel still checks each access against the files' own permissions. */
  readonly allowOther?: boolean;
  /** libfuse's fusermount3 helper detaches the mount when this process dies, even on
   *  SIGKILL (default true). */
  readonly autoUnmount?: boolean;
  /** Largest read request, bytes (4096 to 1 MiB; default: the kernel's). */
  readonly maxReadSize?: number;
  /** Largest write request, bytes (4096 to 1 MiB; default 1 MiB). */
  readonly maxWriteSize?: number;
  /** libfuse worker threads at most (default 16), and kept idle at most (default 8). */
  readonly threadCountMax?: number;
  readonly idleThreadCountMax?: number;
}

/** The operations the passthrough counts, as named in FuseStats.operations. */
export type FuseOperationKind =
  | "getattr" | "readlink" | "mknod" | "mkdir" | "unlink" | "rmdir" | "symlink" | "rename" | "link"
  | "chmod" | "chown" | "truncate" | "open" | "create" | "read" | "write" | "statfs" | "release"
  | "fsync" | "opendir" | "readdir" | "releasedir" | "fsyncdir" | "utimens" | "fallocate" | "lseek"
  | "setxattr" | "getxattr" | "listxattr" | "removexattr";

/** Counts since the mount, read from atomics (cheap enough to poll). */
export interface FuseStats {
  /** False once unmounted, from here or from outside. */
  readonly mounted: boolean;
  readonly operations: Readonly<Record<FuseOperationKind, number>>;
  /** Operations that answered an error (ENOENT of a lookup included). */
  readonly errors: number;
  /** Changes handed to `intercept`, and those not answered yet. */
  readonly intercepted: number;
  /** Writes and fsyncs the lane took. */
  readonly laneOps: number;
  /** Changes applied here because their paths are all excluded (`excluded`, `exclude`). */
  readonly excludedOps: number;
  readonly waiting: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** What libfuse's session loop returned (0 until it ended, and after a clean end). */
  readonly loopResult: number;
  /** libfuse's last log line, or null. */
  readonly lastMessage: string | null;
}

/** One passthrough mount over a directory. It lasts until unmount() (dropping this object
 *  does not unmount), or until the process ends: a normal exit or process.exit() unmounts
 *  with force; after SIGKILL, autoUnmount's helper detaches it. */
export interface FuseMount {
  /** The directory, resolved (realpath). */
  readonly dir: string;
  /** The directory handle opened before the mount: `/proc/self/fd/<handleFd>` reaches
   *  the files underneath from this process (what the mirror's disk port works on). */
  readonly handleFd: number;
  stats(): FuseStats;
  /** Answers intercepted operation `id`: 0, or a positive errno the application gets.
   *  False when nothing waits under that id (answered already, or the mount stopped). */
  answer(id: number, errno: number): boolean;
  /** Intercept mode: `path` (relative) is left out of replication from now on: its changes
   *  are applied here (for rules only JavaScript tests, learned as paths come). */
  exclude(path: string): void;
  /** Unmounts and stops the threads before it returns; idempotent. Throws with code EBUSY
   *  while files are open under the mount, unless `force`: then the connection is aborted
   *  first (those files answer ENOTCONN) and the mount detached; intercepted operations
   *  still waiting are answered EIO. */
  unmount(options?: { readonly force?: boolean }): void;
}

/** What a lane reports (core/mirror/lane.ts's LaneReport; ids are its mount's). */
export interface NativeLaneReport {
  readonly epoch: number | null;
  readonly stopped: boolean;
  readonly why: string;
  /** Per path, the blocks its completed writes changed, as runs: `[first, count, ...]`. */
  readonly marks: readonly (readonly [string, readonly number[]])[];
  /** Paths written since the last report, completed or not, with the extents (of the hot
   *  map) those writes fell in. */
  readonly touched: readonly (readonly [string, readonly number[]])[];
  readonly resubmit: readonly { readonly id: number; readonly op: DiskOp }[];
  readonly completed: number;
  /** Operations completed with an error here (the first few; core/mirror/lane.ts). */
  readonly errors: readonly { readonly path: string; readonly op: string; readonly errno: number }[];
  /** Paths of operations whose results differed on the two nodes (core/mirror/lane.ts). */
  readonly differed: readonly string[];
}

/** The native lane of one mirror module (native/src/fuse-lane.h). */
export interface FuseLane {
  /** The secondary's side: accepts the primary's lane connections. */
  listen(host: string, port: number): void;
  /** The primary's lane, connecting to the peer's at host:port; `on(null, epoch)`: the lane
   *  of a primary alone (applied here only; off() waits for what is under way). */
  on(session: number | null, epoch: number, host?: string, port?: number): void;
  off(): NativeLaneReport;
  harvest(): NativeLaneReport;
  arm(path: string, extents: readonly number[]): void;
  follow(session: number | null, epoch?: number): void;
  /** A lane that stops on its own reports here, in order with the mount's intercepts. */
  onReport(report: (report: NativeLaneReport) => void): void;
  /** `durableWrites`: writes made durable on both before they completed (a committed
   *  path's); `sparedFsyncs`: fsyncs completed at once, every write before them durable on
   *  both (docs/replicator.md, "Commits"). */
  stats(): { readonly completed: number; readonly applied: number; readonly durableWrites: number; readonly sparedFsyncs: number };
  /** The paths it wrote into the tree (as primary or secondary) since the last call, or
   *  null when it lost count (more than 100000): what the disk port's whole-tree fsync
   *  must cover besides its own changes. */
  takeWritten(): string[] | null;
  close(): void;
}

export interface FuseBinding {
  /** Opens `dir` (O_PATH), then mounts over it; throws with code FUSE_MOUNT_FAILED and
   *  libfuse's message, or an errno code, when it cannot. */
  readonly FuseMount: new (dir: string, options?: FuseMountOptions) => FuseMount;
  /** `handleFd`: the tree underneath (a secondary applies through it); `key`: 16 bytes at least. */
  readonly FuseLane: new (handleFd: number, key: Uint8Array, blockSize: number, extentBytes: number) => FuseLane;
  readonly operationKinds: readonly FuseOperationKind[];
  /** The kinds that change the tree: what the replicator will intercept and ship. */
  readonly modifyingKinds: readonly FuseOperationKind[];
  /** libfuse's version, e.g. 314 for 3.14. */
  readonly libfuseVersion: number;
  /** utimensat(2) without following a symlink, to the nanosecond; null leaves that time.
   *  0, or the errno. */
  readonly setTimes: (path: string, atime: FileTime | null, mtime: FileTime | null) => number;
  /** A new regular file (O_EXCL, not through a symlink) with that owner (uid -1: the
   *  caller's) and exactly that mode, in one call. 0, or the errno. */
  readonly createFile: (path: string, mode: number, uid: number, gid: number) => number;
  /** syncfs(2) of the file system holding directory `path`, off the event loop: 0 or the errno. */
  readonly syncFs: (path: string) => Promise<number>;
  /** The extended attributes of `path` (not through a symlink it ends in): [name, value]
   *  pairs as the file system lists them, or the errno. */
  readonly xattrs: (path: string) => readonly (readonly [string, Uint8Array])[] | number;
  /** lsetxattr(2); flags 0, 1 (XATTR_CREATE) or 2 (XATTR_REPLACE): 0, or the errno. */
  readonly setXattr: (path: string, name: string, value: Uint8Array, flags: number) => number;
  /** lremovexattr(2): 0, or the errno. */
  readonly removeXattr: (path: string, name: string) => number;
}

/** Why the FUSE replicator cannot run on this machine. */
export type FuseMissing = "addon" | "device" | "root";

/** The FUSE replicator cannot run here: `missing` says what, the message what to do. */
export class FuseUnavailableError extends Error {
  readonly code = "FUSE_UNAVAILABLE";
  readonly missing: FuseMissing;

  constructor(missing: FuseMissing, message: string) {
    super(message);
    this.name = "FuseUnavailableError";
    this.missing = missing;
  }
}

const here = dirname(fileURLToPath(import.meta.url));
/** Where node-gyp puts the addon: beside this file when run from the sources, and at
 *  ../../native/build when this file runs compiled into dist/native/ (npm run build). */
export const fuseAddonPath =
  [join(here, "build", "Release", "tandem_fuse.node"), join(here, "..", "..", "native", "build", "Release", "tandem_fuse.node")].find(existsSync) ??
  join(here, "build", "Release", "tandem_fuse.node");

const fuseDevice = "/dev/fuse";

/** What is missing to mount (the first of: not root, no usable /dev/fuse, addon not
 *  built), or null when nothing is. */
export function fuseUnavailable(): FuseUnavailableError | null {
  if (process.geteuid?.() !== 0) {
    return new FuseUnavailableError("root", "the FUSE replicator needs root: it mounts over the replicated directories with allow_other and hands new files to their creators");
  }
  const device = deviceProblem();
  if (device !== null) {
    return new FuseUnavailableError("device", `${fuseDevice} cannot be opened (${device}): load the fuse module (modprobe fuse), and in a container pass the device (docker run --device /dev/fuse --cap-add SYS_ADMIN)`);
  }
  if (!existsSync(fuseAddonPath)) {
    return new FuseUnavailableError("addon", `the FUSE addon is not built (${fuseAddonPath} is missing): install Debian's fuse3 and libfuse3-dev, then run \`node native/build.ts\` (or \`npm ci\`)`);
  }
  return null;
}

function deviceProblem(): string | null {
  if (!existsSync(fuseDevice)) return "it does not exist";
  try {
    closeSync(openSync(fuseDevice, "r+"));
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

let binding: FuseBinding | null = null;

/** The addon; throws FuseUnavailableError saying how to build it when it is missing. */
export function fuseBinding(): FuseBinding {
  if (binding !== null) return binding;
  if (!existsSync(fuseAddonPath)) {
    throw new FuseUnavailableError("addon", `the FUSE addon is not built (${fuseAddonPath} is missing): install Debian's fuse3 and libfuse3-dev, then run \`node native/build.ts\` (or \`npm ci\`)`);
  }
  binding = createRequire(import.meta.url)(fuseAddonPath) as FuseBinding;
  return binding;
}

/** Mounts the passthrough over `dir` (which must exist); throws FuseUnavailableError when
 *  this machine or process cannot. */
export function mount(dir: string, options: FuseMountOptions = {}): FuseMount {
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw unavailable;
  return new (fuseBinding().FuseMount)(dir, options);
}
