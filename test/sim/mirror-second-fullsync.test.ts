// `second fullsync` on the node that should take a whole copy (SafeKit's command for a
// secondary whose data is not to be trusted): on a stopped node it starts the module as
// secondary; on a secondary already following it stops following (durably not up to date
// first) and is attached again; either way the primary resends everything.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

describe("second fullsync", () => {
  for (const lane of [false, true]) {
    it(`on a secondary in sync: everything resent, the primary going on meanwhile (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 71, lane });
      expect(write(world, { kind: "create", path: "a", mode: 0o644 })).toBeNull();
      const full = world.node("n1").runtime!.state.stats.fullResyncs;
      world.command("n2", "second", true);
      expect(world.runUntilCondition(() => world.node("n1").runtime!.state.stats.fullResyncs === full + 1, world.nowMs + 5_000, 1)).toBe(true);
      expect(write(world, { kind: "create", path: "b", mode: 0o644 })).toBeNull();
      expect(world.runUntilCondition(() => world.node("n1").role === "PRIM" && world.node("n2").role === "SECOND" && world.node("n2").readiness === "Ready" && inSync(world), world.nowMs + 10_000)).toBe(true);
      expect(world.node("n1").runtime!.state.meta.gen).toBe(world.node("n2").runtime!.state.meta.gen);
      expect(world.violations).toEqual([]);
    });
  }

  it("on a stopped node: started as secondary, everything resent", () => {
    const world = syncedWorld({ seed: 72, lane: false });
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").runtime!.state.phase === "stopped", world.nowMs + 5_000)).toBe(true);
    expect(write(world, { kind: "create", path: "while-stopped", mode: 0o644 })).toBeNull();
    const full = world.node("n1").runtime!.state.stats.fullResyncs;
    world.command("n2", "second", true);
    expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && world.node("n2").readiness === "Ready" && inSync(world), world.nowMs + 10_000)).toBe(true);
    expect(world.node("n1").runtime!.state.stats.fullResyncs).toBe(full + 1);
    expect(world.node("n2").disk.fileBytes("while-stopped")).not.toBeNull();
    expect(world.violations).toEqual([]);
  });
});
