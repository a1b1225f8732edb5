// A large file's resync: sent in chunks (resyncChunkBytes, two blocks in the simulator),
// the next chunk read while the earlier ones are on the way (a file is not one round trip
// per chunk), at most resyncWorkers snapshots in flight, each block read once; a file of
// which only scattered blocks changed sends those, a chunk of them at a time, in order.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

describe("a large file's resync", () => {
  it("reads its next chunk while the earlier ones are on the way, each block once, at most resyncWorkers in flight", () => {
    const world = syncedWorld({ seed: 81, lane: false });
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").runtime!.state.phase === "stopped", world.nowMs + 5_000)).toBe(true);
    const blockSize = world.config("n1").blockSize;
    const blocks = 40;
    const data = new Uint8Array(blocks * blockSize).map((_, index) => (index * 7) % 251);
    expect(write(world, { kind: "create", path: "big", mode: 0o644 })).toBeNull();
    expect(write(world, { kind: "write", path: "big", offset: 0, data })).toBeNull();
    const stats = () => world.node("n1").runtime!.state.stats;
    const [paths, bytes] = [stats().resyncPaths, stats().resyncBlockBytes];
    // The secondary's disk slower than the primary's: acknowledgements come late.
    world.diskSlow("n2", 20);
    world.command("n2", "start");
    let most = 0;
    expect(world.runUntilCondition(() => {
      most = Math.max(most, world.node("n1").runtime!.state.link?.sending.get("big") ?? 0);
      return world.node("n2").role === "SECOND" && world.node("n2").readiness === "Ready" && inSync(world);
    }, world.nowMs + 20_000, 0.05)).toBe(true);
    expect(most).toBeGreaterThanOrEqual(2);
    expect(most).toBeLessThanOrEqual(world.config("n1").resyncWorkers);
    const chunks = blocks / (world.config("n1").resyncChunkBytes / blockSize);
    // Its chunks and its directory's snapshot: nothing read twice.
    expect(stats().resyncPaths - paths).toBe(chunks + 1);
    expect(stats().resyncBlockBytes - bytes).toBe(data.length);
    expect(world.node("n2").disk.fileBytes("big")).toEqual(data);
    expect(world.violations).toEqual([]);
  });

  it("sends only the blocks changed while the peer was away, a chunk at a time in increasing order, each once", () => {
    const world = syncedWorld({ seed: 82, lane: false });
    const blockSize = world.config("n1").blockSize;
    const blocks = 80;
    const data = new Uint8Array(blocks * blockSize).map((_, index) => (index * 7) % 251);
    expect(write(world, { kind: "create", path: "big", mode: 0o644 })).toBeNull();
    expect(write(world, { kind: "write", path: "big", offset: 0, data })).toBeNull();
    // Checkpoints clear the marks of the new file (durable on both).
    world.runFor(5_000);
    expect(world.node("n1").runtime!.state.meta.dirty.size).toBe(0);
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").runtime!.state.phase === "stopped", world.nowMs + 5_000)).toBe(true);
    // Every third block rewritten, from the end backwards: the marks are not in order.
    const changed = Array.from({ length: blocks / 3 }, (_, index) => blocks - 1 - index * 3);
    for (const block of changed) {
      const bytes = new Uint8Array(blockSize).fill(block % 200);
      data.set(bytes, block * blockSize);
      expect(write(world, { kind: "write", path: "big", offset: block * blockSize, data: bytes })).toBeNull();
    }
    const stats = () => world.node("n1").runtime!.state.stats;
    const [paths, bytes] = [stats().resyncPaths, stats().resyncBlockBytes];
    const asked: number[][] = [];
    world.command("n2", "start");
    expect(world.runUntilCondition(() => {
      for (const tag of world.node("n1").runtime!.state.tags.values()) if (tag.t === "resync-read" && tag.path === "big" && !asked.some((each) => each === tag.blocks)) asked.push(tag.blocks as number[]);
      return world.node("n2").role === "SECOND" && world.node("n2").readiness === "Ready" && inSync(world);
    }, world.nowMs + 20_000, 0.05)).toBe(true);
    const perChunk = world.config("n1").resyncChunkBytes / blockSize;
    expect(asked.flat()).toEqual([...changed].sort((a, b) => a - b));
    for (const chunk of asked) expect(chunk.length).toBeLessThanOrEqual(perChunk);
    expect(stats().resyncPaths - paths).toBe(Math.ceil(changed.length / perChunk));
    expect(stats().resyncBlockBytes - bytes).toBe(changed.length * blockSize);
    expect(world.node("n2").disk.fileBytes("big")).toEqual(data);
    expect(world.violations).toEqual([]);
  });
});
