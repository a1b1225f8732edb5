// The real disk (drivers/real/disk.ts) against the DiskPort contract, on a fresh directory
// of this machine's file system per test, in real time. What only the real disk has (a
// damaged metadata file refused with its name, a whole-tree fsync) is below the suite.

import { lstatSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { coarsenDirty, newMeta, unionDirty, type DirtyMap, type FileDirty, type MirrorMeta } from "../../core/mirror/meta.ts";
import { fsyncPathsMax, journalMagics, journalRecord, MetaUnreadableError, RealDisk, type MetaCodec } from "../../drivers/real/disk.ts";
import { mirrorMetaCodec } from "../../drivers/real/mirror-codec.ts";
import { fuseBinding } from "../../native/fuse.ts";
import { diskContract, type DiskHarness, type TestMeta } from "./disk-contract.ts";

const testMetaCodec: MetaCodec<TestMeta> = {
  encode: (meta) => meta,
  decode: (value) => (typeof value === "object" && value !== null && "generation" in value ? (value as TestMeta) : null),
};

interface Made {
  readonly base: string;
  readonly disk: RealDisk<TestMeta>;
}

async function makeDisk(problems: string[] = [], base?: string, journalBytesMax?: number): Promise<Made> {
  if (base === undefined) {
    base = await mkdtemp(join(tmpdir(), "tandem-disk-"));
    await mkdir(join(base, "tree"));
    await mkdir(join(base, "state"));
  }
  const disk = new RealDisk<TestMeta>({
    ...(journalBytesMax === undefined ? {} : { journalBytesMax }),
    root: join(base, "tree"),
    metaFile: join(base, "state", "meta.json"),
    preserveDir: join(base, "state", "preserved"),
    codec: testMetaCodec,
    problem: (what, error) => problems.push(`${what}: ${String(error)}`),
  });
  return { base, disk };
}

async function makeRealHarness(): Promise<DiskHarness> {
  const { base, disk } = await makeDisk();
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  return {
    port: disk,
    preservedFile: async (place, path) => {
      try {
        return new Uint8Array(await readFile(join(place, path)));
      } catch {
        return null;
      }
    },
    advance: sleep,
    waitFor: async (condition, limitMs) => {
      const deadline = Date.now() + limitMs;
      while (!condition()) {
        if (Date.now() >= deadline) return false;
        await sleep(1);
      }
      return true;
    },
    dispose: () => rm(base, { recursive: true, force: true }),
  };
}

diskContract("real", makeRealHarness);

describe("real disk: what only it has", () => {
  it("refuses a damaged metadata file by name instead of starting as a new node", async () => {
    const { base, disk } = await makeDisk();
    try {
      await writeFile(join(base, "state", "meta.json"), "{ half written");
      await expect(disk.checkMeta()).rejects.toThrow(MetaUnreadableError);
      await expect(disk.checkMeta()).rejects.toThrow(join(base, "state", "meta.json"));
      await writeFile(join(base, "state", "meta.json"), JSON.stringify({ other: 1 }));
      await expect(disk.checkMeta()).rejects.toThrow("not valid mirror metadata");
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  const persist = (disk: RealDisk<TestMeta>, generation: number) => new Promise((resolve) => disk.persistMeta({ generation, peers: [], dirty: {} }, resolve));
  const journal = (base: string) => join(base, "state", "meta.json.journal");

  it("persists metadata as journal records that a new process reads back, the latest winning", async () => {
    const { base, disk } = await makeDisk();
    try {
      for (let generation = 1; generation <= 5; generation++) expect(await persist(disk, generation)).toBeNull();
      await disk.close();
      // Five records of the same size, one after the other.
      const size = (await readFile(journal(base))).length;
      expect(size % 5).toBe(0);
      const again = (await makeDisk([], base)).disk;
      expect(await again.checkMeta()).toEqual({ generation: 5, peers: [], dirty: {} });
      // It goes on from where the records end.
      expect(await persist(again, 6)).toBeNull();
      await again.close();
      expect((await readFile(journal(base))).length).toBe((size / 5) * 6);
      expect(await (await makeDisk([], base)).disk.checkMeta()).toEqual({ generation: 6, peers: [], dirty: {} });
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("ignores a record torn by a crash (the one before it is the metadata) and writes over it", async () => {
    const { base, disk } = await makeDisk();
    try {
      expect(await persist(disk, 1)).toBeNull();
      expect(await persist(disk, 2)).toBeNull();
      await disk.close();
      const whole = await readFile(journal(base));
      // The second record cut short, as a power loss during its write leaves it.
      await writeFile(journal(base), whole.subarray(0, whole.length - 3));
      const again = (await makeDisk([], base)).disk;
      expect(await again.checkMeta()).toEqual({ generation: 1, peers: [], dirty: {} });
      expect(await persist(again, 3)).toBeNull();
      await again.close();
      expect(await (await makeDisk([], base)).disk.checkMeta()).toEqual({ generation: 3, peers: [], dirty: {} });
      // A flipped byte in the last record: its CRC fails, the one before is read.
      const bytes = await readFile(journal(base));
      bytes.writeUInt8(bytes.readUInt8(bytes.length - 2) ^ 0xff, bytes.length - 2);
      await writeFile(journal(base), bytes);
      expect(await (await makeDisk([], base)).disk.checkMeta()).toEqual({ generation: 1, peers: [], dirty: {} });
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("compacts the journal into its latest record once it outgrows its bound", async () => {
    const { base, disk } = await makeDisk([], undefined, 400);
    try {
      for (let generation = 1; generation <= 40; generation++) expect(await persist(disk, generation)).toBeNull();
      expect((await readFile(journal(base))).length).toBeLessThanOrEqual(400);
      await expect(readFile(`${journal(base)}.new`)).rejects.toMatchObject({ code: "ENOENT" });
      expect(await (await makeDisk([], base)).disk.checkMeta()).toEqual({ generation: 40, peers: [], dirty: {} });
      await disk.close();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("reads the metadata file of an older version, and replaces it by the journal at the next write", async () => {
    const { base, disk } = await makeDisk();
    try {
      await writeFile(join(base, "state", "meta.json"), JSON.stringify({ generation: 9, peers: [], dirty: {} }));
      expect(await disk.checkMeta()).toEqual({ generation: 9, peers: [], dirty: {} });
      expect(await persist(disk, 10)).toBeNull();
      await expect(readFile(join(base, "state", "meta.json"))).rejects.toMatchObject({ code: "ENOENT" });
      expect(await (await makeDisk([], base)).disk.checkMeta()).toEqual({ generation: 10, peers: [], dirty: {} });
      await disk.close();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  describe("with the mirror's codec: change records", () => {
    const makeMirrorDisk = (base: string) =>
      new RealDisk<MirrorMeta>({ root: join(base, "tree"), metaFile: join(base, "state", "meta.json"), preserveDir: join(base, "state", "preserved"), codec: mirrorMetaCodec });
    const whole: FileDirty = { all: true, blocks: new Set<number>() };
    /** The metadata after `added` more paths in an activity log of 500. */
    const metas = (added: number): MirrorMeta[] => {
      const out: MirrorMeta[] = [{ ...newMeta(), gen: "3@n1", hot: new Map(Array.from({ length: 500 }, (_, index) => [`base/${index}`, whole])) }];
      for (let index = 0; index < added; index++) out.push({ ...out.at(-1)!, hot: new Map([...out.at(-1)!.hot, [`new/${index}`, whole]]) });
      return out;
    };
    const save = (disk: RealDisk<MirrorMeta>, meta: MirrorMeta) => new Promise((resolve) => disk.persistMeta(meta, resolve));
    /** The journal after each of `all` is written by a port of that bound. */
    const journalAfter = async (base: string, all: readonly MirrorMeta[], journalBytesMax: number): Promise<Buffer> => {
      const disk = new RealDisk<MirrorMeta>({ root: join(base, "tree"), metaFile: join(base, "state", "meta.json"), preserveDir: join(base, "state", "preserved"), codec: mirrorMetaCodec, journalBytesMax });
      for (const meta of all) expect(await save(disk, meta)).toBeNull();
      await disk.close();
      return readFile(journal(base));
    };
    const same = (meta: MirrorMeta | null) => (meta === null ? null : mirrorMetaCodec.encode(meta));
    const magicsOf = (bytes: Buffer): number[] => {
      const out: number[] = [];
      for (let at = 0; at + 20 <= bytes.length; at += 20 + bytes.readUInt32LE(at + 12)) out.push(bytes.readUInt32LE(at));
      return out;
    };

    it("writes the whole metadata once, then what changed, and a new process adds them up", async () => {
      const { base } = await makeDisk();
      try {
        const all = metas(20);
        const disk = makeMirrorDisk(base);
        for (const meta of all) expect(await save(disk, meta)).toBeNull();
        await disk.close();
        const bytes = await readFile(journal(base));
        expect(magicsOf(bytes)).toEqual([journalMagics.whole, ...Array<number>(20).fill(journalMagics.change)]);
        const wholeBytes = 20 + bytes.readUInt32LE(12);
        // Twenty paths added cost less than a tenth of one whole record.
        expect(bytes.length - wholeBytes).toBeLessThan(wholeBytes / 10);
        const again = makeMirrorDisk(base);
        expect(same(await again.checkMeta())).toEqual(same(all.at(-1)!));
        // It goes on with changes from where it stopped.
        const next: MirrorMeta = { ...all.at(-1)!, gen: "4@n1", hot: new Map([...all.at(-1)!.hot].slice(100)) };
        expect(await save(again, next)).toBeNull();
        await again.close();
        expect(magicsOf(await readFile(journal(base))).at(-1)).toBe(journalMagics.change);
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(next));
        // A change record torn by a power loss: the metadata before it.
        const written = await readFile(journal(base));
        await writeFile(journal(base), written.subarray(0, written.length - 3));
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(all.at(-1)!));
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });

    it("compacts into one whole record once the journal outgrows its bound", async () => {
      const { base } = await makeDisk();
      try {
        const all = metas(400);
        const bytes = await journalAfter(base, all, 40_000);
        // The bound, or twice the whole record once that passes half of it.
        expect(bytes.length).toBeLessThanOrEqual(Math.max(40_000, 2 * (20 + bytes.readUInt32LE(12))));
        expect(magicsOf(bytes)[0]).toBe(journalMagics.whole);
        expect(magicsOf(bytes).length).toBeLessThan(all.length);
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(all.at(-1)!));
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });

    it("compacts a journal whose whole record passes the bound once its changes add up to that record, not at every write", async () => {
      const { base } = await makeDisk();
      try {
        // 500 paths make a whole record of about 20 KB: the bound of 8 KB is below it.
        const all = metas(200);
        const bytes = await journalAfter(base, all, 8_000);
        const magics = magicsOf(bytes);
        const wholeBytes = 20 + bytes.readUInt32LE(12);
        expect(wholeBytes).toBeGreaterThan(8_000);
        // A few compactions in 201 writes, each journal at most twice its whole record.
        expect(magics[0]).toBe(journalMagics.whole);
        expect(magics.filter((magic) => magic === journalMagics.change).length).toBeGreaterThan(10);
        expect(bytes.length).toBeLessThanOrEqual(2 * wholeBytes);
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(all.at(-1)!));
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });

    it("reads a journal of the older version and compacts it at its first write, so that an older version cannot read half of it", async () => {
      const { base } = await makeDisk();
      try {
        const [first, second] = metas(1);
        await writeFile(journal(base), journalRecord(7, JSON.stringify(mirrorMetaCodec.encode(first!)), journalMagics.legacy));
        const disk = makeMirrorDisk(base);
        expect(same(await disk.checkMeta())).toEqual(same(first!));
        expect(await save(disk, second!)).toBeNull();
        await disk.close();
        expect(magicsOf(await readFile(journal(base)))).toEqual([journalMagics.whole]);
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(second!));
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });

    it("reads a journal of version 2 (whole and change records) and compacts it at its first write", async () => {
      const { base } = await makeDisk();
      try {
        const [first, second, third] = metas(2);
        const change = mirrorMetaCodec.diff!(first!, second!);
        await writeFile(journal(base), Buffer.concat([journalRecord(4, JSON.stringify(mirrorMetaCodec.encode(first!)), journalMagics.whole2), journalRecord(5, JSON.stringify(change), journalMagics.change2)]));
        const disk = makeMirrorDisk(base);
        expect(same(await disk.checkMeta())).toEqual(same(second!));
        expect(await save(disk, third!)).toBeNull();
        await disk.close();
        expect(magicsOf(await readFile(journal(base)))).toEqual([journalMagics.whole]);
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(third!));
        // A change of version 2 after a whole record of version 3 is not its continuation.
        const [whole] = [await readFile(journal(base))];
        await writeFile(journal(base), Buffer.concat([whole, journalRecord(6, JSON.stringify(change), journalMagics.change2)]));
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(third!));
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });

    it("records the blocks added to a file's marks, not the file's marks again: a file rewritten alone costs its new blocks", async () => {
      const { base } = await makeDisk();
      try {
        // A node alone rewriting a 128 MiB file, every other block (runs would make a
        // sequential rewrite one run, as small whole as added): 256 blocks more per record.
        const step = (meta: MirrorMeta, write: number): MirrorMeta => {
          const marks: DirtyMap = new Map([["pg/base/1/16384", { all: false, blocks: new Set(Array.from({ length: 256 }, (_, index) => write * 512 + 2 * index)) }]]);
          return { ...meta, dirty: unionDirty(meta.dirty, marks), hot: unionDirty(meta.hot, coarsenDirty(marks, 16)) };
        };
        let meta: MirrorMeta = { ...newMeta(), gen: "3@n1", lastRole: "ALONE" };
        const disk = makeMirrorDisk(base);
        for (let write = 0; write < 64; write++) {
          meta = step(meta, write);
          expect(await save(disk, meta)).toBeNull();
        }
        await disk.close();
        const bytes = await readFile(journal(base));
        // Each record held its write's blocks, and the few folds the whole file's: the
        // journal is a small multiple of the last whole state (it was 32 times that).
        const wholeBytes = journalRecord(1, JSON.stringify(mirrorMetaCodec.encode(meta)), journalMagics.whole).length;
        expect(bytes.length).toBeLessThan(5 * wholeBytes);
        const read = await makeMirrorDisk(base).checkMeta();
        expect(read?.dirty.get("pg/base/1/16384")?.blocks.size).toBe(64 * 256);
        expect(same(read)).toEqual(same(meta));
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });

    it("refuses a change record that is not a valid change, by name", async () => {
      const { base } = await makeDisk();
      try {
        const [first] = metas(0);
        const bad = JSON.stringify({ hot: { set: [["../escape", { all: true, blocks: [] }]], del: [] } });
        await writeFile(journal(base), Buffer.concat([journalRecord(1, JSON.stringify(mirrorMetaCodec.encode(first!)), journalMagics.whole), journalRecord(2, bad, journalMagics.change)]));
        await expect(makeMirrorDisk(base).checkMeta()).rejects.toThrow(`${journal(base)} is unreadable (a change record is not a valid change of mirror metadata)`);
        // Blocks added to a path the metadata does not mark.
        const stray = JSON.stringify({ dirty: { set: [], add: [["nowhere", [1, 2]]], del: [] } });
        await writeFile(journal(base), Buffer.concat([journalRecord(1, JSON.stringify(mirrorMetaCodec.encode(first!)), journalMagics.whole), journalRecord(2, stray, journalMagics.change)]));
        await expect(makeMirrorDisk(base).checkMeta()).rejects.toThrow(`${journal(base)} is unreadable (a change record is not a valid change of mirror metadata)`);
        // A change that does not follow its record (a sequence number skipped) ends the journal there.
        await writeFile(journal(base), Buffer.concat([journalRecord(1, JSON.stringify(mirrorMetaCodec.encode(first!)), journalMagics.whole), journalRecord(3, bad, journalMagics.change)]));
        expect(same(await makeMirrorDisk(base).checkMeta())).toEqual(same(first!));
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    });
  });

  it("refuses a journal without an intact record by name", async () => {
    const { base, disk } = await makeDisk();
    try {
      await writeFile(journal(base), Buffer.from("not a journal at all"));
      await expect(disk.checkMeta()).rejects.toThrow(MetaUnreadableError);
      await expect(disk.checkMeta()).rejects.toThrow(`${journal(base)} is unreadable (no intact record in its 20 bytes)`);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("reports errors the core has no name for as EIO and tells its problem hook the real one", async () => {
    const problems: string[] = [];
    const { base, disk } = await makeDisk(problems);
    try {
      const result = await new Promise((resolve) => disk.apply({ kind: "symlink", path: "l", target: "x".repeat(5_000) }, resolve));
      expect(result).toBe("EIO");
      expect(problems.join("\n")).toContain("ENAMETOOLONG");
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe("real disk: a whole-tree fsync covers what the native lane wrote", () => {
  // A socket in the tree cannot be opened: the fsync of a path fails there with ENXIO, so
  // whether a whole-tree fsync reached a path shows in its result.
  it("fsyncs the paths writtenElsewhere names (taken once), and syncs the file system when it lost count or they are many", async () => {
    const base = await mkdtemp(join(tmpdir(), "tandem-disk-"));
    await mkdir(join(base, "tree"));
    await mkdir(join(base, "state"));
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(base, "tree", "sock"), resolve));
    const second = createServer();
    const many = Array.from({ length: fsyncPathsMax }, (_, index) => `absent-${index}`);
    const answers: (readonly string[] | null)[] = [[], ["sock", "gone"], [], null, [...many, "sock2"], ["sock2"]];
    let calls = 0;
    const problems: string[] = [];
    const disk = new RealDisk<TestMeta>({
      root: join(base, "tree"),
      metaFile: join(base, "state", "meta.json"),
      preserveDir: join(base, "state", "preserved"),
      codec: testMetaCodec,
      problem: (what, error) => problems.push(`${what}: ${String(error)}`),
      writtenElsewhere: () => answers[calls++] ?? [],
    });
    const syncTree = () => new Promise((resolve) => disk.apply({ kind: "fsync", path: null }, resolve));
    try {
      // Nothing named: the socket is not the port's, it is not reached.
      expect(await syncTree()).toBeNull();
      // "sock" named by the lane: reached (ENXIO, EIO to the core); "gone" (removed since) skipped.
      expect(await syncTree()).toBe("EIO");
      expect(problems.join("\n")).toMatch(/ENXIO/);
      // Not synced, so tried again at the next one: gone by then, which is no error.
      server.close();
      await rm(join(base, "tree", "sock"), { force: true });
      expect(await syncTree()).toBeNull();
      // Lost count: one syncfs of the file system, which opens no path (an fsync of the
      // new socket would fail).
      await new Promise<void>((resolve) => second.listen(join(base, "tree", "sock2"), resolve));
      expect(await syncTree()).toBeNull();
      // More than fsyncPathsMax paths: the same.
      expect(await syncTree()).toBeNull();
      expect(problems.join("\n")).not.toMatch(/sock2/);
      // A few: each path's own fsync (the socket's fails).
      expect(await syncTree()).toBe("EIO");
      expect(calls).toBe(6);
    } finally {
      server.close();
      second.close();
      await disk.close();
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe("real disk: a root reached through a symlink (/proc/self/fd/N under a mount)", () => {
  it("reads and installs the root itself, never the link", async () => {
    const base = await mkdtemp(join(tmpdir(), "tandem-disk-"));
    try {
      await mkdir(join(base, "tree"));
      await mkdir(join(base, "state"));
      await symlink(join(base, "tree"), join(base, "link"));
      const disk = new RealDisk<TestMeta>({ root: join(base, "link"), metaFile: join(base, "state", "meta.json"), preserveDir: join(base, "state", "preserved"), codec: testMetaCodec });
      const run = <R>(issue: (done: (result: R) => void) => void) => new Promise<R>((resolve) => issue(resolve));
      expect(await run((done) => disk.install("", { kind: "dir", mode: 0o750, children: [] }, 4096, done))).toBeNull();
      expect(await run((done) => disk.apply({ kind: "create", path: "f", mode: 0o600 }, done))).toBeNull();
      expect(await run((done) => disk.read("", [], 4096, done))).toMatchObject({ kind: "dir", mode: 0o750, children: ["f"] });
      expect(await run((done) => disk.apply({ kind: "fsync", path: null }, done))).toBeNull();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe("real disk: preserve", () => {
  it("keeps a split brain's paths under a directory named after the core's label, generations included", async () => {
    const { base, disk } = await makeDisk();
    try {
      const run = <R>(issue: (done: (result: R) => void) => void) => new Promise<R>((resolve) => issue(resolve));
      expect(await run((done) => disk.apply({ kind: "create", path: "f", mode: 0o600 }, done))).toBeNull();
      const answer = await run<{ readonly place: string } | string>((done) => disk.preserve(["f"], "splitbrain-2@n1-n1", done));
      expect(answer).toMatchObject({ place: expect.stringContaining(join(base, "state", "preserved", "splitbrain-2@n1-n1-")) });
      expect(await readFile(join((answer as { place: string }).place, "f"))).toEqual(Buffer.alloc(0));
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("keeps the extended attributes of what it keeps, below a directory too", async () => {
    const problems: string[] = [];
    const { base, disk } = await makeDisk(problems);
    try {
      const run = <R>(issue: (done: (result: R) => void) => void) => new Promise<R>((resolve) => issue(resolve));
      const value = (text: string) => new TextEncoder().encode(text);
      for (const op of [
        { kind: "mkdir", path: "d", mode: 0o755 },
        { kind: "create", path: "d/f", mode: 0o644 },
        { kind: "setxattr", path: "d", name: "user.dir", value: value("D") },
        { kind: "setxattr", path: "d/f", name: "user.file", value: value("F") },
        { kind: "setxattr", path: "d/f", name: "trusted.root", value: value("R") },
      ] as const) {
        expect(await run((done) => disk.apply(op, done))).toBeNull();
      }
      const answer = await run<{ readonly place: string } | string>((done) => disk.preserve(["d"], "splitbrain-3@n2-n2", done));
      const place = (answer as { place: string }).place;
      const listed = (path: string) => {
        const found = fuseBinding().xattrs(join(place, path));
        return typeof found === "number" ? found : found.map(([name, bytes]) => `${name}=${Buffer.from(bytes).toString()}`).sort();
      };
      expect(listed("d")).toEqual(["user.dir=D"]);
      expect(listed("d/f")).toEqual(["trusted.root=R", "user.file=F"]);
      expect(problems).toEqual([]);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe("real disk: owners", () => {
  const isRoot = process.getuid?.() === 0;
  const run = <R>(issue: (done: (result: R) => void) => void) => new Promise<R>((resolve) => issue(resolve));

  it("gives new paths the owner asked for, changes it with chown, reads it and installs it", async () => {
    expect(isRoot, "this test needs root (owners other than one's own); CI runs as root").toBe(true);
    const { base, disk } = await makeDisk();
    try {
      const owner = { uid: 65534, gid: 65534 };
      expect(await run((done) => disk.apply({ kind: "mkdir", path: "d", mode: 0o2750, owner }, done))).toBeNull();
      expect(await run((done) => disk.apply({ kind: "create", path: "d/f", mode: 0o4755, owner }, done))).toBeNull();
      expect(await run((done) => disk.apply({ kind: "symlink", path: "d/l", target: "f", owner }, done))).toBeNull();
      for (const path of ["d", "d/f", "d/l"]) expect(await run((done) => disk.read(path, [], 4096, done)), path).toMatchObject({ owner });
      // chown clears set-user-ID; the mode asked for is given back after it.
      expect(await run((done) => disk.read("d/f", [], 4096, done))).toMatchObject({ mode: 0o4755 });
      expect(await run((done) => disk.apply({ kind: "chown", path: "d/f", uid: 0, gid: -1 }, done))).toBeNull();
      expect(await run((done) => disk.read("d/f", [], 4096, done))).toMatchObject({ owner: { uid: 0, gid: 65534 } });
      expect(await run((done) => disk.apply({ kind: "chown", path: "d/missing", uid: 0, gid: 0 }, done))).toBe("ENOENT");
      const snapshot = { kind: "file" as const, mode: 0o600, owner: { uid: 65534, gid: 0 }, size: 1, blocks: new Map([[0, new Uint8Array([1])]]) };
      expect(await run((done) => disk.install("e/g", snapshot, 4096, done))).toBeNull();
      expect(await run((done) => disk.read("e/g", [], 4096, done))).toMatchObject({ mode: 0o600, owner: { uid: 65534, gid: 0 } });
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe("real disk: times", () => {
  const run = <R>(issue: (done: (result: R) => void) => void) => new Promise<R>((resolve) => issue(resolve));

  it("sets a path's times to the nanosecond, keeps an omitted one, never follows a symlink, says ENOENT for a missing path; a resync carries modification times", async () => {
    const { base, disk } = await makeDisk();
    try {
      const tree = join(base, "tree");
      expect(await run((done) => disk.apply({ kind: "create", path: "f", mode: 0o644 }, done))).toBeNull();
      expect(await run((done) => disk.apply({ kind: "symlink", path: "l", target: "f", owner: undefined }, done))).toBeNull();
      expect(await run((done) => disk.apply({ kind: "times", path: "f", atime: { s: 1_000_000_000, ns: 1 }, mtime: { s: -5, ns: 999_999_999 } }, done))).toBeNull();
      expect(lstatSync(join(tree, "f"), { bigint: true })).toMatchObject({ atimeNs: 1_000_000_000_000_000_001n, mtimeNs: -4_000_000_001n });
      expect(await run((done) => disk.apply({ kind: "times", path: "f", atime: null, mtime: { s: 1_500_000_000, ns: 42 } }, done))).toBeNull();
      expect(lstatSync(join(tree, "f"), { bigint: true })).toMatchObject({ atimeNs: 1_000_000_000_000_000_001n, mtimeNs: 1_500_000_000_000_000_042n });
      // The link's own times; its target's stay.
      expect(await run((done) => disk.apply({ kind: "times", path: "l", atime: { s: 7, ns: 0 }, mtime: { s: 8, ns: 0 } }, done))).toBeNull();
      expect(lstatSync(join(tree, "l"), { bigint: true }).mtimeNs).toBe(8_000_000_000n);
      expect(lstatSync(join(tree, "f"), { bigint: true }).mtimeNs).toBe(1_500_000_000_000_000_042n);
      expect(await run((done) => disk.apply({ kind: "times", path: "missing", atime: null, mtime: { s: 1, ns: 0 } }, done))).toBe("ENOENT");
      // A resync carries the modification time of files and symlinks, set after the blocks.
      expect(await run((done) => disk.read("f", "all", 4096, done))).toMatchObject({ kind: "file", mtime: { s: 1_500_000_000, ns: 42 } });
      expect(await run((done) => disk.read("l", [], 4096, done))).toMatchObject({ kind: "symlink", mtime: { s: 8, ns: 0 } });
      const file = { kind: "file" as const, mode: 0o600, size: 3, blocks: new Map([[0, new Uint8Array([1, 2, 3])]]), mtime: { s: -1, ns: 5 } };
      expect(await run((done) => disk.install("g", file, 4096, done))).toBeNull();
      expect(lstatSync(join(tree, "g"), { bigint: true }).mtimeNs).toBe(-999_999_995n);
      expect(await run((done) => disk.read("g", "all", 4096, done))).toMatchObject({ mtime: { s: -1, ns: 5 }, size: 3 });
      expect(await run((done) => disk.install("m", { kind: "symlink", target: "g", mtime: { s: 9, ns: 9 } }, 4096, done))).toBeNull();
      expect(lstatSync(join(tree, "m"), { bigint: true }).mtimeNs).toBe(9_000_000_009n);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});
