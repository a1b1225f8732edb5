// Mirror beats, messages and metadata survive the wire (and the disk) exactly, and
// anything that does not make sense is refused.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { MirrorBeat, MirrorMessage } from "../../core/mirror/messages.ts";
import { coarsenToFit, dirtyJsonBytes, fileRunsMax, historyMax, newMeta, RunBlocks, summaryDirtyBytesMax, type DirtyMap, type FileDirty, type MirrorMeta } from "../../core/mirror/meta.ts";
import { dataSizeMax, entryCountMax, mirrorBeatCodec, mirrorMessageCodec, mirrorMetaCodec } from "../../drivers/real/mirror-codec.ts";
import { authenticate, encodeEnvelope, envelopeSizeMaxLimit, parseEnvelope, parsePayload } from "../../drivers/real/wire.ts";
import { dirtyEntriesArbitrary } from "../core/mirror-arbitraries.ts";
import { anyPathArbitrary, beatArbitraries, genArbitrary, messageArbitraries, metaArbitrary } from "./mirror-codec-arbitraries.ts";
import { testKey } from "./loopback.ts";

const messages = mirrorMessageCodec("db");
const beats = mirrorBeatCodec("db");
const throughJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));
const sent = (message: MirrorMessage) => messages.decode(throughJson(messages.encode(message)), "n1");
const frameKey = testKey.frameKeys().connector;
/** Through a stream frame's envelope, bytes as attachments (what the real stream does). */
const framed = (message: MirrorMessage) => {
  const bytes = encodeEnvelope({ kind: "frame", incarnation: 1, sequence: 1, sentAtUnixMs: 1, from: "n1", to: "n2", channel: "mirror:db", ring: "" }, messages.encode(message), frameKey, envelopeSizeMaxLimit);
  const parsed = parseEnvelope(bytes!, envelopeSizeMaxLimit);
  if (!parsed.ok || authenticate(parsed.envelope, frameKey) !== null) throw new Error("the envelope did not open");
  return messages.decode(parsePayload(parsed.envelope), "n1");
};
/** Strict equality (absent fields stay absent, bytes stay plain Uint8Arrays) with what was
 *  sent; fast-check makes some records without a prototype, which a clone gives back. */
const expectSame = (decoded: unknown, value: unknown): void => {
  expect(plainSets(decoded)).toStrictEqual(structuredClone(value));
};
/** `value` with its sets of blocks decoded as runs (RunBlocks) made plain Sets, to compare. */
function plainSets(value: unknown): unknown {
  if (value instanceof RunBlocks) return new Set(value);
  if (Array.isArray(value)) return value.map(plainSets);
  if (value instanceof Map) return new Map([...value].map(([key, entry]) => [key, plainSets(entry)]));
  if (typeof value !== "object" || value === null || value instanceof Uint8Array || value instanceof Set) return value;
  const out: Record<string, unknown> = Object.getPrototypeOf(value) === null ? Object.create(null) : {};
  for (const [key, field] of Object.entries(value)) out[key] = plainSets(field);
  return out;
}

const write: MirrorMessage = { kind: "rep", session: 4, seq: 9, op: { kind: "write", path: "pg/x", offset: 4096, data: new Uint8Array([1, 2, 3]) } };
const syncPath: MirrorMessage = { kind: "sync-path", session: 4, path: "pg", snapshot: { kind: "dir", mode: 0o755, children: ["x"] }, prune: true };
const syncFile: MirrorMessage = { kind: "sync-path", session: 4, path: "pg/x", snapshot: { kind: "file", mode: 0o644, size: 8, blocks: new Map([[0, new Uint8Array(8)]]) }, prune: false };
const syncEnd: MirrorMessage = { kind: "sync-end", session: 4, gen: "3@n1", history: ["1@n1", "2@n2"], upTo: 7 };
const hello: MirrorMessage = {
  kind: "hello",
  summary: { incarnation: 1, role: "PRIM", gen: "3@n1", history: [], consistent: true, lastRole: "PRIM", dirtyBase: null, dirty: [], yielding: false, fullsync: false, continuous: true, cacheLost: false, attachable: true, seenSession: null, layout: ["1-data", "2-wal"] },
};

describe("mirror codecs round-trip", () => {
  it.each(Object.entries(messageArbitraries))("a %s message", (_, arbitrary) => {
    fc.assert(fc.property(arbitrary, (message) => {
      expectSame(sent(message), message);
    }));
  });

  it.each(Object.entries(messageArbitraries))("a %s message, through a frame's envelope", (_, arbitrary) => {
    fc.assert(fc.property(arbitrary, (message) => {
      expectSame(framed(message), message);
    }), { numRuns: 50 });
  });

  it.each(Object.entries(beatArbitraries))("a %s beat", (_, arbitrary) => {
    fc.assert(fc.property(arbitrary, (beat: MirrorBeat) => {
      expectSame(beats.decode(throughJson(beats.encode(beat)), beat.from), beat);
    }));
  });

  it("metadata", () => {
    fc.assert(fc.property(metaArbitrary, (meta) => {
      expectSame(mirrorMetaCodec.decode(throughJson(mirrorMetaCodec.encode(meta))), meta);
    }));
  });

  it("keeps an absent optional field absent", () => {
    const messagesWithout: MirrorMessage[] = [
      { kind: "hello", summary: hello.summary },
      { kind: "rep-ack", session: 1, seq: 2, result: null },
      { kind: "rep", session: 1, seq: 2, op: { kind: "mkdir", path: "d", mode: 0o755 } },
      { kind: "sync-path", session: 1, path: "l", snapshot: { kind: "symlink", target: "../t" }, prune: false },
    ];
    for (const message of messagesWithout) expectSame(sent(message), message);
  });

  it("decodes bytes into a plain Uint8Array, and sends only the bytes of a view", () => {
    const view = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
    const decoded = sent({ kind: "rep", session: 1, seq: 2, op: { kind: "write", path: "f", offset: 0, data: view } });
    const data = decoded?.kind === "rep" && decoded.op.kind === "write" ? decoded.op.data : null;
    expect(Object.getPrototypeOf(data)).toBe(Uint8Array.prototype);
    expect(data).toStrictEqual(new Uint8Array([1, 2, 3]));
  });

  it("encodes sets and maps sorted, whatever their insertion order", () => {
    const meta: MirrorMeta = { ...newMeta(), dirty: new Map([["b", { all: false, blocks: new Set([3, 1]) }], ["a", { all: true, blocks: new Set() }]]) };
    expect((mirrorMetaCodec.encode(meta) as { dirty: unknown }).dirty).toEqual([["a", { all: true, blocks: { runs: [] } }], ["b", { all: false, blocks: { runs: [1, 1, 3, 1] } }]]);
  });

  it("encodes a file's marked blocks as runs: a GiB marked in sequence is one", () => {
    const blocks = new Set(Array.from({ length: 262_144 }, (_, index) => 1000 + index));
    blocks.add(5);
    const meta: MirrorMeta = { ...newMeta(), dirty: new Map([["vm.img", { all: false, blocks }]]) };
    expect((mirrorMetaCodec.encode(meta) as { dirty: unknown }).dirty).toEqual([["vm.img", { all: false, blocks: { runs: [5, 1, 1000, 262_144] } }]]);
    const read = mirrorMetaCodec.decode(throughJson(mirrorMetaCodec.encode(meta)))!.dirty.get("vm.img")!.blocks;
    expect(read.size).toBe(262_145);
    expect([4, 5, 6, 999, 1000, 263_143, 263_144].map((block) => read.has(block))).toEqual([false, true, false, false, true, true, false]);
    expect([...read]).toEqual([...blocks].sort((a, b) => a - b));
  });

  it("reads blocks written as an increasing array (metadata written before runs)", () => {
    const json = throughJson(mirrorMetaCodec.encode({ ...newMeta(), gen: "2@n1" })) as object;
    const read = mirrorMetaCodec.decode({ ...json, dirty: [["a", { all: false, blocks: [1, 2, 7] }]] });
    expect([...read!.dirty.get("a")!.blocks]).toEqual([1, 2, 7]);
  });
});

describe("the most marks the core makes", () => {
  it("a path with fileRunsMax runs of marked blocks is metadata the codec takes (past it the core marks the path whole)", () => {
    expect(fileRunsMax).toBeLessThanOrEqual(entryCountMax);
    const meta: MirrorMeta = { ...newMeta(), gen: "2@n1", dirtyBase: "1@n1", dirty: new Map([["vm.img", { all: false, blocks: new Set(Array.from({ length: fileRunsMax }, (_, index) => index * 3)) }]]) };
    expect(mirrorMetaCodec.decode(throughJson(mirrorMetaCodec.encode(meta)))?.dirty.get("vm.img")?.blocks.size).toBe(fileRunsMax);
  });

  it("a path of any number of blocks in few runs is metadata the codec takes: 40 TiB of 4 KiB blocks in two", () => {
    const blocks = RunBlocks.of([0, 2 ** 33, 2 ** 33 + 1, 2 ** 33])!;
    const meta: MirrorMeta = { ...newMeta(), gen: "2@n1", dirtyBase: "1@n1", dirty: new Map([["vm.img", { all: false, blocks }]]) };
    const read = mirrorMetaCodec.decode(throughJson(mirrorMetaCodec.encode(meta)))?.dirty.get("vm.img")?.blocks;
    expect(read?.size).toBe(2 ** 34);
    expect([0, 2 ** 33 - 1, 2 ** 33, 2 ** 33 + 1, 2 ** 34].map((block) => read?.has(block))).toEqual([true, true, false, true, true]);
  });
});

describe("a summary's dirty map in a frame", () => {
  const summaryOf = (dirty: DirtyMap): MirrorMessage => ({ kind: "hello", summary: { ...(hello as Extract<MirrorMessage, { kind: "hello" }>).summary, dirty: [...dirty] } });
  const jsonBytes = (message: MirrorMessage) => Buffer.byteLength(JSON.stringify(messages.encode(message)), "utf8");

  it("takes at most the bytes dirtyJsonBytes counts (the bound the core keeps a summary within)", () => {
    const entry: fc.Arbitrary<FileDirty> = fc.oneof(fc.constant({ all: true, blocks: new Set<number>() }), fc.uniqueArray(fc.nat({ max: 2 ** 40 }), { maxLength: 30 }).map((blocks) => ({ all: false, blocks: new Set(blocks) })));
    fc.assert(fc.property(fc.uniqueArray(fc.tuple(anyPathArbitrary, entry), { maxLength: 20, selector: ([path]) => path }), (entries) => {
      const dirty: DirtyMap = new Map(entries);
      expect(jsonBytes(summaryOf(dirty)) - jsonBytes(summaryOf(new Map()))).toBeLessThanOrEqual(dirtyJsonBytes(dirty));
    }));
  });

  it("of a node that marked 3 million blocks alone in one run per file fits a frame as it is", () => {
    // Twelve 1 GiB segments of a database, every 4 KiB block of each rewritten: one run each.
    const dirty: DirtyMap = new Map(Array.from({ length: 12 }, (_, index) => [`base/16384/16400.${index}`, { all: false, blocks: new Set(Array.from({ length: 262_144 }, (_, block) => block)) }]));
    expect(coarsenToFit(dirty, summaryDirtyBytesMax)).toBe(dirty);
    expect(framed(summaryOf(dirty))).toBeTruthy();
  });

  it("of a node that marked 3 million scattered blocks alone fits a frame once coarsened, and names every file it marked", () => {
    // Every other 4 KiB block of twenty-four 1 GiB segments: 3 million runs, 28 MB of JSON as is.
    const dirty: DirtyMap = new Map(Array.from({ length: 24 }, (_, index) => [`base/16384/16400.${index}`, { all: false, blocks: new Set(Array.from({ length: 131_072 }, (_, block) => 2 * block)) }]));
    expect(dirtyJsonBytes(dirty)).toBeGreaterThan(envelopeSizeMaxLimit);
    const coarse = coarsenToFit(dirty, summaryDirtyBytesMax);
    expect(framed(summaryOf(coarse))).toBeTruthy();
    expect([...coarse.keys()].sort()).toEqual([...dirty.keys()].sort());
    expect([...coarse.values()].filter((entry) => entry.all).length).toBeGreaterThan(0);
  });

});

/** A valid message's JSON, with `change` made to its outermost object or, given `at`, to the object under that key. */
function tampered(message: MirrorMessage, change: Record<string, unknown>, at?: string): unknown {
  const json = throughJson(messages.encode(message)) as Record<string, unknown>;
  return at === undefined ? { ...json, ...change } : { ...json, [at]: { ...(json[at] as object), ...change } };
}

const longBase64 = (size: number): string => "A".repeat(Math.ceil(size / 3) * 4);

describe("the mirror message codec refuses", () => {
  it("nothing of the examples below but what each changes", () => {
    for (const message of [write, syncPath, syncFile, syncEnd, hello]) expectSame(sent(message), message);
  });

  it.each<[string, unknown]>([
    ["a path that climbs out of the tree (../x)", tampered(syncPath, { path: "../x" })],
    ["an absolute path (/abs)", tampered(syncPath, { path: "/abs" })],
    ["an empty segment (a//b)", tampered(syncPath, { path: "a//b" })],
    ["a trailing slash (a/)", tampered(syncPath, { path: "a/" })],
    ["a `.` segment (a/./b)", tampered(syncPath, { path: "a/./b" })],
    ["a NUL in a path", tampered(syncPath, { path: "a\0b" })],
    ["a path over PATH_MAX", tampered(syncPath, { path: "a/".repeat(2048) + "a" })],
    ["a bad path inside an operation (rename to ../x)", tampered(write, { kind: "rename", from: "a", to: "../x" }, "op")],
    ["a child name with a slash", tampered(syncPath, { children: ["a/b"] }, "snapshot")],
    ["a child named ..", tampered(syncPath, { children: [".."] }, "snapshot")],
    ["a negative offset", tampered(write, { offset: -1 }, "op")],
    ["a fractional offset", tampered(write, { offset: 1.5 }, "op")],
    ["a counter over 2^53", tampered(write, { session: 2 ** 53 })],
    ["a counter given as a string", tampered(write, { seq: "9" })],
    ["a negative mode", tampered(syncPath, { mode: -1 }, "snapshot")],
    ["a mode over 16 bits", tampered(syncPath, { mode: 0o200000 }, "snapshot")],
    ["an owner uid of -1 (only chown may keep an id)", tampered(syncPath, { owner: { uid: -1, gid: 0 } }, "snapshot")],
    ["a chown uid over 32 bits", tampered(write, { kind: "chown", path: "a", uid: 2 ** 32, gid: 0 }, "op")],
    ["an unknown message kind", tampered(write, { kind: "replicate" })],
    ["an unknown operation kind", tampered(write, { kind: "chmod" }, "op")],
    ["an unknown snapshot kind", tampered(syncPath, { kind: "fifo" }, "snapshot")],
    ["an unknown disk error", { kind: "rep-ack", session: 1, seq: 2, result: "EACCES" }],
    ["an unknown handover reason", { kind: "handover", session: 1, reason: "tired" }],
    ["an unknown role in a hello", tampered(hello, { role: "MASTER" }, "summary")],
    ["a missing field", { kind: "sync-done", session: 1 }],
    ["an optional field that is null", { kind: "rep-ack", session: 1, seq: 2, result: null, paths: null }],
    ["an optional field of the wrong kind", tampered(hello, { ask: "yes" })],
    ["more paths than an operation has", { kind: "rep-ack", session: 1, seq: 2, result: "EIO", paths: ["a", "b", "c"] }],
    ["data that is not a base64 string", tampered(write, { data: [1, 2, 3] }, "op")],
    ["data with characters outside base64", tampered(write, { data: "AQ$D" }, "op")],
    ["data of a length base64 never has", tampered(write, { data: "AQID=" }, "op")],
    ["data with padding inside", tampered(write, { data: "AQ==AQID" }, "op")],
    ["a write over 64 MiB", tampered(write, { data: longBase64(dataSizeMax + 1) }, "op")],
    ["file blocks over 64 MiB together", tampered(syncFile, { blocks: [[0, longBase64(dataSizeMax / 2)], [1, longBase64(dataSizeMax / 2 + 3)]] }, "snapshot")],
    ["a block index given twice", tampered(syncFile, { blocks: [[0, "AA=="], [0, "AQ=="]] }, "snapshot")],
    ["blocks out of order", tampered(syncFile, { blocks: [[1, "AA=="], [0, "AQ=="]] }, "snapshot")],
    ["a malformed generation", tampered(syncEnd, { gen: "x@n1" })],
    ["a generation without node", tampered(syncEnd, { gen: "3@" })],
    ["a history longer than historyMax", tampered(syncEnd, { history: Array.from({ length: historyMax + 1 }, (_, index) => `${index}@n1`) })],
    ["an array instead of an object", []],
    ["null", null],
  ])("%s", (_, value) => {
    expect(messages.decode(value, "n1")).toBeNull();
  });

  it("never throws, whatever the JSON", () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => messages.decode(value, "n1") === null || typeof value === "object"));
  });

  it("to send a message a peer would refuse: a programmer error", () => {
    expect(() => messages.encode({ kind: "sync-path-ack", session: 1, path: "../x", result: null })).toThrow(/would refuse/);
  });
});

describe("the mirror beat codec refuses", () => {
  const beat: MirrorBeat = { kind: "beat", from: "n2", incarnation: 7, role: "SECOND", gen: "2@n1" };
  const json = throughJson(beats.encode(beat)) as object;

  it.each<[string, Record<string, unknown>]>([
    ["an unknown beat kind", { kind: "ping" }],
    ["an unknown role", { role: "MASTER" }],
    ["a negative incarnation", { incarnation: -1 }],
    ["a malformed generation", { gen: "2" }],
    ["a missing sender", { from: undefined }],
  ])("%s", (_, change) => {
    expect(beats.decode({ ...json, ...change }, "n2")).toBeNull();
  });

  it("a beat from another sender than the authenticated one", () => {
    expect(beats.decode(json, "n3")).toBeNull();
    expect(beats.decode(json, "n2")).toStrictEqual(beat);
  });

  it("never throws, whatever the JSON", () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => beats.decode(value, "n2") === null || typeof value === "object"));
  });
});

describe("metadata changes (the journal's change records)", () => {
  /** One step from a metadata value to the next, the way the core makes them: maps copied
   *  with a few entries set or deleted (the others the same objects), or a new value. */
  const editArbitrary = fc.oneof(
    { weight: 4, arbitrary: fc.record({ map: fc.constantFrom("dirty" as const, "hot" as const), set: dirtyEntriesArbitrary, del: fc.array(anyPathArbitrary, { maxLength: 3 }) }) },
    { weight: 1, arbitrary: metaArbitrary.map((meta) => ({ whole: meta })) },
    { weight: 1, arbitrary: fc.record({ gen: genArbitrary, consistent: fc.boolean() }) },
  );
  const step = (meta: MirrorMeta, edit: unknown): MirrorMeta => {
    const change = edit as { whole?: MirrorMeta; map?: "dirty" | "hot"; set?: readonly (readonly [string, FileDirty])[]; del?: readonly string[]; gen?: string; consistent?: boolean };
    if (change.whole !== undefined) return change.whole;
    if (change.map === undefined) return { ...meta, gen: change.gen!, consistent: change.consistent! };
    const map = new Map(meta[change.map]);
    for (const path of change.del!) map.delete(path);
    for (const [path, entry] of change.set!) map.set(path, entry);
    return { ...meta, [change.map]: map };
  };

  it("patching a value with the changes to each next one gives the last", () => {
    fc.assert(fc.property(metaArbitrary, fc.array(editArbitrary, { maxLength: 8 }), (first, edits) => {
      const metas = [first];
      for (const edit of edits) metas.push(step(metas.at(-1)!, edit));
      const changes = metas.slice(1).map((meta, index) => throughJson(mirrorMetaCodec.diff!(metas[index]!, meta)));
      const patched = mirrorMetaCodec.patch!(mirrorMetaCodec.decode(throughJson(mirrorMetaCodec.encode(first)))!, changes);
      expect(patched).not.toBeNull();
      expect(mirrorMetaCodec.encode(patched!)).toEqual(mirrorMetaCodec.encode(metas.at(-1)!));
    }));
  });

  it("records one path added to a large activity log in a few bytes", () => {
    const hot = new Map<string, FileDirty>(Array.from({ length: 2000 }, (_, index) => [`base/${index}`, { all: true, blocks: new Set<number>() }]));
    const before: MirrorMeta = { ...newMeta(), gen: "2@n1", hot };
    const after: MirrorMeta = { ...before, hot: new Map([...hot, ["base/new", { all: true, blocks: new Set<number>() }]]) };
    const change = JSON.stringify(mirrorMetaCodec.diff!(before, after));
    expect(change).toBe(JSON.stringify({ hot: { set: [["base/new", { all: true, blocks: { runs: [] } }]], del: [] } }));
    expect(JSON.stringify(mirrorMetaCodec.encode(after)).length).toBeGreaterThan(50 * change.length);
  });

  it.each<[string, unknown]>([
    ["a change that is not an object", 42],
    ["a path that climbs out of the tree", { hot: { set: [["../a", { all: true, blocks: [] }]], del: [] } }],
    ["a deleted path that is not a path", { dirty: { set: [], del: [7] } }],
    ["a rest with marks in it", { rest: { ...(throughJson(mirrorMetaCodec.encode({ ...newMeta(), dirty: new Map([["a", { all: true, blocks: new Set<number>() }]]) })) as object) } }],
  ])("refuses %s", (_, change) => {
    expect(mirrorMetaCodec.patch!(newMeta(), [change])).toBeNull();
  });
});

describe("the mirror metadata codec refuses", () => {
  const json = throughJson(mirrorMetaCodec.encode({ ...newMeta(), gen: "2@n1", dirty: new Map([["a", { all: false, blocks: new Set([1]) }]]) })) as object;

  it.each<[string, Record<string, unknown>]>([
    ["a dirty path that climbs out of the tree", { dirty: [["../a", { all: true, blocks: [] }]] }],
    ["a dirty path given twice", { dirty: [["a", { all: true, blocks: [] }], ["a", { all: false, blocks: [] }]] }],
    ["dirty blocks out of order", { dirty: [["a", { all: false, blocks: [2, 1] }]] }],
    ["a negative dirty block", { dirty: [["a", { all: false, blocks: [-1] }]] }],
    ["runs that touch (one set, two encodings)", { dirty: [["a", { all: false, blocks: { runs: [1, 2, 3, 1] } }]] }],
    ["runs out of order", { dirty: [["a", { all: false, blocks: { runs: [5, 1, 1, 1] } }]] }],
    ["a run of no block", { dirty: [["a", { all: false, blocks: { runs: [1, 0] } }]] }],
    ["a run without its count", { dirty: [["a", { all: false, blocks: { runs: [1, 2, 9] } }]] }],
    ["more runs than entryCountMax", { dirty: [["a", { all: false, blocks: { runs: Array.from({ length: entryCountMax + 1 }, (_, index) => [2 * index, 1]).flat() } }]] }],
    ["a run past the largest safe integer", { dirty: [["a", { all: false, blocks: { runs: [Number.MAX_SAFE_INTEGER, 2] } }]] }],
    ["a flag that is not a boolean", { consistent: "yes" }],
    ["an unknown last role", { lastRole: "WAIT" }],
    ["a boot id that is not a string", { bootId: 42 }],
    ["a history longer than historyMax", { history: Array.from({ length: historyMax + 1 }, (_, index) => `${index}@n1`) }],
    ["a layout that is not a list of names", { layout: ["1-data", "../x"] }],
  ])("%s", (_, change) => {
    expect(mirrorMetaCodec.decode({ ...json, ...change })).toBeNull();
  });

  it("reads metadata written before the layout was kept as not knowing it", () => {
    const { layout: _, ...older } = json as Record<string, unknown>;
    expect(mirrorMetaCodec.decode(older)?.layout).toBeNull();
    expect(mirrorMetaCodec.decode({ ...json, layout: ["1-data", "2-wal"] })?.layout).toEqual(["1-data", "2-wal"]);
  });

  it("nothing of the example but what each changes", () => {
    expect(mirrorMetaCodec.decode(json)).not.toBeNull();
  });

  it("never throws, whatever the JSON", () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => mirrorMetaCodec.decode(value) === null || typeof value === "object"));
  });
});
