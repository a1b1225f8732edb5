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
