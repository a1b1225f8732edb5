// The activity log (the hot map, core/mirror/meta.ts): what a primary that crashes may have
// applied without its peer, so what the resync after its return resends. An active file
// keeps the extents it writes now hot, not every extent it ever wrote: a database that
// rewrites one region for a while, then crashes, gets that region resent, not the file.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { write } from "./mirror-submit.ts";

const block = 4_096;
/** The world's hot extent: 4 blocks. */
const extentBytes = 4 * block;
const fill = (byte: number, length = block): Uint8Array => new Uint8Array(length).fill(byte);

describe("the activity log of an active file", () => {
  for (const lane of [false, true]) {
    it(`keeps the extents written lately, and a crash resends only those (lane ${lane ? "on" : "off"})`, () => {
      const world = new MirrorWorld({ seed: 21, lane, disk: { writebackMs: null } });
      world.powerOn("n1");
      world.powerOn("n2");
      world.runUntil(1_000);
      world.command("n1", "prim");
      expect(world.runUntilCondition(() => inSync(world) && (!lane || world.node("n1").runtime?.state.lane?.state === "on"), 10_000)).toBe(true);
      // A 1 MiB file (64 extents), written whole, then its first extent rewritten for 12 s
      // (past the activity log's 2 s), each write with its fsync (a database's hot pages).
      expect(write(world, { kind: "create", path: "table", mode: 0o644 })).toBeNull();
      expect(write(world, { kind: "write", path: "table", offset: 0, data: fill(0x41, 64 * extentBytes) })).toBeNull();
      expect(write(world, { kind: "fsync", path: "table" })).toBeNull();
      for (let round = 0; round < 60; round++) {
        expect(write(world, { kind: "write", path: "table", offset: (round % 4) * block, data: fill(round) })).toBeNull();
        expect(write(world, { kind: "fsync", path: "table" })).toBeNull();
        world.runFor(200);
      }
      const hot = world.node("n1").runtime!.state.meta.hot.get("table");
      expect(hot).toEqual({ all: false, blocks: new Set([0]) });
      // n1 loses power; n2 takes over; n1 comes back and is resynced from n2.
      world.powerOff("n1");
      expect(world.runUntilCondition(() => world.node("n2").role === "ALONE", world.nowMs + 5_000)).toBe(true);
      const before = world.node("n2").runtime!.state.stats.resyncBlockBytes;
      world.powerOn("n1");
      expect(world.runUntilCondition(() => world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
      const resent = world.node("n2").runtime!.state.stats.resyncBlockBytes - before;
      // The extent n1 was writing when it crashed; not the 1 MiB it wrote 12 s before.
      expect(resent).toBeGreaterThan(0);
      expect(resent).toBeLessThanOrEqual(extentBytes);
      expect(world.violations).toEqual([]);
    });
  }

  it("drops what a primary wrote alone before its peer came back: a crash soon after resends none of it", () => {
    // The Docker lab found it: a primary that created a whole database alone, then lost
    // power two seconds after its new secondary was up to date, had all of it resent.
    const world = new MirrorWorld({ seed: 22, lane: true, disk: { writebackMs: null } });
    world.powerOn("n1");
    world.runUntil(1_000);
    world.command("n1", "prim");
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", 5_000)).toBe(true);
    for (let index = 0; index < 20; index++) {
      expect(write(world, { kind: "create", path: `t${index}`, mode: 0o644 })).toBeNull();
      expect(write(world, { kind: "write", path: `t${index}`, offset: 0, data: fill(index, 16 * extentBytes) })).toBeNull();
    }
    expect(write(world, { kind: "fsync", path: null })).toBeNull();
    world.runFor(6_000);
    world.powerOn("n2");
    expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
    world.runFor(1_000);
    expect(write(world, { kind: "write", path: "t0", offset: 0, data: fill(0x99) })).toBeNull();
    world.powerOff("n1");
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE", world.nowMs + 5_000)).toBe(true);
    const before = world.node("n2").runtime!.state.stats.resyncBlockBytes;
    world.powerOn("n1");
    expect(world.runUntilCondition(() => world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
    // The extent written last (and what n2 wrote alone, nothing here), not the 5 MiB.
    expect(world.node("n2").runtime!.state.stats.resyncBlockBytes - before).toBeLessThanOrEqual(extentBytes);
    expect(world.violations).toEqual([]);
  });
});

describe("the activity log of a node alone", () => {
  // n1 and n2 both hold a file of 64 extents; n2 loses power and n1, alone, rewrites the
  // file in sequence, one extent per write. Each write makes its extent new to the hot map
  // (its metadata write first); a write just past a run of extents it wrote makes as many
  // more hot, so of 62 writes the 1st, 2nd, 4th, 8th, 16th and 32nd take a metadata write
  // (core/mirror/lane.ts, aheadOfWrite). Then n1 loses power with a write in an extent made
  // hot ahead, part of it on its disk: coming back, that extent must be resent to n2.
  it("makes extents hot ahead of a sequential writer, and a crash resends what it wrote in them", () => {
    const world = new MirrorWorld({ seed: 23, disk: { writebackMs: null, tornWrites: true } });
    world.powerOn("n1");
    world.powerOn("n2");
    world.runUntil(1_000);
    world.command("n1", "prim");
    expect(world.runUntilCondition(() => inSync(world), 10_000)).toBe(true);
    expect(write(world, { kind: "create", path: "table", mode: 0o644 })).toBeNull();
    expect(write(world, { kind: "write", path: "table", offset: 0, data: fill(0x41, 64 * extentBytes) })).toBeNull();
    expect(write(world, { kind: "fsync", path: "table" })).toBeNull();
    world.runFor(3_000);
    world.powerOff("n2");
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 5_000)).toBe(true);
    world.runFor(1_000);
    const n1 = world.node("n1");
    const metaBefore = n1.runtime!.state.stats.metaWrites;
    const writes = 62;
    for (let index = 0; index < writes; index++) expect(write(world, { kind: "write", path: "table", offset: index * extentBytes, data: fill(0x50, extentBytes) })).toBeNull();
    expect(n1.runtime!.state.stats.metaWrites - metaBefore).toBe(6);
    // The last extent was made hot ahead; n1 loses power while writing it.
    expect(n1.runtime!.state.meta.hot.get("table")?.blocks.has(writes)).toBe(true);
    world.submit({ kind: "write", path: "table", offset: writes * extentBytes, data: fill(0x5a, extentBytes) }, () => {});
    world.runFor(0.25);
    world.powerOff("n1");
    const torn = world.node("n1").disk.fileBytes("table", "durable");
    expect(torn?.subarray(writes * extentBytes).some((byte) => byte === 0x5a)).toBe(true);
    world.runFor(1_000);
    world.powerOn("n1");
    world.powerOn("n2");
    expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 30_000)).toBe(true);
    expect(world.node("n2").disk.fileBytes("table")).toEqual(world.node("n1").disk.fileBytes("table"));
    expect(world.violations).toEqual([]);
  });
});
