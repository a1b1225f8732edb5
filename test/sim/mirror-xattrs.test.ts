// Extended attributes in a mirror: setxattr and removexattr are replicated like a chmod
// (marks: the path's attributes), and a resync gives each path it sends exactly the
// attributes it has on the primary (every chunk of a file carries them), so attributes
// changed or removed while the peer was away reach it, and an error (ENODATA, EEXIST,
// EOPNOTSUPP) reaches the application as a local disk gives it, the two sides alike.

import { describe, expect, it } from "vitest";
import type { DiskOp } from "../../core/mirror/disk-ops.ts";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import type { TreeEntry } from "../../drivers/sim/disk.ts";
import type { MirrorWorld } from "../../drivers/sim/mirror-world.ts";
import { syncedWorld, whileAway, write } from "./mirror-submit.ts";

const fill = (byte: number, length: number): Uint8Array => new Uint8Array(length).fill(byte);
const set = (path: string, name: string, value: string, how?: "create" | "replace"): DiskOp => ({ kind: "setxattr", path, name, value: new TextEncoder().encode(value), ...(how === undefined ? {} : { how }) });
const remove = (path: string, name: string): DiskOp => ({ kind: "removexattr", path, name });
const hex = (value: string) => Buffer.from(value).toString("hex");

const entryOn = (world: MirrorWorld, node: "n1" | "n2", path: string): TreeEntry | undefined => world.node(node).disk.snapshotTree().find((entry) => entry.path === path);

describe("extended attributes in a mirror", () => {
  for (const lane of [false, true]) {
    it(`replicates setting, replacing and removing them, on files and directories (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 41, lane });
      for (const op of [{ kind: "mkdir", path: "d", mode: 0o755 }, { kind: "create", path: "d/f", mode: 0o644 }, { kind: "write", path: "d/f", offset: 0, data: fill(1, 5_000) }, set("d/f", "user.a", "one"), set("d/f", "trusted.t", "root's"), set("d", "user.dir", ""), set("d/f", "user.a", "two", "replace"), remove("d/f", "trusted.t")] as DiskOp[]) {
        expect(write(world, op)).toBeNull();
      }
      world.runFor(500);
      expect(entryOn(world, "n2", "d/f")).toMatchObject({ xattrs: [["user.a", hex("two")]] });
      expect(entryOn(world, "n2", "d")).toMatchObject({ xattrs: [["user.dir", ""]] });
      expect(entryOn(world, "n2", "d/f")).toEqual(entryOn(world, "n1", "d/f"));
      expect(world.violations).toEqual([]);
    });
  }

  it("answers a local disk's errors, the two sides left alike", () => {
    const world = syncedWorld({ seed: 42, lane: false });
    for (const op of [{ kind: "create", path: "f", mode: 0o644 }, set("f", "user.a", "x"), { kind: "symlink", path: "l", target: "f" }] as DiskOp[]) expect(write(world, op)).toBeNull();
    expect(write(world, set("f", "user.a", "y", "create"))).toBe("EEXIST");
    expect(write(world, set("f", "user.z", "y", "replace"))).toBe("ENODATA");
    expect(write(world, remove("f", "user.z"))).toBe("ENODATA");
    expect(write(world, set("f", "bogus.a", "y"))).toBe("EOPNOTSUPP");
    expect(write(world, set("l", "user.a", "y"))).toBe("EPERM");
    expect(write(world, set("missing", "user.a", "y"))).toBe("ENOENT");
    world.runFor(500);
    expect(inSync(world)).toBe(true);
    expect(entryOn(world, "n2", "f")).toMatchObject({ xattrs: [["user.a", hex("x")]] });
    expect(world.violations).toEqual([]);
  });

  it("resends the attributes changed and removed while the peer was away, with the blocks and without", () => {
    const world = syncedWorld({ seed: 43, lane: false });
    for (const op of [{ kind: "create", path: "f", mode: 0o644 }, { kind: "write", path: "f", offset: 0, data: fill(2, 300_000) }, set("f", "user.gone", "x"), set("f", "user.kept", "old"), { kind: "create", path: "g", mode: 0o644 }, set("g", "user.g", "old")] as DiskOp[]) {
      expect(write(world, op)).toBeNull();
    }
    whileAway(world, () => {
      // f: attributes and one block changed; g: attributes only; h: new with attributes.
      for (const op of [remove("f", "user.gone"), set("f", "user.kept", "new"), { kind: "write", path: "f", offset: 200_000, data: fill(9, 10) }, set("g", "user.g", "new"), { kind: "create", path: "h", mode: 0o600 }, set("h", "user.h", "v")] as DiskOp[]) {
        expect(write(world, op)).toBeNull();
      }
    });
    expect(entryOn(world, "n2", "f")).toMatchObject({ xattrs: [["user.kept", hex("new")]] });
    expect(entryOn(world, "n2", "g")).toMatchObject({ xattrs: [["user.g", hex("new")]] });
    expect(entryOn(world, "n2", "h")).toMatchObject({ xattrs: [["user.h", hex("v")]] });
    expect(world.violations).toEqual([]);
  });

  it("keeps attributes set through one hard link with the file when that name goes while the peer is away", () => {
    const world = syncedWorld({ seed: 44, lane: false });
    for (const op of [{ kind: "create", path: "f", mode: 0o644 }, { kind: "link", from: "f", to: "g" }] as DiskOp[]) expect(write(world, op)).toBeNull();
    whileAway(world, () => {
      for (const op of [set("g", "user.via", "g"), { kind: "unlink", path: "g" }] as DiskOp[]) expect(write(world, op)).toBeNull();
    });
    expect(entryOn(world, "n2", "f")).toMatchObject({ xattrs: [["user.via", hex("g")]] });
    expect(world.violations).toEqual([]);
  });
});
