// A checker or errd with action stopstart (../shared/userconfig.md: "the whole module: a
// mirror fails over"): the module stops on the node and starts again there. A primary
// hands over to its up-to-date secondary on the way, and comes back as its secondary;
// each counts toward maxloop (3 in the simulated module), past which the module stays
// stopped.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

describe("app-failed with action stopstart", () => {
  for (const lane of [false, true]) {
    it(`a primary's: the secondary takes over, the old primary comes back as its secondary (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 41, lane });
      expect(write(world, { kind: "create", path: "before", mode: 0o644 })).toBeNull();
      world.crashApp("n1", "stopstart");
      expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 15_000)).toBe(true);
      expect(write(world, { kind: "create", path: "after", mode: 0o644 })).toBeNull();
      world.runFor(1_000);
      expect(inSync(world)).toBe(true);
      for (const id of ["n1", "n2"]) expect(world.node(id).disk.snapshotTree().map((entry) => entry.path)).toEqual(expect.arrayContaining(["before", "after"]));
      expect(world.violations).toEqual([]);
    });
  }

  it("counts toward maxloop: the fourth within loop_interval leaves the module stopped on that node", () => {
    const world = syncedWorld({ seed: 42, lane: false });
    for (let failure = 1; failure <= 3; failure++) {
      world.crashApp("n1", "stopstart");
      // Each time n1 stops and comes back as the secondary (the first time it was primary).
      expect(world.runUntilCondition(() => world.node("n1").runtime!.state.phase === "stopping" || world.node("n1").role === "STOP", world.nowMs + 5_000, 0.05)).toBe(true);
      expect(world.runUntilCondition(() => world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 15_000)).toBe(true);
    }
    world.crashApp("n1", "stopstart");
    world.runFor(10_000);
    expect(world.node("n1").role).toBe("STOP");
    expect(world.node("n2").role).toBe("ALONE");
    expect(world.violations).toEqual([]);
  });

  it("a restart (the default) is the primary's application only: ignored on a secondary", () => {
    const world = syncedWorld({ seed: 43, lane: false });
    world.crashApp("n2");
    world.runFor(5_000);
    expect(world.node("n1").role).toBe("PRIM");
    expect(world.node("n2").role).toBe("SECOND");
    expect(world.node("n2").runtime!.state.loops).toEqual([]);
  });
});
