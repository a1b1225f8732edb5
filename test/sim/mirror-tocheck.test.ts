// `<tocheck>` in the simulator: a node whose tree lacks one of the paths (its disk not
// mounted under the replicated directory, say) does not start the module: it stops before
// any script runs and before anything is replicated onto or from it, and says which path
// is missing. Once the path is there, a start goes on as usual.

import { describe, expect, it } from "vitest";
import type { DiskOp } from "../../core/mirror/disk-ops.ts";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { write } from "./mirror-submit.ts";

/** Applies `ops` to a powered-off node's disk durably, as an operator would before starting it. */
function prepare(world: MirrorWorld, id: string, ops: readonly DiskOp[]): void {
  const disk = world.node(id).disk;
  const port = disk.open();
  const results: (string | null)[] = [];
  for (const op of [...ops, { kind: "fsync", path: null } as const]) port.apply(op, (result) => results.push(result));
  world.runFor(100);
  disk.crash();
  expect(results).toEqual([...ops, null].map(() => null));
}

describe("paths to check at start", () => {
  for (const lane of [false, true]) {
    it(`keep a node whose tree lacks one from starting, until it is there (lane ${lane ? "on" : "off"})`, () => {
      const world = new MirrorWorld({ seed: 5, lane, toCheck: ["data", "data/VERSION"], disk: { writebackMs: null } });
      prepare(world, "n1", [
        { kind: "mkdir", path: "data", mode: 0o755 },
        { kind: "create", path: "data/VERSION", mode: 0o644 },
      ]);
      // n2's tree has data/ but not data/VERSION (a disk formatted, not set up).
      prepare(world, "n2", [{ kind: "mkdir", path: "data", mode: 0o755 }]);
      world.powerOn("n1");
      world.powerOn("n2");
      world.runUntil(2_000);
      const n2 = world.node("n2").runtime!.state;
      expect([n2.phase, world.node("n2").role]).toEqual(["stopped", "STOP"]);
      expect(n2.why).toContain("data/VERSION");
      expect(n2.why).not.toContain("data,");
      // It ran no script: its application was never started nor stopped.
      expect(world.node("n2").processes.history.map((run) => run.script)).toEqual([]);
      expect(world.node("n1").processes.history.map((run) => run.script)).toContain("prestart");
      // n1 is a new mirror: an operator makes it primary; it goes on alone.
      world.command("n1", "prim");
      expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 10_000)).toBe(true);
      expect(write(world, { kind: "create", path: "data/table", mode: 0o644 })).toBeNull();
      expect(write(world, { kind: "write", path: "data/table", offset: 0, data: new Uint8Array(64).fill(7) })).toBeNull();
      // Nothing of n1's reached n2's tree.
      expect(world.node("n2").disk.fileBytes("data/table")).toBeNull();
      // The operator sets the path up on n2 and starts it: it joins as secondary and syncs.
      world.powerOff("n2");
      prepare(world, "n2", [{ kind: "create", path: "data/VERSION", mode: 0o644 }]);
      world.powerOn("n2");
      expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 20_000)).toBe(true);
      expect(world.node("n2").disk.fileBytes("data/table")).toEqual(new Uint8Array(64).fill(7));
    });
  }

  it("stop the start when one cannot be read, naming the error", () => {
    const world = new MirrorWorld({ seed: 7, lane: false, toCheck: ["VERSION"], disk: { writebackMs: null } });
    for (const id of ["n1", "n2"]) prepare(world, id, [{ kind: "create", path: "VERSION", mode: 0o644 }]);
    world.node("n2").disk.failUnder("VERSION", "EIO");
    world.powerOn("n1");
    world.powerOn("n2");
    world.runUntil(2_000);
    expect(world.node("n2").role).toBe("STOP");
    expect(world.node("n2").runtime!.state.why).toContain("VERSION (EIO)");
    expect(world.node("n1").role).not.toBe("STOP");
  });

  it("are checked again at each start: a path gone since stops the next start, also on the node that was primary", () => {
    const world = new MirrorWorld({ seed: 6, lane: false, toCheck: ["VERSION"], disk: { writebackMs: null } });
    for (const id of ["n1", "n2"]) prepare(world, id, [{ kind: "create", path: "VERSION", mode: 0o644 }]);
    world.powerOn("n1");
    world.powerOn("n2");
    world.runUntil(1_000);
    world.command("n1", "prim");
    expect(world.runUntilCondition(() => inSync(world), 10_000)).toBe(true);
    // The primary's tree loses the path (replicated like any other change), then it restarts.
    expect(write(world, { kind: "unlink", path: "VERSION" })).toBeNull();
    world.command("n1", "stop");
    expect(world.runUntilCondition(() => world.node("n1").role === "STOP" && world.node("n2").role === "ALONE", world.nowMs + 20_000)).toBe(true);
    world.command("n1", "start");
    world.runFor(3_000);
    expect(world.node("n1").role).toBe("STOP");
    expect(world.node("n1").runtime!.state.why).toContain("VERSION");
  });
});
