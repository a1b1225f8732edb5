// The simulated disk (drivers/sim/disk.ts) beyond the DiskPort contract: what a power loss
// keeps (fsynced data and names, writeback, renames atomic on durable storage, torn writes
// at sector granularity), what a crash keeps (the cache, calls in flight without their
// callbacks), timing (FIFO, fsync time, slow), the injected faults (failNext, failUnder,
// capacity), metadata across power loss, the inspection API, determinism and speed.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError, unreachable } from "../../core/assert.ts";
import { isAttributeOp, isWithin, type DiskError, type DiskOp, type DiskResult, type PathSnapshot } from "../../core/mirror/disk-ops.ts";
import type { DiskPort } from "../../core/ports.ts";
import { entryCostBytes, SimDisk, type SimDiskSettings } from "../../drivers/sim/disk.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { Prng } from "../../drivers/sim/prng.ts";

interface Meta {
  readonly generation: number;
  readonly dirty: Map<string, number[]>;
}

const quiet: Partial<SimDiskSettings> = { latencyMs: 1, jitterMs: 0, fsyncMs: 10, metaMs: 5, writebackMs: null, tornWrites: false, capacityBytes: null };

/** One disk on its own queue and clock, with helpers that run calls to completion. */
class Bench {
  readonly queue = new EventQueue();
  readonly disk: SimDisk<Meta>;
  port: DiskPort<Meta>;
  nowMs = 0;

  constructor(settings: Partial<SimDiskSettings> = {}, seed = 1) {
    this.disk = new SimDisk<Meta>({ queue: this.queue, clockMs: () => this.nowMs, prng: new Prng(seed).fork("disk:n1"), settings: { ...quiet, ...settings } });
    this.port = this.disk.open();
  }

  /** Runs the events due by `timeMs`, then sets the clock there. */
  runUntil(timeMs: number): void {
    for (let next = this.queue.peekTimeMs(); next !== undefined && next <= timeMs; next = this.queue.peekTimeMs()) {
      const event = this.queue.pop()!;
      this.nowMs = event.atMs;
      event.run();
    }
    this.nowMs = Math.max(this.nowMs, timeMs);
  }

  advance(ms: number): void {
    this.runUntil(this.nowMs + ms);
  }

  /** Runs events until `results` has one entry (never running later events). */
  private until<R>(results: R[]): R {
    while (results.length === 0) {
      const event = this.queue.pop();
      expect(event, "the call completes").toBeDefined();
      this.nowMs = event!.atMs;
      event!.run();
    }
    return results[0]!;
  }

  apply(op: DiskOp): DiskResult {
    const results: DiskResult[] = [];
    this.port.apply(op, (result) => results.push(result));
    return this.until(results);
  }

  applyAll(ops: readonly DiskOp[]): void {
    for (const op of ops) expect(this.apply(op), `${op.kind}`).toBeNull();
  }

  read(path: string, blocks: readonly number[] | "all" = "all", blockSize = 4_096): PathSnapshot | DiskError {
    const results: (PathSnapshot | DiskError)[] = [];
    this.port.read(path, blocks, blockSize, (result) => results.push(result));
    return this.until(results);
  }

  install(path: string, snapshot: PathSnapshot): DiskResult {
    const results: DiskResult[] = [];
    this.port.install(path, snapshot, 4_096, (result) => results.push(result));
    return this.until(results);
  }

  preserve(paths: readonly string[], label: string): { readonly place: string } | DiskError {
    const results: ({ readonly place: string } | DiskError)[] = [];
    this.port.preserve(paths, label, (result) => results.push(result));
    return this.until(results);
  }

  persistMeta(meta: Meta): DiskResult {
    const results: DiskResult[] = [];
    this.port.persistMeta(meta, (result) => results.push(result));
    return this.until(results);
  }

  loadMeta(): Meta | null {
    const results: (Meta | null)[] = [];
    this.port.loadMeta((meta) => results.push(meta));
    return this.until(results);
  }

  powerCycle(): void {
    this.disk.powerLoss();
    this.port = this.disk.open();
  }

  text(path: string): string | null {
    const data = this.disk.fileBytes(path);
    return data === null ? null : new TextDecoder().decode(data);
  }
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const create = (path: string, mode = 0o644): DiskOp => ({ kind: "create", path, mode });
const mkdir = (path: string, mode = 0o755): DiskOp => ({ kind: "mkdir", path, mode });
const write = (path: string, offset: number, data: string | Uint8Array): DiskOp => ({ kind: "write", path, offset, data: typeof data === "string" ? bytes(data) : data });
const fsync = (path: string | null): DiskOp => ({ kind: "fsync", path });
const rename = (from: string, to: string): DiskOp => ({ kind: "rename", from, to });
const paths = (bench: Bench, layer: "cache" | "durable" = "cache"): string[] => bench.disk.snapshotTree(layer).map((entry) => entry.path);

describe("SimDisk: power loss", () => {
  it("drops what was not fsynced and keeps what was", () => {
    const bench = new Bench();
    bench.applyAll([create("f"), write("f", 0, "durable"), fsync("f"), write("f", 0, "LOST!!!"), create("g")]);
    const durable = bench.disk.snapshotTree("durable");
    bench.powerCycle();
    expect(bench.text("f")).toBe("durable");
    expect(bench.read("g")).toEqual({ kind: "absent" });
    expect(bench.disk.snapshotTree()).toEqual(durable);
  });

  it("makes durable with fsync(path) the names leading to it, not its siblings", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("a"), mkdir("a/b"), create("a/b/f"), write("a/b/f", 0, "kept"), create("a/b/g"), create("h"), fsync("a/b/f")]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "a", "a/b", "a/b/f"]);
    expect(bench.text("a/b/f")).toBe("kept");
  });

  it("brings back empty a file whose name was made durable before its data", () => {
    const bench = new Bench();
    bench.applyAll([create("f", 0o600), write("f", 0, "not yet"), fsync("")]);
    bench.powerCycle();
    expect(bench.read("f")).toEqual({ kind: "file", mode: 0o600, size: 0, blocks: new Map() });
  });

  it("makes an unlink durable with an fsync of its directory, and only then", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("d"), create("d/f"), fsync(null), { kind: "unlink", path: "d/f" }]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "d", "d/f"]);
    bench.applyAll([{ kind: "unlink", path: "d/f" }, fsync("d")]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "d"]);
  });

  it("makes a hard link durable with an fsync of either name or of its directory, and only then", () => {
    const link = (from: string, to: string): DiskOp => ({ kind: "link", from, to });
    const bench = new Bench();
    bench.applyAll([mkdir("d"), create("f"), write("f", 0, "shared"), fsync(null), link("f", "d/g")]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "d", "f"]);
    bench.applyAll([link("f", "d/g"), fsync("f")]);
    bench.disk.checkInvariants();
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "d", "d/g", "f"]);
    expect(bench.text("d/g")).toBe("shared");
    expect(bench.disk.snapshotTree().find((entry) => entry.path === "f")).toMatchObject({ links: ["d/g"] });
    // The unlink of one name, made durable by its directory: the other name keeps the data.
    bench.applyAll([{ kind: "unlink", path: "f" }, fsync("")]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "d", "d/g"]);
    expect(bench.text("d/g")).toBe("shared");
    bench.disk.checkInvariants();
  });

  it("makes extended attributes durable with an fsync of their file, and only then, and lists them in the tree", () => {
    const set = (path: string, name: string, value: string): DiskOp => ({ kind: "setxattr", path, name, value: new TextEncoder().encode(value) });
    const bench = new Bench();
    bench.applyAll([create("f"), set("f", "user.a", "one"), fsync(null), set("f", "user.a", "two"), set("f", "trusted.b", "")]);
    bench.powerCycle();
    expect(bench.disk.snapshotTree().find((entry) => entry.path === "f")).toMatchObject({ xattrs: [["user.a", "6f6e65"]] });
    bench.applyAll([set("f", "user.a", "two"), { kind: "removexattr", path: "f", name: "user.a" }, set("f", "security.c", "x"), fsync("f")]);
    bench.powerCycle();
    expect(bench.disk.snapshotTree().find((entry) => entry.path === "f")).toMatchObject({ xattrs: [["security.c", "78"]] });
    bench.disk.checkInvariants();
  });

  it("makes everything durable with fsync(null)", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("d"), create("d/f"), write("d/f", 10, "x"), { kind: "symlink", path: "l", target: "d/f" }, { kind: "setattr", path: "d", mode: 0o700 }, fsync(null)]);
    expect(bench.disk.snapshotTree("durable")).toEqual(bench.disk.snapshotTree("cache"));
    expect(bench.disk.treeDigest("durable")).toBe(bench.disk.treeDigest("cache"));
  });

  it("keeps a renamed file in one of its two places when only its old directory was fsynced", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("a"), mkdir("b"), create("a/f"), write("a/f", 0, "moved"), fsync(null), rename("a/f", "b/f"), fsync("a")]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "a", "b", "b/f"]);
    expect(bench.text("b/f")).toBe("moved");
  });

  it("moves a file on durable storage when a rename is made durable through its new name", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("d"), create("a"), write("a", 0, "one file"), fsync(null), rename("a", "d/b"), fsync("d/b")]);
    bench.disk.checkInvariants();
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "d", "d/b"]);
    expect(bench.text("d/b")).toBe("one file");
  });

  it("keeps directories swapped by two renames when only one of them was fsynced", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("a"), mkdir("a/b"), create("a/b/f"), fsync(null), rename("a/b", "b"), rename("a", "b/a"), fsync("b")]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "b", "b/a", "b/f"]);
  });

  it("writes back a directory with its own name, so that two renames cannot cut it off", () => {
    const bench = new Bench({ writebackMs: 100 });
    bench.applyAll([mkdir("a"), mkdir("a/b"), fsync(null), { kind: "setattr", path: "a/b", mode: 0o700 }]);
    bench.runUntil(50);
    bench.applyAll([rename("a/b", "b"), rename("a", "b/a")]);
    bench.runUntil(120);
    expect(paths(bench, "durable")).toEqual(["", "b", "b/a"]);
    bench.powerCycle();
    expect(paths(bench)).toEqual(["", "b", "b/a"]);
  });

  it("cancels every call in flight: no callback, no effect", () => {
    const bench = new Bench();
    const results: DiskResult[] = [];
    bench.port.apply(create("f"), (result) => results.push(result));
    bench.port.apply(fsync(null), (result) => results.push(result));
    expect(bench.disk.inFlightCount).toBe(2);
    bench.powerCycle();
    bench.advance(1_000);
    expect(results).toEqual([]);
    expect(bench.disk.inFlightCount).toBe(0);
    expect(paths(bench)).toEqual([""]);
  });

  it("writes back dirty data by itself after writebackMs, not before", () => {
    const bench = new Bench({ writebackMs: 1_000 });
    bench.applyAll([mkdir("d"), create("d/f"), write("d/f", 0, "written back")]);
    bench.advance(990);
    expect(paths(bench, "durable")).toEqual([""]);
    bench.advance(20);
    expect(bench.disk.snapshotTree("durable")).toEqual(bench.disk.snapshotTree("cache"));
    expect(bench.disk.dirtyCount).toBe(0);
    expect(bench.disk.stats.writebacks).toBeGreaterThanOrEqual(3);
    bench.powerCycle();
    expect(bench.text("d/f")).toBe("written back");
  });

  it("never writes back with writebackMs null", () => {
    const bench = new Bench({ writebackMs: null });
    bench.applyAll([create("f"), write("f", 0, "x")]);
    bench.advance(3_600_000);
    bench.powerCycle();
    expect(paths(bench)).toEqual([""]);
  });

  it("keeps the preserved area", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("d"), create("d/f"), write("d/f", 0, "old side")]);
    expect(bench.preserve(["d"], "split")).toEqual({ place: "preserved/split" });
    bench.powerCycle();
    expect(paths(bench)).toEqual([""]);
    expect(bench.disk.preservedLabels()).toEqual(["split"]);
    expect(bench.disk.preserved("split")!.map((entry) => entry.path)).toEqual(["d", "d/f"]);
    expect(new TextDecoder().decode(bench.disk.preservedBytes("split", "d/f")!)).toBe("old side");
  });
});

describe("SimDisk: torn writes", () => {
  const sector = 512;

  /** A file of 16 sectors of 0xaa made durable, then overwritten with 0xbb and not synced. */
  function tornBench(tornWrites: boolean, seed: number): Bench {
    const bench = new Bench({ tornWrites }, seed);
    bench.applyAll([create("f"), write("f", 0, new Uint8Array(16 * sector).fill(0xaa)), fsync(null), write("f", 0, new Uint8Array(16 * sector).fill(0xbb))]);
    bench.powerCycle();
    return bench;
  }

  const sectorsOf = (data: Uint8Array): number[] => Array.from({ length: data.length / sector }, (_, index) => data[index * sector]!);

  it("persists some whole 512-byte sectors of a write that was not durable", () => {
    const bench = tornBench(true, 7);
    const data = bench.disk.fileBytes("f")!;
    expect(data.length).toBe(16 * sector);
    for (let index = 0; index < 16; index++) expect(new Set(data.subarray(index * sector, (index + 1) * sector)).size, `sector ${index} is whole`).toBe(1);
    const sectors = sectorsOf(data);
    expect(sectors).toContain(0xaa);
    expect(sectors).toContain(0xbb);
    expect(bench.disk.stats.tornSectors).toBe(sectors.filter((value) => value === 0xbb).length);
  });

  it("tears the same way for the same seed, differently for others", () => {
    expect(sectorsOf(tornBench(true, 7).disk.fileBytes("f")!)).toEqual(sectorsOf(tornBench(true, 7).disk.fileBytes("f")!));
    const patterns = new Set([1, 2, 3, 4, 5].map((seed) => sectorsOf(tornBench(true, seed).disk.fileBytes("f")!).join()));
    expect(patterns.size).toBeGreaterThan(1);
  });

  it("loses a write that was not durable whole without tornWrites", () => {
    expect(new Set(tornBench(false, 7).disk.fileBytes("f")!)).toEqual(new Set([0xaa]));
  });

  it("grows a file only as far as the sectors of an extending write that persisted", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const bench = new Bench({ tornWrites: true }, seed);
      const data = new Uint8Array(8 * sector).map((_, index) => 1 + (index % 200));
      bench.applyAll([create("f"), fsync(null), write("f", 0, data)]);
      bench.powerCycle();
      const kept = bench.disk.fileBytes("f")!;
      expect(kept.length % sector).toBe(0);
      for (let index = 0; index < kept.length / sector; index++) {
        const piece = kept.subarray(index * sector, (index + 1) * sector);
        expect(piece.every((value) => value === 0) || piece.every((value, at) => value === data[index * sector + at])).toBe(true);
      }
    }
  });

  it("tears nothing of a file whose data was fsynced after the write", () => {
    const bench = new Bench({ tornWrites: true });
    bench.applyAll([create("f"), write("f", 0, new Uint8Array(4_096).fill(1)), fsync("f")]);
    bench.powerCycle();
    expect(bench.disk.fileBytes("f")).toEqual(new Uint8Array(4_096).fill(1));
    expect(bench.disk.stats.tornSectors).toBe(0);
  });
});

describe("SimDisk: crash", () => {
  it("keeps the cache and completes calls in flight into it without their callbacks", () => {
    const bench = new Bench();
    bench.applyAll([create("f")]);
    const results: DiskResult[] = [];
    bench.port.apply(write("f", 0, "in flight"), (result) => results.push(result));
    bench.disk.crash();
    bench.advance(100);
    expect(results).toEqual([]);
    bench.port = bench.disk.open();
    expect(bench.text("f")).toBe("in flight");
    expect(bench.disk.stats.crashes).toBe(1);
  });

  it("drops the callbacks of the old port even when the new one is open before they complete", () => {
    const bench = new Bench();
    const old: DiskResult[] = [];
    bench.port.apply(create("f"), (result) => old.push(result));
    bench.disk.crash();
    bench.port = bench.disk.open();
    expect(bench.apply(write("f", 0, "after"))).toBeNull();
    expect(old).toEqual([]);
  });

  it("refuses a port of an ended incarnation as a programmer error", () => {
    const bench = new Bench();
    const old = bench.port;
    bench.disk.crash();
    expect(() => old.apply(create("f"), () => {})).toThrow(AssertionError);
    bench.port = bench.disk.open();
    bench.disk.powerLoss();
    expect(() => bench.port.loadMeta(() => {})).toThrow(AssertionError);
    expect(() => bench.disk.crash()).toThrow(AssertionError);
  });
});

describe("SimDisk: timing", () => {
  it("completes calls latencyMs apart in issue order, fsync taking fsyncMs, persistMeta metaMs", () => {
    const bench = new Bench({ latencyMs: 1, fsyncMs: 10, metaMs: 5 });
    const times: number[] = [];
    const note = () => times.push(bench.nowMs);
    bench.port.apply(create("f"), note);
    bench.port.apply(fsync("f"), note);
    bench.port.persistMeta({ generation: 1, dirty: new Map() }, note);
    bench.port.read("f", "all", 4_096, note);
    bench.advance(100);
    expect(times).toEqual([1, 11, 16, 17]);
  });

  it("starts a call issued later than the queue drains from its own issue time", () => {
    const bench = new Bench({ latencyMs: 1 });
    bench.advance(50);
    expect(bench.apply(create("f"))).toBeNull();
    expect(bench.nowMs).toBe(51);
  });

  it("slows calls issued after slow(factor) until unslow()", () => {
    const bench = new Bench({ latencyMs: 2 });
    bench.disk.slow(10);
    bench.apply(create("f"));
    expect(bench.nowMs).toBe(20);
    bench.disk.unslow();
    bench.apply(create("g"));
    expect(bench.nowMs).toBe(22);
  });

  it("draws jitter from the PRNG, keeping completions in issue order", () => {
    const bench = new Bench({ latencyMs: 0.1, jitterMs: 5 });
    const order: number[] = [];
    const times: number[] = [];
    for (let index = 0; index < 50; index++) bench.port.apply(create(`f${index}`), () => (order.push(index), times.push(bench.nowMs)));
    bench.advance(1_000);
    expect(order).toEqual(Array.from({ length: 50 }, (_, index) => index));
    expect(new Set(times.slice(1).map((time, index) => (time - times[index]!).toFixed(3))).size).toBeGreaterThan(10);
  });
});

describe("SimDisk: injected faults", () => {
  it("fails the next call of a kind with failNext, changing nothing, then behaves again", () => {
    const bench = new Bench();
    bench.applyAll([create("f")]);
    bench.disk.failNext("write", "EIO");
    bench.disk.failNext("read", "EIO");
    expect(bench.apply(write("f", 0, "x"))).toBe("EIO");
    expect(bench.read("f")).toBe("EIO");
    expect(bench.disk.fileBytes("f")!.length).toBe(0);
    expect(bench.apply(write("f", 0, "x"))).toBeNull();
    expect(bench.disk.stats.errorsInjected).toBe(2);
  });

  it("fails whichever call comes next with failNext any, persistMeta included", () => {
    const bench = new Bench();
    bench.disk.failNext("any", "EIO");
    expect(bench.persistMeta({ generation: 1, dirty: new Map() })).toBe("EIO");
    expect(bench.loadMeta()).toBeNull();
    bench.disk.failNext("preserve", "ENOSPC");
    expect(bench.preserve([""], "x")).toBe("ENOSPC");
  });

  it("fails every call naming a path under failUnder's prefix until healUnder", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("a"), mkdir("b"), create("b/x")]);
    bench.disk.failUnder("a");
    expect(bench.apply(create("a/f"))).toBe("EIO");
    expect(bench.apply(rename("b/x", "a/x"))).toBe("EIO");
    expect(bench.apply(fsync(null))).toBe("EIO");
    expect(bench.read("a")).toBe("EIO");
    expect(bench.install("a/g", { kind: "dir", mode: 0o755, children: [] })).toBe("EIO");
    expect(bench.apply(create("ab"))).toBeNull();
    expect(bench.apply(create("b/f"))).toBeNull();
    bench.disk.healUnder("a");
    expect(bench.apply(create("a/f"))).toBeNull();
  });

  it("fails with the chosen error, e.g. EROFS for the whole tree", () => {
    const bench = new Bench();
    bench.disk.failUnder("", "EROFS");
    expect(bench.apply(create("f"))).toBe("EROFS");
  });

  it("gives ENOSPC when a create, write, extension, symlink or install would exceed capacityBytes", () => {
    const bench = new Bench({ capacityBytes: 10_000 });
    bench.applyAll([create("f"), write("f", 0, new Uint8Array(9_000))]);
    expect(bench.disk.usedBytes).toBe(entryCostBytes + 9_000);
    expect(bench.apply(write("f", 9_000, new Uint8Array(1_000)))).toBe("ENOSPC");
    expect(bench.apply({ kind: "truncate", path: "f", size: 10_000 })).toBe("ENOSPC");
    expect(bench.apply(write("f", 0, new Uint8Array(9_000).fill(1)))).toBeNull();
    bench.applyAll([create("g"), mkdir("d")]);
    expect(bench.disk.usedBytes).toBe(3 * entryCostBytes + 9_000);
    expect(bench.apply({ kind: "symlink", path: "l", target: "x".repeat(900) })).toBe("ENOSPC");
    expect(bench.install("big", { kind: "file", mode: 0o644, size: 5_000, blocks: new Map() })).toBe("ENOSPC");
    expect(bench.read("big")).toEqual({ kind: "absent" });
    expect(bench.preserve(["f"], "p")).toBe("ENOSPC");
    expect(bench.apply({ kind: "unlink", path: "f" })).toBeNull();
    expect(bench.disk.usedBytes).toBe(2 * entryCostBytes);
    expect(bench.install("big", { kind: "file", mode: 0o644, size: 5_000, blocks: new Map() })).toBeNull();
  });

  it("counts replaced and removed trees as freed, and recounts after a power loss", () => {
    const bench = new Bench({ capacityBytes: 3_000 });
    bench.applyAll([mkdir("d"), create("d/f"), write("d/f", 0, new Uint8Array(2_000)), fsync(null), create("g")]);
    expect(bench.install("d", { kind: "file", mode: 0o644, size: 2_500, blocks: new Map() })).toBeNull();
    expect(bench.disk.usedBytes).toBe(2 * entryCostBytes + 2_500);
    bench.powerCycle();
    expect(bench.disk.usedBytes).toBe(2 * entryCostBytes + 2_000);
  });
});

describe("SimDisk: semantics the contract leaves to each twin", () => {
  it("treats the root as a directory that cannot be removed or renamed", () => {
    const bench = new Bench();
    expect(bench.apply(create(""))).toBe("EEXIST");
    expect(bench.apply(mkdir(""))).toBe("EEXIST");
    expect(bench.apply({ kind: "rmdir", path: "" })).toBe("EINVAL");
    expect(bench.apply({ kind: "unlink", path: "" })).toBe("EISDIR");
    expect(bench.apply(write("", 0, "x"))).toBe("EISDIR");
    bench.applyAll([mkdir("d"), create("d/f")]);
    expect(bench.apply(rename("", "x"))).toBe("EINVAL");
    expect(bench.apply(rename("d", ""))).toBe("EINVAL");
    expect(bench.install("", { kind: "dir", mode: 0o700, children: [] })).toBeNull();
    expect(bench.install("", { kind: "file", mode: 0o700, size: 0, blocks: new Map() })).toBe("EINVAL");
    expect(bench.install("", { kind: "absent" })).toBeNull();
    expect(bench.read("")).toEqual({ kind: "dir", mode: 0o700, children: [] });
  });

  it("never follows a symlink", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("d"), { kind: "symlink", path: "l", target: "d" }]);
    expect(bench.apply(create("l/f"))).toBe("ENOTDIR");
    expect(bench.apply(write("l", 0, "x"))).toBe("EINVAL");
    expect(bench.apply({ kind: "truncate", path: "l", size: 0 })).toBe("EINVAL");
    expect(bench.apply({ kind: "setattr", path: "l", mode: 0o600 })).toBe("EINVAL");
    expect(bench.apply({ kind: "symlink", path: "m", target: "" })).toBe("ENOENT");
  });

  it("gives EINVAL for a negative offset or size", () => {
    const bench = new Bench();
    bench.applyAll([create("f")]);
    expect(bench.apply(write("f", -1, "x"))).toBe("EINVAL");
    expect(bench.apply({ kind: "truncate", path: "f", size: -1 })).toBe("EINVAL");
  });

  it("keeps only the permission bits of a mode", () => {
    const bench = new Bench();
    bench.applyAll([create("f", 0o100_644)]);
    expect(bench.read("f")).toMatchObject({ mode: 0o644 });
  });

  it("replaces a non-directory in the way of install's missing parents", () => {
    const bench = new Bench();
    bench.applyAll([create("a")]);
    expect(bench.install("a/b/f", { kind: "symlink", target: "t" })).toBeNull();
    expect(paths(bench)).toEqual(["", "a", "a/b", "a/b/f"]);
    expect(bench.read("a")).toMatchObject({ kind: "dir", mode: 0o755 });
  });

  it("merges preserves under the same label, a later copy of a path replacing the earlier", () => {
    const bench = new Bench();
    bench.applyAll([create("f"), write("f", 0, "one"), create("g")]);
    bench.preserve(["f"], "x");
    bench.applyAll([write("f", 0, "two")]);
    bench.preserve(["f", "g"], "x");
    expect(bench.disk.preserved("x")!.map((entry) => entry.path)).toEqual(["f", "g"]);
    expect(new TextDecoder().decode(bench.disk.preservedBytes("x", "f")!)).toBe("two");
    expect(bench.disk.preserved("y")).toBeNull();
  });

  it("asserts on paths that are not relative paths of plain names", () => {
    const bench = new Bench();
    for (const path of ["/f", "f/", "a//b", "./f", "a/../b"]) expect(() => bench.port.apply(create(path), () => {}), path).toThrow(AssertionError);
    expect(() => bench.port.preserve(["f"], "a/b", () => {})).toThrow(AssertionError);
    expect(() => bench.port.read("f", [-1], 4_096, () => {})).toThrow(AssertionError);
    expect(() => bench.port.install("f", { kind: "file", mode: 0o644, size: 10, blocks: new Map([[0, new Uint8Array(11)]]) }, 4_096, () => {})).toThrow(AssertionError);
  });
});

describe("SimDisk: metadata", () => {
  it("keeps the previous metadata through a power loss during persistMeta", () => {
    const bench = new Bench({ metaMs: 5 });
    expect(bench.persistMeta({ generation: 1, dirty: new Map([["f", [1, 2]]]) })).toBeNull();
    const results: DiskResult[] = [];
    bench.port.persistMeta({ generation: 2, dirty: new Map() }, (result) => results.push(result));
    bench.advance(4);
    bench.powerCycle();
    bench.advance(100);
    expect(results).toEqual([]);
    expect(bench.loadMeta()).toEqual({ generation: 1, dirty: new Map([["f", [1, 2]]]) });
  });

  it("completes a persistMeta in flight when only the process crashes", () => {
    const bench = new Bench();
    bench.port.persistMeta({ generation: 2, dirty: new Map() }, () => {});
    bench.disk.crash();
    bench.port = bench.disk.open();
    expect(bench.loadMeta()).toEqual({ generation: 2, dirty: new Map() });
  });

  it("stores structured values (Maps) as deep copies", () => {
    const bench = new Bench();
    const meta = { generation: 3, dirty: new Map([["f", [0]]]) };
    bench.persistMeta(meta);
    meta.dirty.get("f")!.push(99);
    expect(bench.disk.durableMeta()).toEqual({ generation: 3, dirty: new Map([["f", [0]]]) });
  });
});

describe("SimDisk: inspection", () => {
  it("lists every path with kind, mode, size and content hash, root first", () => {
    const bench = new Bench();
    bench.applyAll([mkdir("d", 0o700), create("d/f", 0o600), write("d/f", 0, "abc"), { kind: "symlink", path: "l", target: "d/f" }]);
    expect(bench.disk.snapshotTree()).toEqual([
      { path: "", kind: "dir", mode: 0o755 },
      { path: "d", kind: "dir", mode: 0o700 },
      { path: "d/f", kind: "file", mode: 0o600, size: 3, sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
      { path: "l", kind: "symlink", target: "d/f" },
    ]);
  });

  it("gives equal digests for equal trees built differently, and different ones otherwise", () => {
    const one = new Bench();
    one.applyAll([create("f"), write("f", 0, "abcdef"), { kind: "truncate", path: "f", size: 3 }]);
    const two = new Bench({ latencyMs: 3 }, 9);
    two.applyAll([create("g"), write("g", 4_096, "x"), write("g", 0, "abc"), { kind: "truncate", path: "g", size: 3 }, rename("g", "f")]);
    expect(two.disk.treeDigest()).toBe(one.disk.treeDigest());
    two.applyAll([write("f", 2, "C")]);
    expect(two.disk.treeDigest()).not.toBe(one.disk.treeDigest());
  });

  it("counts ops applied, bytes written, fsyncs and errors", () => {
    const bench = new Bench();
    bench.applyAll([create("f"), write("f", 0, "12345"), fsync("f"), fsync(null)]);
    expect(bench.apply(create("f"))).toBe("EEXIST");
    expect(bench.disk.stats).toMatchObject({ opsApplied: 4, bytesWritten: 5, fsyncs: 2, errors: 1, errorsInjected: 0 });
  });
});

// ---- properties ----

/** One step of a random workload, resolved against the tree when it runs (picks index the
 *  tree's current paths), so that most operations find what they act on. */
interface Step {
  readonly kind: DiskOp["kind"] | "fsyncAll" | "powerLoss";
  readonly pick: number;
  readonly pickTo: number;
  readonly name: string;
  readonly offset: number;
  readonly length: number;
  readonly fill: number;
  readonly pauseMs: number;
}

const stepKinds: readonly { readonly weight: number; readonly arbitrary: fc.Arbitrary<Step["kind"]> }[] = (
  [
    ["create", 4],
    ["fsync", 4],
    ["write", 3],
    ["rename", 3],
    ["mkdir", 2],
    ["fsyncAll", 2],
    ["powerLoss", 2],
    ["truncate", 1],
    ["unlink", 1],
    ["rmdir", 1],
    ["setattr", 1],
    ["chown", 1],
    ["times", 1],
    ["symlink", 1],
    ["link", 2],
    ["setxattr", 2],
    ["removexattr", 1],
  ] as const
).map(([kind, weight]) => ({ weight, arbitrary: fc.constant(kind) }));

const stepArb: fc.Arbitrary<Step> = fc.record({
  kind: fc.oneof(...stepKinds),
  pick: fc.nat(1_000),
  pickTo: fc.nat(1_000),
  name: fc.constantFrom("a", "b", "c", "d", "e"),
  offset: fc.nat(9_000),
  length: fc.integer({ min: 1, max: 5_000 }),
  fill: fc.nat(255),
  pauseMs: fc.nat(30),
});

/** The operation `step` stands for in the tree as it is now. */
function opOf(bench: Bench, step: Step): DiskOp {
  const tree = bench.disk.snapshotTree();
  const pickFrom = (paths: readonly string[], pick: number): string => (paths.length === 0 ? "none" : paths[pick % paths.length]!);
  const dirs = tree.filter((entry) => entry.kind === "dir").map((entry) => entry.path);
  const files = tree.filter((entry) => entry.kind === "file").map((entry) => entry.path);
  const any = tree.filter((entry) => entry.path !== "").map((entry) => entry.path);
  const fresh = (pick: number) => joinPath(pickFrom(dirs, pick), step.name);
  switch (step.kind) {
    case "create":
      return create(fresh(step.pick));
    case "mkdir":
      return mkdir(fresh(step.pick));
    case "symlink":
      return { kind: "symlink", path: fresh(step.pick), target: "t" };
    case "write":
      return write(pickFrom(files, step.pick), step.offset, new Uint8Array(step.length).fill(step.fill));
    case "truncate":
      return { kind: "truncate", path: pickFrom(files, step.pick), size: step.offset };
    case "rename":
      return rename(pickFrom(any, step.pick), fresh(step.pickTo));
    case "link":
      return { kind: "link", from: pickFrom(files, step.pick), to: fresh(step.pickTo) };
    case "unlink":
      return { kind: "unlink", path: pickFrom(any, step.pick) };
    case "rmdir":
      return { kind: "rmdir", path: pickFrom(dirs, step.pick) };
    case "setattr":
      return { kind: "setattr", path: pickFrom(any, step.pick), mode: step.fill % 2 === 0 ? 0o700 : 0o755 };
    case "chown":
      return { kind: "chown", path: pickFrom(any, step.pick), uid: -1, gid: -1 };
    case "times":
      return { kind: "times", path: pickFrom(any, step.pick), atime: null, mtime: { s: step.offset, ns: step.fill } };
    case "setxattr":
      return { kind: "setxattr", path: pickFrom([...files, ...dirs], step.pick), name: `user.${step.name}`, value: new Uint8Array(step.length % 40).fill(step.fill) };
    case "removexattr":
      return { kind: "removexattr", path: pickFrom([...files, ...dirs], step.pick), name: `user.${step.name}` };
    case "fsync":
      return fsync(pickFrom([...files, ...dirs], step.pick));
    case "fsyncAll":
    case "powerLoss":
      return fsync(null);
    default:
      return unreachable(step.kind);
  }
}

function joinPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

describe("SimDisk: properties", () => {
  it("after a power loss, without writeback or torn writes, the tree is the cache at the last fsync(null) when no other fsync ran", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 100, size: "max" }), (steps) => {
        const bench = new Bench();
        let synced = bench.disk.snapshotTree();
        for (const step of steps) {
          const op = opOf(bench, step);
          if (op.kind === "fsync" && op.path !== null) continue;
          if (bench.apply(op) === null && op.kind === "fsync") synced = bench.disk.snapshotTree();
        }
        bench.powerCycle();
        expect(bench.disk.snapshotTree()).toEqual(synced);
      }),
      { numRuns: 200, seed: 11 },
    );
  });

  it("never loses through power losses a file fsynced and not changed since: it is under one of the names it had", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 20, maxLength: 150, size: "max" }), fc.integer({ min: 1, max: 50 }), fc.boolean(), (steps, writebackMs, torn) => {
        const bench = new Bench({ writebackMs, latencyMs: 1, tornWrites: torn });
        let kept: KeptFile[] = [];
        for (const step of [...steps, null]) {
          if (step === null || step.kind === "powerLoss") {
            bench.powerCycle();
            kept = kept.map((file) => found(bench, file));
            continue;
          }
          const op = opOf(bench, step);
          if (bench.apply(op) === null) kept = follow(bench, kept, op);
          bench.advance(step.pauseMs);
          bench.disk.checkInvariants();
        }
      }),
      { numRuns: 500, seed: 12 },
    );
  });

  it("runs the same seed to the same completions and the same trees, power losses and torn writes included", () => {
    const run = (seed: number): string[] => {
      const bench = new Bench({ latencyMs: 0.2, jitterMs: 1, writebackMs: 30, tornWrites: true }, seed);
      const steps = fc.sample(stepArb, { numRuns: 400, seed });
      const prng = new Prng(seed).fork("workload");
      const trace: string[] = [];
      for (const step of steps) {
        const op = opOf(bench, step);
        bench.port.apply(op, (result) => trace.push(`${bench.nowMs.toFixed(6)} ${op.kind} ${result}`));
        if (prng.chance(0.3)) bench.advance(step.pauseMs);
        if (prng.chance(0.01)) {
          bench.powerCycle();
          trace.push(`power loss ${bench.disk.treeDigest()}`);
        }
      }
      bench.advance(1_000);
      trace.push(bench.disk.treeDigest("cache"), bench.disk.treeDigest("durable"), JSON.stringify(bench.disk.stats));
      return trace;
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });
});

/** A file whose data was fsynced, with every name it has had since. */
interface KeptFile {
  readonly data: Uint8Array;
  readonly names: Set<string>;
  readonly name: string;
}

/** The kept files after `op` succeeded: renamed ones (or their directories) gain a name,
 *  changed, removed or linked ones are dropped, fsynced ones with one name are (re)recorded
 *  (a file with several names changes through any of them). */
function follow(bench: Bench, kept: readonly KeptFile[], op: DiskOp): KeptFile[] {
  const next: KeptFile[] = [];
  for (const file of kept) {
    if (op.kind === "link") {
      if (file.name !== op.from) next.push(file);
    } else if (op.kind === "rename" && isWithin(file.name, op.from) && op.from !== op.to) {
      const name = op.to + file.name.slice(op.from.length);
      next.push({ data: file.data, names: new Set([...file.names, name]), name });
    } else if (op.kind === "rename" ? !isWithin(file.name, op.to) : op.kind === "fsync" || isAttributeOp(op) || !isWithin(file.name, op.path)) next.push(file);
  }
  if (op.kind !== "fsync") return next;
  const single = bench.disk.snapshotTree().filter((entry) => entry.kind === "file" && entry.links === undefined).map((entry) => entry.path);
  const synced = op.path === null ? single : single.filter((name) => name === op.path);
  for (const name of synced) {
    const data = bench.disk.fileBytes(name);
    if (data !== null) next.push({ data, names: new Set([name]), name });
  }
  return next.filter((file, index) => !next.some((other, later) => later > index && other.name === file.name));
}

/** The kept file after a power loss, under the one name it was found at; fails when it is nowhere. */
function found(bench: Bench, file: KeptFile): KeptFile {
  const name = [...file.names].find((each) => equalBytes(bench.disk.fileBytes(each), file.data));
  expect(name, `fsynced file under ${[...file.names].join(" or ")}`).toBeDefined();
  return { data: file.data, names: new Set([name!]), name: name! };
}

function equalBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && a.every((value, index) => value === b[index]);
}

describe("SimDisk: speed", () => {
  it("applies 20,000 writes into a 4 MiB file, with fsyncs, in well under a second of real time", () => {
    const bench = new Bench({ latencyMs: 0.05, fsyncMs: 1, writebackMs: 5_000, tornWrites: true });
    bench.applyAll([create("big"), { kind: "truncate", path: "big", size: 4 << 20 }]);
    const prng = new Prng(3);
    const data = new Uint8Array(8_192).fill(7);
    const startMs = performance.now();
    let done = 0;
    for (let index = 0; index < 20_000; index++) {
      const offset = prng.int(0, (4 << 20) - data.length);
      bench.port.apply(index % 100 === 99 ? fsync("big") : write("big", offset, data.subarray(0, prng.int(1, data.length))), () => done++);
    }
    bench.advance(60_000);
    const elapsedMs = performance.now() - startMs;
    expect(done).toBe(20_000);
    expect(bench.disk.fileBytes("big")!.length).toBe(4 << 20);
    expect(elapsedMs).toBeLessThan(1_500);
  });
});
