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
// Injects nothing of its own: its connection shares the partitions and stops of the
// stream (the world does both), and reports come at the same virtual time as what caused
// them, never inside the core's step.

import { assert } from "../../core/assert.ts";
import type { DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import { describeOp } from "../../core/mirror/disk-ops.ts";
import { extentsOfWrite, type LanePort, type LaneReport } from "../../core/mirror/lane.ts";
import { dirtyOf, emptyDirty, unionDirty, type DirtyMap, type MirrorMeta } from "../../core/mirror/meta.ts";
import type { DiskPort, StreamPort } from "../../core/ports.ts";

export type LaneFrame =
  | { readonly kind: "op"; readonly session: number; readonly epoch: number; readonly lseq: number; readonly op: DiskOp }
  | { readonly kind: "ack"; readonly session: number; readonly epoch: number; readonly lseq: number; readonly result: DiskResult };

/** Test-only: a lane that breaks one of its rules (the simulator must catch each). */
export type LanePlantedBug = "none" | "lane-forgets-marks" | "lane-ignores-arming";

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
  readonly plantedBug?: LanePlantedBug;
}

interface Flight {
  readonly id: number;
  readonly op: DiskOp;
  readonly lseq: number;
  local: DiskResult | undefined;
  peer: DiskResult | undefined;
}

export class SimLane implements LanePort {
  readonly #o: SimLaneOptions;
  #on: { readonly session: number; readonly epoch: number } | null = null;
  #lastEpoch: number | null = null;
  #connected = false;
  readonly #armed = new Map<string, Set<number> | "all">();
  /** Admitted and unfinished, in the order applied here. */
  #flights: Flight[] = [];
  #marks: DirtyMap = emptyDirty;
  /** Paths written since the last report, with their extents. */
  readonly #touched = new Map<string, Set<number>>();
  #completed = 0;
  /** Operations handed to the core and not yet answered by it. */
  #withCore = 0;
  /** Operations for the core, held until no admitted one is unfinished. */
  readonly #waiting: { id: number; op: DiskOp }[] = [];
  #nextLseq = 1;
  /** Reports on their way to the core: what comes for the core waits behind them. */
  #reporting = 0;
  #report: ((report: LaneReport) => void) | null = null;
  #follow: { readonly session: number; readonly epoch: number } | null = null;
  /** Operations this lane completed (a test's evidence that it ran). */
  completedTotal = 0;

  constructor(options: SimLaneOptions) {
    this.#o = options;
    options.stream.listen((from, frame) => from === options.peer && this.#received(frame));
    options.stream.watchPeers((peer, connected) => {
      if (peer !== options.peer) return;
      this.#connected = connected;
      if (!connected && this.#on !== null) this.#stop("the lane's connection to the peer is lost");
    });
  }

  // ---- the application's side ----

  /** An operation the application issued: on the lane if admitted, else to the core. */
  submit(id: number, op: DiskOp): void {
    if (this.#admits(op)) {
      this.#fly(id, op);
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
    if (this.#on === null || !this.#connected || this.#withCore > 0) return false;
    if (op.kind === "fsync") return op.path !== null;
    if (op.kind !== "write") return false;
    const extents = extentsOfWrite(op, this.#o.blockSize, this.#o.extentBlocks);
    if (extents.length === 0) return false;
    if (this.#o.plantedBug === "lane-ignores-arming") return true;
    const armed = this.#armed.get(op.path);
    return armed !== undefined && (armed === "all" || extents.every((extent) => armed.has(extent)));
  }

  #toCore(id: number, op: DiskOp): void {
    this.#withCore++;
    if (this.#flights.length === 0 && this.#reporting === 0) this.#o.intercept(id, op);
    else this.#waiting.push({ id, op });
  }

  #fly(id: number, op: DiskOp): void {
    const on = this.#on!;
    const flight: Flight = { id, op, lseq: this.#nextLseq++, local: undefined, peer: undefined };
    this.#flights.push(flight);
    this.#touch(this.#touched, op);
    // Sent, and applied here at once (issued to the disk ahead of anything the core issues next).
    this.#o.stream.send(this.#o.peer, { kind: "op", session: on.session, epoch: on.epoch, lseq: flight.lseq, op });
    this.#o.disk.apply(op, (result) => {
      flight.local = result;
      if (!this.#flights.includes(flight)) return;
      if (result !== null) {
        this.#stop(`${describeOp(op)}: ${result} here`);
        return;
      }
      this.#settle(flight);
    });
  }

  #received(frame: LaneFrame): void {
    if (frame.kind === "op") {
      const follow = this.#follow;
      // Not (or no longer) this lane's follower: dropped; the primary gives it to its core.
      if (follow === null || follow.session !== frame.session || follow.epoch !== frame.epoch) return;
      this.#o.followerDisk.apply(frame.op, (result) => this.#o.stream.send(this.#o.peer, { kind: "ack", session: frame.session, epoch: frame.epoch, lseq: frame.lseq, result }));
      return;
    }
    const on = this.#on;
    if (on === null || on.session !== frame.session || on.epoch !== frame.epoch) return;
    const flight = this.#flights.find((each) => each.lseq === frame.lseq);
    if (flight === undefined) return;
    flight.peer = frame.result;
    this.#settle(flight);
  }

  #settle(flight: Flight): void {
    if (flight.local === undefined || flight.peer === undefined) return;
    if (flight.local !== flight.peer) {
      this.#stop(`${describeOp(flight.op)}: ${flight.local ?? "ok"} here, ${flight.peer ?? "ok"} on ${this.#o.peer}`);
      return;
    }
    this.#flights.splice(this.#flights.indexOf(flight), 1);
    if (flight.op.kind === "write" && this.#o.plantedBug !== "lane-forgets-marks") this.#marks = unionDirty(this.#marks, dirtyOf(flight.op, this.#o.blockSize));
    this.#completed++;
    this.completedTotal++;
    this.#o.answer(flight.id, flight.local);
    if (this.#flights.length === 0 && this.#reporting === 0) this.#release();
  }

  #release(): void {
    for (const { id, op } of this.#waiting.splice(0)) this.#o.intercept(id, op);
  }

  // ---- the core's side (LanePort) ----

  on(session: number, epoch: number): void {
    this.#on = { session, epoch };
    this.#lastEpoch = epoch;
    this.#armed.clear();
  }

  off(): void {
    if (this.#on !== null) {
      this.#stop("asked");
      return;
    }
    this.#deliver(this.#take(true, "already stopped", []));
  }

  harvest(): void {
    this.#armed.clear();
    this.#deliver(this.#take(false, "", []));
  }

  arm(path: string, extents: readonly number[] | "all"): void {
    if (this.#on === null) return;
    const armed = this.#armed.get(path) ?? new Set<number>();
    if (extents === "all" || armed === "all") {
      this.#armed.set(path, "all");
      return;
    }
    for (const extent of extents) armed.add(extent);
    this.#armed.set(path, armed);
  }

  follow(lane: { readonly session: number; readonly epoch: number } | null): void {
    this.#follow = lane;
  }

  listen(report: (report: LaneReport) => void): void {
    this.#report = report;
  }

  /** Stops the lane: its unfinished operations go back to the core, ahead of any other. */
  #stop(why: string): void {
    const resubmit = this.#flights.map(({ id, op }) => ({ id, op }));
    this.#flights = [];
    this.#on = null;
    this.#armed.clear();
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
    const report: LaneReport = { epoch: this.#lastEpoch, stopped, why, marks: this.#marks, touched: sorted, resubmit, completed: this.#completed };
    this.#marks = emptyDirty;
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
