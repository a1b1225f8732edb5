// CompositeLane (drivers/real/lane.ts): the core's one lane over the native lanes of a
// module's replicated directories, here over fakes of the native lane. Paths go to a
// native lane without its directory's name and come back with it; reports merge; a lane
// stopping on its own in the current epoch stops the others in the same report (else the
// core would believe the lane off while another still admits writes), and one of an
// earlier epoch stops nothing.

import { constants as osConstants } from "node:os";
import { describe, expect, it } from "vitest";
import type { DiskOp } from "../../core/mirror/disk-ops.ts";
import type { LaneReport } from "../../core/mirror/lane.ts";
import { CompositeLane, RealLane } from "../../drivers/real/lane.ts";
import type { FuseLane, NativeLaneReport } from "../../native/fuse.ts";

class FakeLane implements FuseLane {
  readonly calls: string[] = [];
  readonly armed: [string, readonly number[]][] = [];
  /** What the next off() or harvest() answers. */
  next: Partial<NativeLaneReport> = {};
  #reporter: ((report: NativeLaneReport) => void) | null = null;

  listen(): void {}
  on(session: number | null, epoch: number, host?: string, port?: number): void {
    this.calls.push(session === null ? `on alone ${epoch}` : `on ${session} ${epoch} ${host}:${port}`);
  }
  off(): NativeLaneReport {
    this.calls.push("off");
    return this.#take(true);
  }
  harvest(): NativeLaneReport {
    this.calls.push("harvest");
    return this.#take(false);
  }
  arm(path: string, extents: readonly number[]): void {
    this.armed.push([path, extents]);
  }
  follow(session: number | null, epoch?: number): void {
    this.calls.push(`follow ${session} ${epoch ?? ""}`.trim());
  }
  onReport(report: (report: NativeLaneReport) => void): void {
    this.#reporter = report;
  }
  stats(): { readonly completed: number; readonly applied: number; readonly durableWrites: number; readonly sparedFsyncs: number } {
    return { completed: 0, applied: 0, durableWrites: 0, sparedFsyncs: 0 };
  }
  takeWritten(): string[] | null {
    return [];
  }
  close(): void {}

  /** The native lane stopped on its own. */
  stopOnOwn(report: Partial<NativeLaneReport>): void {
    this.#reporter!({ ...empty, stopped: true, ...report });
  }

  #take(stopped: boolean): NativeLaneReport {
    const report = { ...empty, stopped, ...this.next };
    this.next = {};
    return report;
  }
}

const empty: NativeLaneReport = { epoch: null, stopped: false, why: "", marks: [], touched: [], resubmit: [], completed: 0, errors: [], differed: [] };
const write = (path: string): DiskOp => ({ kind: "write", path, offset: 0, data: new Uint8Array(4) });

function setUp(): { composite: CompositeLane; natives: FakeLane[]; reports: LaneReport[]; flush: () => Promise<void> } {
  const natives = [new FakeLane(), new FakeLane()];
  let adopted = 100;
  const lanes = natives.map((native, index) => ({
    volume: ["1-data", "2-wal"][index]!,
    lane: new RealLane({ native, peer: { host: "198.18.0.2", port: 7001 + index }, adopt: () => ++adopted, volume: ["1-data", "2-wal"][index]! }),
  }));
  const composite = new CompositeLane(lanes);
  const reports: LaneReport[] = [];
  composite.listen((report) => reports.push(report));
  return { composite, natives, reports, flush: () => new Promise((resolve) => setTimeout(resolve, 0)) };
}

describe("the lane of several directories", () => {
  it("turns every lane on and off, arms a path on its directory's lane without the name, and merges their reports", async () => {
    const { composite, natives, reports, flush } = setUp();
    composite.on(3, 7);
    expect(natives.map((native) => native.calls)).toEqual([["on 3 7 198.18.0.2:7001"], ["on 3 7 198.18.0.2:7002"]]);
    composite.arm("2-wal/seg/1", [0, 2]);
    composite.arm("1-data/base", "all");
    composite.arm("stray", [0]);
    expect(natives.map((native) => native.armed)).toEqual([[["base", [2 ** 53 - 1]]], [["seg/1", [0, 2]]]]);
    // Marks come as runs of blocks: [first, count, ...].
    natives[0]!.next = { epoch: 7, marks: [["base", [1, 3, 9, 1]]], touched: [["base", [0]]], completed: 4, resubmit: [{ id: 1, op: write("base") }], differed: ["base"] };
    natives[1]!.next = { epoch: 7, marks: [["seg/1", [0, 1]]], touched: [["seg/1", [0, 1]]], completed: 6, why: "", errors: [{ path: "seg/1", op: "write seg/1", errno: osConstants.errno.ENOSPC }] };
    composite.off();
    expect(reports).toEqual([]);
    await flush();
    expect(reports).toHaveLength(1);
    const report = reports[0]!;
    expect([report.epoch, report.stopped, report.completed, [...report.touched]]).toEqual([7, true, 10, [["1-data/base", [0]], ["2-wal/seg/1", [0, 1]]]]);
    expect([...report.marks.keys()]).toEqual(["1-data/base", "2-wal/seg/1"]);
    expect([...report.marks.get("1-data/base")!.blocks]).toEqual([1, 2, 3, 9]);
    expect([...report.marks.get("2-wal/seg/1")!.blocks]).toEqual([0]);
    expect(report.resubmit).toEqual([{ id: 101, op: write("1-data/base") }]);
    expect(report.errors).toEqual([{ path: "2-wal/seg/1", op: "write 2-wal/seg/1", error: "ENOSPC" }]);
    expect(report.differed).toEqual(["1-data/base"]);
    composite.follow({ session: 3, epoch: 8 });
    expect(natives.map((native) => native.calls.at(-1))).toEqual(["follow 3 8", "follow 3 8"]);
  });

  it("stops the other lanes when one stops on its own in the current epoch, in the same report", async () => {
    const { composite, natives, reports } = setUp();
    composite.on(3, 7);
    natives[0]!.next = { epoch: 7, resubmit: [{ id: 5, op: write("base") }] };
    natives[1]!.stopOnOwn({ epoch: 7, why: "the lane's connection to the peer ended", resubmit: [{ id: 9, op: write("seg/1") }] });
    expect(natives[0]!.calls).toEqual(["on 3 7 198.18.0.2:7001", "off"]);
    expect(reports).toHaveLength(1);
    expect(reports[0]!.stopped).toBe(true);
    expect(reports[0]!.why).toBe("the lane's connection to the peer ended");
    expect(reports[0]!.resubmit.map((each) => each.op)).toEqual([write("2-wal/seg/1"), write("1-data/base")]);
  });

  it("stops nothing for a lane's report of an earlier epoch", () => {
    const { composite, natives, reports } = setUp();
    composite.on(3, 7);
    composite.off();
    composite.on(3, 8);
    natives[1]!.stopOnOwn({ epoch: 7, why: "late" });
    expect(natives[0]!.calls).toEqual(["on 3 7 198.18.0.2:7001", "off", "on 3 8 198.18.0.2:7001"]);
    expect(reports.at(-1)!.why).toBe("late");
  });
});
