// The primary's metadata write failing (its state directory's disk full or failing). The
// marks of an operation are durable before it is applied: that is what lets a resync
// after a crash find it. A failed write used to be logged and gone past, the operations
// waiting for it applied with their marks in memory only: one applied here and not on the
// peer before a crash was then never resent, and the trees stayed different. Now the
// operations waiting for the write fail with its error, unapplied (as a local disk would
// fail them), and the next operation writes the marks again.

import { describe, expect, it } from "vitest";
import type { DiskResult } from "../../core/mirror/disk-ops.ts";
import { checkFinal, inSync, settle } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

describe("the primary's metadata write failing", () => {
  for (const lane of [false, true]) {
    it(`fails the operations that waited for it, unapplied, and the next one writes the marks again (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 61, lane });
      world.node("n1").disk.failNext("persistMeta", "ENOSPC");
      expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBe("ENOSPC");
      expect(world.node("n1").disk.fileBytes("f")).toBeNull();
      expect(world.logs.some((each) => each.node === "n1" && each.entry.event === "mirror.meta_failed")).toBe(true);
      // Its marks are in memory since the failed write: this create writes them again.
      const writes = world.node("n1").runtime!.state.stats.metaWrites;
      expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
      expect(world.node("n1").runtime!.state.stats.metaWrites).toBeGreaterThan(writes);
      expect(write(world, { kind: "write", path: "f", offset: 0, data: new Uint8Array(10).fill(5) })).toBeNull();
      expect(world.runUntilCondition(() => inSync(world), world.nowMs + 5_000)).toBe(true);
      expect(world.node("n2").disk.fileBytes("f")).toEqual(new Uint8Array(10).fill(5));
      expect(world.violations).toEqual([]);
    });
  }

  it("completes nothing alone before the new generation is durable: its write failing, the primary writes it again until it succeeds", () => {
    const world = syncedWorld({ seed: 63, lane: false, failover: true });
    expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
    // The peer goes; the primary's first write of its new generation fails.
    world.powerOff("n2");
    const n1 = world.node("n1");
    n1.disk.failNext("persistMeta", "ENOSPC");
    const gen = n1.runtime!.state.meta.gen;
    let answer: DiskResult | "unreachable" | undefined;
    world.submit({ kind: "write", path: "f", offset: 0, data: new Uint8Array(10).fill(7) }, (result) => (answer = result));
    expect(world.runUntilCondition(() => n1.runtime!.state.meta.gen !== gen, world.nowMs + 5_000, 0.05)).toBe(true);
    world.runFor(200);
    // Not completed on the strength of a generation the disk does not have.
    expect(answer === undefined || answer === "ENOSPC").toBe(true);
    expect(n1.disk.durableMeta()!.gen).toBe(gen);
    expect(world.logs.some((each) => each.node === "n1" && each.entry.event === "mirror.meta_retry")).toBe(true);
    // Written again a second later: the node goes on alone.
    expect(world.runUntilCondition(() => n1.role === "ALONE" && n1.readiness === "Ready", world.nowMs + 5_000)).toBe(true);
    expect(n1.disk.durableMeta()!.gen).toBe(n1.runtime!.state.meta.gen);
    expect(n1.disk.durableMeta()!.gen).not.toBe(gen);
    expect(write(world, { kind: "write", path: "f", offset: 0, data: new Uint8Array(10).fill(8) })).toBeNull();
    world.powerOn("n2");
    expect(settle(world)).toBe(true);
    checkFinal(world);
    expect(world.node("n2").disk.fileBytes("f")).toEqual(new Uint8Array(10).fill(8));
    expect(world.violations).toEqual([]);
  });

  it("leaves nothing applied here without its marks: a crash before the peer heard, then a resync from the peer, ends with the trees alike", () => {
    const world = syncedWorld({ seed: 62, lane: false, failover: true });
    expect(write(world, { kind: "fsync", path: null })).toBeNull();
    expect(world.runUntilCondition(() => world.node("n1").runtime!.state.meta.dirty.size === 0, world.nowMs + 20_000)).toBe(true);
    // The peer will not hear of it: the network is cut before n1 knows.
    world.partition();
    world.node("n1").disk.failNext("persistMeta", "EIO");
    let answer: DiskResult | "unreachable" | undefined;
    world.submit({ kind: "create", path: "g", mode: 0o644 }, (result) => (answer = result));
    world.runFor(20);
    world.crash("n1");
    world.heal();
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE", world.nowMs + 10_000)).toBe(true);
    world.restart("n1");
    expect(settle(world)).toBe(true);
    checkFinal(world);
    expect(answer === undefined || answer === "EIO" || answer === "unreachable").toBe(true);
    expect(world.node("n1").disk.fileBytes("g")).toEqual(world.node("n2").disk.fileBytes("g"));
    expect(world.violations).toEqual([]);
  });

  it("a secondary outdated by its primary says so only once that is durable: its write failing, the primary waits for the retry", () => {
    const world = syncedWorld({ seed: 64, lane: false, failover: true });
    expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
    const n1 = world.node("n1");
    const n2 = world.node("n2");
    n2.disk.failNext("persistMeta", "EIO");
    // The stream dies, the heartbeats go on: n1 fences n2 before it completes anything alone.
    world.streams.partition("n1", "n2");
    let answer: DiskResult | "unreachable" | undefined;
    world.submit({ kind: "write", path: "f", offset: 0, data: new Uint8Array(10).fill(3) }, (result) => (answer = result));
    const outdated = () => world.logs.some((each) => each.node === "n1" && each.entry.event === "mirror.peer_outdated");
    expect(world.runUntilCondition(outdated, world.nowMs + 10_000, 0.05)).toBe(true);
    // n1 goes on alone only on the strength of an "outdated" that n2's disk holds: back from
    // a crash, n2 could not take over as an up-to-date copy without what n1 wrote alone.
    expect(n2.disk.durableMeta()!.consistent).toBe(false);
    expect(world.logs.some((each) => each.node === "n2" && each.entry.event === "mirror.meta_retry")).toBe(true);
    expect(world.runUntilCondition(() => answer !== undefined, world.nowMs + 5_000, 0.05)).toBe(true);
    expect(answer).toBeNull();
    expect(n1.role).toBe("ALONE");
    world.streams.heal("n1", "n2");
    expect(settle(world)).toBe(true);
    checkFinal(world);
    expect(n2.disk.fileBytes("f")).toEqual(new Uint8Array(10).fill(3));
    expect(world.violations).toEqual([]);
  });
});
