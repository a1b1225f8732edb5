// The simulator's lane (core/mirror/lane.ts): a model of what the replicator's native code
// is to do with the primary's in-sync writes and fsyncs, over a connection of its own
// between the two nodes. Both sides of one node are here: the primary's (admission,
// local apply, frames, acknowledgements, reports) and the secondary's (frames applied in
// order, acknowledged once applied, on a FIFO of their own beside the core's applies: the
// core keeps the order between the two).
//
// It sends an admitted operation and issues it to the node's disk at once (the native
// worker sends, then applies, under one lock), so an operation given back to the core was
// applied here, or is queued on the disk ahead of anything the core issues next (the disk
// completes in order); the peer may apply it before this node does.
// A path fsynced after few writes is committed to, as the native lane does (Habit in
// native/src/fuse-lane.h): its next writes are synced on both nodes before they complete,
// and an fsync that finds every completed write of the path durable on both, with no
// operation through the core since, completes at once.
// Alone (on() without a session) it applies what it admits here only, completes it with
// this node's result, and marks it; off() reports once those under way are done.
// Injects nothing of its own: its connection shares the partitions and stops of the
// stream (the world does both), and reports come at the same virtual time as what caused
// them, never inside the core's step.

import { assert } from "../../core/assert.ts";
import type { DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import { describeOp, pathsOf, type DiskError } from "../../core/mirror/disk-ops.ts";
import { addArmed, extentsOfWrite, type LanePort, type LaneReport } from "../../core/mirror/lane.ts";
import { dirtyOf, emptyDirty, unionDirty, type DirtyMap, type MirrorMeta } from "../../core/mirror/meta.ts";
import type { DiskPort, StreamPort } from "../../core/ports.ts";

export type LaneFrame =
  | { readonly kind: "op"; readonly session: number; readonly epoch: number; readonly lseq: number; readonly op: DiskOp; readonly durable: boolean }
  | { readonly kind: "ack"; readonly session: number; readonly epoch: number; readonly lseq: number; readonly result: DiskResult };

/** Test-only: a lane that breaks one of its rules (the simulator must catch each). */
export type LanePlantedBug = "none" | "lane-forgets-marks" | "lane-ignores-arming" | "lane-spares-after-core";

/** A path fsynced after at most this many writes is committed to: its next writes, up to
 *  this many before its next fsync, go durable (the native lane's kCommitWrites). */
export const commitWrites = 4;

/** A report names at most this many errors (the native lane's kReportErrorsMax). */
const laneErrorsMax = 16;

export interface SimLaneOptions {
  readonly self: string;
  readonly peer: string;
  readonly blockSize: number;
  readonly extentBlocks: number;
  readonly disk: DiskPort<MirrorMeta>;
  /** Where the secondary's side applies frames: beside the disk port's calls, not behind
   *  them (the native follower is a thread of its own; SimDisk.aside()). */
  readonly followerDisk: Pick<DiskPort<MirrorMeta>, "apply">;
  readonly stream: StreamPort<LaneFrame>;
  /** Runs `run` at the current virtual time, after the event being handled. */
  readonly later: (run: () => void) => void;
  /** Hands an operation to the core (as intercepted). */
  readonly intercept: (id: number, op: DiskOp) => void;
  /** Answers the application. */
  readonly answer: (id: number, result: DiskResult) => void;
  /** How many names the file at `path` has on this node's disk (the native lane's fstat). */
  readonly nameCount: (path: string) => number;
  readonly plantedBug?: LanePlantedBug;
}

interface Flight {
  readonly id: number;
  readonly op: DiskOp;
  readonly lseq: number;
  /** A write synced on both before it completes. */
  readonly durable: boolean;
  /** An fsync's view of its path's habit when admitted. */
  readonly habit: { readonly birth: number; readonly writes: number; readonly writesBefore: number } | null;
  local: DiskResult | undefined;
  peer: DiskResult | undefined;
}

/** How the application syncs a path (the native lane's Habit). */
interface Habit {
  readonly birth: number;
  writes: number;
  writesSinceFsync: number;
  /** Its writes go durable. */
  committed: boolean;
  /** Every completed write is durable on both, as of core epoch `cleanEpoch`. */
  clean: boolean;
  cleanEpoch: number;
}

export class SimLane implements LanePort {
  readonly #o: SimLaneOptions;
  #on: { readonly session: number | null; readonly epoch: number } | null = null;
  /** Alone and asked to stop: the stopped report waits for the operations under way. */
  #draining: string | null = null;
  /** Attached and stopped (why): the report waits for the results here of operations
   *  still being applied (the native lane's syncs outside its lock, StopLocked). */
  #stopping: string | null = null;
  /** on() while stopping: the native lane's On waits for that stop (the JavaScript thread
   *  blocked meanwhile); here it takes effect once the stop is done. */
  #onAfterStop: { readonly session: number | null; readonly epoch: number } | null = null;
  #lastEpoch: number | null = null;
  #connected = false;
  readonly #armed = new Map<string, Set<number> | "all">();
  /** What the core armed since the last report (it stays armed through the next harvest). */
  readonly #armedSinceReport = new Map<string, Set<number> | "all">();
  /** Admitted and unfinished, in the order applied here. */
  #flights: Flight[] = [];
  #marks: DirtyMap = emptyDirty;
  /** Errors of operations completed with this node's error since the last report (the
   *  first few): alone, any; attached, a sync that failed here. */
  #errors: { path: string; op: string; error: string }[] = [];
  /** Paths of operations whose results differed since the last report. */
  #differed: string[] = [];
  /** Paths written since the last report, with their extents. */
  readonly #touched = new Map<string, Set<number>>();
  #completed = 0;
  /** Operations handed to the core and not yet answered by it. */
  #withCore = 0;
  /** Operations for the core, held until no admitted one is unfinished. */
  readonly #waiting: { id: number; op: DiskOp }[] = [];
  #nextLseq = 1;
  readonly #habits = new Map<string, Habit>();
  #habitBirths = 0;
  /** One per operation handed to the core: it may change any path unsynced. */
  #coreEpoch = 0;
  /** Reports on their way to the core: what comes for the core waits behind them. */
  #reporting = 0;
  #report: ((report: LaneReport) => void) | null = null;
  #follow: { readonly session: number; readonly epoch: number } | null = null;
  /** Operations this lane completed (a test's evidence that it ran). */
  completedTotal = 0;
  /** Of those, writes made durable on both and fsyncs completed at once; and those of a
   *  lane alone. */
  durableTotal = 0;
  sparedTotal = 0;
  aloneTotal = 0;

  constructor(options: SimLaneOptions) {
    this.#o = options;
    options.stream.listen((from, frame) => from === options.peer && this.#received(frame));
    options.stream.watchPeers((peer, connected) => {
      if (peer !== options.peer) return;
      this.#connected = connected;
      if (!connected && this.#on !== null && this.#on.session !== null) this.#stop("the lane's connection to the peer is lost");
    });
  }

  // ---- the application's side ----

  /** An operation the application issued: on the lane if admitted, else to the core. */
  submit(id: number, op: DiskOp): void {
    const admitted = this.#admits(op);
    if (admitted && this.#on!.session === null) {
      this.#flyAlone(id, op);
      return;
    }
    // Every write counts towards the path's habit, the core's too.
    const durable = op.kind === "write" && this.#on !== null && this.#connected && this.#wrote(op.path, admitted);
    if (admitted) {
      if (op.kind === "fsync" && this.#spares(op.path!)) {
        this.#completed++;
        this.completedTotal++;
        this.sparedTotal++;
        this.#o.answer(id, null);
        return;
      }
      this.#fly(id, op, durable);
      return;
    }
    this.#toCore(id, op);
  }

  /** The core answered an operation handed to it. */
  answered(): void {
    assert(this.#withCore > 0, "the core answered an operation the lane did not hand it");
    this.#withCore--;
  }

  #admits(op: DiskOp): boolean {
    if (this.#on === null || (this.#on.session !== null && !this.#connected) || this.#withCore > 0) return false;
    if (op.kind === "fsync") return op.path !== null;
    if (op.kind !== "write") return false;
    const extents = extentsOfWrite(op, this.#o.blockSize, this.#o.extentBlocks);
    if (extents.length === 0) return false;
    if (this.#o.plantedBug === "lane-ignores-arming") return true;
    const armed = this.#armed.get(op.path);
    return armed !== undefined && (armed === "all" || extents.every((extent) => armed.has(extent)));
  }

  #habit(path: string): Habit {
    let habit = this.#habits.get(path);
    if (habit === undefined) {
      habit = { birth: ++this.#habitBirths, writes: 0, writesSinceFsync: 0, committed: false, clean: false, cleanEpoch: 0 };
      this.#habits.set(path, habit);
    }
    return habit;
  }

  /** A write to `path` offered: whether it goes durable. */
  #wrote(path: string, admitted: boolean): boolean {
    const habit = this.#habit(path);
    habit.writes++;
    habit.writesSinceFsync++;
    const durable = admitted && habit.committed && habit.writesSinceFsync <= commitWrites;
    if (!durable) habit.clean = false;
    return durable;
  }

  /** An fsync of `path` with every completed write of it durable on both already; never
   *  of a file with another name (written through that name, which has a habit of its own). */
  #spares(path: string): boolean {
    const habit = this.#habit(path);
    if (!habit.clean || (habit.cleanEpoch !== this.#coreEpoch && this.#o.plantedBug !== "lane-spares-after-core")) return false;
    if (this.#o.nameCount(path) > 1) return false;
    habit.writesSinceFsync = 0;
    return true;
  }

  #toCore(id: number, op: DiskOp): void {
    this.#coreEpoch++;
    this.#withCore++;
    if (this.#flights.length === 0 && this.#reporting === 0) this.#o.intercept(id, op);
    else this.#waiting.push({ id, op });
  }

  #fly(id: number, op: DiskOp, durable: boolean): void {
    const on = this.#on!;
    const session = on.session;
    assert(session !== null, "a lane alone sends no frames");
    let fsyncHabit: Flight["habit"] = null;
    if (op.kind === "fsync" && op.path !== null) {
      const habit = this.#habit(op.path);
      fsyncHabit = { birth: habit.birth, writes: habit.writes, writesBefore: habit.writesSinceFsync };
      habit.writesSinceFsync = 0;
    }
    const flight: Flight = { id, op, lseq: this.#nextLseq++, durable, habit: fsyncHabit, local: undefined, peer: undefined };
    this.#flights.push(flight);
    this.#touch(this.#touched, op);
    // Sent, and applied here at once (issued to the disk ahead of anything the core issues
    // next); a durable write's fsync issued right behind it.
    this.#o.stream.send(this.#o.peer, { kind: "op", session, epoch: on.epoch, lseq: flight.lseq, op, durable });
    this.#applyDurably(this.#o.disk, op, durable, (result, syncFailed) => {
      flight.local = result;
      if (!this.#flights.includes(flight)) return;
      if (result === null) this.#settle(flight);
      else this.#failedHere(flight, result, syncFailed);
      const stopping = this.#stopping;
      if (stopping !== null && this.#flights.every((each) => each.local !== undefined)) {
        this.#stopping = null;
        this.#giveBack(stopping);
        const next = this.#onAfterStop;
        this.#onAfterStop = null;
        if (next !== null) this.on(next.session, next.epoch);
      }
    });
  }

  /** Alone: applied here, completed with this node's result (a write marked whatever it
   *  was: a failed one may have written part). */
  #flyAlone(id: number, op: DiskOp): void {
    const flight: Flight = { id, op, lseq: this.#nextLseq++, durable: false, habit: null, local: undefined, peer: undefined };
    this.#flights.push(flight);
    this.#touch(this.#touched, op);
    this.#o.disk.apply(op, (result) => {
      const index = this.#flights.indexOf(flight);
      if (index < 0) return;
      this.#flights.splice(index, 1);
      if (op.kind === "write" && this.#o.plantedBug !== "lane-forgets-marks") this.#marks = unionDirty(this.#marks, dirtyOf(op, this.#o.blockSize));
      if (result !== null) this.#noteError(op, result);
      this.#completed++;
      this.completedTotal++;
      this.aloneTotal++;
      this.#o.answer(id, result);
      if (this.#flights.length > 0) return;
      if (this.#draining !== null) {
        const why = this.#draining;
        this.#draining = null;
        this.#deliver(this.#take(true, why, []));
        return;
      }
      if (this.#reporting === 0) this.#release();
    });
  }

  #received(frame: LaneFrame): void {
    if (frame.kind === "op") {
      const follow = this.#follow;
      // Not (or no longer) this lane's follower: dropped; the primary gives it to its core.
      if (follow === null || follow.session !== frame.session || follow.epoch !== frame.epoch) return;
      this.#applyDurably(this.#o.followerDisk, frame.op, frame.durable, (result) => this.#o.stream.send(this.#o.peer, { kind: "ack", session: frame.session, epoch: frame.epoch, lseq: frame.lseq, result }));
      return;
    }
    const on = this.#on;
    if (on === null || on.session !== frame.session || on.epoch !== frame.epoch) return;
    const flight = this.#flights.find((each) => each.lseq === frame.lseq);
    if (flight === undefined) return;
    flight.peer = frame.result;
    this.#settle(flight);
  }

  #noteError(op: DiskOp, error: DiskError): void {
    if (this.#errors.length < laneErrorsMax) this.#errors.push({ path: pathsOf(op)[0] ?? "", op: describeOp(op), error });
  }

  /** A write, an fsync, or a durable write's own sync (`syncing`), that failed here. It may
   *  be a failed writeback (reported by fsync, by write(2) too, or by the sync of an
   *  O_DSYNC write), which dropped every write of the file not yet durable: applied again
   *  by the core, on another descriptor, it could succeed with that data gone. Answered
   *  with this node's error, as a local disk would, whatever the peer says; the core
   *  resends the path (the report names it); the others go back to the core, as for any
   *  different result. A write is marked: it may have written all or part here. */
  #failedHere(flight: Flight, error: DiskError, syncing: boolean): void {
    this.#flights.splice(this.#flights.indexOf(flight), 1);
    if (flight.op.kind === "write" && this.#o.plantedBug !== "lane-forgets-marks") this.#marks = unionDirty(this.#marks, dirtyOf(flight.op, this.#o.blockSize));
    this.#noteError(flight.op, error);
    this.#completed++;
    this.completedTotal++;
    this.#o.answer(flight.id, error);
    this.#stop(`${describeOp(flight.op)}: ${error} here${syncing ? ", syncing it" : ""}`);
  }

  #settle(flight: Flight): void {
    if (flight.local === undefined || flight.peer === undefined) return;
    if (flight.local !== flight.peer) {
      this.#differed.push(...pathsOf(flight.op));
      this.#stop(`${describeOp(flight.op)}: ${flight.local ?? "ok"} here, ${flight.peer ?? "ok"} on ${this.#o.peer}`);
      return;
    }
    this.#flights.splice(this.#flights.indexOf(flight), 1);
    if (flight.op.kind === "write" && this.#o.plantedBug !== "lane-forgets-marks") this.#marks = unionDirty(this.#marks, dirtyOf(flight.op, this.#o.blockSize));
    if (flight.durable) this.durableTotal++;
    const habit = flight.op.kind === "fsync" && flight.op.path !== null ? this.#habits.get(flight.op.path) : undefined;
    if (habit !== undefined && flight.habit !== null && habit.birth === flight.habit.birth) {
      // An fsync covers every write admitted before it (applied here and sent before it).
      habit.committed = flight.habit.writesBefore <= commitWrites;
      habit.clean = habit.writes === flight.habit.writes;
      habit.cleanEpoch = this.#coreEpoch;
    }
    this.#completed++;
    this.completedTotal++;
    this.#o.answer(flight.id, flight.local);
    if (this.#flights.length === 0 && this.#reporting === 0 && this.#stopping === null) this.#release();
  }

  /** Applies `op`, then for a durable write an fsync of its path, issued right behind it;
   *  `syncFailed`: the error is a durable write's sync's (it was written here). */
  #applyDurably(disk: Pick<DiskPort<MirrorMeta>, "apply">, op: DiskOp, durable: boolean, done: (result: DiskResult, syncFailed: boolean) => void): void {
    if (!durable || op.kind !== "write") {
      disk.apply(op, (result) => done(result, false));
      return;
    }
    let written: DiskResult = null;
    disk.apply(op, (result) => (written = result));
    disk.apply({ kind: "fsync", path: op.path }, (result) => done(written ?? result, written === null && result !== null));
  }

  #release(): void {
    for (const { id, op } of this.#waiting.splice(0)) this.#o.intercept(id, op);
  }

  // ---- the core's side (LanePort) ----

  on(session: number | null, epoch: number): void {
    if (this.#stopping !== null) {
      this.#onAfterStop = { session, epoch };
      return;
    }
    this.#on = { session, epoch };
    this.#draining = null;
    this.#lastEpoch = epoch;
    this.#armed.clear();
    this.#armedSinceReport.clear();
    this.#habits.clear();
  }

  off(): void {
    const deferred = this.#onAfterStop;
    if (deferred !== null) {
      // On and off while a stop waited: that lane never ran.
      this.#onAfterStop = null;
      this.#deliver({ ...this.#take(true, "asked", []), epoch: deferred.epoch });
      return;
    }
    if (this.#on !== null && this.#on.session === null && this.#flights.length > 0) {
      // Alone: nothing is given back; the report once what is under way is done.
      this.#on = null;
      this.#draining = "asked";
      this.#armed.clear();
      this.#armedSinceReport.clear();
      return;
    }
    if (this.#on !== null) {
      this.#stop("asked");
      return;
    }
    this.#deliver(this.#take(true, "already stopped", []));
  }

  harvest(): void {
    const report = this.#take(false, "", []);
    // What it wrote, or was armed, since its last report stays armed (the core keeps it
    // hot); the rest goes.
    for (const [path, armed] of [...this.#armed]) {
      const wrote = report.touched.get(path) ?? [];
      const told = this.#armedSinceReport.get(path);
      if (told === "all") continue;
      const kept = new Set([...(armed === "all" ? wrote : wrote.filter((extent) => armed.has(extent))), ...(told ?? [])]);
      if (kept.size === 0) this.#armed.delete(path);
      else this.#armed.set(path, kept);
    }
    this.#armedSinceReport.clear();
    this.#deliver(report);
  }

  /** Whether a write into this extent of `path` may go on the lane now (tests). */
  isArmed(path: string, extent: number): boolean {
    const armed = this.#armed.get(path);
    return armed === "all" || (armed?.has(extent) ?? false);
  }

  arm(path: string, extents: readonly number[] | "all"): void {
    if (this.#on === null) return;
    for (const map of [this.#armed, this.#armedSinceReport]) addArmed(map, path, extents);
  }

  follow(lane: { readonly session: number; readonly epoch: number } | null): void {
    this.#follow = lane;
  }

  listen(report: (report: LaneReport) => void): void {
    this.#report = report;
  }

  /** Stops the lane: its unfinished operations go back to the core, ahead of any other,
   *  once each has its result here. An fsync that failed here (a failed writeback) is
   *  answered with that error (#failedHere), where the core, applying it again, would
   *  report a success with the data gone (the fuzzer found it after a hold stopped the
   *  lane). A stop while one is under way is that one. */
  #stop(why: string): void {
    if (this.#stopping !== null) return;
    this.#on = null;
    this.#armed.clear();
    this.#armedSinceReport.clear();
    this.#habits.clear();
    if (this.#flights.some((flight) => flight.local === undefined)) this.#stopping = why;
    else this.#giveBack(why);
  }

  #giveBack(why: string): void {
    const resubmit = this.#flights.map(({ id, op }) => ({ id, op }));
    this.#flights = [];
    this.#withCore += resubmit.length;
    this.#deliver(this.#take(true, why, resubmit));
  }

  /** A write's extents into `touched` (the native lane's TouchInto). */
  #touch(touched: Map<string, Set<number>>, op: DiskOp): void {
    if (op.kind !== "write") return;
    const extents = touched.get(op.path) ?? new Set<number>();
    for (const extent of extentsOfWrite(op, this.#o.blockSize, this.#o.extentBlocks)) extents.add(extent);
    touched.set(op.path, extents);
  }

  #take(stopped: boolean, why: string, resubmit: LaneReport["resubmit"]): LaneReport {
    const touched = new Map([...this.#touched].map(([path, extents]) => [path, new Set(extents)]));
    for (const { op } of this.#flights) this.#touch(touched, op);
    for (const { op } of resubmit) this.#touch(touched, op);
    const sorted = new Map([...touched].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([path, extents]) => [path, [...extents].sort((a, b) => a - b)]));
    const report: LaneReport = { epoch: this.#lastEpoch, stopped, why, marks: this.#marks, touched: sorted, resubmit, completed: this.#completed, errors: this.#errors, differed: this.#differed };
    this.#marks = emptyDirty;
    this.#errors = [];
    this.#differed = [];
    this.#touched.clear();
    this.#completed = 0;
    return report;
  }

  /** The report, then what waited for the lane's operations (they now come after them). */
  #deliver(report: LaneReport): void {
    this.#reporting++;
    this.#o.later(() => {
      this.#reporting--;
      this.#report?.(report);
      if (this.#flights.length === 0 && this.#reporting === 0) this.#release();
    });
  }
}
