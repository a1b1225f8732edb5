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
//
// A module with several replicated directories (core/mirror/volumes.ts) has one native
// lane per directory (each on a connection and port of its own); `CompositeLane` is the
// core's one LanePort over them: paths carry the directory's name in the core's tree and
// not in the native lane's, a report merges every lane's, and a lane that stops on its own
// stops the others in the same report (the core knows one lane).

import { constants as osConstants } from "node:os";
import type { DiskOp } from "../../core/mirror/disk-ops.ts";
import type { LanePort, LaneReport } from "../../core/mirror/lane.ts";
import { assert } from "../../core/assert.ts";
import { RunBlocks, type FileDirty } from "../../core/mirror/meta.ts";
import { inVolume, opInVolume } from "../../core/mirror/volumes.ts";
import type { FuseLane, NativeLaneReport } from "../../native/fuse.ts";

/** An errno's name ("EIO"), as the core logs errors; the number when it has none here. */
function errnoName(errno: number): string {
  return Object.entries(osConstants.errno).find(([, value]) => value === errno)?.[0] ?? `errno ${errno}`;
}

/** The native lane's extent number for "the whole path" (fuse-lane.cc's kWholePath). */
const wholePath = 2 ** 53 - 1;

export interface RealLaneOptions {
  readonly native: FuseLane;
  /** Where the peer's lane listens. */
  readonly peer: { readonly host: string; readonly port: number };
  /** The id the core knows an operation by, for one the lane gives back (MirrorVolume.adopt). */
  readonly adopt: (nativeId: number) => number;
  /** Its directory's name in the core's tree, in a module with several (volumes.ts). */
  readonly volume?: string;
}

export class RealLane implements LanePort {
  readonly #options: RealLaneOptions;
  #report: ((report: LaneReport) => void) | null = null;

  constructor(options: RealLaneOptions) {
    this.#options = options;
    options.native.onReport((report) => this.#report?.(this.#convert(report)));
  }

  on(session: number | null, epoch: number): void {
    if (session === null) this.#options.native.on(null, epoch);
    else this.#options.native.on(session, epoch, this.#options.peer.host, this.#options.peer.port);
  }

  off(): void {
    this.#later(this.offNow());
  }

  harvest(): void {
    this.#later(this.harvestNow());
  }

  /** off() whose report is returned, not delivered. */
  offNow(): LaneReport {
    return this.#convert(this.#options.native.off());
  }

  /** harvest() whose report is returned, not delivered. */
  harvestNow(): LaneReport {
    return this.#convert(this.#options.native.harvest());
  }

  arm(path: string, extents: readonly number[] | "all"): void {
    const volume = this.#options.volume;
    this.#options.native.arm(volume === undefined ? path : path.slice(volume.length + 1), extents === "all" ? [wholePath] : extents);
  }

  follow(lane: { readonly session: number; readonly epoch: number } | null): void {
    if (lane === null) this.#options.native.follow(null);
    else this.#options.native.follow(lane.session, lane.epoch);
  }

  listen(report: (report: LaneReport) => void): void {
    this.#report = report;
  }

  #later(report: LaneReport): void {
    queueMicrotask(() => this.#report?.(report));
  }

  /** Converted at once: the ids must be adopted before the volume could remount. */
  #convert(native: NativeLaneReport): LaneReport {
    const volume = this.#options.volume;
    const path = volume === undefined ? (each: string) => each : (each: string) => inVolume(volume, each);
    const marks = new Map<string, FileDirty>(
      native.marks.map(([each, runs]) => {
        const blocks = RunBlocks.of(runs);
        assert(blocks !== null, `the native lane reported marks of ${each} that are not runs: ${runs.slice(0, 8).join(",")}`);
        return [path(each), { all: false, blocks }];
      }),
    );
    const resubmit: { id: number; op: DiskOp }[] = native.resubmit.map(({ id, op }) => ({ id: this.#options.adopt(id), op: volume === undefined ? op : opInVolume(volume, op) }));
    const touched = new Map(native.touched.map(([each, extents]) => [path(each), extents]));
    const errors = native.errors.map(({ path: each, op, errno }) => ({ path: path(each), op: volume === undefined ? op : op.replace(" ", ` ${volume}/`), error: errnoName(errno) }));
    return { epoch: native.epoch, stopped: native.stopped, why: native.why, marks, touched, resubmit, completed: native.completed, errors, differed: native.differed.map(path) };
  }
}

/** The lanes of a module's directories as one (RealLaneOptions.volume names each). */
export class CompositeLane implements LanePort {
  readonly #lanes: ReadonlyMap<string, RealLane>;
  #report: ((report: LaneReport) => void) | null = null;
  /** The epoch of the last on(), while on: a lane stopping on its own in it stops the others. */
  #epoch: number | null = null;

  constructor(lanes: readonly { readonly volume: string; readonly lane: RealLane }[]) {
    this.#lanes = new Map(lanes.map(({ volume, lane }) => [volume, lane]));
    for (const { lane } of lanes) lane.listen((report) => this.#stoppedOnOwn(lane, report));
  }

  on(session: number | null, epoch: number): void {
    this.#epoch = epoch;
    for (const lane of this.#lanes.values()) lane.on(session, epoch);
  }

  off(): void {
    this.#epoch = null;
    const report = mergeReports([...this.#lanes.values()].map((lane) => lane.offNow()));
    queueMicrotask(() => this.#report?.(report));
  }

  harvest(): void {
    const report = mergeReports([...this.#lanes.values()].map((lane) => lane.harvestNow()));
    queueMicrotask(() => this.#report?.(report));
  }

  arm(path: string, extents: readonly number[] | "all"): void {
    const slash = path.indexOf("/");
    // The core arms files only: a path below one of the directories.
    if (slash > 0) this.#lanes.get(path.slice(0, slash))?.arm(path, extents);
  }

  follow(lane: { readonly session: number; readonly epoch: number } | null): void {
    for (const each of this.#lanes.values()) each.follow(lane);
  }

  listen(report: (report: LaneReport) => void): void {
    this.#report = report;
  }

  /** A report one lane sent by itself: it stopped. In the current epoch the others stop with it. */
  #stoppedOnOwn(stopped: RealLane, report: LaneReport): void {
    const others = report.stopped && report.epoch === this.#epoch ? [...this.#lanes.values()].filter((lane) => lane !== stopped).map((lane) => lane.offNow()) : [];
    if (others.length > 0) this.#epoch = null;
    this.#report?.(mergeReports([report, ...others]));
  }
}

/** One report of several lanes' (paths of different directories never meet). */
function mergeReports(reports: readonly LaneReport[]): LaneReport {
  const epochs = reports.flatMap((report) => (report.epoch === null || report.epoch < 0 ? [] : [report.epoch]));
  return {
    epoch: epochs.length === 0 ? null : Math.max(...epochs),
    stopped: reports.some((report) => report.stopped),
    why: reports.map((report) => report.why).filter((why) => why !== "").join("; "),
    marks: new Map(reports.flatMap((report) => [...report.marks])),
    touched: new Map(reports.flatMap((report) => [...report.touched])),
    resubmit: reports.flatMap((report) => report.resubmit),
    completed: reports.reduce((sum, report) => sum + report.completed, 0),
    errors: reports.flatMap((report) => report.errors),
    differed: reports.flatMap((report) => report.differed),
  };
}
