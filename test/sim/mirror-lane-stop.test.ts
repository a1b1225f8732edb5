// The simulator's lane on its own (drivers/sim/mirror-lane.ts), with a disk whose calls
// the test completes: a stop waits for the operations still being applied here, as the
// native lane's stop waits for its syncs (StopLocked), and what the core asks meanwhile
// (off, on) comes out as the native lane's blocking calls would order it. Fault plans
// reach the wait but rarely the core's calls during it, so they are checked here.

import { describe, expect, it } from "vitest";
import type { DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import type { LaneReport } from "../../core/mirror/lane.ts";
import type { DiskPort, StreamPort } from "../../core/ports.ts";
import type { MirrorMeta } from "../../core/mirror/meta.ts";
import { SimLane, type LaneFrame } from "../../drivers/sim/mirror-lane.ts";

function stoppingLane() {
  const held: { op: DiskOp; done: (result: DiskResult) => void }[] = [];
  const disk = { apply: (op: DiskOp, done: (result: DiskResult) => void) => held.push({ op, done }) } as unknown as DiskPort<MirrorMeta>;
  let peers: (peer: string, connected: boolean) => void = () => {};
  const stream: StreamPort<LaneFrame> = { send: () => {}, listen: () => {}, watchPeers: (report) => (peers = report) };
  const queued: (() => void)[] = [];
  const answers: [number, DiskResult][] = [];
  const intercepted: number[] = [];
  const reports: LaneReport[] = [];
  const lane = new SimLane({
    self: "n1",
    peer: "n2",
    blockSize: 4_096,
    extentBlocks: 16,
    disk,
    followerDisk: { apply: () => {} },
    stream,
    later: (run) => queued.push(run),
    intercept: (id) => intercepted.push(id),
    answer: (id, result) => answers.push([id, result]),
    nameCount: () => 1,
  });
  lane.listen((report) => reports.push(report));
  const flush = () => {
    while (queued.length > 0) queued.shift()!();
  };
  peers("n2", true);
  lane.on(3, 7);
  lane.arm("f", "all");
  // An fsync on the lane, its local apply under way; then the connection is lost.
  lane.submit(1, { kind: "fsync", path: "f" });
  expect(held.map(({ op }) => op.kind)).toEqual(["fsync"]);
  peers("n2", false);
  flush();
  return { lane, held, answers, intercepted, reports, flush, peers };
}

describe("the simulator's lane, stopped while an operation is applied here", () => {
  it("waits for it: a failed fsync is answered with its error, and the stop's report follows", () => {
    const { held, answers, reports, flush } = stoppingLane();
    expect(reports).toEqual([]);
    held[0]!.done("EIO");
    flush();
    expect(answers).toEqual([[1, "EIO"]]);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ epoch: 7, stopped: true, why: "the lane's connection to the peer is lost", resubmit: [], errors: [{ path: "f", op: "fsync f", error: "EIO" }] });
  });

  it("an on() meanwhile takes effect after the stop, whose operations are the old lane's", () => {
    const { lane, held, answers, intercepted, reports, flush, peers } = stoppingLane();
    // The core's off(): already stopped (the native off() returns once the stop is done,
    // its report delivered before the stop's own).
    lane.off();
    flush();
    expect(reports.map(({ epoch, why }) => [epoch, why])).toEqual([[7, "already stopped"]]);
    lane.on(3, 8);
    // Not on yet: what comes now goes to the core, after the lane's operations.
    lane.submit(2, { kind: "fsync", path: "f" });
    expect(held).toHaveLength(1);
    held[0]!.done(null);
    flush();
    // Given back (the peer never answered), then the core's, in that order.
    expect(reports.map(({ epoch, why, resubmit }) => [epoch, why, resubmit.map(({ id }) => id)])).toEqual([
      [7, "already stopped", []],
      [7, "the lane's connection to the peer is lost", [1]],
    ]);
    expect(intercepted).toEqual([2]);
    expect(answers).toEqual([]);
    // On for epoch 8 now, its arming cleared: a write into f goes to the core until armed.
    peers("n2", true);
    lane.answered();
    lane.answered();
    lane.arm("f", "all");
    lane.submit(3, { kind: "fsync", path: "f" });
    expect(held.map(({ op }) => op.kind)).toEqual(["fsync", "fsync"]);
  });

  it("an on() and an off() meanwhile: that lane never ran, and its stopped report has its epoch", () => {
    const { lane, held, reports, flush } = stoppingLane();
    lane.off();
    lane.on(3, 8);
    lane.off();
    flush();
    expect(reports.map(({ epoch, stopped, why }) => [epoch, stopped, why])).toEqual([
      [7, true, "already stopped"],
      [8, true, "asked"],
    ]);
    held[0]!.done(null);
    flush();
    expect(reports.map(({ epoch, why }) => [epoch, why])).toEqual([
      [7, "already stopped"],
      [8, "asked"],
      [7, "the lane's connection to the peer is lost"],
    ]);
    // Still off: nothing is admitted.
    lane.submit(2, { kind: "fsync", path: "f" });
    expect(held).toHaveLength(1);
  });
});
