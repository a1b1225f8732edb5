// `<notreplicated>` in the simulator: operations on excluded paths only are applied on the
// primary alone (never sent, marked nor resynced), everything else is replicated as usual,
// and a full resync leaves the secondary's own excluded files where they are.

import { describe, expect, it } from "vitest";
import { excluderOf } from "../../core/mirror/exclude.ts";
import { write } from "./mirror-submit.ts";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { MirrorWorld } from "../../drivers/sim/mirror-world.ts";

const rules = [
  { path: "tmp", regex: null, inverted: false },
  { path: null, regex: "\\.tmp$", inverted: false },
] as const;
const bytes = (byte: number) => new Uint8Array(100).fill(byte);

describe("paths not replicated", () => {
  it("match a path with what is below it, or a regular expression searched in the relative path (! inverts)", () => {
    const excludes = excluderOf([...rules, { path: null, regex: "^keep/", inverted: true }]);
    expect(["tmp", "tmp/a", "tmp/a/b", "x.tmp", "d/y.tmp", "other"].map(excludes)).toEqual([true, true, true, true, true, true]);
    const plain = excluderOf(rules);
    expect(["tmpfile", "tmp2/a", "x.tmp.old", "keep/a", ""].map(plain)).toEqual([false, false, false, false, false]);
    expect(excluderOf([{ path: null, regex: "^keep/", inverted: true }])("keep/a")).toBe(false);
    expect(excluderOf([])("tmp")).toBe(false);
    // A rule of one of several directories applies below that directory's name, to the
    // path relative to it.
    const scoped = excluderOf([
      { path: "tmp", regex: null, inverted: false, within: "1-data" },
      { path: null, regex: "^cache/", inverted: false, within: "2-log" },
    ]);
    expect(["1-data/tmp", "1-data/tmp/a", "2-log/cache/x", "1-data", "tmp", "2-log/tmp", "1-data/cache/x", "2-log"].map(scoped)).toEqual([true, true, true, false, false, false, false, false]);
  });

  for (const lane of [false, true]) {
    it(`stay on the node that wrote them, through swaps and a full resync (lane ${lane ? "on" : "off"})`, () => {
      const world = new MirrorWorld({ seed: 7, lane, notReplicated: rules, disk: { writebackMs: null } });
      world.powerOn("n1");
      world.powerOn("n2");
      world.runUntil(1_000);
      world.command("n1", "prim");
      expect(world.runUntilCondition(() => inSync(world), 10_000)).toBe(true);
      const n1 = world.node("n1").disk;
      const n2 = world.node("n2").disk;
      expect(write(world, { kind: "mkdir", path: "tmp", mode: 0o755 })).toBeNull();
      for (const [path, byte] of [["tmp/a", 1], ["x.tmp", 2], ["keep", 3]] as const) {
        expect(write(world, { kind: "create", path, mode: 0o644 })).toBeNull();
        expect(write(world, { kind: "write", path, offset: 0, data: bytes(byte) })).toBeNull();
        expect(write(world, { kind: "write", path, offset: 100, data: bytes(byte) })).toBeNull();
        expect(write(world, { kind: "fsync", path })).toBeNull();
      }
      world.runFor(1_500);
      expect(n2.fileBytes("keep")).toEqual(new Uint8Array(200).fill(3));
      expect([n2.fileBytes("tmp/a"), n2.fileBytes("x.tmp"), n2.snapshotTree().some((entry) => entry.path === "tmp")]).toEqual([null, null, false]);
      expect(n1.fileBytes("tmp/a")).toEqual(new Uint8Array(200).fill(1));
      expect(inSync(world)).toBe(true);
      // n2 primary: its own excluded file. Then it yields with fullsync: n1 primary again,
      // n2 resent whole, its own excluded file kept, n1's not sent.
      world.command("n1", "swap");
      expect(world.runUntilCondition(() => world.node("n2").role === "PRIM" && inSync(world), world.nowMs + 10_000)).toBe(true);
      expect(write(world, { kind: "create", path: "y.tmp", mode: 0o644 })).toBeNull();
      expect(write(world, { kind: "write", path: "keep", offset: 0, data: bytes(4) })).toBeNull();
      const fullBefore = world.node("n1").runtime!.state.stats.fullResyncs;
      world.command("n2", "second", true);
      expect(world.runUntilCondition(() => world.node("n1").role === "PRIM" && inSync(world), world.nowMs + 20_000)).toBe(true);
      expect(world.node("n1").runtime!.state.stats.fullResyncs).toBe(fullBefore + 1);
      expect(n2.fileBytes("keep")?.subarray(0, 100)).toEqual(bytes(4));
      expect(n2.fileBytes("y.tmp")).toEqual(new Uint8Array(0));
      expect([n2.fileBytes("tmp/a"), n2.fileBytes("x.tmp")]).toEqual([null, null]);
      expect([n1.fileBytes("tmp/a"), n1.fileBytes("x.tmp"), n1.fileBytes("y.tmp")]).toEqual([new Uint8Array(200).fill(1), new Uint8Array(200).fill(2), null]);
      expect(world.violations).toEqual([]);
    });
  }
});
