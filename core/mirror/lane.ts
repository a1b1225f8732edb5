// The lane: the primary's writes and fsyncs sent, applied on both nodes and completed
// without a step of the core each (docs/mirror.md, "The lane"). The core decides when a
// lane may run, which extents it may write into, and takes back what it did; a driver (the
// simulator's model, the replicator's native code) runs it. This module holds what both
// sides agree on. A pure module.
//
// The rules a lane keeps (each one is what the core's reasoning needs):
//  - It admits a `write` only inside extents the core armed (hot and durable), and an
//    `fsync` of a path; nothing else.
//  - It admits nothing while an operation it passed to the core is unanswered, and passes
//    nothing to the core while an operation it admitted is unfinished: one order on both
//    nodes across the lane and the stream.
//  - It completes an operation only when both nodes applied it with the same result.
//    Anything else (a different result, a local error, the lane's connection lost) stops
//    the lane: every unfinished operation goes back to the core in the order applied here,
//    and the core takes each as intercepted (applying one again is harmless: the same data
//    at the same place, nothing written between).
//  - A harvest (at each checkpoint) reports the marks of the writes completed since the
//    last report and the paths written, finished or not, with their extents; it leaves
//    armed only those extents (within what was armed) and those armed since the last
//    report, and disarms the rest. The core keeps hot, at every clear, what the lane may
//    still write into (`armed` in mirror.ts).
//  - Off, it reports once, stopped, with everything above.
//  - Alone (on() without a session: a primary with no peer attached, in a generation of its
//    own), it completes an operation once applied here, with this node's result, and
//    marks it as any; off() waits for those under way rather than give them back (one
//    applied again by the core while its own write was still going could land after a
//    later write of another thread). The core attaches a returning peer only after that
//    stopped report: the resync is planned from marks that include all it wrote.

import type { DiskOp } from "./disk-ops.ts";
import { blocksOfWrite } from "./disk-ops.ts";
import type { DirtyMap } from "./meta.ts";

export interface LaneReport {
  /** The lane epoch this report concerns (null: no lane was on). */
  readonly epoch: number | null;
  /** The lane stopped: asked to, or on its own (`why`). */
  readonly stopped: boolean;
  readonly why: string;
  /** The blocks its completed writes changed since its last report (in the page cache of
   *  both nodes, durable on neither yet). */
  readonly marks: DirtyMap;
  /** Paths it wrote since its last report, completed or not, with the extents (of
   *  `hotExtentBlocks` blocks) those writes fell in: they stay hot. */
  readonly touched: ReadonlyMap<string, readonly number[]>;
  /** Operations applied here and unfinished, in the order applied: the core completes them. */
  readonly resubmit: readonly { readonly id: number; readonly op: DiskOp }[];
  /** Operations it completed since its last report. */
  readonly completed: number;
  /** Operations it completed with an error of this node's disk, the first few of each
   *  report: alone, any; attached, an fsync or a durable write's own sync that failed here
   *  (a failed writeback: applied again, on another descriptor, it could succeed with the
   *  data gone), which stops the lane like any different result. The core logs them as
   *  its own, and resends the path of one completed while attached, as for any operation
   *  whose results differ. */
  readonly errors: readonly { readonly path: string; readonly op: string; readonly error: string }[];
  /** Paths of operations whose results differed on the two nodes (each stopped the lane).
   *  Given back to the core and applied again, such an operation may agree the second time
   *  with one side's data gone: a failed writeback (the peer's sync of a durable write)
   *  drops every write of the file not yet durable. The core resends these paths. */
  readonly differed: readonly string[];
}

/** What a driver gives the core to run a lane with. */
export interface LanePort {
  /** The primary's lane runs for this attachment session and epoch; `session` null: alone,
   *  no peer attached (its writes and fsyncs are applied here only, complete with this
   *  node's result, and are reported like any lane's; off() returns once those under way
   *  are done, so that none is given back to the core). */
  on(session: number | null, epoch: number): void;
  /** Stops the lane; one stopped report follows (also when it had stopped on its own). */
  off(): void;
  /** A report follows; the extents it names as written, and those armed since the last
   *  report, stay armed; the rest are disarmed. */
  harvest(): void;
  /** Writes to these extents of `path` (or anywhere in it: "all") may go on the lane
   *  (their marks are durable). */
  arm(path: string, extents: readonly number[] | "all"): void;
  /** The secondary applies the frames of this lane (null: none any more, once this returns). */
  follow(lane: { readonly session: number; readonly epoch: number } | null): void;
  /** Reports are delivered later, never while the core's effects execute. */
  listen(report: (report: LaneReport) => void): void;
}

/** The extents (of `extentBlocks` blocks) a write touches; empty for anything else. */
export function extentsOfWrite(op: DiskOp, blockSize: number, extentBlocks: number): number[] {
  const range = blocksOfWrite(op, blockSize);
  if (range === null) return [];
  const extents: number[] = [];
  for (let extent = Math.floor(range.first / extentBlocks); extent <= Math.floor(range.last / extentBlocks); extent++) extents.push(extent);
  return extents;
}

/** How far ahead of a sequential writer extents are made hot and armed (aheadOfWrite): a
 *  GiB rewritten in 1 MiB writes takes the core 11 times (at 64 MiB, 20: 0.28 of the
 *  passthrough on the host bench instead of 0.40); what a primary's crash adds to its
 *  resync is bounded by it per sequential writer. */
export const aheadMaxBytes = 256 * 1024 * 1024;

/** The extents past a write to mark hot and arm with its own, for a sequential writer: a
 *  write through the core just past a run of armed extents (the lane's, which it wrote or
 *  may write) gets as many more as that run (at least as many as its own, at most
 *  `maxExtents`), so the writes that follow take the lane and need no metadata write, one
 *  write through the core per window, each window twice the last. Without it a sequential
 *  rewrite of a file not written lately took the core for every write (16 extents new to
 *  the hot map each MiB, one metadata write each: 65 MiB/s against 370 now, on the host
 *  bench). A run of armed extents, not of hot ones: a random write next to a large hot
 *  table would make as much of it hot again, and resent after a crash. `armed`: the
 *  path's armed extents (a node alone, without a lane: the extents it wrote); `hot`: its hot ones; `written`: the write's (ascending); `grows`:
 *  the write makes the hot map grow (a metadata write anyway), otherwise only extents
 *  already hot are taken (none that would cost one). Empty when the write does not follow
 *  an armed extent. */
export function aheadOfWrite(armed: { has(extent: number): boolean }, hot: ReadonlySet<number>, written: readonly number[], maxExtents: number, grows: boolean): number[] {
  const first = written[0];
  const last = written[written.length - 1];
  if (first === undefined || last === undefined) return [];
  let run = 0;
  while (run < maxExtents && first - 1 - run >= 0 && armed.has(first - 1 - run)) run++;
  if (run === 0) return [];
  const count = Math.min(maxExtents, Math.max(written.length, run));
  const ahead: number[] = [];
  for (let extent = last + 1; extent <= last + count; extent++) {
    if (!grows && !hot.has(extent)) break;
    ahead.push(extent);
  }
  return ahead;
}

/** Adds extents (or the whole path) to a map of armed extents: what the core and a lane
 *  record of what a lane may write into. */
export function addArmed(map: Map<string, Set<number> | "all">, path: string, extents: readonly number[] | "all"): void {
  const armed = map.get(path);
  if (armed === "all") return;
  if (extents === "all") {
    map.set(path, "all");
    return;
  }
  const set = armed ?? new Set<number>();
  for (const extent of extents) set.add(extent);
  map.set(path, set);
}
