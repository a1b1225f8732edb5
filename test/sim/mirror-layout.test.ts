// Two nodes whose modules list different replicated directories (core/mirror/volumes.ts
// names them in the tree; MirrorConfig.layout) never pair: a resync would pour one node's
// directories into the other's. The primary goes on alone and never attaches the other;
// the other waits, saying why; a node that was alone last still starts alone. Once both
// list the same directories, they pair as usual.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

describe("nodes replicating different directories", () => {
  it("never pair: the primary goes on alone, the other waits saying why, until both list the same", () => {
    const world = new MirrorWorld({ seed: 12, lane: false, layouts: { n1: ["1-data", "2-wal"], n2: ["1-data"] } });
    world.powerOn("n1");
    world.powerOn("n2");
    world.runUntil(1_500);
    world.command("n1", "prim");
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 5_000)).toBe(true);
    expect(write(world, { kind: "create", path: "f", mode: 0o644 })).toBeNull();
    world.runFor(5_000);
    expect([world.node("n1").role, world.node("n2").role]).toEqual(["ALONE", "WAIT"]);
    expect(world.node("n1").runtime!.state.stats.resyncs).toBe(0);
    expect(world.node("n2").disk.fileBytes("f")).toBeNull();
    const why = world.node("n2").runtime!.state.why;
    expect(why).toContain("here: 1-data; there: 1-data, 2-wal");
    // n1, alone last, restarts: it starts alone again beside the peer it cannot pair with.
    world.command("n1", "stop");
    expect(world.runUntilCondition(() => world.node("n1").role === "STOP", world.nowMs + 5_000)).toBe(true);
    world.command("n1", "start");
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 5_000)).toBe(true);
    expect(world.node("n2").role).toBe("WAIT");
  });

  it("pair once both list the same directories", () => {
    syncedWorld({ seed: 13, lane: false, layouts: { n1: ["1-data", "2-wal"], n2: ["1-data", "2-wal"] } });
  });
});

// The same list changed the same way on both nodes (reordered, one added or removed): they
// pair, but the marks kept under the old names no longer say what changed where. The
// layout is kept in the metadata; a node that finds it changed resyncs in full.
/** Both services restart (and read their configuration again); n2's module is started
 *  again by the operator. The stats count from the restart. */
function restartBoth(world: MirrorWorld): void {
  world.command("n1", "stop");
  expect(world.runUntilCondition(() => world.node("n1").role === "STOP", world.nowMs + 5_000)).toBe(true);
  for (const id of ["n1", "n2"]) {
    world.crash(id);
    world.restart(id);
  }
  world.command("n1", "start");
  world.command("n2", "start");
}

describe("a <replicated> list changed on both nodes", () => {
  it("is noticed from the metadata: the next resync copies everything, and the nodes end in sync", () => {
    const world = syncedWorld({ seed: 14, lane: false, layouts: { n1: ["1-data", "2-wal"], n2: ["1-data", "2-wal"] } });
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE" && world.node("n2").role === "STOP", world.nowMs + 5_000)).toBe(true);
    // Written while n2 is away: n1's marks name it, under the old list.
    expect(write(world, { kind: "create", path: "alone", mode: 0o644 })).toBeNull();
    for (const id of ["n1", "n2"]) world.relist(id, ["1-wal", "2-data"]);
    restartBoth(world);
    expect(world.runUntilCondition(() => world.node("n1").role === "PRIM" && world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
    expect(world.node("n1").runtime!.state.stats.fullResyncs).toBe(1);
    expect(world.node("n1").runtime!.state.meta.layout).toEqual(["1-wal", "2-data"]);
    expect(world.node("n2").disk.fileBytes("alone")).not.toBeNull();
    expect(world.violations).toEqual([]);
  });

  it("left as it was: the resync stays incremental", () => {
    const world = syncedWorld({ seed: 15, lane: false, layouts: { n1: ["1-data", "2-wal"], n2: ["1-data", "2-wal"] } });
    world.command("n2", "stop");
    expect(world.runUntilCondition(() => world.node("n2").role === "STOP", world.nowMs + 5_000)).toBe(true);
    expect(write(world, { kind: "create", path: "alone", mode: 0o644 })).toBeNull();
    restartBoth(world);
    expect(world.runUntilCondition(() => world.node("n1").role === "PRIM" && world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
    expect(world.node("n1").runtime!.state.stats.fullResyncs).toBe(0);
    expect(world.node("n1").runtime!.state.stats.resyncs).toBe(1);
  });
});
