// The DiskPort contract (core/ports.ts), one suite run against the simulated twin
// (disk-sim.test.ts) and the real one (disk-real.test.ts): calls complete in the order they were issued
// and a read sees every write issued before it; POSIX results for each operation (create is
// O_CREAT|O_EXCL, writes extend with zeros, truncate cuts and extends, each error the port
// names); renames of files and directories over files, empty and non-empty directories
// and into their own subtree; what read answers of files, directories, symlinks and
// missing paths (absent, not an error); install of each kind, replacing what is there and
// creating missing parents; extended attributes (set, replaced, removed, their errors, an
// install giving exactly the listed ones); preserve keeping the version of the moment; the
// metadata round trip; every callback called exactly once, never from inside the call that
// asked for it.
// Durability is not observable through the port: the simulator's own tests check it.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DiskError, DiskOp, DiskResult, PathSnapshot } from "../../core/mirror/disk-ops.ts";
import type { DiskPort } from "../../core/ports.ts";

/** A metadata value like the mirror's: generations and per-file dirty block lists. */
export interface TestMeta {
  readonly generation: number;
  readonly peers: readonly string[];
  readonly dirty: Readonly<Record<string, readonly number[]>>;
}

export interface DiskHarness {
  /** A port on an empty tree with no metadata. */
  readonly port: DiskPort<TestMeta>;
  /** The bytes of the file at `path` inside `place` (an answer of preserve), or null when it kept none. */
  preservedFile(place: string, path: string): Promise<Uint8Array | null>;
  /** Lets `ms` of the harness's time pass. */
  advance(ms: number): Promise<void>;
  /** Lets time pass until `condition` holds; false when `limitMs` passed first. */
  waitFor(condition: () => boolean, limitMs: number): Promise<boolean>;
  /** Ends what the harness started and removes what it wrote. */
  dispose(): Promise<void>;
}

const limitMs = 10_000;
/** Time waited after a callback to see that it is not called again. */
const settleMs = 50;
const blockSize = 4_096;

/** Issues one call; checks that its callback is not called inside it, then exactly once. */
export async function settle<R>(harness: DiskHarness, issue: (done: (result: R) => void) => void): Promise<R> {
  const results: R[] = [];
  issue((result) => results.push(result));
  expect(results, "done is never called from inside the call").toHaveLength(0);
  expect(await harness.waitFor(() => results.length > 0, limitMs), "the call completes").toBe(true);
  await harness.advance(settleMs);
  expect(results, "done is called exactly once").toHaveLength(1);
  return results[0]!;
}

export function apply(harness: DiskHarness, op: DiskOp): Promise<DiskResult> {
  return settle<DiskResult>(harness, (done) => harness.port.apply(op, done));
}

/** What read answers, without owners and times (the simulated disk does not model them;
 *  the real disk's own tests check them). */
export async function read(harness: DiskHarness, path: string, blocks: readonly number[] | "all" = "all", size = blockSize): Promise<PathSnapshot | DiskError> {
  const snapshot = await settle<PathSnapshot | DiskError>(harness, (done) => harness.port.read(path, blocks, size, done));
  if (typeof snapshot === "string") return snapshot;
  const { owner: _owner, mtime: _mtime, ...rest } = snapshot as PathSnapshot & { owner?: unknown; mtime?: unknown };
  return rest as PathSnapshot;
}

export function install(harness: DiskHarness, path: string, snapshot: PathSnapshot, size = blockSize): Promise<DiskResult> {
  return settle<DiskResult>(harness, (done) => harness.port.install(path, snapshot, size, done));
}

/** Applies each op in turn, expecting every one to succeed. */
export async function applyAll(harness: DiskHarness, ops: readonly DiskOp[]): Promise<void> {
  for (const op of ops) expect(await apply(harness, op), describeForTest(op)).toBeNull();
}

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function text(data: Uint8Array | null | undefined): string | null {
  return data === null || data === undefined ? null : new TextDecoder().decode(data);
}

/** The whole content of the file at `path`, as read through the port. */
export async function content(harness: DiskHarness, path: string): Promise<Uint8Array | null> {
  const snapshot = await read(harness, path);
  if (typeof snapshot === "string" || snapshot.kind !== "file") return null;
  const whole = new Uint8Array(snapshot.size);
  for (const [index, block] of snapshot.blocks) whole.set(block, index * blockSize);
  return whole;
}

/** `links`: the file's other names, for an install that binds the path (absent: it does not). */
export function fileSnapshot(mode: number, size: number, blocks: readonly (readonly [number, Uint8Array])[], links?: readonly string[]): PathSnapshot {
  return links === undefined ? { kind: "file", mode, size, blocks: new Map(blocks) } : { kind: "file", mode, size, blocks: new Map(blocks), links };
}

function describeForTest(op: DiskOp): string {
  return `${op.kind} ${"path" in op ? op.path : `${op.from} ${op.to}`}`;
}

const create = (path: string, mode = 0o644): DiskOp => ({ kind: "create", path, mode });
const mkdir = (path: string, mode = 0o755): DiskOp => ({ kind: "mkdir", path, mode });
const write = (path: string, offset: number, data: string | Uint8Array): DiskOp => ({ kind: "write", path, offset, data: typeof data === "string" ? bytes(data) : data });
const rename = (from: string, to: string): DiskOp => ({ kind: "rename", from, to });

export function diskContract(name: string, makeHarness: () => Promise<DiskHarness>): void {
  describe(`DiskPort contract: ${name}`, () => {
    let harness: DiskHarness;
    beforeEach(async () => {
      harness = await makeHarness();
    });
    afterEach(async () => {
      await harness.dispose();
    });

    describe("ordering", () => {
      it("completes calls in the order they were issued, whatever their kind", async () => {
        const order: string[] = [];
        const note = (label: string) => () => order.push(label);
        harness.port.apply(mkdir("d"), note("mkdir"));
        harness.port.apply(create("d/f"), note("create"));
        harness.port.apply({ kind: "fsync", path: "d/f" }, note("fsync"));
        harness.port.apply(write("d/f", 0, "x"), note("write"));
        harness.port.read("d/f", "all", blockSize, note("read"));
        harness.port.persistMeta({ generation: 1, peers: [], dirty: {} }, note("persistMeta"));
        harness.port.install("e", { kind: "dir", mode: 0o700, children: [] }, blockSize, note("install"));
        harness.port.preserve(["d"], "order", note("preserve"));
        harness.port.loadMeta(note("loadMeta"));
        harness.port.apply({ kind: "fsync", path: null }, note("sync"));
        harness.port.apply({ kind: "unlink", path: "d/f" }, note("unlink"));
        expect(order, "nothing completes inside the calls").toEqual([]);
        expect(await harness.waitFor(() => order.length === 11, limitMs)).toBe(true);
        expect(order).toEqual(["mkdir", "create", "fsync", "write", "read", "persistMeta", "install", "preserve", "loadMeta", "sync", "unlink"]);
      });

      it("lets a read see the writes issued before it without waiting for them", async () => {
        const results: (PathSnapshot | DiskError | DiskResult)[] = [];
        harness.port.apply(create("f"), (result) => results.push(result));
        harness.port.apply(write("f", 0, "hello"), (result) => results.push(result));
        harness.port.apply(write("f", 3, "p!"), (result) => results.push(result));
        harness.port.read("f", "all", blockSize, (result) => results.push(result));
        expect(await harness.waitFor(() => results.length === 4, limitMs)).toBe(true);
        expect(results.slice(0, 3)).toEqual([null, null, null]);
        const snapshot = results[3] as PathSnapshot;
        expect(snapshot).toMatchObject({ kind: "file", size: 5 });
        expect(text((snapshot as { blocks: ReadonlyMap<number, Uint8Array> }).blocks.get(0))).toBe("help!");
      });

      it("takes a copy of the data of a write when it is issued", async () => {
        await apply(harness, create("f"));
        const data = bytes("abc");
        const result = apply(harness, { kind: "write", path: "f", offset: 0, data });
        data.set(bytes("xyz"));
        expect(await result).toBeNull();
        expect(text(await content(harness, "f"))).toBe("abc");
      });
    });

    describe("files", () => {
      it("creates an empty file with its mode, and refuses an existing name with EEXIST", async () => {
        expect(await apply(harness, create("f", 0o640))).toBeNull();
        expect(await read(harness, "f")).toEqual({ kind: "file", mode: 0o640, size: 0, blocks: new Map() });
        expect(await apply(harness, create("f"))).toBe("EEXIST");
        await apply(harness, mkdir("d"));
        expect(await apply(harness, create("d"))).toBe("EEXIST");
      });

      it("gives ENOENT for a missing parent and ENOTDIR for a parent that is a file", async () => {
        await apply(harness, create("f"));
        expect(await apply(harness, create("missing/f"))).toBe("ENOENT");
        expect(await apply(harness, create("f/g"))).toBe("ENOTDIR");
        expect(await apply(harness, mkdir("missing/d"))).toBe("ENOENT");
        expect(await apply(harness, mkdir("f/d"))).toBe("ENOTDIR");
        expect(await apply(harness, write("missing/f", 0, "x"))).toBe("ENOENT");
        expect(await apply(harness, write("f/g", 0, "x"))).toBe("ENOTDIR");
      });

      it("writes at an offset, extending the file with zeros", async () => {
        await applyAll(harness, [create("f"), write("f", 0, "ab"), write("f", 6, "cd")]);
        expect(await content(harness, "f")).toEqual(new Uint8Array([97, 98, 0, 0, 0, 0, 99, 100]));
      });

      it("writes across block boundaries and over earlier data", async () => {
        const big = new Uint8Array(3 * blockSize + 100).map((_, index) => index % 251);
        await applyAll(harness, [create("f"), write("f", 0, big), write("f", blockSize - 2, "XYZW")]);
        const expected = big.slice();
        expected.set(bytes("XYZW"), blockSize - 2);
        expect(await content(harness, "f")).toEqual(expected);
      });

      it("gives ENOENT for a write to a missing file and EISDIR for one to a directory", async () => {
        await apply(harness, mkdir("d"));
        expect(await apply(harness, write("f", 0, "x"))).toBe("ENOENT");
        expect(await apply(harness, write("d", 0, "x"))).toBe("EISDIR");
      });

      it("truncates: cutting drops bytes, growing adds zeros, also after a cut", async () => {
        await applyAll(harness, [create("f"), write("f", 0, "abcdef"), { kind: "truncate", path: "f", size: 2 }]);
        expect(text(await content(harness, "f"))).toBe("ab");
        await apply(harness, { kind: "truncate", path: "f", size: 5 });
        expect(await content(harness, "f")).toEqual(new Uint8Array([97, 98, 0, 0, 0]));
        await apply(harness, { kind: "truncate", path: "f", size: 0 });
        expect(await read(harness, "f")).toMatchObject({ kind: "file", size: 0 });
      });

      it("gives ENOENT for truncate of a missing file and EISDIR for one of a directory", async () => {
        await apply(harness, mkdir("d"));
        expect(await apply(harness, { kind: "truncate", path: "f", size: 0 })).toBe("ENOENT");
        expect(await apply(harness, { kind: "truncate", path: "d", size: 0 })).toBe("EISDIR");
      });

      it("unlinks a file and a symlink; gives ENOENT for a missing name and EISDIR for a directory", async () => {
        await applyAll(harness, [create("f"), { kind: "symlink", path: "l", target: "f" }, mkdir("d")]);
        expect(await apply(harness, { kind: "unlink", path: "f" })).toBeNull();
        expect(await apply(harness, { kind: "unlink", path: "l" })).toBeNull();
        expect(await read(harness, "f")).toEqual({ kind: "absent" });
        expect(await read(harness, "l")).toEqual({ kind: "absent" });
        expect(await apply(harness, { kind: "unlink", path: "f" })).toBe("ENOENT");
        expect(await apply(harness, { kind: "unlink", path: "d" })).toBe("EISDIR");
      });

      it("sets the mode of files and directories; ENOENT for a missing path", async () => {
        await applyAll(harness, [create("f", 0o600), mkdir("d", 0o700)]);
        await applyAll(harness, [{ kind: "setattr", path: "f", mode: 0o640 }, { kind: "setattr", path: "d", mode: 0o750 }]);
        expect(await read(harness, "f")).toMatchObject({ kind: "file", mode: 0o640 });
        expect(await read(harness, "d")).toMatchObject({ kind: "dir", mode: 0o750 });
        expect(await apply(harness, { kind: "setattr", path: "g", mode: 0o600 })).toBe("ENOENT");
      });

      it("fsyncs a file, a directory and the whole tree; ENOENT for a missing path", async () => {
        await applyAll(harness, [mkdir("d"), create("d/f"), write("d/f", 0, "x")]);
        expect(await apply(harness, { kind: "fsync", path: "d/f" })).toBeNull();
        expect(await apply(harness, { kind: "fsync", path: "d" })).toBeNull();
        expect(await apply(harness, { kind: "fsync", path: null })).toBeNull();
        expect(await apply(harness, { kind: "fsync", path: "d/g" })).toBe("ENOENT");
      });
    });

    describe("directories and symlinks", () => {
      it("makes directories; EEXIST for any existing name", async () => {
        expect(await apply(harness, mkdir("d", 0o750))).toBeNull();
        expect(await read(harness, "d")).toEqual({ kind: "dir", mode: 0o750, children: [] });
        expect(await apply(harness, mkdir("d"))).toBe("EEXIST");
        await apply(harness, create("f"));
        expect(await apply(harness, mkdir("f"))).toBe("EEXIST");
      });

      it("removes empty directories; ENOTEMPTY, ENOTDIR and ENOENT otherwise", async () => {
        await applyAll(harness, [mkdir("d"), create("d/f"), mkdir("e"), create("f")]);
        expect(await apply(harness, { kind: "rmdir", path: "d" })).toBe("ENOTEMPTY");
        expect(await apply(harness, { kind: "rmdir", path: "f" })).toBe("ENOTDIR");
        expect(await apply(harness, { kind: "rmdir", path: "x" })).toBe("ENOENT");
        expect(await apply(harness, { kind: "rmdir", path: "e" })).toBeNull();
        expect(await read(harness, "e")).toEqual({ kind: "absent" });
      });

      it("lists a directory's children sorted, the root included", async () => {
        await applyAll(harness, [mkdir("d"), create("d/b"), create("d/a"), mkdir("d/c"), { kind: "symlink", path: "d/B", target: "a" }]);
        expect(await read(harness, "d")).toEqual({ kind: "dir", mode: 0o755, children: ["B", "a", "b", "c"] });
        expect(await read(harness, "")).toMatchObject({ kind: "dir", children: ["d"] });
      });

      it("makes symlinks that read back as their target; EEXIST on an existing name", async () => {
        await apply(harness, create("f"));
        expect(await apply(harness, { kind: "symlink", path: "l", target: "../elsewhere/x" })).toBeNull();
        expect(await read(harness, "l")).toEqual({ kind: "symlink", target: "../elsewhere/x" });
        expect(await apply(harness, { kind: "symlink", path: "f", target: "x" })).toBe("EEXIST");
        expect(await apply(harness, { kind: "symlink", path: "l", target: "x" })).toBe("EEXIST");
      });

      it("reads a missing path, and one below a file, as absent", async () => {
        await apply(harness, create("f"));
        expect(await read(harness, "nothing")).toEqual({ kind: "absent" });
        expect(await read(harness, "nothing/below")).toEqual({ kind: "absent" });
        expect(await read(harness, "f/below")).toEqual({ kind: "absent" });
      });
    });

    describe("rename", () => {
      it("moves a file to a new name, in another directory", async () => {
        await applyAll(harness, [mkdir("a"), mkdir("b"), create("a/f"), write("a/f", 0, "data")]);
        expect(await apply(harness, rename("a/f", "b/g"))).toBeNull();
        expect(await read(harness, "a/f")).toEqual({ kind: "absent" });
        expect(text(await content(harness, "b/g"))).toBe("data");
      });

      it("replaces an existing file", async () => {
        await applyAll(harness, [create("f"), write("f", 0, "new"), create("g"), write("g", 0, "old content")]);
        expect(await apply(harness, rename("f", "g"))).toBeNull();
        expect(text(await content(harness, "g"))).toBe("new");
        expect(await read(harness, "")).toMatchObject({ children: ["g"] });
      });

      it("moves a directory with everything below it", async () => {
        await applyAll(harness, [mkdir("a"), mkdir("a/b"), create("a/b/f"), write("a/b/f", 0, "deep")]);
        expect(await apply(harness, rename("a", "z"))).toBeNull();
        expect(text(await content(harness, "z/b/f"))).toBe("deep");
        expect(await read(harness, "a")).toEqual({ kind: "absent" });
      });

      it("replaces an empty directory with a directory", async () => {
        await applyAll(harness, [mkdir("a"), create("a/f"), mkdir("b")]);
        expect(await apply(harness, rename("a", "b"))).toBeNull();
        expect(await read(harness, "b")).toMatchObject({ kind: "dir", children: ["f"] });
      });

      it("gives EISDIR for a file over a directory and ENOTDIR for a directory over a file", async () => {
        await applyAll(harness, [create("f"), mkdir("d")]);
        expect(await apply(harness, rename("f", "d"))).toBe("EISDIR");
        expect(await apply(harness, rename("d", "f"))).toBe("ENOTDIR");
      });

      it("gives ENOTEMPTY for a directory over a non-empty directory", async () => {
        await applyAll(harness, [mkdir("a"), mkdir("b"), create("b/f")]);
        expect(await apply(harness, rename("a", "b"))).toBe("ENOTEMPTY");
        expect(await read(harness, "a")).toMatchObject({ kind: "dir" });
      });

      it("gives EINVAL for a directory into its own subtree", async () => {
        await applyAll(harness, [mkdir("a"), mkdir("a/b")]);
        expect(await apply(harness, rename("a", "a/b/c"))).toBe("EINVAL");
        expect(await apply(harness, rename("a", "a/c"))).toBe("EINVAL");
      });

      it("gives ENOENT for a missing source or target parent, ENOTDIR for a target parent that is a file", async () => {
        await applyAll(harness, [create("f"), create("g")]);
        expect(await apply(harness, rename("x", "y"))).toBe("ENOENT");
        expect(await apply(harness, rename("f", "missing/f"))).toBe("ENOENT");
        expect(await apply(harness, rename("f", "g/f"))).toBe("ENOTDIR");
      });

      it("renames a name onto itself as a success that changes nothing", async () => {
        await applyAll(harness, [create("f"), write("f", 0, "same")]);
        expect(await apply(harness, rename("f", "f"))).toBeNull();
        expect(text(await content(harness, "f"))).toBe("same");
      });

      it("renames a symlink itself, not what it points to", async () => {
        await applyAll(harness, [create("f"), { kind: "symlink", path: "l", target: "f" }]);
        expect(await apply(harness, rename("l", "m"))).toBeNull();
        expect(await read(harness, "m")).toEqual({ kind: "symlink", target: "f" });
        expect(await read(harness, "f")).toMatchObject({ kind: "file" });
      });
    });

    describe("hard links", () => {
      const link = (from: string, to: string): DiskOp => ({ kind: "link", from, to });

      it("gives a file another name: a write through either is read through both", async () => {
        await applyAll(harness, [mkdir("d"), create("f"), write("f", 0, "one")]);
        expect(await apply(harness, link("f", "d/g"))).toBeNull();
        expect(await apply(harness, write("d/g", 0, "two"))).toBeNull();
        expect(text(await content(harness, "f"))).toBe("two");
        expect(await read(harness, "f", [])).toMatchObject({ kind: "file", links: ["d/g"] });
        expect(await read(harness, "d/g", [])).toMatchObject({ kind: "file", links: ["f"] });
      });

      it("keeps the file while a name is left: unlink, rename over, rmdir of an emptied parent", async () => {
        await applyAll(harness, [mkdir("d"), create("d/f"), write("d/f", 0, "kept"), link("d/f", "g"), link("d/f", "h"), create("x")]);
        expect(await read(harness, "g", [])).toMatchObject({ links: ["d/f", "h"] });
        // The names read before follow what comes after: a move of their directory, a new one.
        expect(await apply(harness, rename("d", "e"))).toBeNull();
        expect(await apply(harness, link("g", "i"))).toBeNull();
        expect(await read(harness, "g", [])).toMatchObject({ links: ["e/f", "h", "i"] });
        expect(await apply(harness, { kind: "unlink", path: "i" })).toBeNull();
        expect(await apply(harness, rename("e", "d"))).toBeNull();
        expect(await apply(harness, { kind: "unlink", path: "d/f" })).toBeNull();
        expect(await apply(harness, { kind: "rmdir", path: "d" })).toBeNull();
        expect(await apply(harness, rename("x", "h"))).toBeNull();
        expect(text(await content(harness, "g"))).toBe("kept");
        const snapshot = await read(harness, "g", []);
        expect(snapshot).toMatchObject({ kind: "file" });
        expect((snapshot as { links?: unknown }).links).toBeUndefined();
      });

      it("renames one name onto another of the same file as a success that changes nothing", async () => {
        await applyAll(harness, [create("f"), link("f", "g")]);
        expect(await apply(harness, rename("f", "g"))).toBeNull();
        expect(await read(harness, "")).toMatchObject({ children: ["f", "g"] });
      });

      it("gives EEXIST for a taken name, ENOENT for a missing source or parent, EPERM for a directory or a symlink", async () => {
        await applyAll(harness, [create("f"), create("g"), mkdir("d"), { kind: "symlink", path: "s", target: "f" }]);
        expect(await apply(harness, link("f", "g"))).toBe("EEXIST");
        expect(await apply(harness, link("missing", "h"))).toBe("ENOENT");
        expect(await apply(harness, link("f", "nodir/h"))).toBe("ENOENT");
        expect(await apply(harness, link("d", "h"))).toBe("EPERM");
        expect(await apply(harness, link("s", "h"))).toBe("EPERM");
        expect(await read(harness, "h")).toEqual({ kind: "absent" });
      });

      it("binds an install to the file another listed name has, or to a file of its own", async () => {
        await applyAll(harness, [create("a"), write("a", 0, "aaaa"), create("b"), write("b", 0, "bbbb"), link("b", "c")]);
        // "b" becomes a name of a's file, content from the snapshot; "c" keeps the old file.
        expect(await install(harness, "b", fileSnapshot(0o644, 4, [[0, bytes("AAAA")]], ["a", "gone"]))).toBeNull();
        expect(text(await content(harness, "a"))).toBe("AAAA");
        expect(text(await content(harness, "c"))).toBe("bbbb");
        expect(await read(harness, "a", [])).toMatchObject({ links: ["b"] });
        // A name listed with none here that is a file: "a" leaves b's file for one of its own.
        expect(await install(harness, "a", fileSnapshot(0o644, 4, [[0, bytes("solo")]], []))).toBeNull();
        expect(text(await content(harness, "a"))).toBe("solo");
        expect(text(await content(harness, "b"))).toBe("AAAA");
        // Without links, blocks go into whatever file the name has.
        expect(await apply(harness, link("c", "e"))).toBeNull();
        expect(await install(harness, "e", fileSnapshot(0o644, 4, [[0, bytes("EEEE")]]))).toBeNull();
        expect(text(await content(harness, "c"))).toBe("EEEE");
        // A missing name listed beside one that is here becomes a name of that file.
        expect(await install(harness, "n", fileSnapshot(0o644, 4, [[0, bytes("NNNN")]], ["c", "e"]))).toBeNull();
        expect(text(await content(harness, "e"))).toBe("NNNN");
        expect(await read(harness, "n", [])).toMatchObject({ links: ["c", "e"] });
      });
    });

    describe("extended attributes", () => {
      const set = (path: string, name: string, value: string, how?: "create" | "replace"): DiskOp => ({ kind: "setxattr", path, name, value: bytes(value), ...(how === undefined ? {} : { how }) });
      const remove = (path: string, name: string): DiskOp => ({ kind: "removexattr", path, name });
      const xattrsAt = async (path: string) => ((await read(harness, path, [])) as { xattrs?: readonly (readonly [string, Uint8Array])[] }).xattrs?.map(([name, value]) => [name, text(value)]);

      it("sets, replaces and removes them on files and directories; a read lists them sorted, none when there are none", async () => {
        await applyAll(harness, [mkdir("d"), create("d/f")]);
        expect(await xattrsAt("d/f")).toBeUndefined();
        await applyAll(harness, [set("d/f", "user.b", "two"), set("d/f", "user.a", "one"), set("d", "user.dir", ""), set("d/f", "user.b", "2")]);
        expect(await xattrsAt("d/f")).toEqual([["user.a", "one"], ["user.b", "2"]]);
        expect(await xattrsAt("d")).toEqual([["user.dir", ""]]);
        await applyAll(harness, [remove("d/f", "user.a"), set("d/f", "user.b", "3", "replace"), set("d/f", "user.c", "new", "create")]);
        expect(await xattrsAt("d/f")).toEqual([["user.b", "3"], ["user.c", "new"]]);
        await applyAll(harness, [remove("d/f", "user.b"), remove("d/f", "user.c")]);
        expect(await xattrsAt("d/f")).toBeUndefined();
      });

      it("gives EEXIST to create one that is there, ENODATA to replace or remove one that is not, ENOENT for a missing path", async () => {
        await applyAll(harness, [create("f"), set("f", "user.a", "x")]);
        expect(await apply(harness, set("f", "user.a", "y", "create"))).toBe("EEXIST");
        expect(await apply(harness, set("f", "user.z", "y", "replace"))).toBe("ENODATA");
        expect(await apply(harness, remove("f", "user.z"))).toBe("ENODATA");
        expect(await apply(harness, set("missing", "user.a", "x"))).toBe("ENOENT");
        expect(await apply(harness, remove("missing", "user.a"))).toBe("ENOENT");
        expect(await xattrsAt("f")).toEqual([["user.a", "x"]]);
      });

      it("gives EOPNOTSUPP for a namespace the file system does not keep and EPERM for a user attribute of a symlink", async () => {
        await applyAll(harness, [create("f"), { kind: "symlink", path: "l", target: "f" }]);
        expect(await apply(harness, set("f", "bogus.a", "x"))).toBe("EOPNOTSUPP");
        expect(await apply(harness, set("l", "user.a", "x"))).toBe("EPERM");
        expect(await xattrsAt("f")).toBeUndefined();
      });

      it("belong to the file, not the name: set through one hard link, read through the other", async () => {
        await applyAll(harness, [create("f"), { kind: "link", from: "f", to: "g" }, set("g", "user.a", "shared")]);
        expect(await xattrsAt("f")).toEqual([["user.a", "shared"]]);
      });

      it("come with an install exactly as listed: others removed, none for a snapshot without them", async () => {
        await applyAll(harness, [create("f"), set("f", "user.old", "x"), set("f", "user.kept", "same"), mkdir("d"), set("d", "user.old", "x")]);
        const file = { ...fileSnapshot(0o644, 4, [[0, bytes("data")]]), xattrs: [["user.kept", bytes("same")], ["user.new", bytes("v")]] } as PathSnapshot;
        expect(await install(harness, "f", file)).toBeNull();
        expect(await xattrsAt("f")).toEqual([["user.kept", "same"], ["user.new", "v"]]);
        expect(await install(harness, "g", file)).toBeNull();
        expect(await xattrsAt("g")).toEqual([["user.kept", "same"], ["user.new", "v"]]);
        expect(await install(harness, "d", { kind: "dir", mode: 0o755, children: [] })).toBeNull();
        expect(await xattrsAt("d")).toBeUndefined();
        expect(await install(harness, "", { kind: "dir", mode: 0o755, children: [], xattrs: [["user.root", bytes("r")]] })).toBeNull();
        expect(await xattrsAt("")).toEqual([["user.root", "r"]]);
      });
    });

    describe("read", () => {
      it("answers the blocks asked for, omitting those past the end, the last one short", async () => {
        const data = new Uint8Array(2 * blockSize + 10).map((_, index) => (index * 7) % 256);
        await applyAll(harness, [create("f", 0o600), write("f", 0, data)]);
        const snapshot = await read(harness, "f", [2, 0, 5]);
        expect(snapshot).toMatchObject({ kind: "file", mode: 0o600, size: data.length });
        const blocks = (snapshot as { blocks: ReadonlyMap<number, Uint8Array> }).blocks;
        expect([...blocks.keys()].sort()).toEqual([0, 2]);
        expect(blocks.get(0)).toEqual(data.slice(0, blockSize));
        expect(blocks.get(2)).toEqual(data.slice(2 * blockSize));
      });

      it("answers every block of the current size for all, with the block size asked for", async () => {
        const data = new Uint8Array(1_000).map((_, index) => index % 256);
        await applyAll(harness, [create("f"), write("f", 0, data)]);
        const snapshot = await read(harness, "f", "all", 256);
        const blocks = (snapshot as { blocks: ReadonlyMap<number, Uint8Array> }).blocks;
        expect([...blocks.keys()]).toEqual([0, 1, 2, 3]);
        expect(blocks.get(3)).toEqual(data.slice(768));
      });

      it("reads the zeros of a hole as zeros", async () => {
        await applyAll(harness, [create("f"), write("f", 3 * blockSize, "end")]);
        const snapshot = await read(harness, "f", [1]);
        expect((snapshot as { blocks: ReadonlyMap<number, Uint8Array> }).blocks.get(1)).toEqual(new Uint8Array(blockSize));
      });
    });

    describe("install", () => {
      it("creates a missing file with its size, blocks and mode, zeros elsewhere", async () => {
        const result = await install(harness, "f", fileSnapshot(0o640, 2 * blockSize + 3, [[2, bytes("xyz")]]));
        expect(result).toBeNull();
        const expected = new Uint8Array(2 * blockSize + 3);
        expected.set(bytes("xyz"), 2 * blockSize);
        expect(await content(harness, "f")).toEqual(expected);
        expect(await read(harness, "f", [])).toMatchObject({ kind: "file", mode: 0o640 });
      });

      it("writes the given blocks into an existing file, keeping the others, and cuts it to size", async () => {
        const old = new Uint8Array(3 * blockSize).fill(1);
        await applyAll(harness, [create("f"), write("f", 0, old)]);
        const block = new Uint8Array(blockSize).fill(2);
        expect(await install(harness, "f", fileSnapshot(0o600, 2 * blockSize, [[1, block]]))).toBeNull();
        const expected = new Uint8Array(2 * blockSize).fill(1);
        expected.fill(2, blockSize);
        expect(await content(harness, "f")).toEqual(expected);
      });

      it("extends an existing file to a larger size with zeros", async () => {
        await applyAll(harness, [create("f"), write("f", 0, "abc")]);
        expect(await install(harness, "f", fileSnapshot(0o644, 6, []))).toBeNull();
        expect(await content(harness, "f")).toEqual(new Uint8Array([97, 98, 99, 0, 0, 0]));
      });

      it("replaces a directory, with everything below it, by a file", async () => {
        await applyAll(harness, [mkdir("x"), mkdir("x/y"), create("x/y/f")]);
        expect(await install(harness, "x", fileSnapshot(0o644, 2, [[0, bytes("hi")]]))).toBeNull();
        expect(text(await content(harness, "x"))).toBe("hi");
        expect(await read(harness, "x/y")).toEqual({ kind: "absent" });
      });

      it("replaces a symlink by a file and a file by a symlink", async () => {
        await applyAll(harness, [{ kind: "symlink", path: "l", target: "t" }, create("f")]);
        expect(await install(harness, "l", fileSnapshot(0o644, 1, [[0, bytes("z")]]))).toBeNull();
        expect(await read(harness, "l")).toMatchObject({ kind: "file", size: 1 });
        expect(await install(harness, "f", { kind: "symlink", target: "elsewhere" })).toBeNull();
        expect(await read(harness, "f")).toEqual({ kind: "symlink", target: "elsewhere" });
        expect(await install(harness, "f", { kind: "symlink", target: "other" })).toBeNull();
        expect(await read(harness, "f")).toEqual({ kind: "symlink", target: "other" });
      });

      it("creates a directory, or sets the mode of an existing one keeping its children", async () => {
        expect(await install(harness, "d", { kind: "dir", mode: 0o700, children: ["ignored"] })).toBeNull();
        expect(await read(harness, "d")).toEqual({ kind: "dir", mode: 0o700, children: [] });
        await apply(harness, create("d/keep"));
        expect(await install(harness, "d", { kind: "dir", mode: 0o750, children: [] })).toBeNull();
        expect(await read(harness, "d")).toEqual({ kind: "dir", mode: 0o750, children: ["keep"] });
      });

      it("replaces a file by a directory", async () => {
        await applyAll(harness, [create("d"), write("d", 0, "was a file")]);
        expect(await install(harness, "d", { kind: "dir", mode: 0o755, children: [] })).toBeNull();
        expect(await read(harness, "d")).toEqual({ kind: "dir", mode: 0o755, children: [] });
      });

      it("removes a file, a symlink and a whole directory for absent; nothing to remove is no error", async () => {
        await applyAll(harness, [create("f"), { kind: "symlink", path: "l", target: "f" }, mkdir("d"), mkdir("d/e"), create("d/e/g")]);
        for (const path of ["f", "l", "d", "missing", "missing/below"]) expect(await install(harness, path, { kind: "absent" }), path).toBeNull();
        expect(await read(harness, "")).toMatchObject({ kind: "dir", children: [] });
      });

      it("creates missing parent directories", async () => {
        expect(await install(harness, "a/b/f", fileSnapshot(0o644, 1, [[0, bytes("!")]]))).toBeNull();
        expect(await read(harness, "a")).toMatchObject({ kind: "dir", children: ["b"] });
        expect(text(await content(harness, "a/b/f"))).toBe("!");
      });
    });

    describe("preserve", () => {
      it("keeps the version of the moment, directories with what is below them", async () => {
        await applyAll(harness, [mkdir("d"), create("d/f"), write("d/f", 0, "losing side"), create("top"), write("top", 0, "top")]);
        const answer = await settle<{ readonly place: string } | DiskError>(harness, (done) => harness.port.preserve(["d", "top", "missing"], "split-1", done));
        expect(typeof answer).toBe("object");
        const place = (answer as { readonly place: string }).place;
        await applyAll(harness, [write("d/f", 0, "WINNING SIDE"), { kind: "unlink", path: "top" }]);
        expect(text(await harness.preservedFile(place, "d/f"))).toBe("losing side");
        expect(text(await harness.preservedFile(place, "top"))).toBe("top");
        expect(await harness.preservedFile(place, "missing")).toBeNull();
        expect(text(await content(harness, "d/f"))).toBe("WINNING SIDE");
      });

      it("keeps the preserved copy out of the tree", async () => {
        await applyAll(harness, [create("f")]);
        await settle(harness, (done) => harness.port.preserve(["f"], "outside", done));
        expect(await read(harness, "")).toMatchObject({ kind: "dir", children: ["f"] });
      });
    });

    describe("metadata", () => {
      it("loads null before anything was persisted", async () => {
        expect(await settle(harness, (done) => harness.port.loadMeta(done))).toBeNull();
      });

      it("loads what was persisted last, as it was when persisted", async () => {
        const meta = { generation: 4, peers: ["n2"], dirty: { "pg/base/1": [0, 7, 9] } };
        expect(await settle(harness, (done) => harness.port.persistMeta({ generation: 3, peers: [], dirty: {} }, done))).toBeNull();
        expect(await settle(harness, (done) => harness.port.persistMeta(meta, done))).toBeNull();
        (meta.peers as string[]).push("changed after persist");
        const loaded = await settle<TestMeta | null>(harness, (done) => harness.port.loadMeta(done));
        expect(loaded).toEqual({ generation: 4, peers: ["n2"], dirty: { "pg/base/1": [0, 7, 9] } });
        (loaded!.peers as string[]).push("changed after load");
        expect(await settle(harness, (done) => harness.port.loadMeta(done))).toEqual({ generation: 4, peers: ["n2"], dirty: { "pg/base/1": [0, 7, 9] } });
      });
    });
  });
}
