// SafeKit's start_second and stop_second (../shared/userconfig.md, Scripts): start_second
// once a node becomes secondary, stop_second before it leaves that role, whatever it does
// next: start_prim when it takes over or is handed the role, stop_both when it stops,
// nothing more when it waits. Scripts run one at a time, in order; a change asked while
// start_second runs follows it.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import type { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { syncedWorld } from "./mirror-submit.ts";

/** Those announcing a change of role have a test of their own (mirror-transition.test.ts). */
const announcing = new Set(["transition", "start_sec", "stop_sec"]);

/** The scripts `id` ran, in order, from the `from`-th on, each with its three arguments. */
function scripts(world: MirrorWorld, id: string, from = 0): string[] {
  return world.node(id).processes.history.slice(from).filter((run) => !announcing.has(run.script)).map((run) => `${run.script} ${run.args.join(" ")}`);
}

function names(world: MirrorWorld, id: string, from = 0): string[] {
  return world.node(id).processes.history.slice(from).map((run) => run.script).filter((name) => !announcing.has(name));
}

function ranOneAtATime(world: MirrorWorld, id: string): void {
  const runs = world.node(id).processes.history;
  for (let index = 1; index < runs.length; index++) expect(runs[index]!.atMs).toBeGreaterThanOrEqual(runs[index - 1]!.endMs ?? Infinity);
}

describe("a mirror's start_second and stop_second", () => {
  for (const lane of [false, true]) {
    it(`run on the secondary around its stint, and before start_prim when it is handed the role (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 61, lane });
      expect(scripts(world, "n1")).toEqual(["prestart STOP STOP start", "start_both STOP STOP start", "start_prim ALONE ALONE start"]);
      expect(scripts(world, "n2")).toEqual(["prestart STOP STOP start", "start_both STOP STOP start", "start_second SECOND SECOND start"]);
      const [n1, n2] = [world.node("n1").processes.history.length, world.node("n2").processes.history.length];
      world.command("n1", "swap");
      expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 10_000)).toBe(true);
      expect(scripts(world, "n1", n1)).toEqual(["stop_prim PRIM STOP stop", "start_second SECOND SECOND start"]);
      expect(names(world, "n2", n2)).toEqual(["stop_second", "start_prim"]);
      for (const id of ["n1", "n2"]) ranOneAtATime(world, id);
      expect(world.violations).toEqual([]);
    });
  }

  it("stop_second before start_prim when the secondary takes over from a lost primary", () => {
    const world = syncedWorld({ seed: 62, lane: false });
    const n2 = world.node("n2").processes.history.length;
    world.powerOff("n1");
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE" && world.node("n2").readiness === "Ready", world.nowMs + 10_000)).toBe(true);
    expect(names(world, "n2", n2)).toEqual(["stop_second", "start_prim"]);
    ranOneAtATime(world, "n2");
  });

  it("stop_second before stop_both and poststop when the secondary stops", () => {
    const world = syncedWorld({ seed: 63, lane: false });
    const n2 = world.node("n2").processes.history.length;
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").runtime!.state.phase === "stopped", world.nowMs + 5_000)).toBe(true);
    expect(names(world, "n2", n2)).toEqual(["stop_second", "stop_both", "poststop"]);
  });

  it("a take-over asked while start_second runs follows it: start_second, stop_second, start_prim", () => {
    const world = syncedWorld({ seed: 64, lane: false });
    // n2 restarts its module and comes up to date while its start_second (2 s) runs; then
    // the primary is lost.
    world.node("n2").processes.scripts["start_second"] = { durationMs: 2_000 };
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").runtime!.state.phase === "stopped", world.nowMs + 5_000)).toBe(true);
    const n2 = world.node("n2").processes.history.length;
    world.command("n2", "start");
    const secondRuns = () => {
      const last = world.node("n2").processes.history.at(-1)!;
      return last.script === "start_second" && last.endMs === null;
    };
    expect(world.runUntilCondition(() => world.node("n2").processes.history.length > n2 && secondRuns() && world.node("n2").readiness === "Ready" && inSync(world), world.nowMs + 5_000, 1)).toBe(true);
    world.powerOff("n1");
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE" && world.node("n2").readiness === "Ready", world.nowMs + 15_000)).toBe(true);
    expect(names(world, "n2", n2)).toEqual(["prestart", "start_both", "start_second", "stop_second", "start_prim"]);
    ranOneAtATime(world, "n2");
  });
});
