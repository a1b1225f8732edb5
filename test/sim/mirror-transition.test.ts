// SafeKit's transition, start_sec and stop_sec on a mirror module (../shared/userconfig.md,
// Scripts): `transition` at every change of the role operators see, with the role before,
// the role after and the action (start, stop, stopwait), before the scripts that follow
// the change; start_sec once the node is SECOND or a Ready ALONE, after the change's own
// scripts; stop_sec when it is neither SECOND nor ALONE any more, first.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import type { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { syncedWorld } from "./mirror-submit.ts";

/** The scripts `id` ran from the `from`-th on: announcing ones with their arguments. */
function scripts(world: MirrorWorld, id: string, from = 0): string[] {
  return world
    .node(id)
    .processes.history.slice(from)
    .map((run) => (run.script === "transition" ? `transition ${run.args.join(" ")}` : run.script));
}

const count = (world: MirrorWorld, id: string) => world.node(id).processes.history.length;

/** Every transition of `id` starts where the one before it ended, from STOP; start_sec and
 *  stop_sec alternate, start_sec first. */
function chained(world: MirrorWorld, id: string): void {
  const runs = world.node(id).processes.history;
  let role = "STOP";
  let sec = false;
  for (const run of runs) {
    if (run.script === "transition") {
      expect(run.args[0], `${id}: ${scripts(world, id).join(", ")}`).toBe(role);
      role = run.args[1]!;
    }
    if (run.script === "start_sec" || run.script === "stop_sec") {
      expect(run.script, `${id}: ${scripts(world, id).join(", ")}`).toBe(sec ? "stop_sec" : "start_sec");
      sec = !sec;
    }
  }
  expect(role).toBe(world.node(id).role);
}

describe("a mirror's transition, start_sec and stop_sec", () => {
  for (const lane of [false, true]) {
    it(`announce each node's changes as a pair starts and swaps (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 71, lane });
      expect(scripts(world, "n1")).toEqual(["prestart", "start_both", "transition STOP WAIT start", "transition WAIT ALONE start", "start_prim", "transition ALONE PRIM start"]);
      expect(scripts(world, "n2")).toEqual(["prestart", "start_both", "transition STOP WAIT start", "transition WAIT SECOND start", "start_second", "start_sec"]);
      const [n1, n2] = [count(world, "n1"), count(world, "n2")];
      world.command("n1", "swap");
      expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 10_000)).toBe(true);
      world.runUntil(world.nowMs + 1_000);
      // n1 stops its application as primary, then becomes secondary; n2 goes ALONE as it
      // starts its application, PRIM once n1 follows it, no longer SECOND or ALONE.
      expect(scripts(world, "n1", n1)).toEqual(["stop_prim", "transition PRIM SECOND start", "start_second", "start_sec"]);
      expect(scripts(world, "n2", n2)).toEqual(["transition SECOND ALONE start", "stop_second", "start_prim", "stop_sec", "transition ALONE PRIM start"]);
      for (const id of ["n1", "n2"]) chained(world, id);
      expect(world.violations).toEqual([]);
    });
  }

  it("a secondary that takes over: stop_sec and WAIT while it decides, start_sec once ALONE and Ready; PRIM again when its peer is back", () => {
    const world = syncedWorld({ seed: 72, lane: false });
    const n2 = count(world, "n2");
    world.powerOff("n1");
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE" && world.node("n2").readiness === "Ready", world.nowMs + 10_000)).toBe(true);
    world.runUntil(world.nowMs + 1_000);
    expect(scripts(world, "n2", n2)).toEqual(["stop_sec", "transition SECOND WAIT stopwait", "transition WAIT ALONE start", "stop_second", "start_prim", "start_sec"]);
    const back = count(world, "n2");
    world.powerOn("n1");
    expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
    world.runUntil(world.nowMs + 1_000);
    expect(scripts(world, "n2", back)).toEqual(["stop_sec", "transition ALONE PRIM start"]);
    chained(world, "n2");
    expect(world.violations).toEqual([]);
  });

  it("a stop: stop_sec and the transition to STOP before the stop scripts", () => {
    const world = syncedWorld({ seed: 73, lane: false });
    const [n1, n2] = [count(world, "n1"), count(world, "n2")];
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").runtime!.state.phase === "stopped", world.nowMs + 5_000)).toBe(true);
    world.command("n1", "stop");
    expect(world.runUntilCondition(() => world.node("n1").runtime!.state.phase === "stopped", world.nowMs + 5_000)).toBe(true);
    expect(scripts(world, "n2", n2)).toEqual(["stop_sec", "transition SECOND STOP stop", "stop_second", "stop_both", "poststop"]);
    // n1 went ALONE (and Ready) when its secondary left; a stop without a secondary to
    // hand over to shows STOP at once.
    expect(scripts(world, "n1", n1)).toEqual(["transition PRIM ALONE start", "start_sec", "stop_sec", "transition ALONE STOP stop", "stop_prim", "stop_both", "poststop"]);
    for (const id of ["n1", "n2"]) chained(world, id);
  });

  it("an application restarted in place (errd, restart) announces nothing: the role stays", () => {
    const world = syncedWorld({ seed: 74, lane: false });
    const n1 = count(world, "n1");
    world.command("n1", "restart");
    world.runUntil(world.nowMs + 2_000);
    expect(scripts(world, "n1", n1)).toEqual(["stop_prim", "start_prim"]);
    expect(world.node("n1").role).toBe("PRIM");
  });
});
