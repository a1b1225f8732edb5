// The real LanePort (core/mirror/lane.ts) over the replicator's native lane
// (native/src/fuse-lane.h): the primary's in-sync writes and fsyncs go from libfuse's
// workers to the peer's lane thread and back without entering JavaScript. This file only
// translates: the core's calls to the native ones, native reports to the core's shape
// (ids of operations given back become the volume's, which the core answers by).
//
// Reports of off() and harvest() come back from the native call itself and are delivered
// in a microtask: after the core's step, before any intercepted operation (those come
// through libuv, later). A lane that stops on its own reports through its mount's
// intercept queue, in order with the operations handed to the core.

import type { DiskOp } from "../../core/mirror/disk-ops.ts";
import type { LanePort, LaneReport } from "../../core/mirror/lane.ts";
import type { FileDirty } from "../../core/mirror/meta.ts";
import type { FuseLane, NativeLaneReport } from "../../native/fuse.ts";

/** The native lane's extent number for "the whole path" (fuse-lane.cc's kWholePath). */
const wholePath = 2 ** 53 - 1;

export interface RealLaneOptions {
  readonly native: FuseLane;
  /** Where the peer's lane listens. */
  readonly peer: { readonly host: string; readonly port: number };
  /** The id the core knows an operation by, for one the lane gives back (MirrorVolume.adopt). */
  readonly adopt: (nativeId: number) => number;
}

export class RealLane implements LanePort {
  readonly #options: RealLaneOptions;
  #report: ((report: LaneReport) => void) | null = null;

  constructor(options: RealLaneOptions) {
    this.#options = options;
    options.native.onReport((report) => this.#report?.(this.#convert(report)));
  }

  on(session: number, epoch: number): void {
    this.#options.native.on(session, epoch, this.#options.peer.host, this.#options.peer.port);
  }

  off(): void {
    this.#later(this.#options.native.off());
  }

  harvest(): void {
    this.#later(this.#options.native.harvest());
  }

  arm(path: string, extents: readonly number[] | "all"): void {
    this.#options.native.arm(path, extents === "all" ? [wholePath] : extents);
  }

  follow(lane: { readonly session: number; readonly epoch: number } | null): void {
    if (lane === null) this.#options.native.follow(null);
    else this.#options.native.follow(lane.session, lane.epoch);
  }

  listen(report: (report: LaneReport) => void): void {
    this.#report = report;
  }

  #later(native: NativeLaneReport): void {
    // Converted now: the ids must be adopted before the volume could remount.
    const report = this.#convert(native);
    queueMicrotask(() => this.#report?.(report));
  }

  #convert(native: NativeLaneReport): LaneReport {
    const marks = new Map<string, FileDirty>(native.marks.map(([path, blocks]) => [path, { all: false, blocks: new Set(blocks) }]));
    const resubmit: { id: number; op: DiskOp }[] = native.resubmit.map(({ id, op }) => ({ id: this.#options.adopt(id), op }));
    return { epoch: native.epoch, stopped: native.stopped, why: native.why, marks, touched: native.touched, resubmit, completed: native.completed };
  }
}
