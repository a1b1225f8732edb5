// A swap whose handover never reaches the peer: the old primary hands the role over and
// ignores its peer's hellos as secondary for a while (those were sent before the peer took
// the role, and would make it elect itself back: two primaries, a bug the fuzzer found).
// When the handover is lost, the peer never takes the role and keeps saying it is
// secondary: after two peer-loss timeouts the old primary listens again, and the two
// decide, as after any restart of the stream.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

describe("a swap whose handover is lost", () => {
  for (const lane of [false, true]) {
    it(`ends with one primary and its secondary in sync, nothing lost (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 31, lane });
      expect(write(world, { kind: "create", path: "before-swap", mode: 0o644 })).toBeNull();
      world.command("n1", "swap");
      // The stream ends the moment n1 sends the handover (0.2 ms on the wire): it is lost.
      expect(world.runUntilCondition(() => world.node("n1").runtime!.state.handedOver !== null, world.nowMs + 5_000, 0.05)).toBe(true);
      world.streams.partition("n1", "n2");
      world.streams.heal("n1", "n2");
      expect(world.node("n2").role).toBe("SECOND");
      // Heartbeats go on; the stream comes back once both saw it end (2 s here).
      expect(world.runUntilCondition(() => {
        const roles = [world.node("n1").role, world.node("n2").role].sort();
        return roles[0] === "PRIM" && roles[1] === "SECOND" && inSync(world);
      }, world.nowMs + 15_000)).toBe(true);
      expect(write(world, { kind: "create", path: "after", mode: 0o644 })).toBeNull();
      world.runFor(1_000);
      expect(inSync(world)).toBe(true);
      for (const id of ["n1", "n2"]) expect(world.node(id).disk.snapshotTree().map((entry) => entry.path)).toEqual(expect.arrayContaining(["before-swap", "after"]));
      expect(world.violations).toEqual([]);
    });
  }
});
