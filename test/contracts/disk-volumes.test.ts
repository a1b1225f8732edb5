// The disk port of a module with several replicated directories (core/mirror/volumes.ts):
// the whole DiskPort contract through one of its volumes (every path under that volume's
// name), then what only the composite does: the virtual root, volumes that cannot be
// removed or replaced, operations across volumes refused, fsync of the whole tree reaching
// every volume, the metadata kept by the first.

import { describe, expect, it } from "vitest";
import type { DiskOp, DiskResult, PathSnapshot } from "../../core/mirror/disk-ops.ts";
import { composeDisks, inVolume, opInVolume, volumeNameOf } from "../../core/mirror/volumes.ts";
import type { DiskPort } from "../../core/ports.ts";
import { SimDisk } from "../../drivers/sim/disk.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { Prng } from "../../drivers/sim/prng.ts";
import { apply, bytes, diskContract, read, settle, text, type DiskHarness, type TestMeta } from "./disk-contract.ts";
import { virtualTime } from "./virtual-time.ts";

const preservedPrefix = "preserved/";

interface Composed {
  readonly harness: DiskHarness;
  readonly composite: DiskPort<TestMeta>;
  readonly disks: readonly SimDisk<TestMeta>[];
}

/** Volumes `names` over simulated disks; the harness's port is the composite itself. */
function compose(seed: number, names: readonly string[]): Composed {
  const queue = new EventQueue();
  const time = virtualTime(queue, 1);
  const prng = new Prng(seed);
  const disks = names.map((name) => new SimDisk<TestMeta>({ queue, clockMs: () => time.nowMs, prng: prng.fork(`disk ${name}`), settings: { latencyMs: 0.1, jitterMs: 0.5, fsyncMs: 3 } }));
  const composite = composeDisks(names.map((name, index) => ({ name, disk: disks[index]!.open() })), (run) => queue.push(time.nowMs, run));
  const harness: DiskHarness = {
    port: composite,
    // A composite's place: `preserved/<label>-<volume>`, each volume's disk keeping its own.
    preservedFile: async (place, path) => {
      const label = place.slice(preservedPrefix.length);
      const index = names.findIndex((name) => label.endsWith(`-${name}`));
      return index < 0 ? null : disks[index]!.preservedBytes(label, path);
    },
    advance: time.advance,
    waitFor: time.waitFor,
    dispose: async () => {},
  };
  return { harness, composite, disks };
}

/** The port of volume `name` as its own tree: every path put under the volume's name (a
 *  file's other names too, which the composite gives and takes under it). */
function throughVolume(port: DiskPort<TestMeta>, name: string): DiskPort<TestMeta> {
  const outside = (path: string): string => (path.startsWith(`${name}/`) ? path.slice(name.length + 1) : `(outside ${name}) ${path}`);
  return {
    apply: (op, done) => port.apply(opInVolume(name, op), done),
    read: (path, blocks, blockSize, done) =>
      port.read(inVolume(name, path), blocks, blockSize, (result) => done(typeof result === "string" || result.kind !== "file" || result.links === undefined ? result : { ...result, links: result.links.map(outside) })),
    install: (path, snapshot, blockSize, done) =>
      port.install(inVolume(name, path), snapshot.kind === "file" && snapshot.links !== undefined ? { ...snapshot, links: snapshot.links.map((each) => inVolume(name, each)) } : snapshot, blockSize, done),
    preserve: (paths, label, done) => port.preserve(paths.map((path) => inVolume(name, path)), label, done),
    persistMeta: (meta, done) => port.persistMeta(meta, done),
    loadMeta: (done) => port.loadMeta(done),
  };
}

let seed = 1;
diskContract("several directories, through the second", async () => {
  const { harness, composite } = compose(seed++, ["1-a", "2-b"]);
  return { ...harness, port: throughVolume(composite, "2-b") };
});

describe("the disk port of several replicated directories", () => {
  const a = volumeNameOf("/var/lib/a", 0);
  const b = volumeNameOf("/srv/b", 1);

  it("names each directory by its position and last segment, in one path segment", () => {
    expect([a, b, volumeNameOf("/srv/a", 2)]).toEqual(["1-a", "2-b", "3-a"]);
    expect(opInVolume(a, { kind: "rename", from: "x", to: "d/y" })).toEqual({ kind: "rename", from: `${a}/x`, to: `${a}/d/y` });
    expect(opInVolume(a, { kind: "setattr", path: "", mode: 0o700 })).toEqual({ kind: "setattr", path: a, mode: 0o700 });
    expect(opInVolume(a, { kind: "fsync", path: null })).toEqual({ kind: "fsync", path: null });
  });

  it("answers the root as a directory of the volumes, keeps each volume's changes in its own tree", async () => {
    const { harness, disks } = compose(7, [a, b]);
    expect(await read(harness, "")).toEqual({ kind: "dir", mode: 0o755, children: [b, a].sort() });
    expect(await apply(harness, { kind: "create", path: `${a}/f`, mode: 0o644 })).toBeNull();
    expect(await apply(harness, { kind: "write", path: `${a}/f`, offset: 0, data: bytes("in a") })).toBeNull();
    expect(await apply(harness, { kind: "mkdir", path: `${b}/d`, mode: 0o755 })).toBeNull();
    expect(text(disks[0]!.fileBytes("f"))).toBe("in a");
    expect(disks[1]!.fileBytes("f")).toBeNull();
    expect(disks[1]!.snapshotTree().map((entry) => entry.path)).toContain("d");
    const root = await read(harness, b);
    expect(root).toMatchObject({ kind: "dir", children: ["d"] });
    expect(await read(harness, "elsewhere")).toEqual({ kind: "absent" });
  });

  it("refuses what would remove or replace a volume, or span two", async () => {
    const { harness } = compose(8, [a, b]);
    expect(await apply(harness, { kind: "create", path: `${a}/f`, mode: 0o644 })).toBeNull();
    const refused: [DiskOp, DiskResult][] = [
      [{ kind: "rename", from: `${a}/f`, to: `${b}/f` }, "EINVAL"],
      [{ kind: "rename", from: a, to: `${a}/x` }, "EINVAL"],
      [{ kind: "rename", from: `${a}/f`, to: a }, "EINVAL"],
      [{ kind: "rmdir", path: a }, "EINVAL"],
      [{ kind: "mkdir", path: a, mode: 0o755 }, "EEXIST"],
      [{ kind: "create", path: "top", mode: 0o644 }, "ENOENT"],
      [{ kind: "mkdir", path: "", mode: 0o755 }, "EINVAL"],
      // A second name in another volume: another file system, as the kernel says.
      [{ kind: "link", from: `${a}/f`, to: `${b}/f` }, "EXDEV"],
      [{ kind: "link", from: a, to: `${a}/x` }, "EPERM"],
    ];
    for (const [op, error] of refused) expect([op, await apply(harness, op)]).toEqual([op, error]);
    // The volume's own root can change mode.
    expect(await apply(harness, { kind: "setattr", path: a, mode: 0o700 })).toBeNull();
    expect(await read(harness, a)).toMatchObject({ kind: "dir", mode: 0o700 });
    const install = (path: string, snapshot: PathSnapshot) => settle<DiskResult>(harness, (done) => harness.port.install(path, snapshot, 4_096, done));
    expect(await install(a, { kind: "absent" })).toBe("EINVAL");
    expect(await install(a, { kind: "symlink", target: "x" })).toBe("EINVAL");
    expect(await install("", { kind: "dir", mode: 0o700, children: [] })).toBeNull();
    expect(await install("gone", { kind: "absent" })).toBeNull();
    expect(await read(harness, `${a}/f`)).toMatchObject({ kind: "file" });
  });

  it("makes the whole tree durable on every volume, keeps the metadata on the first", async () => {
    const { harness, disks, composite } = compose(9, [a, b]);
    for (const volume of [a, b]) {
      expect(await apply(harness, { kind: "create", path: `${volume}/f`, mode: 0o644 })).toBeNull();
      expect(await apply(harness, { kind: "write", path: `${volume}/f`, offset: 0, data: bytes(volume) })).toBeNull();
    }
    expect(await apply(harness, { kind: "fsync", path: null })).toBeNull();
    for (const [index, volume] of [a, b].entries()) expect(text(disks[index]!.fileBytes("f", "durable"))).toBe(volume);
    const meta: TestMeta = { generation: 3, peers: ["n2"], dirty: { [`${b}/f`]: [0] } };
    expect(await settle<DiskResult>(harness, (done) => composite.persistMeta(meta, done))).toBeNull();
    expect(disks[0]!.durableMeta()).toEqual(meta);
    expect(disks[1]!.durableMeta()).toBeNull();
    expect(await settle<TestMeta | null>(harness, (done) => composite.loadMeta(done))).toEqual(meta);
  });

  it("keeps a split brain's losing side of each volume apart", async () => {
    const { harness } = compose(10, [a, b]);
    for (const volume of [a, b]) {
      expect(await apply(harness, { kind: "create", path: `${volume}/f`, mode: 0o644 })).toBeNull();
      expect(await apply(harness, { kind: "write", path: `${volume}/f`, offset: 0, data: bytes(`lost ${volume}`) })).toBeNull();
    }
    const answer = await settle<{ readonly place: string } | string>(harness, (done) => harness.port.preserve([`${a}/f`, `${b}/f`, "nowhere"], "split-1", done));
    expect(answer).toEqual({ place: [`preserved/split-1-${a}`, `preserved/split-1-${b}`].sort().join(", ") });
    for (const volume of [a, b]) expect(text(await harness.preservedFile(`preserved/split-1-${volume}`, "f"))).toBe(`lost ${volume}`);
  });
});
