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

// With the split-brain checker on, a new primary whose peer does not follow yet (elected,
// or handed the role) must not complete anything alone while that peer beats as its
// secondary: cut off at that moment, it would write in a generation of its own while the
// peer, losing it, takes over (the witness answering the peer): two primaries (the fuzzer
// found it). Its writes wait for the attach, or for the peer's loss and the witness.
describe("a new primary cut off before its peer follows, the witness on", () => {
  for (const lane of [false, true]) {
    it(`completes nothing alone; the peer takes over (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 37, witness: true, lane });
      expect(write(world, { kind: "create", path: "before-swap", mode: 0o644 })).toBeNull();
      world.command("n1", "swap");
      expect(world.runUntilCondition(() => world.node("n2").runtime!.state.phase === "primary", world.nowMs + 5_000, 0.05)).toBe(true);
      // n2 now runs start_prim; its peer does not follow yet. Its cable goes out.
      expect(world.node("n2").runtime!.state.link).toBeNull();
      world.isolate("n2");
      let answer: string | null | undefined;
      world.submit({ kind: "create", path: "while-cut-off", mode: 0o644 }, (result) => (answer = result));
      expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 5_000)).toBe(true);
      world.runFor(1_000);
      // Not acknowledged by the node cut off (it failed, or never answered).
      expect(answer).not.toBeNull();
      expect(world.node("n2").role).not.toBe("ALONE");
      expect(write(world, { kind: "create", path: "after", mode: 0o644 })).toBeNull();
      world.healAll();
      expect(world.runUntilCondition(() => inSync(world), world.nowMs + 30_000)).toBe(true);
      expect(world.violations).toEqual([]);
    });
  }
});
