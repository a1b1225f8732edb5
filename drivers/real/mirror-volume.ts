// One replicated directory of a mirror module on this node: the FUSE mount over it
// (native/fuse.ts) and the directory underneath, which the mirror's disk port works on.
//
// The mount is read-only while the core does not accept the application's writes (a
// secondary, a stopped or waiting module): every change is refused with EROFS and nothing
// is cached, since the tree changes underneath. While it accepts them (primary, alone), the
// mount intercepts: each change goes to `intercept` as a DiskOp and the application's call
// waits until `complete` answers it. Switching remounts (unmount with force, then mount),
// so a primary starts with an empty kernel cache: nothing read while secondary is served
// stale. Files held open across a switch answer ENOTCONN afterwards; the core stops the
// application before it stops accepting.
//
// The tree underneath is reached through a directory handle taken from the first mount's
// own (opened before that mount hid the directory) and kept across remounts:
// `/proc/self/fd/<handle>` walks below the mount, never through it.
//
// If the service dies (a crash, SIGKILL), the mount stays, dead: every access to the
// directory answers ENOTCONN until it is detached. That is the safe state: an application
// still running cannot write anything the peer would not have, so it fails instead (a
// database stops). libfuse's auto_unmount is off for this reason: it would detach the mount
// and let the application write to the directory underneath, unreplicated and unmarked.
// The next start of the service detaches the dead mount before mounting again.

import { execFileSync } from "node:child_process";
import { closeSync, constants, openSync, statSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { assert } from "../../core/assert.ts";
import { pathsOf, type DiskOp, type DiskResult } from "../../core/mirror/disk-ops.ts";
import { mount as mountFuse, type FuseLane, type FuseMount, type FuseStats } from "../../native/fuse.ts";

/** open(2)'s O_PATH on Linux (not in Node's fs.constants). */
const oPath = 0o10000000;
/** Intercepted operations waiting for the core at once; libfuse has 16 workers by default. */
export const waitingOpsMax = 4_096;

export type VolumeMode = "readonly" | "intercept";

export interface MirrorVolumeOptions {
  readonly dir: string;
  /** A change the application made while intercepting; answer it with `complete(id, …)`. */
  readonly intercept: (id: number, op: DiskOp) => void;
  readonly log: (event: string, fields: Record<string, string | number>) => void;
  /** The module's lane, given to every intercepting mount. */
  readonly lane?: () => FuseLane | null;
  /** Allocates the ids the core knows operations by: shared by a module's volumes, so
   *  that they never give two operations the same (default: the volume's own count). */
  readonly nextId?: () => number;
  /** What is left out of replication, paths relative to this directory: the `<notreplicated
   *  path>` rules, each with everything below it, which the mount tests itself, and the
   *  whole test (regular expressions too). A change whose paths are all excluded is applied
   *  by the mount without the core (which would only apply it here); the paths only
   *  `excludes` finds are learned by the mount from the first change of each that comes. */
  readonly excluded?: { readonly prefixes: readonly string[]; readonly excludes: (path: string) => boolean };
}

/** What is at `dir` before a volume opens over it: a directory, the dead mount of a
 *  service that died (ENOTCONN: open() detaches it), or neither. */
export function volumeDirState(dir: string): "directory" | "dead-mount" | "unusable" {
  try {
    return statSync(dir).isDirectory() ? "directory" : "unusable";
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOTCONN" ? "dead-mount" : "unusable";
  }
}

export class MirrorVolume {
  readonly #options: MirrorVolumeOptions;
  #fuse: FuseMount | null = null;
  #mode: VolumeMode | null = null;
  #handle = -1;
  /** The core's ids are ours, unique across remounts: id → the mount and its own id. */
  readonly #waiting = new Map<number, { readonly fuse: FuseMount; readonly nativeId: number }>();
  readonly #nextId: () => number;

  constructor(options: MirrorVolumeOptions) {
    this.#options = options;
    let lastId = 0;
    this.#nextId = options.nextId ?? (() => ++lastId);
  }

  /** Mounts read-only over the directory and keeps a handle to the tree underneath.
   *  Throws (FuseUnavailableError, or the mount's error naming the directory) when it cannot. */
  open(): void {
    assert(this.#fuse === null, "volume opened twice");
    try {
      this.#mount("readonly");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOTCONN") throw error;
      // The dead mount of a service that died: this service is its successor.
      this.#options.log("mirror.volume_detached_dead_mount", { dir: this.#options.dir });
      execFileSync("umount", ["-l", this.#options.dir], { stdio: "ignore" });
      this.#mount("readonly");
    }
    this.#handle = openSync(`/proc/self/fd/${this.#fuse!.handleFd}`, oPath | constants.O_DIRECTORY);
  }

  /** The tree underneath, as this process reaches it (the disk port's root). */
  get root(): string {
    assert(this.#handle >= 0, "volume not open");
    return `/proc/self/fd/${this.#handle}`;
  }

  /** The handle of the tree underneath (a descriptor of this process). */
  get handle(): number {
    assert(this.#handle >= 0, "volume not open");
    return this.#handle;
  }

  get mode(): VolumeMode | null {
    return this.#mode;
  }

  /** Remounts in `mode` unless already there. */
  setMode(mode: VolumeMode): void {
    assert(this.#fuse !== null, "volume not open");
    if (mode === this.#mode) return;
    this.#unmount();
    this.#mount(mode);
  }

  /** An operation of the current mount the lane gave back: the id the core knows it by. */
  adopt(nativeId: number): number {
    assert(this.#fuse !== null, "volume not open");
    const id = this.#nextId();
    this.#waiting.set(id, { fuse: this.#fuse, nativeId });
    return id;
  }

  /** Answers intercepted operation `id` with the core's result. */
  complete(id: number, result: DiskResult): void {
    const waiting = this.#waiting.get(id);
    if (waiting === undefined) return; // answered EIO by a remount already
    this.#waiting.delete(id);
    waiting.fuse.answer(waiting.nativeId, result === null ? 0 : osConstants.errno[result]);
  }

  stats(): FuseStats | null {
    return this.#fuse?.stats() ?? null;
  }

  /** Unmounts (with force) and closes the handle. Idempotent. */
  close(): void {
    this.#unmount();
    if (this.#handle >= 0) closeSync(this.#handle);
    this.#handle = -1;
  }

  #mount(mode: VolumeMode): void {
    const lane = mode === "intercept" ? (this.#options.lane?.() ?? null) : null;
    const fuse: FuseMount = mountFuse(this.#options.dir, {
      autoUnmount: false,
      mode,
      ...(mode === "intercept" ? { intercept: (nativeId: number, op: DiskOp) => this.#intercepted(fuse, nativeId, op) } : {}),
      ...(lane === null ? {} : { lane }),
      ...(mode === "intercept" && this.#options.excluded !== undefined ? { excluded: this.#options.excluded.prefixes } : {}),
    });
    this.#fuse = fuse;
    this.#mode = mode;
    this.#options.log("mirror.volume_mounted", { dir: this.#options.dir, mode });
  }

  #intercepted(fuse: FuseMount, nativeId: number, op: DiskOp): void {
    if (fuse !== this.#fuse) {
      fuse.answer(nativeId, osConstants.errno.EIO);
      return;
    }
    assert(this.#waiting.size < waitingOpsMax, `more than ${waitingOpsMax} intercepted operations waiting`);
    const excludes = this.#options.excluded?.excludes;
    if (excludes !== undefined) {
      const paths = pathsOf(op);
      if (paths.length > 0 && paths.every(excludes)) for (const path of paths) fuse.exclude(path);
    }
    const id = this.#nextId();
    this.#waiting.set(id, { fuse, nativeId });
    this.#options.intercept(id, op);
  }

  #unmount(): void {
    const fuse = this.#fuse;
    if (fuse === null) return;
    this.#fuse = null;
    this.#mode = null;
    // Force: a file still open (an application not stopped, a reader on a secondary) must
    // not keep the old mode. Operations still waiting are answered EIO by the unmount.
    fuse.unmount({ force: true });
    for (const [id, waiting] of this.#waiting) if (waiting.fuse === fuse) this.#waiting.delete(id);
    this.#options.log("mirror.volume_unmounted", { dir: this.#options.dir });
  }
}
