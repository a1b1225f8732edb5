// Hard links in a mirror: link(2) is replicated like any operation, and a resync keeps the
// names of one file together. What is written through one name is the file's, but marked
// under that name only: when the name goes while the peer is away (unlinked, renamed
// over), the file's other names are marked whole first, or their content would never be
// resent (the fuzzer found that: a file written through its second name, then unlinked).

import { describe, expect, it } from "vitest";
import type { DiskOp } from "../../core/mirror/disk-ops.ts";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { runMirrorPlan, type MirrorPlan } from "../../drivers/sim/mirror-plan.ts";
import { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { syncedWorld, whileAway, write } from "./mirror-submit.ts";

const fill = (byte: number, length: number): Uint8Array => new Uint8Array(length).fill(byte);
const link = (from: string, to: string): DiskOp => ({ kind: "link", from, to });

const bytesOn = (world: MirrorWorld, node: "n1" | "n2", path: string) => world.node(node).disk.fileBytes(path);

describe("hard links in a mirror", () => {
  for (const lane of [false, true]) {
    it(`replicates a second name, and what is written through either (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 31, lane });
      for (const op of [{ kind: "create", path: "f", mode: 0o644 }, { kind: "write", path: "f", offset: 0, data: fill(1, 5_000) }, link("f", "g"), { kind: "write", path: "g", offset: 4_096, data: fill(2, 3_000) }, { kind: "fsync", path: "f" }] as DiskOp[]) {
        expect(write(world, op)).toBeNull();
      }
      expect(world.node("n2").disk.nameCount("f")).toBe(2);
      expect(bytesOn(world, "n2", "f")).toEqual(bytesOn(world, "n1", "g"));
      expect(write(world, link("f", "g"))).toBe("EEXIST");
      expect(world.violations).toEqual([]);
    });

    it(`resends the file when a name it was written through goes while the peer is away (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 32, lane });
      for (const op of [{ kind: "create", path: "f", mode: 0o644 }, { kind: "write", path: "f", offset: 0, data: fill(1, 20_000) }, link("f", "g"), { kind: "create", path: "x", mode: 0o644 }] as DiskOp[]) {
        expect(write(world, op)).toBeNull();
      }
      whileAway(world, () => {
        // Written through g only, then g unlinked; through h, then h renamed over.
        for (const op of [{ kind: "write", path: "g", offset: 12_000, data: fill(7, 30_000) }, { kind: "unlink", path: "g" }, link("f", "h"), { kind: "truncate", path: "h", size: 9_000 }, { kind: "rename", from: "x", to: "h" }] as DiskOp[]) {
          expect(write(world, op)).toBeNull();
        }
      });
      expect(bytesOn(world, "n2", "f")).toEqual(bytesOn(world, "n1", "f"));
      expect(bytesOn(world, "n2", "f")!.length).toBe(9_000);
      expect(world.node("n2").disk.nameCount("f")).toBe(1);
      expect(world.violations).toEqual([]);
    });
  }

  it("binds a name made while the peer was away to the file its other name has there", () => {
    const world = syncedWorld({ seed: 33, lane: false });
    for (const op of [{ kind: "create", path: "f", mode: 0o644 }, { kind: "write", path: "f", offset: 0, data: fill(3, 8_192) }] as DiskOp[]) expect(write(world, op)).toBeNull();
    whileAway(world, () => {
      expect(write(world, link("f", "g"))).toBeNull();
      expect(write(world, { kind: "write", path: "g", offset: 0, data: fill(4, 100) })).toBeNull();
    });
    expect(world.node("n2").disk.nameCount("g")).toBe(2);
    // One file on n2 too: a write through f reaches g there.
    expect(write(world, { kind: "write", path: "f", offset: 8_000, data: fill(5, 192) })).toBeNull();
    world.runFor(1_000);
    expect(bytesOn(world, "n2", "g")).toEqual(bytesOn(world, "n1", "g"));
    expect(bytesOn(world, "n2", "g")![8_100]).toBe(5);
    expect(world.violations).toEqual([]);
  });

  it("resends the file a returning node wrote through a name its peer never had", () => {
    // n1 links f to g and writes through g, applied on n1 only (the peer cut off), and its
    // service dies. n2 takes over without g. Back, n1 is resynced: g goes (n2 has none), but
    // what went through g is f's on n1, marked under g only: f must be resent too.
    const world = syncedWorld({ seed: 35, lane: false });
    for (const op of [{ kind: "create", path: "f", mode: 0o644 }, { kind: "write", path: "f", offset: 0, data: fill(1, 20_000) }, { kind: "fsync", path: null }] as DiskOp[]) expect(write(world, op)).toBeNull();
    // Nothing marked any more (the activity log's extents too): only what follows counts.
    expect(world.runUntilCondition(() => world.node("n1").runtime!.state.meta.dirty.size === 0 && world.node("n1").runtime!.state.meta.hot.size === 0, world.nowMs + 20_000)).toBe(true);
    world.partition();
    for (const op of [link("f", "g"), { kind: "write", path: "g", offset: 4_096, data: fill(9, 8_192) }] as DiskOp[]) world.submit(op, () => {});
    world.runFor(50);
    expect(bytesOn(world, "n1", "f")![5_000]).toBe(9);
    world.crash("n1");
    expect(world.runUntilCondition(() => world.node("n2").role === "ALONE", world.nowMs + 5_000)).toBe(true);
    world.heal();
    world.restart("n1");
    expect(world.runUntilCondition(() => world.node("n1").role === "SECOND" && inSync(world), world.nowMs + 30_000)).toBe(true);
    expect(bytesOn(world, "n1", "f")![5_000]).toBe(1);
    expect(bytesOn(world, "n1", "f")).toEqual(bytesOn(world, "n2", "f"));
    expect(bytesOn(world, "n1", "g")).toBeNull();
    expect(world.violations).toEqual([]);
  });

  it("refuses with EXDEV a second name across the line between replicated and not", () => {
    const world = new MirrorWorld({ seed: 34, lane: false, notReplicated: [{ path: "tmp", regex: null, inverted: false }] });
    world.powerOn("n1");
    world.powerOn("n2");
    world.runUntil(1_000);
    world.command("n1", "prim");
    expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), 10_000)).toBe(true);
    for (const op of [{ kind: "mkdir", path: "tmp", mode: 0o755 }, { kind: "create", path: "tmp/a", mode: 0o644 }, { kind: "create", path: "b", mode: 0o644 }] as DiskOp[]) expect(write(world, op)).toBeNull();
    expect(write(world, link("tmp/a", "c"))).toBe("EXDEV");
    expect(write(world, link("b", "tmp/c"))).toBe("EXDEV");
    expect(write(world, link("tmp/a", "tmp/c"))).toBeNull();
    expect(world.violations).toEqual([]);
  });
});

// Fault plans that found a bug once clients made hard links (the last one not of links:
// the plans' new sequences reached it), kept as found (not shrunk).
const found: readonly [string, MirrorPlan][] = [
  [
    "a file written through its second name, then unlinked while the peer's disk was full: its first name never resent",
    {"kind": "mirror", "seed": 1684973801, "witness": false, "ack": "applied", "tornWrites": false, "failover": false, "lane": false, "bug": "none", "faults": [{"atMs": 17991, "verb": "diskFull", "node": "n2"}, {"atMs": 25667, "verb": "diskRoomy", "node": "n2"}]},
  ],
  [
    "a name made while the peer lacked the file, its writes landing under another name that then went, during a resync",
    {"kind": "mirror", "seed": 2524857566, "witness": true, "ack": "applied", "tornWrites": false, "failover": false, "lane": true, "bug": "none", "faults": [{"atMs": 357, "verb": "cutWitness", "node": "n1"}, {"atMs": 508, "verb": "healWitness", "node": "n1"}, {"atMs": 5560, "node": "n1", "verb": "crashAppStopstart"}, {"atMs": 6134, "verb": "hold", "node": "n2"}, {"atMs": 8511, "verb": "release", "node": "n2"}]},
  ],
  [
    "a split brain's loser wrote through a second name: kept aside under that name, the file's other names not excused",
    {"kind": "mirror", "seed": 1215551390, "witness": false, "ack": "received", "tornWrites": true, "failover": true, "lane": true, "bug": "none", "faults": [{"atMs": 1052, "verb": "partition", "node": "n2"}, {"atMs": 7973, "verb": "heal", "node": "n2"}, {"atMs": 12394, "verb": "cutWitness", "node": "n1"}, {"atMs": 13007, "verb": "healWitness", "node": "n1"}, {"atMs": 15862, "verb": "powerOff", "node": "n2"}, {"atMs": 17138, "node": "n1", "verb": "swap"}, {"atMs": 23431, "verb": "powerOn", "node": "n2"}]},
  ],
  [
    "names marked during a resync whose end was announced already: the end never came",
    {"kind": "mirror", "seed": 3488224354, "witness": false, "ack": "received", "tornWrites": true, "failover": false, "lane": false, "bug": "none", "faults": [{"atMs": 8299, "verb": "diskSlow", "node": "n2"}, {"atMs": 8869, "verb": "crash", "node": "n2"}, {"atMs": 9284, "verb": "diskFast", "node": "n2"}, {"atMs": 15546, "node": "n1", "verb": "crashAppStopstart"}, {"atMs": 16365, "verb": "restart", "node": "n2"}, {"atMs": 17020, "verb": "powerOff", "node": "n1"}, {"atMs": 19326, "verb": "powerOn", "node": "n1"}]},
  ],
  [
    "a secondary that detached while the primary was stopping: the stop waited for ever for its acknowledgements",
    {"kind": "mirror", "seed": 3225803559, "witness": false, "ack": "received", "tornWrites": true, "failover": true, "lane": false, "bug": "none", "faults": [{"atMs": 1331, "verb": "hold", "node": "n1"}, {"atMs": 5241, "verb": "diskSlow", "node": "n1"}, {"atMs": 8321, "verb": "release", "node": "n1"}, {"atMs": 9214, "verb": "stop", "node": "n2"}, {"atMs": 9404, "verb": "diskFull", "node": "n1"}, {"atMs": 9731, "verb": "diskRoomy", "node": "n1"}, {"atMs": 9828, "verb": "start", "node": "n2"}, {"atMs": 10483, "verb": "stop", "node": "n2"}, {"atMs": 11220, "verb": "start", "node": "n2"}, {"atMs": 11428, "verb": "diskFast", "node": "n1"}, {"atMs": 14911, "verb": "hold", "node": "n1"}, {"atMs": 15760, "verb": "release", "node": "n1"}]},
  ],
];

describe("fault plans that found a bug once the clients made hard links", () => {
  for (const [why, plan] of found) {
    it(why, () => {
      expect(runMirrorPlan(plan).violations).toEqual([]);
    });
  }
});
