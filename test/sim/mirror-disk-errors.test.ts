// A secondary whose file system turns read-only (ext4 remounts so after errors): every
// replicated change and every resync install there fails with EROFS. That is its disk
// failing, not a difference in the trees: it stops following and asks to be attached
// again every retryMs, while the primary goes on alone, instead of resending the same
// paths as fast as the peer refuses them. Once the file system is writable again, the
// resync brings it up to date.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

describe("a secondary's file system made read-only", () => {
  for (const lane of [false, true]) {
    it(`detaches it, the primary going on alone, until it is writable again (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 41, lane });
      world.node("n2").disk.failUnder("", "EROFS");
      expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
      expect(write(world, { kind: "write", path: "f", offset: 0, data: new Uint8Array(100).fill(7) })).toBeNull();
      const before = { ...world.node("n1").runtime!.state.stats };
      world.runFor(5_000);
      const after = world.node("n1").runtime!.state.stats;
      expect(world.node("n1").role).toBe("ALONE");
      expect(world.node("n2").runtime!.state.meta.consistent).toBe(false);
      // One attempt a second (retryMs): not a resend per refusal.
      expect(after.resyncs - before.resyncs).toBeLessThanOrEqual(6);
      expect(after.resyncPaths - before.resyncPaths).toBeLessThan(50);
      world.node("n2").disk.healUnder("");
      expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 10_000)).toBe(true);
      expect(world.node("n2").disk.fileBytes("f")).toEqual(new Uint8Array(100).fill(7));
      expect(world.violations).toEqual([]);
    });
  }
});

// A path the secondary refuses for a reason of its tree (not its disk failing: EINVAL here)
// while the primary resyncs it. Sent again once at once, then once per retryMs, logged: the secondary stays
// not up to date (never silently different) without the primary resending it as fast as
// it is refused (about 2000 times a second before). Once the peer takes it, the resync ends.
describe("a path the secondary keeps refusing during a resync", () => {
  it("is sent again once per retry, the secondary not up to date until it takes it", () => {
    const world = syncedWorld({ seed: 51, lane: false });
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").role === "STOP", world.nowMs + 5_000)).toBe(true);
    expect(write(world, { kind: "create", path: "p", mode: 0o644 })).toBeNull();
    expect(write(world, { kind: "write", path: "p", offset: 0, data: new Uint8Array(10).fill(3) })).toBeNull();
    world.node("n2").disk.failUnder("p", "EINVAL");
    const before = world.node("n1").runtime!.state.stats.resyncPaths;
    world.command("n2", "start");
    world.runFor(5_000);
    expect(world.node("n1").runtime!.state.stats.resyncPaths - before).toBeLessThan(12);
    expect(world.node("n1").runtime!.state.link?.inSync).toBe(false);
    expect(world.node("n2").runtime!.state.meta.consistent).toBe(false);
    expect(world.logs.filter((each) => each.entry.event === "mirror.resync_refused").map((each) => [each.node, each.entry.fields["path"]])).toEqual([["n1", "p"]]);
    world.node("n2").disk.healUnder("p");
    expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 5_000)).toBe(true);
    expect(world.node("n2").disk.fileBytes("p")).toEqual(new Uint8Array(10).fill(3));
    expect(world.violations).toEqual([]);
  });
});
