// fast-check arbitraries for everything a mirror module sends or keeps on disk, with the
// values a codec gets wrong: unicode names, the root path, empty and odd-sized data,
// counters up to 2^53 - 1, owners and optional fields present or absent. One arbitrary
// per kind of each union, in tables the compiler checks to name every kind.

import fc from "fast-check";
import type { DiskError, DiskOp, Owner, PathSnapshot } from "../../core/mirror/disk-ops.ts";
import type { HelloSummary, MirrorBeat, MirrorMessage, MirrorRole } from "../../core/mirror/messages.ts";
import type { Gen, LastRole, MirrorMeta } from "../../core/mirror/meta.ts";
import { dirtyEntriesArbitrary, dirtyMapArbitrary, pathArbitrary } from "../core/mirror-arbitraries.ts";

/** One arbitrary per kind of a union. */
export type ByKind<T extends { readonly kind: string }> = { readonly [K in T["kind"]]: fc.Arbitrary<Extract<T, { readonly kind: K }>> };

const countArbitrary = fc.oneof(fc.nat(1000), fc.maxSafeNat());
const modeArbitrary = fc.constantFrom(0, 0o600, 0o644, 0o755, 0o4755, 0o100644);
const fileTimeArbitrary = fc.record({ s: fc.oneof(fc.integer({ min: -1, max: 2_000_000_000 }), fc.maxSafeInteger(), fc.constant(Number.MIN_SAFE_INTEGER)), ns: fc.integer({ min: 0, max: 999_999_999 }) });
/** A snapshot's modification time, or none (spread into the snapshot). */
const mtimeArbitrary = fc.option(fileTimeArbitrary, { nil: undefined }).map((mtime) => (mtime === undefined ? {} : { mtime }));
const idArbitrary = fc.oneof(fc.constantFrom(0, 1000), fc.nat(0xffff_fffe));
/** Present or absent (never undefined): optional fields must come back the same way. */
const ownerArbitrary: fc.Arbitrary<{ owner?: Owner }> = fc.option(fc.record({ uid: idArbitrary, gid: idArbitrary }), { nil: undefined }).map((owner) => (owner === undefined ? {} : { owner }));
const textArbitrary = fc.string({ unit: "grapheme", maxLength: 40 }).filter((text) => !text.includes("\0"));
const nameArbitrary = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 8 })
  .filter((name) => name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0"));
/** The fixed paths of the core's tests, and generated ones. */
export const anyPathArbitrary = fc.oneof(pathArbitrary, fc.array(nameArbitrary, { minLength: 1, maxLength: 4 }).map((names) => names.join("/")));
const nodeArbitrary = fc.constantFrom("n1", "n2", "node-b.example", "ñ@2");
export const genArbitrary: fc.Arbitrary<Gen> = fc.tuple(countArbitrary, nodeArbitrary).map(([counter, node]) => `${counter}@${node}`);
const historyArbitrary = fc.array(genArbitrary, { maxLength: 6 });
const roleArbitrary = fc.constantFrom<MirrorRole>("STOP", "WAIT", "ALONE", "PRIM", "SECOND");
const lastRoleArbitrary = fc.constantFrom<LastRole>("ALONE", "PRIM", "SECOND", null);
const resultArbitrary = fc.constantFrom<DiskError | null>(null, "ENOENT", "EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "EINVAL", "ENOSPC", "EIO", "EROFS", "EPERM", "EXDEV", "ENODATA", "EOPNOTSUPP");
const dataArbitrary = fc.uint8Array({ maxLength: 70 });
const xattrNameArbitrary = fc.oneof(fc.constantFrom("user.a", "security.capability", "trusted.x"), textArbitrary.filter((text) => text !== ""));
/** A snapshot's extended attributes, or none (spread into the snapshot). */
const xattrsArbitrary = fc
  .uniqueArray(fc.tuple(xattrNameArbitrary, dataArbitrary), { maxLength: 3, selector: ([name]) => name })
  .map((entries) => (entries.length === 0 ? {} : { xattrs: entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) }));

export const opArbitraries: ByKind<DiskOp> = {
  create: fc.tuple(anyPathArbitrary, modeArbitrary, ownerArbitrary).map(([path, mode, owner]) => ({ kind: "create", path, mode, ...owner })),
  write: fc.record({ kind: fc.constant("write"), path: anyPathArbitrary, offset: countArbitrary, data: dataArbitrary }),
  truncate: fc.record({ kind: fc.constant("truncate"), path: anyPathArbitrary, size: countArbitrary }),
  rename: fc.record({ kind: fc.constant("rename"), from: anyPathArbitrary, to: anyPathArbitrary }),
  unlink: fc.record({ kind: fc.constant("unlink"), path: anyPathArbitrary }),
  link: fc.record({ kind: fc.constant("link"), from: anyPathArbitrary, to: anyPathArbitrary }),
  mkdir: fc.tuple(anyPathArbitrary, modeArbitrary, ownerArbitrary).map(([path, mode, owner]) => ({ kind: "mkdir", path, mode, ...owner })),
  rmdir: fc.record({ kind: fc.constant("rmdir"), path: anyPathArbitrary }),
  setattr: fc.record({ kind: fc.constant("setattr"), path: anyPathArbitrary, mode: modeArbitrary }),
  chown: fc.record({ kind: fc.constant("chown"), path: anyPathArbitrary, uid: fc.oneof(fc.constant(-1), idArbitrary), gid: fc.oneof(fc.constant(-1), idArbitrary) }),
  symlink: fc.tuple(anyPathArbitrary, textArbitrary, ownerArbitrary).map(([path, target, owner]) => ({ kind: "symlink", path, target, ...owner })),
  times: fc.record({ kind: fc.constant("times"), path: anyPathArbitrary, atime: fc.option(fileTimeArbitrary), mtime: fc.option(fileTimeArbitrary) }),
  setxattr: fc
    .tuple(anyPathArbitrary, xattrNameArbitrary, dataArbitrary, fc.constantFrom(undefined, "create" as const, "replace" as const))
    .map(([path, name, value, how]) => ({ kind: "setxattr", path, name, value, ...(how === undefined ? {} : { how }) })),
  removexattr: fc.record({ kind: fc.constant("removexattr"), path: anyPathArbitrary, name: xattrNameArbitrary }),
  fsync: fc.record({ kind: fc.constant("fsync"), path: fc.option(anyPathArbitrary) }),
};
export const opArbitrary: fc.Arbitrary<DiskOp> = fc.oneof(...Object.values(opArbitraries));

const blocksArbitrary = fc.uniqueArray(fc.tuple(fc.oneof(fc.nat(64), fc.maxSafeNat()), dataArbitrary), { maxLength: 5, selector: ([index]) => index }).map((entries) => new Map(entries));
export const snapshotArbitraries: ByKind<PathSnapshot> = {
  absent: fc.constant({ kind: "absent" }),
  dir: fc.tuple(modeArbitrary, fc.array(nameArbitrary, { maxLength: 5 }), ownerArbitrary, xattrsArbitrary).map(([mode, children, owner, xattrs]) => ({ kind: "dir", mode, children, ...owner, ...xattrs })),
  symlink: fc.tuple(textArbitrary, ownerArbitrary, mtimeArbitrary, xattrsArbitrary).map(([target, owner, mtime, xattrs]) => ({ kind: "symlink", target, ...owner, ...mtime, ...xattrs })),
  file: fc
    .tuple(modeArbitrary, countArbitrary, blocksArbitrary, ownerArbitrary, mtimeArbitrary, fc.option(fc.uniqueArray(anyPathArbitrary, { maxLength: 3 }), { nil: undefined }), xattrsArbitrary)
    .map(([mode, size, blocks, owner, mtime, links, xattrs]) => ({ kind: "file", mode, size, blocks, ...owner, ...mtime, ...xattrs, ...(links === undefined ? {} : { links: [...links].sort() }) })),
};
const snapshotArbitrary: fc.Arbitrary<PathSnapshot> = fc.oneof(...Object.values(snapshotArbitraries));

export const summaryArbitrary: fc.Arbitrary<HelloSummary> = fc.record({
  incarnation: countArbitrary,
  role: roleArbitrary,
  gen: fc.option(genArbitrary),
  history: historyArbitrary,
  consistent: fc.boolean(),
  lastRole: lastRoleArbitrary,
  dirtyBase: fc.option(genArbitrary),
  dirty: dirtyEntriesArbitrary,
  yielding: fc.boolean(),
  fullsync: fc.boolean(),
  continuous: fc.boolean(),
  cacheLost: fc.boolean(),
  attachable: fc.boolean(),
  held: fc.boolean(),
  seenSession: fc.option(countArbitrary),
  layout: fc.array(nameArbitrary, { maxLength: 3 }),
});

const session = countArbitrary;
export const messageArbitraries: ByKind<MirrorMessage> = {
  hello: fc.record({ kind: fc.constant("hello"), summary: summaryArbitrary, ask: fc.boolean() }, { requiredKeys: ["kind", "summary"] }),
  attach: fc.record({ kind: fc.constant("attach"), session, full: fc.boolean(), preserve: fc.option(fc.array(anyPathArbitrary, { maxLength: 4 })), label: textArbitrary }),
  rep: fc.record({ kind: fc.constant("rep"), session, seq: countArbitrary, op: opArbitrary }),
  "rep-ack": fc.record(
    { kind: fc.constant("rep-ack"), session, seq: countArbitrary, result: resultArbitrary, paths: fc.array(anyPathArbitrary, { maxLength: 2 }) },
    { requiredKeys: ["kind", "session", "seq", "result"] },
  ),
  "sync-path": fc.record({ kind: fc.constant("sync-path"), session, path: anyPathArbitrary, snapshot: snapshotArbitrary, prune: fc.boolean() }),
  "sync-path-ack": fc.record({ kind: fc.constant("sync-path-ack"), session, path: anyPathArbitrary, result: resultArbitrary }),
  "sync-end": fc.record({ kind: fc.constant("sync-end"), session, gen: genArbitrary, history: historyArbitrary, upTo: countArbitrary }),
  "sync-done": fc.record({ kind: fc.constant("sync-done"), session, upTo: countArbitrary }),
  unsync: fc.record({ kind: fc.constant("unsync"), session }),
  flush: fc.record({ kind: fc.constant("flush"), session, upTo: countArbitrary }),
  flushed: fc.record({ kind: fc.constant("flushed"), session, upTo: countArbitrary }),
  handover: fc.record({ kind: fc.constant("handover"), session, reason: fc.constantFrom("swap", "stop") }),
  "attach-refused": fc.record({ kind: fc.constant("attach-refused"), session, reason: textArbitrary }),
  detach: fc.record({ kind: fc.constant("detach"), session, reason: textArbitrary }),
  "lane-open": fc.record({ kind: fc.constant("lane-open"), session, epoch: countArbitrary }),
  "lane-opened": fc.record({ kind: fc.constant("lane-opened"), session, epoch: countArbitrary }),
  "lane-close": fc.record({ kind: fc.constant("lane-close"), session, epoch: countArbitrary }),
};

export const beatArbitraries: ByKind<MirrorBeat> = {
  beat: fc.record(
    {
      kind: fc.constant("beat"),
      from: nodeArbitrary,
      incarnation: countArbitrary,
      role: roleArbitrary,
      gen: fc.option(genArbitrary),
      resources: fc
        .uniqueArray(fc.tuple(fc.stringMatching(/^[a-z]{1,8}\.[A-Za-z0-9_-]{1,12}$/), fc.constantFrom<"init" | "up" | "down">("init", "up", "down")), { selector: ([name]) => name, maxLength: 5 })
        .map((entries) => entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    },
    { requiredKeys: ["kind", "from", "incarnation", "role", "gen"] },
  ),
  outdate: fc.record({ kind: fc.constant("outdate"), from: nodeArbitrary, gen: fc.option(genArbitrary) }),
  outdated: fc.record({ kind: fc.constant("outdated"), from: nodeArbitrary, gen: fc.option(genArbitrary) }),
};

export const metaArbitrary: fc.Arbitrary<MirrorMeta> = fc.record({
  gen: fc.option(genArbitrary),
  history: historyArbitrary,
  consistent: fc.boolean(),
  lastRole: lastRoleArbitrary,
  dirtyBase: fc.option(genArbitrary),
  dirty: dirtyMapArbitrary,
  hot: dirtyMapArbitrary,
  bootId: fc.option(fc.uuid()),
  cacheLost: fc.boolean(),
  layout: fc.option(fc.array(nameArbitrary, { maxLength: 3 })),
});
