// The lane (core/mirror/lane.ts) in the simulator: it carries the primary's in-sync writes,
// and each of its rules is needed: a lane that breaks one (a planted bug) leaves the two
// trees different after a failure the mirror must survive.

import { describe, expect, it } from "vitest";
import type { DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import { syncedWorld, write } from "./mirror-submit.ts";
import { inSync, settle } from "../../drivers/sim/mirror-checker.ts";
import { commitWrites } from "../../drivers/sim/mirror-lane.ts";
import { MirrorWorld, type MirrorPlantedBug } from "../../drivers/sim/mirror-world.ts";

const block = 4_096;
const fill = (byte: number, length = block): Uint8Array => new Uint8Array(length).fill(byte);

/** n1 primary, n2 an up-to-date secondary, the lane on; no clients (the test writes). */
function laneWorld(options: { seed: number; plantedBug?: MirrorPlantedBug; tornWrites?: boolean; ack?: "applied" | "received"; fsyncMs?: number }): MirrorWorld {
  const world = new MirrorWorld({
    seed: options.seed,
    lane: true,
    ack: options.ack ?? "applied",
    plantedBug: options.plantedBug ?? "none",
    // Only an fsync makes data durable: what the test leaves unflushed is what a power loss takes.
    disk: { writebackMs: null, tornWrites: options.tornWrites ?? false, ...(options.fsyncMs === undefined ? {} : { fsyncMs: options.fsyncMs }) },
  });
  world.powerOn("n1");
  world.powerOn("n2");
  world.runUntil(1_000);
  world.command("n1", "prim");
  expect(world.runUntilCondition(() => inSync(world) && world.node("n1").runtime?.state.lane?.state === "on", 60_000)).toBe(true);
  return world;
}

/** A file of four blocks, durable on both nodes, then two checkpoints (the lane disarmed,
 *  the file's extents cold: not written since the last one). Written in more writes than
 *  the lane commits a path after (commitWrites), so its next writes stay in the page cache. */
function durableFile(world: MirrorWorld): void {
  expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
  for (let index = 0; index <= commitWrites; index++) expect(write(world, { kind: "write", path: "f", offset: (index % 4) * block, data: fill(0x41) })).toBeNull();
  expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
  world.runFor(1_200);
}

/** Block 0 of f written through the core (which arms its extent), then block 1 on the lane. */
function writeOnLane(world: MirrorWorld, first: number, second: number): void {
  const lane = world.node("n1").lane!;
  expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(first) })).toBeNull();
  const before = lane.completedTotal;
  expect(write(world, { kind: "write", path: "f", offset: block, data: fill(second) })).toBeNull();
  expect(lane.completedTotal).toBe(before + 1);
}

/** laneWorld with durableFile, then n2 powered off: n1 alone, its lane of a node alone on. */
function aloneWorld(options: Parameters<typeof laneWorld>[0]): MirrorWorld {
  const world = laneWorld(options);
  durableFile(world);
  world.powerOff("n2");
  const n1 = () => world.node("n1").runtime!.state;
  expect(world.runUntilCondition(() => n1().link === null && n1().job === null && n1().lane?.session === null && n1().lane?.state === "on", 10_000)).toBe(true);
  return world;
}

function finalTrees(world: MirrorWorld): { converged: boolean; n2: Uint8Array | null } {
  const converged = settle(world, 30_000);
  return { converged, n2: world.node("n2").disk.fileBytes("f") };
}

describe("the lane", () => {
  it("completes in-sync writes into armed extents without the core, and the trees stay identical", () => {
    const world = laneWorld({ seed: 1 });
    durableFile(world);
    const lane = world.node("n1").lane!;
    const before = lane.completedTotal;
    // The first write of an extent takes the core (which arms it), the next ones the lane.
    for (let round = 0; round < 6; round++) expect(write(world, { kind: "write", path: "f", offset: (round % 4) * block, data: fill(0x50 + round) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    expect(lane.completedTotal - before).toBeGreaterThanOrEqual(5);
    const { converged } = finalTrees(world);
    expect(converged).toBe(true);
    expect(world.violations).toEqual([]);
  });

  // The secondary loses power with a lane write in its page cache only: the primary's dirty
  // map must name that block (the lane's report), or the resync leaves the old one there.
  const secondaryPowerLoss = (plantedBug: MirrorPlantedBug) => {
    const world = laneWorld({ seed: 2, plantedBug });
    durableFile(world);
    writeOnLane(world, 0x43, 0x42);
    world.powerOff("n2");
    world.runFor(2_000);
    world.powerOn("n2");
    return finalTrees(world);
  };

  it("marks what it wrote: a secondary's power loss before the checkpoint is resynced", () => {
    const { converged, n2 } = secondaryPowerLoss("none");
    expect(converged).toBe(true);
    expect(n2?.subarray(block, 2 * block)).toEqual(fill(0x42));
  });

  it("(planted: a lane that forgets its marks leaves the secondary with the old block)", () => {
    const { converged, n2 } = secondaryPowerLoss("lane-forgets-marks");
    expect(converged).toBe(false);
    expect(n2?.subarray(block, 2 * block)).toEqual(fill(0x41));
  });

  // The primary loses power just after applying a lane write the secondary never got; part
  // of it reached its disk (a torn write). Coming back, it must know that extent was hot.
  const primaryPowerLoss = (plantedBug: MirrorPlantedBug) => {
    const world = laneWorld({ seed: 3, plantedBug, tornWrites: true });
    // f's extents cold: a write there must make its extent hot (durably) first.
    durableFile(world);
    expect(world.node("n1").runtime!.state.meta.hot.has("f")).toBe(false);
    const late = { kind: "write", path: "f", offset: 3 * block, data: fill(0x5a) } as const;
    world.submit(late, () => {});
    // At the primary after 0.1 ms, applied there 0.05 ms later; its frame, sent at 0.1 ms,
    // takes 0.2 ms (a connection that ends drops what it carries).
    world.runFor(0.25);
    world.powerOff("n1");
    const torn = world.node("n1").disk.fileBytes("f", "durable");
    world.runFor(3_000);
    world.powerOn("n1");
    return { torn, ...finalTrees(world) };
  };

  it("writes only into extents made hot first: a primary's torn write is resynced", () => {
    const { converged } = primaryPowerLoss("none");
    expect(converged).toBe(true);
  });

  it("(planted: a lane that writes into any extent leaves the old primary with a torn block)", () => {
    const { converged, torn } = primaryPowerLoss("lane-ignores-arming");
    // The precondition of the failure: part of the write persisted on the primary.
    expect(torn?.subarray(3 * block, 4 * block).some((byte) => byte === 0x5a)).toBe(true);
    expect(converged).toBe(false);
  });

  // A sequential rewrite of a file whose extents went cold (16 extents of 4 blocks, not
  // written for 3 s): a write just past a run of hot extents makes as many more hot and
  // armed (core/mirror/lane.ts, aheadOfWrite), so of ten writes the 1st, 2nd, 4th and 8th
  // take the core (one metadata write each) and the rest the lane. The primary then loses
  // power with a write into the next extent, armed ahead, applied there only, part of it on
  // its disk: coming back, it must know that extent was hot, or the torn block stays.
  const sequentialRewrite = (plantedBug: MirrorPlantedBug, writes: number) => {
    const world = laneWorld({ seed: 11, plantedBug, tornWrites: true });
    const extent = 4 * block;
    expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
    for (let index = 0; index < 16; index++) expect(write(world, { kind: "write", path: "f", offset: index * extent, data: fill(0x41, extent) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    world.runFor(3_000);
    const n1 = world.node("n1");
    expect(n1.runtime!.state.meta.hot.has("f")).toBe(false);
    const [laneBefore, metaBefore] = [n1.lane!.completedTotal, n1.runtime!.state.stats.metaWrites];
    for (let index = 0; index < writes; index++) expect(write(world, { kind: "write", path: "f", offset: index * extent, data: fill(0x50 + index, extent) })).toBeNull();
    const onLane = n1.lane!.completedTotal - laneBefore;
    const metaWrites = n1.runtime!.state.stats.metaWrites - metaBefore;
    // The next extent was armed ahead by the last write through the core.
    expect(n1.lane!.isArmed("f", writes)).toBe(true);
    world.submit({ kind: "write", path: "f", offset: writes * extent, data: fill(0x5a, extent) }, () => {});
    world.runFor(0.25);
    world.powerOff("n1");
    const torn = world.node("n1").disk.fileBytes("f", "durable");
    world.runFor(3_000);
    world.powerOn("n1");
    return { onLane, metaWrites, torn, ...finalTrees(world), violations: world.violations };
  };

  it("arms ahead of a sequential writer: a rewrite of a cold file takes the lane after its first writes, and what it wrote there is resynced after a power loss", () => {
    const { onLane, metaWrites, converged, violations } = sequentialRewrite("none", 10);
    expect(onLane).toBe(6);
    expect(metaWrites).toBe(4);
    expect(converged).toBe(true);
    expect(violations).toEqual([]);
  });

  it("(planted: extents armed ahead but not made hot leave the old primary with a torn block)", () => {
    // The second write arms the third extent ahead either way (its run is the first).
    const { torn, converged } = sequentialRewrite("ahead-unmarked", 2);
    expect(torn?.subarray(2 * 4 * block, 3 * 4 * block).some((byte) => byte === 0x5a)).toBe(true);
    expect(converged).toBe(false);
  });

  // A file written steadily, through many checkpoints: each harvest leaves armed what the
  // lane wrote since the last one, so only the first write takes the core. With flushes of
  // 3 s (past the activity log's 2 s), the clear after each must still keep those extents
  // hot: the lane writes there all along, and what it wrote after the last flush is in the
  // primary's page cache only when it loses power.
  const steadyWriter = (plantedBug: MirrorPlantedBug, fsyncMs: number) => {
    const world = laneWorld({ seed: 7, plantedBug, fsyncMs });
    // An operation may wait behind a flush (the disk's calls run in order): up to 30 s.
    const slowWrite = (op: DiskOp) => expect(write(world, op, 30_000)).toBeNull();
    slowWrite({ kind: "create", path: "f", mode: 0o644 });
    slowWrite({ kind: "write", path: "f", offset: 0, data: fill(0x41, 4 * block) });
    slowWrite({ kind: "fsync", path: "f" });
    world.runFor(2 * fsyncMs + 1_200);
    const lane = world.node("n1").lane!;
    const before = lane.completedTotal;
    const writes = 60;
    for (let round = 0; round < writes; round++) {
      slowWrite({ kind: "write", path: "f", offset: (round % 4) * block, data: fill(round) });
      world.runFor(100);
    }
    const onLane = lane.completedTotal - before;
    world.powerOff("n1");
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE", world.nowMs + 5_000)).toBe(true);
    world.powerOn("n1");
    return { onLane, writes, ...finalTrees(world), violations: world.violations };
  };

  it("keeps a file written steadily on the lane across checkpoints", () => {
    const { onLane, writes, converged, violations } = steadyWriter("none", 300);
    expect(onLane).toBe(writes - 1);
    expect(converged).toBe(true);
    expect(violations).toEqual([]);
  });

  it("keeps hot what the lane may write into, however long the flush: the old primary's lost page cache is resynced", () => {
    const { converged, violations } = steadyWriter("none", 3_000);
    expect(converged).toBe(true);
    expect(violations).toEqual([]);
  });

  it("(planted: a clear that keeps only what was written lately leaves the old primary with an old block)", () => {
    const { converged } = steadyWriter("clear-drops-armed", 3_000);
    expect(converged).toBe(false);
  });

  // A path fsynced after each write is committed to: its writes are synced on both before
  // they complete, so the fsync after one completes at once. An operation through the core
  // in between (here a truncate that extends the file) must cost that fsync its shortcut:
  // the core's change is in both page caches only.
  const commits = (plantedBug: MirrorPlantedBug) => {
    const world = laneWorld({ seed: 6, plantedBug });
    durableFile(world);
    const lane = world.node("n1").lane!;
    const durable = (node: string, index: number) => world.node(node).disk.fileBytes("f", "durable")?.subarray(index * block, (index + 1) * block);
    // The first write arms the extent (the core); the next one and its fsync take the lane.
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x61) })).toBeNull();
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x62) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    const [durableBefore, sparedBefore] = [lane.durableTotal, lane.sparedTotal];
    for (let index = 1; index < 4; index++) {
      expect(write(world, { kind: "write", path: "f", offset: index * block, data: fill(0x70 + index) })).toBeNull();
      expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
      for (const node of ["n1", "n2"]) expect(durable(node, index), `block ${index} on ${node}`).toEqual(fill(0x70 + index));
    }
    const taken = { durable: lane.durableTotal - durableBefore, spared: lane.sparedTotal - sparedBefore };
    expect(write(world, { kind: "truncate", path: "f", size: 9 * block })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    return { taken, afterCore: ["n1", "n2"].map((node) => world.node(node).disk.fileBytes("f", "durable")?.length), world };
  };

  it("commits a path fsynced after each write: its writes durable on both as they complete, its fsyncs at once", () => {
    const { taken, afterCore, world } = commits("none");
    expect(taken).toEqual({ durable: 3, spared: 3 });
    expect(afterCore).toEqual([9 * block, 9 * block]);
    expect(settle(world, 30_000)).toBe(true);
    expect(world.violations).toEqual([]);
  });

  it("(planted: a lane that spares an fsync after an operation through the core leaves that change durable nowhere)", () => {
    const { taken, afterCore } = commits("lane-spares-after-core");
    expect(taken).toEqual({ durable: 3, spared: 3 });
    expect(afterCore).toEqual([4 * block, 4 * block]);
  });

  // A file with a second name is written through that name under the name's own habit:
  // its fsync must never be spared, or what went through the other name is durable nowhere.
  it("never spares the fsync of a file with another name, so what was written through that name is durable on both", () => {
    const world = laneWorld({ seed: 6 });
    durableFile(world);
    const lane = world.node("n1").lane!;
    const durable = (node: string, index: number) => world.node(node).disk.fileBytes("f", "durable")?.subarray(index * block, (index + 1) * block);
    for (const op of [
      { kind: "write", path: "f", offset: 0, data: fill(0x61) },
      { kind: "write", path: "f", offset: 0, data: fill(0x62) },
      { kind: "fsync", path: "f" },
      { kind: "write", path: "f", offset: block, data: fill(0x63) },
      { kind: "fsync", path: "f" },
      { kind: "link", from: "f", to: "g" },
      // Through the core (it arms g's extent), then an fsync of f that makes it clean again.
      { kind: "write", path: "g", offset: 2 * block, data: fill(0x51) },
      { kind: "fsync", path: "f" },
      // On the lane, through g only.
      { kind: "write", path: "g", offset: 2 * block, data: fill(0x52) },
    ] as DiskOp[]) {
      expect(write(world, op)).toBeNull();
    }
    const spared = lane.sparedTotal;
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    expect(lane.sparedTotal).toBe(spared);
    for (const node of ["n1", "n2"]) expect(durable(node, 2), `block 2 on ${node}`).toEqual(fill(0x52));
    expect(world.violations).toEqual([]);
  });

  // The primary's writeback fails under a lane fsync (its disk loses what was not durable,
  // and a later fsync on another descriptor would succeed): the application must get the
  // error, as from a local disk, and the secondary must not keep what the primary lost.
  it("answers a failed writeback's fsync with its error and resends the path, so both keep the same", () => {
    const world = laneWorld({ seed: 8 });
    durableFile(world);
    writeOnLane(world, 0x51, 0x52);
    world.diskLoseWriteback("n1");
    expect(write(world, { kind: "fsync", path: "f" })).toBe("EIO");
    const { converged, n2 } = finalTrees(world);
    expect(converged).toBe(true);
    // n1 lost both writes (never durable there): n2 has what n1 has.
    expect(n2?.subarray(0, 2 * block)).toEqual(fill(0x41, 2 * block));
    expect(world.violations).toEqual([]);
  });

  // The lane stopped (here by a resource the module waits for: it leaves the primary role)
  // while its fsync is still being applied here, and that fsync fails (a failed
  // writeback). Given back to the core at once, it was applied again and succeeded with
  // the data gone: the stop must wait for it, and answer its error.
  it("answers a failed writeback's fsync with its error when the lane stops while it is applied here", () => {
    const world = laneWorld({ seed: 8, fsyncMs: 40 });
    durableFile(world);
    writeOnLane(world, 0x51, 0x52);
    world.diskLoseWriteback("n1");
    const lane = world.node("n1").lane!;
    const before = lane.completedTotal;
    let answer: DiskResult | "unreachable" | undefined;
    world.submit({ kind: "fsync", path: "f" }, (result) => (answer = result));
    world.runFor(5);
    expect(answer).toBeUndefined();
    world.hold("n1", true);
    world.runFor(1);
    world.hold("n1", false);
    expect(world.runUntilCondition(() => answer !== undefined, world.nowMs + 5_000)).toBe(true);
    expect(answer).toBe("EIO");
    // Completed by the lane with its error, not by the core.
    expect(lane.completedTotal).toBe(before + 1);
    const { converged, n2 } = finalTrees(world);
    expect(converged).toBe(true);
    expect(n2?.subarray(0, 2 * block)).toEqual(fill(0x41, 2 * block));
    expect(world.violations).toEqual([]);
  });

  // A committed path's write is made durable by the lane (synced on both before it
  // completes). If that sync fails here, the failed writeback also dropped the file's
  // earlier writes not yet durable: the write must answer the error (write(2) may report a
  // writeback error), not go back to the core, which would write it again, complete it,
  // and leave the primary without what the secondary keeps.
  const durableWriteLost = (node: "n1" | "n2") => {
    const world = laneWorld({ seed: 8 });
    durableFile(world);
    const lane = world.node("n1").lane!;
    // Block 0 through the core (arming its extent), then the lane's fsync: committed.
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x51) })).toBeNull();
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x52) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    // The file grown by a block through the core: in both page caches only.
    expect(write(world, { kind: "truncate", path: "f", size: 5 * block })).toBeNull();
    const wasDurable = world.node("n1").disk.fileBytes("f", "durable");
    world.diskLoseWriteback(node);
    const durableBefore = lane.durableTotal;
    const answer = write(world, { kind: "write", path: "f", offset: 0, data: fill(0x54) });
    return { answer, durable: lane.durableTotal - durableBefore, wasDurable, ...finalTrees(world), n1: world.node("n1").disk.fileBytes("f"), world };
  };

  it("answers a durable write whose own sync failed here with the error, and resends the path, so both keep the same", () => {
    const { answer, durable, wasDurable, converged, n1, n2, world } = durableWriteLost("n1");
    expect(answer).toBe("EIO");
    expect(durable).toBe(0);
    expect(converged).toBe(true);
    // n1 lost the write and the grown block (neither durable there): n2 has what n1 has.
    expect(wasDurable?.length).toBe(4 * block);
    expect(wasDurable?.[0]).toBe(0x52);
    expect(n1).toEqual(wasDurable);
    expect(n2).toEqual(n1);
    expect(world.violations).toEqual([]);
  });

  it("(a durable write whose sync failed on the secondary: the primary's data stays, and the secondary gets it back)", () => {
    const { answer, converged, n1, n2, world } = durableWriteLost("n2");
    expect(answer).toBeNull();
    expect(converged).toBe(true);
    // The resend is a resync of its own: timed and counted from the divergence, not from
    // the attachment's full resync seconds before.
    const resynced = world.logs.filter(({ node, entry }) => node === "n1" && entry.event === "mirror.resynced").map(({ entry }) => entry.fields);
    expect(resynced).toHaveLength(2);
    expect(resynced[0]).toMatchObject({ full: true });
    expect(resynced[1]).toMatchObject({ full: false });
    expect(resynced[1]!.ms).toBeLessThan(100);
    expect([0, 1, 4].map((index) => n1?.[index * block])).toEqual([0x54, 0x41, 0]);
    expect(n1?.length).toBe(5 * block);
    expect(n2).toEqual(n1);
    expect(world.violations).toEqual([]);
  });

  it("(without the lane, the core does the same: the error answered, the path resent)", () => {
    const world = syncedWorld({ seed: 8, lane: false, ack: "applied", disk: { writebackMs: null, tornWrites: false } });
    expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x41, 2 * block) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    expect(write(world, { kind: "write", path: "f", offset: block, data: fill(0x52) })).toBeNull();
    world.diskLoseWriteback("n1");
    expect(write(world, { kind: "fsync", path: "f" })).toBe("EIO");
    const { converged, n2 } = finalTrees(world);
    expect(converged).toBe(true);
    expect(n2?.subarray(0, 2 * block)).toEqual(fill(0x41, 2 * block));
  });

  // A primary alone (its peer powered off) writes through a lane of its own: applied here
  // only, completed without the core, and marked. When the peer is back the resync must
  // send what that lane wrote.
  const alone = (plantedBug: MirrorPlantedBug) => {
    const world = aloneWorld({ seed: 6, plantedBug });
    const n1 = () => world.node("n1").runtime!.state;
    const lane = world.node("n1").lane!;
    // The first write of each extent takes the core (which arms it), the next ones the lane.
    for (let round = 0; round < 8; round++) expect(write(world, { kind: "write", path: "f", offset: (round % 4) * block, data: fill(0x70 + round) })).toBeNull();
    const before = { lane: lane.aloneTotal, metaWrites: n1().stats.metaWrites };
    expect(write(world, { kind: "write", path: "f", offset: block, data: fill(0x7f) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    expect(lane.aloneTotal).toBe(before.lane + 2);
    expect(n1().stats.metaWrites).toBe(before.metaWrites);
    // A checkpoint period: the lane reports its marks, nothing is cleared alone.
    world.runFor(1_200);
    const marked = n1().meta.dirty.get("f")?.blocks.has(1) === true;
    expect(write(world, { kind: "write", path: "f", offset: 2 * block, data: fill(0x7e) })).toBeNull();
    world.powerOn("n2");
    return { marked, ...finalTrees(world) };
  };

  it("alone, writes through a lane of its own, without the core, and the returning peer is resynced with all of it", () => {
    const { marked, converged, n2 } = alone("none");
    expect(marked).toBe(true);
    expect(converged).toBe(true);
    expect(n2?.subarray(block, 2 * block)).toEqual(fill(0x7f));
    expect(n2?.subarray(2 * block, 3 * block)).toEqual(fill(0x7e));
  });

  it("alone, answers an error of this node's disk as a local disk would, and logs it", () => {
    const world = aloneWorld({ seed: 7 });
    const lane = world.node("n1").lane!;
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x61) })).toBeNull();
    const before = lane.aloneTotal;
    world.diskFailNext("n1", "EIO");
    expect(write(world, { kind: "write", path: "f", offset: block, data: fill(0x62) })).toBe("EIO");
    expect(lane.aloneTotal).toBe(before + 1);
    world.runFor(1_200);
    const logged = world.logs.filter(({ node, entry }) => node === "n1" && entry.event === "mirror.local_disk");
    expect(logged.map(({ entry }) => [entry.level, entry.fields])).toEqual([["error", { module: "db", op: "write f @4096+4096", error: "EIO", lane: true }]]);
  });

  it("(planted: a lane alone that forgets its marks leaves the returning peer with old blocks)", () => {
    const { marked, converged, n2 } = alone("lane-forgets-marks");
    expect(marked).toBe(false);
    expect(converged).toBe(false);
    expect(n2?.subarray(block, 2 * block)).not.toEqual(fill(0x7f));
  });

  // async="second": the core answers a write once the secondary *received* it, while the
  // secondary's lane applies frames beside the core's applies (its own thread). A lane write
  // admitted after such an answer must not reach the secondary's disk before the core's
  // write it overlaps, or the older data lands last there.
  it("with acknowledgements on receipt, keeps the core's writes and its own in one order on the secondary", () => {
    const world = laneWorld({ seed: 5, ack: "received" });
    expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x41, 16 * block) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "f" })).toBeNull();
    world.runFor(1_200);
    // Extent 0 (blocks 0-3) armed again; the others not.
    expect(write(world, { kind: "write", path: "f", offset: 0, data: fill(0x42) })).toBeNull();
    world.runFor(50);
    // The secondary's disk slow, with a backlog of the core's writes (extents 2 and 3).
    world.diskSlow("n2", 50);
    for (let index = 8; index < 16; index++) world.submit({ kind: "write", path: "f", offset: index * block, data: fill(0x60 + index) }, () => {});
    // Blocks 3-4 span an armed extent and one that is not: the core's.
    expect(write(world, { kind: "write", path: "f", offset: 3 * block, data: fill(0x61, 2 * block) })).toBeNull();
    const lane = world.node("n1").lane!;
    const before = lane.completedTotal;
    expect(write(world, { kind: "write", path: "f", offset: 3 * block, data: fill(0x62) })).toBeNull();
    expect(lane.completedTotal).toBe(before + 1);
    world.diskSlow("n2", 1);
    const { converged, n2 } = finalTrees(world);
    expect(n2?.subarray(3 * block, 4 * block)).toEqual(fill(0x62));
    expect(converged).toBe(true);
    expect(world.violations).toEqual([]);
  });
});
