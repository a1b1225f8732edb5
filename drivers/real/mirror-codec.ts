// Mirror modules on the wire: the payload codecs of the real datagram port (beats) and
// stream port (everything else), and the JSON form of a node's durable metadata.
// Decoding checks every field (the MAC proved who sent it, not that it makes sense) and
// refuses anything malformed: a path that could leave the replicated tree, a counter that
// is not a count, an unknown kind, a beat that names another sender than the
// authenticated one. Decoding never throws, whatever the JSON.
//
// Each message is described once, as a tree of small codecs (one per kind of value), so
// that encoding and decoding cannot drift apart and the compiler checks that every
// variant and every field is covered. Bytes travel unencoded beside the JSON (wire.ts
// Attachment; base64 in plain JSON), sets and maps as arrays
// sorted by key; decoding refuses unsorted or repeated keys rather than merge them.
//
// Neither beats nor messages name their module or (messages) their sender: the caller
// must give each module's ports a channel of their own (as farm does with
// `farm:<module>`), which the envelope authenticates, and a stream has one peer.

import { assert } from "../../core/assert.ts";
import { replicatedCountMax } from "../../core/config/sections/rfs.ts";
import type { DiskError, DiskOp, FileTime, Owner, PathSnapshot } from "../../core/mirror/disk-ops.ts";
import type { HelloSummary, MirrorBeat, MirrorMessage, MirrorRole } from "../../core/mirror/messages.ts";
import { addedBlocks, changedEntries, emptyDirty, historyMax, RunBlocks, withBlocks, type DirtyMap, type FileDirty, type Gen, type LastRole, type MirrorMeta } from "../../core/mirror/meta.ts";
import type { MetaCodec } from "./disk.ts";
import { Attachment, nodeNameSizeMax, type PayloadCodec } from "./wire.ts";

/** The bytes of one write, or of all the blocks of one file snapshot, decoded. The stream's
 *  frame limit (at most envelopeSizeMaxLimit) is lower today: this bound is a backstop. */
export const dataSizeMax = 64 * 1024 * 1024;
/** Children of a directory, paths to preserve, dirty paths, blocks of a file or a path. */
export const entryCountMax = 1_000_000;
/** Linux's PATH_MAX and NAME_MAX, counted in UTF-16 units: a string never has more units
 *  than UTF-8 bytes, so no path the kernel accepts is refused. */
export const pathSizeMax = 4096;
export const nameSizeMax = 255;
/** Symlink targets (PATH_MAX again), reasons, labels and boot ids, in UTF-16 units. */
export const textSizeMax = 4096;
/** The mode bits of st_mode: permissions, and the file type bits a caller may leave in. */
export const modeMax = 0o177777;
/** uid_t and gid_t are 32 bits, and (uid_t)-1 means "no id" (chown: leave it as it is). */
export const idMax = 0xffff_fffe;
/** Linux's XATTR_NAME_MAX and XATTR_SIZE_MAX, and the attributes of one path a snapshot
 *  carries (a file system's list of names is at most 64 KiB). */
export const xattrNameSizeMax = 255;
export const xattrValueSizeMax = 65_536;
export const xattrCountMax = 65_536;
/** The paths of one operation (pathsOf: two for a rename). */
const opPathCountMax = 2;
/** A beat's resources (a module's checkers): bounded so that a beat stays far below a
 *  datagram's limit (32 KiB), 64 × 128 bytes at most. */
export const resourceCountMax = 64;
const resourceNameSizeMax = 128;
const base64SizeMax = Math.ceil(dataSizeMax / 3) * 4;

// ---- Codecs of values ----

const bad: unique symbol = Symbol("bad");
type Bad = typeof bad;

/** How one kind of value travels. `decode` sees untrusted JSON and returns `bad` for
 *  anything that is not a valid value. Properties, not methods: the compiler then checks
 *  a codec's type both ways, so a `Codec<Gen>` cannot stand for a `Codec<Gen | null>`. */
interface Codec<T> {
  readonly encode: (value: T) => unknown;
  readonly decode: (value: unknown) => T | Bad;
}

/** A value that travels as itself, once `test` accepts it. */
function leaf<T>(test: (value: unknown) => value is T): Codec<T> {
  return { encode: (value) => value, decode: (value) => (test(value) ? value : bad) };
}

/** A value that travels as another: `toValue` may refuse what `codec` accepted. */
function via<Wire, T>(codec: Codec<Wire>, toValue: (wire: Wire) => T | Bad, toWire: (value: T) => Wire): Codec<T> {
  return {
    encode: (value) => codec.encode(toWire(value)),
    decode: (value) => {
      const wire = codec.decode(value);
      return wire === bad ? bad : toValue(wire);
    },
  };
}

/** `codec`, narrowed to the values `test` accepts. */
function where<T>(codec: Codec<T>, test: (value: T) => boolean): Codec<T> {
  return via(codec, (value) => (test(value) ? value : bad), (value) => value);
}

function nullable<T>(codec: Codec<T>): Codec<T | null> {
  return { encode: (value) => (value === null ? null : codec.encode(value)), decode: (value) => (value === null ? null : codec.decode(value)) };
}

/** An optional field: absent stays absent (JSON has no undefined, so undefined is absent). */
function optional<T>(codec: Codec<T>): Codec<T | undefined> {
  return { encode: (value) => (value === undefined ? undefined : codec.encode(value)), decode: (value) => (value === undefined ? undefined : codec.decode(value)) };
}

function list<T>(codec: Codec<T>, countMax: number): Codec<readonly T[]> {
  return {
    encode: (values) => values.map((value) => codec.encode(value)),
    decode: (value) => {
      if (!Array.isArray(value) || value.length > countMax) return bad;
      const out: T[] = [];
      for (const item of value) {
        const decoded = codec.decode(item);
        if (decoded === bad) return bad;
        out.push(decoded);
      }
      return out;
    },
  };
}

function pair<A, B>(first: Codec<A>, second: Codec<B>): Codec<readonly [A, B]> {
  return {
    encode: ([a, b]) => [first.encode(a), second.encode(b)],
    decode: (value) => {
      if (!Array.isArray(value) || value.length !== 2) return bad;
      const a = first.decode(value[0]);
      const b = second.decode(value[1]);
      return a === bad || b === bad ? bad : [a, b];
    },
  };
}

/** A map as `[key, value]` pairs in increasing key order: one encoding per map, and no key twice. */
function sortedMap<K extends string | number, V>(key: Codec<K>, value: Codec<V>): Codec<ReadonlyMap<K, V>> {
  return via<readonly (readonly [K, V])[], ReadonlyMap<K, V>>(
    list(pair(key, value), entryCountMax),
    (entries) => (isIncreasing(entries.map(([k]) => k)) ? new Map(entries) : bad),
    (map) => [...map].sort(([a], [b]) => (a < b ? -1 : 1)),
  );
}

/** A set of indexes (a file's marked blocks) as runs: `{ runs: [first, count, ...] }`,
 *  increasing and apart (one encoding per set), at most entryCountMax runs. A
 *  file written in sequence is one run: as an array of indexes, a GiB rewritten by a node
 *  alone was 262,144 numbers (2 MB of JSON) in each summary and metadata record, and
 *  encoding, sending and checking those kept both nodes' event loops busy enough to miss
 *  heartbeats (docs/replicator.md). An increasing array, as metadata written before holds,
 *  still decodes. */
const indexSet: Codec<ReadonlySet<number>> = {
  encode: (set) => ({ runs: RunBlocks.runsOf(set) }),
  decode: (value) => {
    if (Array.isArray(value)) return value.length <= entryCountMax && value.every(isCount) && isIncreasing(value) ? new Set(value as number[]) : bad;
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, "runs")) return bad;
    const runs = (value as { runs: unknown }).runs;
    if (!Array.isArray(runs) || runs.length > 2 * entryCountMax) return bad;
    // Checks each number (a safe integer, not negative) as it builds the set.
    return RunBlocks.of(runs as number[]) ?? bad;
  },
};

/** Every field of `T`, optional ones included: the compiler checks that none is left out. */
type Shape<T> = { readonly [K in keyof Required<T>]: Codec<T[K]> };

/** An object of exactly the shape's fields; fields of the JSON the shape does not name are ignored. */
function record<T>(shape: Shape<T>): Codec<T> {
  const fields = Object.entries(shape) as [string, Codec<unknown>][];
  return {
    encode: (value) => {
      const out: Record<string, unknown> = {};
      for (const [key, codec] of fields) {
        const field = (value as Record<string, unknown>)[key];
        if (field !== undefined) out[key] = codec.encode(field);
      }
      return out;
    },
    decode: (value) => {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return bad;
      const out: Record<string, unknown> = {};
      for (const [key, codec] of fields) {
        const decoded = codec.decode(Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined);
        if (decoded === bad) return bad;
        if (decoded !== undefined) out[key] = decoded;
      }
      return out as T;
    },
  };
}

type Variant<T, K> = Omit<Extract<T, { readonly kind: K }>, "kind">;

/** A union told apart by its `kind`: one shape per kind, and the compiler checks that no kind lacks one. */
function variants<T extends { readonly kind: string }>(shapes: { readonly [K in T["kind"]]: Shape<Variant<T, K>> }): Codec<T> {
  const byKind = new Map<unknown, Codec<T>>(
    Object.entries(shapes).map(([kind, shape]) => [kind, record<T>({ kind: leaf((value): value is string => value === kind), ...(shape as object) } as Shape<T>)]),
  );
  return {
    encode: (value) => byKind.get(value.kind)!.encode(value),
    decode: (value) => (typeof value === "object" && value !== null ? (byKind.get((value as Record<string, unknown>)["kind"])?.decode(value) ?? bad) : bad),
  };
}

/** One of a union of strings; the table names each exactly once, as the compiler checks. */
function oneOf<T extends string>(table: Readonly<Record<T, true>>): Codec<T> {
  return leaf((value): value is T => typeof value === "string" && Object.hasOwn(table, value));
}

// ---- Tests of values ----

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isId(value: unknown): value is number {
  return isCount(value) && value <= idMax;
}

function isIncreasing(keys: readonly (string | number)[]): boolean {
  return keys.every((key, index) => index === 0 || keys[index - 1]! < key);
}

/** One segment of a path: a directory entry's name. */
function isName(value: unknown): value is string {
  return typeof value === "string" && value !== "" && value.length <= nameSizeMax && value !== "." && value !== ".." && !/[/\0]/.test(value);
}

/** A path of disk-ops.ts: relative, `/`-separated, no empty, `.` or `..` segment; "" for the root. */
function isPath(value: unknown): value is string {
  return typeof value === "string" && value.length <= pathSizeMax && (value === "" || value.split("/").every(isName));
}

function isText(value: unknown): value is string {
  return typeof value === "string" && value.length <= textSizeMax && !value.includes("\0");
}

/** A checker's resource, CLASS.IDENT (core/module/lifecycle.ts resourceName). */
export function isResourceName(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= resourceNameSizeMax && /^[A-Za-z0-9_.:-]+$/.test(value);
}

function isNodeName(value: unknown): value is string {
  return typeof value === "string" && value !== "" && Buffer.byteLength(value, "utf8") <= nodeNameSizeMax;
}

const genPattern = /^(0|[1-9][0-9]*)@(.+)$/;

/** `<counter>@<node>` (meta.ts). */
function isGen(value: unknown): value is Gen {
  const match = typeof value === "string" ? genPattern.exec(value) : null;
  return match !== null && Number.isSafeInteger(Number(match[1])) && isNodeName(match[2]);
}

/** Base64's shape: whole groups of four characters. */
function isBase64Shape(value: unknown): value is string {
  return typeof value === "string" && value.length <= base64SizeMax && value.length % 4 === 0;
}

/** Buffer's decoder skips characters outside the alphabet (and stops at a padding one)
 *  silently: such a string decodes to fewer bytes than its length says, and is refused.
 *  (A regular expression over the whole string did the same at a tenth of the replication
 *  stream's CPU.) */
function decodeBase64(wire: string): Uint8Array | Bad {
  const padding = wire.endsWith("==") ? 2 : wire.endsWith("=") ? 1 : 0;
  const decoded = Buffer.from(wire, "base64");
  return decoded.length === (wire.length / 4) * 3 - padding ? new Uint8Array(decoded) : bad;
}

// ---- The mirror's values ----

const count = leaf(isCount);
const flag = leaf((value): value is boolean => typeof value === "boolean");
const path = leaf(isPath);
const text = leaf(isText);
const gen = leaf(isGen);
const mode = where(count, (value) => value <= modeMax);
const history = list(gen, historyMax);
const owner = optional(record<Owner>({ uid: leaf(isId), gid: leaf(isId) }));
const fileTime = record<FileTime>({ s: leaf((value): value is number => Number.isSafeInteger(value)), ns: where(count, (value) => value < 1e9) });
const idOrKeep = leaf((value): value is number => value === -1 || isId(value));
const role = oneOf<MirrorRole>({ STOP: true, WAIT: true, ALONE: true, PRIM: true, SECOND: true });
const lastRole: Codec<LastRole> = nullable(oneOf<NonNullable<LastRole>>({ ALONE: true, PRIM: true, SECOND: true }));
const result = nullable(oneOf<DiskError>({ ENOENT: true, EEXIST: true, ENOTDIR: true, EISDIR: true, ENOTEMPTY: true, EINVAL: true, ENOSPC: true, EIO: true, EROFS: true, EPERM: true, EXDEV: true, ENODATA: true, EOPNOTSUPP: true }));
const xattrName = leaf((value): value is string => typeof value === "string" && value !== "" && value.length <= xattrNameSizeMax && !value.includes("\0"));

/** Bytes travel unencoded beside the JSON in an envelope (wire.ts Attachment: the
 *  receiver's parsePayload gives them as a plain Uint8Array of their own), as base64 in
 *  plain JSON (a test's round trip). Decoded into a plain Uint8Array (not a Buffer, whose
 *  pooled memory and own methods the core does not expect). */
const bytes: Codec<Uint8Array> = {
  encode: (data) => new Attachment(data),
  decode: (value) => {
    // The sender's own check of what it encodes (checkedEncode).
    if (value instanceof Attachment) return value.data;
    if (value instanceof Uint8Array) return value.byteLength <= dataSizeMax && !Buffer.isBuffer(value) ? value : bad;
    return isBase64Shape(value) ? decodeBase64(value) : bad;
  },
};

const fileDirty = record<FileDirty>({ all: flag, blocks: indexSet });
const xattrValue = where(bytes, (data) => data.length <= xattrValueSizeMax);
/** A snapshot's attributes: absent when none, else sorted by name without repeats. */
const xattrs = optional(where(list(pair(xattrName, xattrValue), xattrCountMax), (entries) => entries.length > 0 && isIncreasing(entries.map(([name]) => name))));

const op = variants<DiskOp>({
  create: { path, mode, owner },
  write: { path, offset: count, data: where(bytes, (data) => data.length <= dataSizeMax) },
  truncate: { path, size: count },
  rename: { from: path, to: path },
  unlink: { path },
  link: { from: path, to: path },
  mkdir: { path, mode, owner },
  rmdir: { path },
  setattr: { path, mode },
  chown: { path, uid: idOrKeep, gid: idOrKeep },
  symlink: { path, target: text, owner },
  times: { path, atime: nullable(fileTime), mtime: nullable(fileTime) },
  setxattr: { path, name: xattrName, value: xattrValue, how: optional(oneOf<"create" | "replace">({ create: true, replace: true })) },
  removexattr: { path, name: xattrName },
  fsync: { path: nullable(path) },
});

const snapshot = variants<PathSnapshot>({
  absent: {},
  dir: { mode, children: list(leaf(isName), entryCountMax), owner, xattrs },
  symlink: { target: text, owner, mtime: optional(fileTime), xattrs },
  file: {
    mode,
    owner,
    mtime: optional(fileTime),
    xattrs,
    size: count,
    blocks: where(sortedMap(count, bytes), (blocks) => sizeOf(blocks) <= dataSizeMax),
    links: optional(where(list(path, entryCountMax), isIncreasing)),
  },
});

function sizeOf(blocks: ReadonlyMap<number, Uint8Array>): number {
  let size = 0;
  for (const block of blocks.values()) size += block.length;
  return size;
}

const summary = record<HelloSummary>({
  incarnation: count,
  role,
  gen: nullable(gen),
  history,
  consistent: flag,
  lastRole,
  dirtyBase: nullable(gen),
  dirty: list(pair(path, fileDirty), entryCountMax),
  yielding: flag,
  fullsync: flag,
  continuous: flag,
  cacheLost: flag,
  attachable: flag,
  held: optional(flag),
  seenSession: nullable(count),
  layout: list(leaf(isName), replicatedCountMax),
});

const resourceState = oneOf<"init" | "up" | "down">({ init: true, up: true, down: true });

const beat = variants<MirrorBeat>({
  beat: {
    from: leaf(isNodeName),
    incarnation: count,
    role,
    gen: nullable(gen),
    resources: optional(where(list(pair(leaf(isResourceName), resourceState), resourceCountMax), (entries) => isIncreasing(entries.map(([name]) => name)))),
  },
  outdate: { from: leaf(isNodeName), gen: nullable(gen) },
  outdated: { from: leaf(isNodeName), gen: nullable(gen) },
});

const message = variants<MirrorMessage>({
  hello: { summary, ask: optional(flag) },
  attach: { session: count, full: flag, preserve: nullable(list(path, entryCountMax)), label: text },
  rep: { session: count, seq: count, op },
  "rep-ack": { session: count, seq: count, result, paths: optional(list(path, opPathCountMax)) },
  "sync-path": { session: count, path, snapshot, prune: flag },
  "sync-path-ack": { session: count, path, result, names: optional(list(path, entryCountMax)) },
  "sync-end": { session: count, gen, history, upTo: count },
  "sync-done": { session: count, upTo: count },
  unsync: { session: count },
  flush: { session: count, upTo: count },
  flushed: { session: count, upTo: count },
  handover: { session: count, reason: oneOf<"swap" | "stop">({ swap: true, stop: true }) },
  "attach-refused": { session: count, reason: text },
  detach: { session: count, reason: text },
  "lane-open": { session: count, epoch: count },
  "lane-opened": { session: count, epoch: count },
  "lane-close": { session: count, epoch: count },
});

const meta = record<MirrorMeta>({
  gen: nullable(gen),
  history,
  consistent: flag,
  lastRole,
  dirtyBase: nullable(gen),
  dirty: sortedMap(path, fileDirty),
  // Absent in metadata written before the activity log: nothing hot.
  hot: via(optional(sortedMap(path, fileDirty)), (wire) => wire ?? emptyDirty, (hot) => (hot.size === 0 ? undefined : hot)),
  bootId: nullable(text),
  cacheLost: flag,
  // Absent in metadata written before the layout was kept: not known.
  layout: via(optional(list(leaf(isName), replicatedCountMax)), (wire) => wire ?? null, (layout) => layout ?? undefined),
});

// ---- The codecs ----

/** Encodes, asserting (the sender's side of the boundary) that the receiver will accept
 *  the result: a value the core should never make is a crash here, not a silent refusal
 *  on the peer or at the next start. */
function checkedEncode<T>(codec: Codec<T>, what: string): (value: T) => unknown {
  return (value) => {
    const encoded = codec.encode(value);
    // The message is made only on failure: made each time, it cost more than the check.
    if (codec.decode(encoded) === bad) assert(false, `a ${what} the receiver would refuse: ${JSON.stringify(encoded)?.slice(0, 200)}`);
    return encoded;
  };
}

function orNull<T>(decoded: T | Bad): T | null {
  return decoded === bad ? null : decoded;
}

/** Heartbeats of one mirror module; a beat that names another sender than the
 *  authenticated one is refused. */
export function mirrorBeatCodec(module: string): PayloadCodec<MirrorBeat> {
  assert(module !== "", "a mirror module has a name");
  return {
    encode: checkedEncode(beat, "mirror beat"),
    decode: (value, from) => {
      const decoded = orNull(beat.decode(value));
      return decoded?.from === from ? decoded : null;
    },
  };
}

/** The stream messages of one mirror module. They name no sender: the stream's peer is the only one. */
export function mirrorMessageCodec(module: string): PayloadCodec<MirrorMessage> {
  assert(module !== "", "a mirror module has a name");
  return { encode: checkedEncode(message, "mirror message"), decode: (value) => orNull(message.decode(value)) };
}

// A change of the metadata (the disk port's journal records it after a whole record, so
// that a write that adds one path to the activity log costs bytes, not the whole log):
// `rest`, the metadata with no marks, when anything but the marks changed; per map of
// marks, the entries set (added or replaced), the blocks added to entries the record
// before had (a file rewritten by a node alone: the new blocks, not all of them), and the
// paths deleted. `add` came with journal version 3 (disk.ts), which older versions refuse.
interface MapChange {
  readonly set: readonly (readonly [string, FileDirty])[];
  readonly add?: readonly (readonly [string, ReadonlySet<number>])[];
  readonly del: readonly string[];
}
interface MetaChange {
  readonly rest?: MirrorMeta;
  readonly dirty?: MapChange;
  readonly hot?: MapChange;
}
const mapChange = record<MapChange>({ set: list(pair(path, fileDirty), entryCountMax), add: optional(list(pair(path, indexSet), entryCountMax)), del: list(path, entryCountMax) });
const metaChange = record<MetaChange>({ rest: optional(where(meta, (value) => value.dirty.size === 0 && value.hot.size === 0)), dirty: optional(mapChange), hot: optional(mapChange) });
const encodeChange = checkedEncode(metaChange, "mirror metadata change");

/** What changed from one map of marks to the other (changedEntries: entries compare by
 *  identity, and only what was added to a shared base is looked at). */
function changeOf(before: DirtyMap, after: DirtyMap): MapChange | undefined {
  const { set, del } = changedEntries(before, after);
  if (set.length === 0 && del.length === 0) return undefined;
  const whole: (readonly [string, FileDirty])[] = [];
  const add: (readonly [string, ReadonlySet<number>])[] = [];
  for (const [path, entry] of set) {
    const was = before.get(path);
    const added = was === undefined ? null : addedBlocks(was, entry);
    if (added === null) whole.push([path, entry]);
    else add.push([path, added]);
  }
  return { set: whole, ...(add.length === 0 ? {} : { add }), del };
}

/** Whether any field but the marks changed (every field, so that one added to MirrorMeta
 *  is never left out of the changes; compared by identity, as the core replaces values). */
function restChanged(before: MirrorMeta, after: MirrorMeta): boolean {
  const fields = new Set([...Object.keys(before), ...Object.keys(after)] as (keyof MirrorMeta)[]);
  for (const field of fields) if (field !== "dirty" && field !== "hot" && before[field] !== after[field]) return true;
  return false;
}

/** Applies a change to a map of marks; false when it adds blocks to a path the map lacks
 *  (not a change of this map). */
function applyChange(into: Map<string, FileDirty>, change: MapChange | undefined): boolean {
  if (change === undefined) return true;
  for (const key of change.del) into.delete(key);
  for (const [key, entry] of change.set) into.set(key, entry);
  for (const [key, blocks] of change.add ?? []) {
    const entry = into.get(key);
    if (entry === undefined) return false;
    into.set(key, withBlocks(entry, blocks));
  }
  return true;
}

/** A node's durable metadata, as stored by the disk port (MetaCodec in disk.ts). */
export const mirrorMetaCodec: MetaCodec<MirrorMeta> = {
  encode: checkedEncode(meta, "mirror metadata"),
  decode: (value) => orNull(meta.decode(value)),
  diff: (before, after) => {
    const dirty = changeOf(before.dirty, after.dirty);
    const hot = changeOf(before.hot, after.hot);
    const rest = restChanged(before, after) ? { ...after, dirty: emptyDirty, hot: emptyDirty } : undefined;
    return encodeChange({ ...(rest === undefined ? {} : { rest }), ...(dirty === undefined ? {} : { dirty }), ...(hot === undefined ? {} : { hot }) });
  },
  patch: (base, changes) => {
    let rest = base;
    const dirty = new Map(base.dirty);
    const hot = new Map(base.hot);
    for (const value of changes) {
      const change = metaChange.decode(value);
      if (change === bad) return null;
      if (change.rest !== undefined) rest = change.rest;
      if (!applyChange(dirty, change.dirty) || !applyChange(hot, change.hot)) return null;
    }
    return { ...rest, dirty, hot };
  },
};
