// <rfs>: the directories a mirror module replicates to its secondary, and how.
// A pure module: it performs no I/O.
//
// `<rfs async nbrei reiallowedbw locktimeout sendtimeout syncdelta>` with one
// `<replicated dir mode>` per directory, each holding `<tocheck path/>` (must exist before
// replication starts) and `<notreplicated path|regexpath/>` (excluded)
// (../../../../shared/userconfig.md). Defaults are SafeKit's: async second, nbrei 6,
// reiallowedbw 20000 KB/s, locktimeout 100 s, sendtimeout 30 s (bare numbers in s),
// syncdelta 0 (bare numbers in minutes: a stale node never becomes primary).
//
// Decisions:
// - `mode` defaults to read_only: the secondary's copy must not be written behind
//   replication's back, or it silently diverges from the primary's.
// - `dir` is an absolute, normalised path (no trailing /, no //, no . or .. parts), and
//   not / itself: the directory is compared with other modules' directories and with
//   paths in the kernel's events, so one spelling per directory. Directories of one module
//   must not overlap (one inside another, or the same twice): a file would be replicated
//   by two streams whose order is not defined.
// - `tocheck` and `notreplicated path` are relative to the directory and stay inside it
//   (no leading /, no . or .. parts); a trailing / is dropped. `notreplicated` takes path
//   or regexpath, not both.
// - `regexpath` is a POSIX ERE over the relative path, a leading `!` inverting it. tandem
//   compiles it as a JavaScript RegExp, which reads ordinary ERE the same way; POSIX
//   bracket classes ([:digit:]) mean something else there and are refused rather than
//   silently misread. An empty pattern would match every path and exclude the whole tree.
// - `syncat` (scheduled instead of real-time synchronisation) is not read here: the
//   caller lists `rfs@syncat` among the settings that are unsafe to ignore.
// - Timeouts are above 0 and at most a day; nbrei is 1 to 64 workers; reiallowedbw is at
//   least 1 KB/s (0 would stall a resync forever).
//
// tandem extensions (SafeKit has no such attributes, so a SafeKit file never writes them):
// - `blocksize`: the unit, in bytes, in which the primary marks what a write dirtied and a
//   resync copies a file: a power of two from 512 to 1 MiB (1048576), default 4096. A bare
//   whole number of bytes, no unit. Smaller blocks send less after a failback for scattered
//   small writes but track more marks; larger ones the reverse. A power of two so that a
//   block never straddles the file systems' own blocks (512 B to 4 KiB sectors and pages).
// - `splitbrain="changes|primary|operator"`, default changes: which side is kept when the
//   two nodes meet after both wrote while apart (core/mirror/decide.ts). changes keeps the
//   one with more changes, primary the one that is primary now (when only one is),
//   operator neither until an operator runs prim or second. The files the side set aside
//   changed are copied aside before the resync overwrites them. Not to be confused with the `<splitbrain>` checker of
//   `<check>`, whose witness decides who may become primary while the nodes are apart.

import { assert } from "../../assert.ts";
import type { NotReplicated, ReplicatedDir, RfsSection } from "../module-config.ts";
import type { ElementReader } from "../reader.ts";
import type { Parsed } from "../values.ts";
import { located, readParsed } from "./vip.ts";

export const resyncWorkersDefault = 6;
export const resyncWorkersMax = 64;
export const resyncBandwidthKBpsDefault = 20_000;
export const resyncBandwidthKBpsMax = 10_000_000;
export const lockTimeoutMsDefault = 100_000;
export const sendTimeoutMsDefault = 30_000;
export const rfsTimeoutMsMax = 86_400_000;
export const syncDeltaMsMax = 365 * 86_400_000;
export const replicatedCountMax = 64;
export const toCheckCountMax = 64;
export const notReplicatedCountMax = 256;
export const pathLengthMax = 4_096;
export const regexLengthMax = 1_024;
export const blockSizeDefault = 4_096;
export const blockSizeMin = 512;
export const blockSizeMax = 1_048_576;
export const splitBrainPolicies = ["changes", "primary", "operator"] as const;

/** Reads `<rfs>`; every problem is recorded in the reader's context. */
export function readRfs(rfs: ElementReader): RfsSection {
  const section: RfsSection = {
    async: rfs.enumeration("async", ["second", "none"], "second"),
    resyncWorkers: rfs.int("nbrei", resyncWorkersDefault, 1, resyncWorkersMax),
    resyncBandwidthKBps: rfs.int("reiallowedbw", resyncBandwidthKBpsDefault, 1, resyncBandwidthKBpsMax),
    lockTimeoutMs: readTimeout(rfs, "locktimeout", lockTimeoutMsDefault),
    sendTimeoutMs: readTimeout(rfs, "sendtimeout", sendTimeoutMsDefault),
    syncDeltaMinutes: readSyncDelta(rfs) / 60_000,
    blockSize: readParsed(rfs, "blocksize", parseBlockSize)?.value ?? blockSizeDefault,
    splitBrain: rfs.enumeration("splitbrain", splitBrainPolicies, "changes"),
    replicated: readReplicatedDirs(rfs),
  };
  rfs.finish();
  assert(section.replicated.length <= replicatedCountMax, "readReplicatedDirs keeps at most replicatedCountMax directories");
  assert(section.lockTimeoutMs > 0 && section.sendTimeoutMs > 0, "readTimeout never returns 0");
  assert(isBlockSize(section.blockSize), "parseBlockSize and its default give a power of two from 512 to 1 MiB");
  return section;
}

function readTimeout(rfs: ElementReader, name: string, fallbackMs: number): number {
  const timeoutMs = rfs.time(name, "s", fallbackMs);
  if (timeoutMs > 0 && timeoutMs <= rfsTimeoutMsMax) return timeoutMs;
  rfs.report("error", "CONFIG_INVALID_VALUE", `expected a duration above 0 and at most 1d: past it the primary stops waiting for the secondary and continues ALONE`, located(rfs, name));
  return fallbackMs;
}

function readSyncDelta(rfs: ElementReader): number {
  const syncDeltaMs = rfs.time("syncdelta", "m", 0);
  if (syncDeltaMs <= syncDeltaMsMax) return syncDeltaMs;
  rfs.report("error", "CONFIG_INVALID_VALUE", "expected at most 365d: syncdelta is how stale a node may be and still become primary", located(rfs, "syncdelta"));
  return 0;
}

function readReplicatedDirs(rfs: ElementReader): ReplicatedDir[] {
  const readers = rfs.children("replicated");
  if (readers.length === 0) rfs.report("error", "CONFIG_MISSING_ELEMENT", `an <rfs> needs at least one <replicated dir="…">: the directories to mirror`);
  const dirs: ReplicatedDir[] = [];
  for (const [index, replicated] of readers.entries()) {
    const dir = readReplicated(replicated);
    if (index >= replicatedCountMax) replicated.report("error", "CONFIG_TOO_MANY", `an <rfs> has at most ${replicatedCountMax} <replicated> directories; this is directory ${index + 1}`);
    else if (dir !== null && !overlaps(replicated, dir.dir, dirs)) dirs.push(dir);
  }
  return dirs;
}

/** One `<replicated>`; null when its dir is missing or invalid (reported). */
function readReplicated(replicated: ElementReader): ReplicatedDir | null {
  const dir = readParsed(replicated, "dir", parseReplicatedDir, { required: true })?.value;
  const mode = replicated.enumeration("mode", ["read_only", "read_write"], "read_only");
  const toCheck = bounded(replicated, "tocheck", toCheckCountMax).flatMap((tocheck) => {
    const path = readParsed(tocheck, "path", parseRelativePath, { required: true })?.value;
    tocheck.finish();
    return path === undefined ? [] : [path];
  });
  const notReplicated = bounded(replicated, "notreplicated", notReplicatedCountMax).flatMap((exclusion) => {
    const read = readNotReplicated(exclusion);
    exclusion.finish();
    return read === null ? [] : [read];
  });
  replicated.finish();
  return dir === undefined ? null : { dir, mode, toCheck, notReplicated };
}

/** The children named `name`, the ones past `max` reported. */
function bounded(parent: ElementReader, name: string, max: number): ElementReader[] {
  const readers = parent.children(name);
  for (const extra of readers.slice(max)) extra.report("error", "CONFIG_TOO_MANY", `a <${parent.name}> has at most ${max} <${name}> elements`);
  return readers.slice(0, max);
}

/** Whether `dir` is, contains or lies inside a directory read before (reported if so). */
function overlaps(replicated: ElementReader, dir: string, earlier: readonly ReplicatedDir[]): boolean {
  const inside = (child: string, parent: string) => child.startsWith(`${parent}/`);
  const clash = earlier.find((other) => other.dir === dir || inside(dir, other.dir) || inside(other.dir, dir));
  if (clash === undefined) return false;
  const how = clash.dir === dir ? "is replicated twice by this module" : inside(dir, clash.dir) ? `is inside ${clash.dir}, which this module already replicates` : `contains ${clash.dir}, which this module already replicates`;
  replicated.report("error", "CONFIG_OVERLAPPING_DIRS", `replicated directory ${dir} ${how}; replicate each tree once`, located(replicated, "dir"));
  return true;
}

function readNotReplicated(exclusion: ElementReader): NotReplicated | null {
  const hasPath = located(exclusion, "path") !== undefined;
  const hasRegex = located(exclusion, "regexpath") !== undefined;
  if (hasPath && hasRegex) {
    exclusion.report("error", "CONFIG_INVALID_ELEMENT", `a <notreplicated> takes path="…" or regexpath="…", not both`);
    exclusion.raw("path");
    exclusion.raw("regexpath");
    return null;
  }
  if (hasRegex) {
    const read = readParsed(exclusion, "regexpath", parseExclusionRegex)?.value;
    return read === undefined ? null : { path: null, regex: read.regex, inverted: read.inverted };
  }
  if (!hasPath) exclusion.report("error", "CONFIG_MISSING_ATTRIBUTE", `a <notreplicated> needs path="…" (relative to the replicated directory) or regexpath="…"`);
  const path = readParsed(exclusion, "path", parseRelativePath)?.value;
  return path === undefined ? null : { path, regex: null, inverted: false };
}

// ---- Grammars ----

const dirExpected = "an absolute, normalised directory such as /var/lib/data (no trailing /, no //, no . or .. parts)";

/** An absolute, normalised directory other than /. */
export function parseReplicatedDir(text: string): Parsed<string> {
  const dir = text.trim();
  if (dir.length > pathLengthMax) return { ok: false, expected: `a path of at most ${pathLengthMax} characters` };
  if (!dir.startsWith("/") || dir.includes("\0")) return { ok: false, expected: dirExpected };
  if (dir === "/") return { ok: false, expected: "a directory below /: replicating / would overwrite the secondary's whole system" };
  const parts = dir.slice(1).split("/");
  if (parts.some((part) => part === "" || part === "." || part === "..")) return { ok: false, expected: dirExpected };
  return { ok: true, value: dir };
}

/** `blocksize`: a bare whole number of bytes, a power of two from 512 to 1 MiB. */
export function parseBlockSize(text: string): Parsed<number> {
  const trimmed = text.trim();
  const size = Number(trimmed);
  if (/^\d+$/.test(trimmed) && isBlockSize(size)) return { ok: true, value: size };
  return {
    ok: false,
    expected: `a block size in bytes, a power of two from ${blockSizeMin} to ${blockSizeMax} (1 MiB), such as 4096: the unit in which writes are tracked and a resync copies files`,
  };
}

function isBlockSize(size: number): boolean {
  return Number.isSafeInteger(size) && size >= blockSizeMin && size <= blockSizeMax && (size & (size - 1)) === 0;
}

/** A path inside the replicated directory, relative to it; a trailing / is dropped. */
export function parseRelativePath(text: string): Parsed<string> {
  const trimmed = text.trim();
  const path = trimmed.endsWith("/") ? trimmed.slice(0, -1) : trimmed;
  const expected = "a path relative to the replicated directory, such as tmp or logs/app.log (no leading /, no //, no . or .. parts)";
  if (path.length > pathLengthMax) return { ok: false, expected: `a path of at most ${pathLengthMax} characters` };
  if (path === "" || path.startsWith("/") || path.includes("\0")) return { ok: false, expected };
  if (path.split("/").some((part) => part === "" || part === "." || part === "..")) return { ok: false, expected };
  return { ok: true, value: path };
}

/** A POSIX ERE over relative paths, a leading `!` inverting it; compiled as a JavaScript RegExp. */
export function parseExclusionRegex(text: string): Parsed<{ readonly regex: string; readonly inverted: boolean }> {
  const inverted = text.startsWith("!");
  const regex = inverted ? text.slice(1) : text;
  if (regex.length > regexLengthMax) return { ok: false, expected: `a regular expression of at most ${regexLengthMax} characters` };
  if (regex === "") return { ok: false, expected: "a non-empty regular expression: an empty one matches every path, and would exclude the whole tree from replication" };
  if (/\[:[a-z]+:\]/.test(regex)) {
    return { ok: false, expected: "a regular expression without POSIX bracket classes such as [:digit:]: tandem compiles the pattern as a JavaScript RegExp, which reads them differently; write [0-9] and the like" };
  }
  try {
    new RegExp(regex);
  } catch (error) {
    const why = error instanceof SyntaxError ? error.message : "it does not compile";
    return { ok: false, expected: `a regular expression (POSIX ERE; tandem compiles it as a JavaScript RegExp, which reads ordinary ERE the same way): ${why}` };
  }
  return { ok: true, value: { regex, inverted } };
}
