// A checker or <failover> rule with action wait on a mirror module (SafeKit's WAIT,
// ../shared/userconfig.md): while the resource is down the node is neither primary nor
// secondary; a primary stops its application and hands over to an up-to-date secondary;
// once the resource is back the node decides again with its peer (as secondary of the
// node that took over, resynced), or alone if it was alone last. Each hold counts toward
// maxloop (3 in the simulated module). The world's invariant M7 checks that a held node
// never takes a role.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import type { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

const why = (world: MirrorWorld, id: string) => world.node(id).runtime!.state.why;

describe("a mirror node held by a resource (action wait)", () => {
  for (const lane of [false, true]) {
    it(`a primary's: the secondary takes over, nothing acknowledged is lost; back, the old primary is its secondary (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 81, lane });
      expect(write(world, { kind: "create", path: "before", mode: 0o644 })).toBeNull();
      const stops = world.node("n1").processes.history.filter((run) => run.script === "stop_prim").length;
      world.hold("n1", true);
      expect(world.runUntilCondition(() => world.node("n2").role === "ALONE" && world.node("n2").readiness === "Ready" && world.node("n1").role === "WAIT", world.nowMs + 15_000)).toBe(true);
      expect(world.node("n1").processes.history.filter((run) => run.script === "stop_prim").length).toBe(stops + 1);
      expect(world.node("n1").vip).toBe(false);
      expect(why(world, "n1")).toBe("waiting for rule resource_wait (action wait)");
      expect(write(world, { kind: "create", path: "while-held", mode: 0o644 })).toBeNull();
      // It stays WAIT while held, whatever its peer says.
      world.runFor(10_000);
      expect(world.node("n1").role).toBe("WAIT");
      world.hold("n1", false);
      expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 15_000)).toBe(true);
      world.runFor(1_000);
      for (const id of ["n1", "n2"]) expect(world.node(id).disk.snapshotTree().map((entry) => entry.path)).toEqual(expect.arrayContaining(["before", "while-held"]));
      expect(world.violations).toEqual([]);
    });
  }

  it("a secondary's: it stops following, keeping its whole copy; the primary goes on ALONE in a new generation; back, it follows again after an incremental resync", () => {
    const world = syncedWorld({ seed: 82, lane: false });
    const gen = world.node("n1").runtime!.state.meta.gen;
    world.hold("n2", true);
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE" && world.node("n1").readiness === "Ready" && world.node("n2").role === "WAIT", world.nowMs + 10_000)).toBe(true);
    expect(world.node("n2").runtime!.state.meta.consistent).toBe(true);
    expect(world.node("n2").runtime!.state.meta.gen).toBe(gen);
    expect(world.node("n1").runtime!.state.meta.gen).not.toBe(gen);
    expect(write(world, { kind: "create", path: "alone", mode: 0o644 })).toBeNull();
    world.runFor(5_000);
    expect(world.node("n2").role).toBe("WAIT");
    const full = world.node("n1").runtime!.state.stats.fullResyncs;
    world.hold("n2", false);
    expect(world.runUntilCondition(() => world.node("n1").role === "PRIM" && world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 15_000)).toBe(true);
    expect(world.node("n1").runtime!.state.stats.fullResyncs).toBe(full);
    expect(world.violations).toEqual([]);
  });

  for (const [leave, lane] of [["hold", false], ["stop", false], ["hold", true]] as const) {
    it(`a secondary that left (${leave}, lane ${lane ? "on" : "off"}) as its primary lost power keeps its copy: elected when the primary comes back without its page cache, nothing acknowledged is lost`, () => {
      const world = syncedWorld({ seed: 86, lane });
      expect(write(world, { kind: "create", path: "acknowledged", mode: 0o644 })).toBeNull();
      for (let block = 0; block < 4; block++) expect(write(world, { kind: "write", path: "acknowledged", offset: block * 4096, data: new Uint8Array(4096).fill(block + 1) })).toBeNull();
      const written = world.node("n1").disk.snapshotTree().find((entry) => entry.path === "acknowledged");
      expect(written).toMatchObject({ kind: "file", size: 4 * 4096 });
      world.powerOff("n1");
      if (leave === "hold") world.hold("n2", true);
      else world.command("n2", "stop");
      world.runFor(2_000);
      if (leave === "hold") world.hold("n2", false);
      else world.command("n2", "start");
      world.runFor(5_000);
      expect(world.node("n2").role).toBe("WAIT");
      world.powerOn("n1");
      expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
      for (const id of ["n1", "n2"]) expect(world.node(id).disk.snapshotTree().find((entry) => entry.path === "acknowledged")).toEqual(written);
      expect(world.violations).toEqual([]);
    });
  }

  it("a primary without a secondary: the application stops; back, the node goes on alone as it was", () => {
    const world = syncedWorld({ seed: 83, lane: false });
    world.powerOff("n2");
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE" && world.node("n1").readiness === "Ready", world.nowMs + 10_000)).toBe(true);
    world.hold("n1", true);
    expect(world.runUntilCondition(() => world.node("n1").role === "WAIT" && !world.node("n1").appRunning, world.nowMs + 5_000)).toBe(true);
    world.runFor(10_000);
    expect(world.node("n1").role).toBe("WAIT");
    world.hold("n1", false);
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE" && world.node("n1").readiness === "Ready", world.nowMs + 15_000)).toBe(true);
    expect(world.violations).toEqual([]);
  });

  it("held before its start: the module starts and waits; prim is refused while held", () => {
    const world = syncedWorld({ seed: 84, lane: false });
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").role === "STOP", world.nowMs + 5_000)).toBe(true);
    world.hold("n2", true);
    world.command("n2", "start");
    world.runFor(10_000);
    expect(world.node("n2").role).toBe("WAIT");
    world.powerOff("n1");
    world.command("n2", "prim");
    world.runFor(10_000);
    expect(world.node("n2").role).toBe("WAIT");
    expect(world.logs.some(({ node, entry }) => node === "n2" && entry.event === "mirror.prim_refused" && String(entry.fields?.["why"]).includes("resource_wait"))).toBe(true);
    world.hold("n2", false);
    world.powerOn("n1");
    expect(world.runUntilCondition(() => world.node("n1").role === "PRIM" && world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
    expect(world.violations).toEqual([]);
  });

  it("a hold while the primary hands over in a swap: it ends waiting, not as the new secondary", () => {
    const world = syncedWorld({ seed: 86, lane: false });
    // stop_prim runs 2 s: the hold comes while n1 hands over.
    world.node("n1").processes.scripts["stop_prim"] = { durationMs: 2_000 };
    world.command("n1", "swap");
    expect(world.runUntilCondition(() => world.node("n1").runtime!.state.phase === "handing-over", world.nowMs + 1_000, 0.05)).toBe(true);
    world.hold("n1", true);
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE" && world.node("n2").readiness === "Ready" && world.node("n1").role === "WAIT", world.nowMs + 15_000)).toBe(true);
    world.runFor(5_000);
    expect(world.node("n1").role).toBe("WAIT");
    world.hold("n1", false);
    expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 15_000)).toBe(true);
    expect(world.violations).toEqual([]);
  });

  it("counts toward maxloop: the fourth hold within loop_interval leaves the module stopped on that node", () => {
    const world = syncedWorld({ seed: 85, lane: false });
    for (let hold = 1; hold <= 3; hold++) {
      world.hold("n2", true);
      expect(world.runUntilCondition(() => world.node("n2").role === "WAIT", world.nowMs + 5_000)).toBe(true);
      world.hold("n2", false);
      expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 15_000)).toBe(true);
    }
    world.hold("n2", true);
    world.runFor(5_000);
    expect(world.node("n2").role).toBe("STOP");
    expect(world.node("n1").role).toBe("ALONE");
    expect(world.violations).toEqual([]);
  });
});
