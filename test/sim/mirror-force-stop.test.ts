// A mirror's stop script that outlives nicestoptimeout runs again with a fourth argument,
// `force`, for forcestoptimeout (../shared/userconfig.md, Scripts; as a farm's: lifecycle.ts).
// The simulated module's scripts may run 60 s, then 60 s with force.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld } from "./mirror-submit.ts";

describe("a mirror's stop script that does not finish", () => {
  it("runs again with force: a swap goes on once the forced stop_prim returns", () => {
    const world = syncedWorld({ seed: 95, lane: false });
    // stop_prim hangs unless forced.
    world.node("n1").processes.scripts["stop_prim"] = (run) => (run.args.includes("force") ? { durationMs: 10 } : { durationMs: 0, hang: true });
    const from = world.node("n1").processes.history.length;
    world.command("n1", "swap");
    expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 150_000)).toBe(true);
    const stops = world.node("n1").processes.history.slice(from).filter((run) => run.script === "stop_prim");
    expect(stops.map((run) => run.args.join(" "))).toEqual(["PRIM STOP stop", "PRIM STOP stop force"]);
    expect(stops[0]!.outcome?.kind).toBe("timed-out");
    expect(stops[1]!.atMs - stops[0]!.atMs).toBeCloseTo(60_000, -1);
    expect(world.logs.some(({ node, entry }) => node === "n1" && entry.event === "mirror.script_force")).toBe(true);
    expect(world.violations).toEqual([]);
  });

  it("a start script that times out is not run again", () => {
    const world = syncedWorld({ seed: 96, lane: false });
    world.node("n2").processes.scripts["start_prim"] = { durationMs: 0, hang: true };
    const from = world.node("n2").processes.history.length;
    world.command("n1", "swap");
    world.runFor(130_000);
    expect(world.node("n2").processes.history.slice(from).filter((run) => run.script === "start_prim").map((run) => run.args.join(" "))).toEqual(["ALONE ALONE start"]);
  });
});
