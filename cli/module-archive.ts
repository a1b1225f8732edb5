// Module archives (`NAME.safe`): a zip of a module directory's contents (conf/, bin/), the
// form SafeKit ships modules in. No file I/O here: entries in, bytes out, and the reverse.
//
// Writing uses fflate. Reading walks the zip's central directory itself, because an
// archive is untrusted input that root installs, and fflate's unzip does not give what
// that needs: each entry's unix mode (executable bits, symlinks), every duplicate name
// (it keeps the last), and an inflate that stops at the declared size with the CRC
// checked (node:zlib's maxOutputLength and crc32 do both).

import { zipSync, type Zippable } from "fflate";
import { crc32, inflateRawSync } from "node:zlib";
import { assert } from "../core/assert.ts";

export type EntryKind = "file" | "directory" | "symlink";

export interface ArchiveEntry {
  /** Relative and `/`-separated, without a trailing slash: `bin/start_both`. */
  readonly path: string;
  readonly kind: EntryKind;
  /** Permission bits, 0o777 at most. */
  readonly mode: number;
  /** A file's contents or a symlink's target; empty for a directory. */
  readonly data: Uint8Array;
}

/** Bounds on what an archive may hold, so that a hostile one (a zip bomb) is refused before it fills memory or disk. */
export const entryCountMax = 4096;
export const totalSizeMax = 64 * 1024 * 1024;
export const pathLengthMax = 1024;

export type ArchiveErrorCode =
  | "ARCHIVE_NOT_ZIP"
  | "ARCHIVE_UNSUPPORTED"
  | "ARCHIVE_CORRUPT"
  | "ARCHIVE_TOO_LARGE"
  | "ARCHIVE_UNSAFE_PATH"
  | "ARCHIVE_DUPLICATE_ENTRY"
  | "ARCHIVE_UNSAFE_SYMLINK"
  | "ARCHIVE_NOT_A_MODULE";

/** An archive or module tree refused: an operating error, for the command to print. */
export class ArchiveError extends Error {
  override readonly name = "ArchiveError";
  readonly code: ArchiveErrorCode;
  /** The entry at fault, when there is one. */
  readonly entry: string | null;

  constructor(code: ArchiveErrorCode, entry: string | null, message: string) {
    super(entry === null ? message : `entry "${entry}": ${message}`);
    this.code = code;
    this.entry = entry;
  }
}

const unixOs = 3;
const typeBits: Readonly<Record<EntryKind, number>> = { file: 0o100000, directory: 0o040000, symlink: 0o120000 };
const typeMask = 0o170000;
const dosDirectoryBit = 0x10;
// fflate writes the DOS time from the Date's local fields: a local 1980-01-01 00:00 gives
// the same bytes in every time zone, so an export depends on the tree's contents alone.
const fixedTime = new Date(1980, 0, 1);

/** The zip of `entries`, sorted by path, with fixed timestamps: the same entries always give the same bytes. */
export function writeArchive(entries: readonly ArchiveEntry[]): Uint8Array {
  const files: Zippable = Object.create(null);
  for (const entry of [...entries].sort((a, b) => comparePaths(a.path, b.path))) {
    const name = entry.kind === "directory" ? `${entry.path}/` : entry.path;
    assert(!Object.hasOwn(files, name), `duplicate archive entry ${name}`);
    assert(entry.mode >= 0 && entry.mode <= 0o777, `mode of ${name} out of range`);
    files[name] = [entry.data, { os: unixOs, attrs: ((typeBits[entry.kind] | entry.mode) << 16) >>> 0, mtime: fixedTime }];
  }
  return zipSync(files);
}

/** Plain code-unit order, not the locale's, so that the order is the same on every machine. */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Checks the bounds as an archive or a tree grows; `path` is the entry that crossed one. */
export function checkLimits(entryCount: number, totalSize: number, path: string | null): void {
  if (entryCount > entryCountMax) throw new ArchiveError("ARCHIVE_TOO_LARGE", path, `more than ${entryCountMax} entries; a module is far smaller`);
  if (totalSize > totalSizeMax) throw new ArchiveError("ARCHIVE_TOO_LARGE", path, `more than ${totalSizeMax / 1024 / 1024} MiB uncompressed in all; a module is far smaller`);
}

const endSignature = 0x06054b50;
const centralSignature = 0x02014b50;
const localSignature = 0x04034b50;
const endSize = 22;
const commentSizeMax = 0xffff;

/**
 * The entries of a module archive, every one checked: a relative path without `..`, no
 * duplicate, sizes within bounds, data matching its CRC, and a conf/userconfig.xml.
 * Symlink targets are checked on disk by the caller, once all entries are written.
 */
export function readArchive(bytes: Uint8Array): ArchiveEntry[] {
  const read = boundedReader(bytes);
  const end = findEnd(bytes, read);
  if (read.u16(end + 4) !== 0 || read.u16(end + 6) !== 0) throw new ArchiveError("ARCHIVE_UNSUPPORTED", null, "a multi-volume zip; give the archive in one file");
  const count = read.u16(end + 10);
  let at = read.u32(end + 16);
  if (count === 0xffff || at === 0xffffffff) throw new ArchiveError("ARCHIVE_UNSUPPORTED", null, "a zip64 archive; a module is small enough for a plain zip");
  checkLimits(count, 0, null);
  const entries: ArchiveEntry[] = [];
  let totalSize = 0;
  for (let index = 0; index < count; index++) {
    if (read.u32(at) !== centralSignature) throw new ArchiveError("ARCHIVE_CORRUPT", null, `the central directory is damaged at byte ${at}`);
    const header = readCentralHeader(read, at);
    totalSize += header.size;
    checkLimits(index + 1, totalSize, header.name);
    entries.push(readEntry(read, header));
    at = header.next;
  }
  checkTree(entries);
  return entries;
}

interface CentralHeader {
  readonly name: string;
  readonly os: number;
  readonly flags: number;
  readonly method: number;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly externalAttributes: number;
  readonly localOffset: number;
  /** Where the next central directory record starts. */
  readonly next: number;
}

type BoundedReader = ReturnType<typeof boundedReader>;

/** Reads little-endian fields, refusing any that runs past the end (a truncated or forged archive). */
function boundedReader(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const within = (at: number, size: number) => {
    if (at < 0 || at + size > bytes.length) throw new ArchiveError("ARCHIVE_CORRUPT", null, `a record at byte ${at} runs past the end of the archive (truncated?)`);
  };
  return {
    u16: (at: number) => (within(at, 2), view.getUint16(at, true)),
    u32: (at: number) => (within(at, 4), view.getUint32(at, true)),
    slice: (at: number, size: number) => (within(at, size), bytes.subarray(at, at + size)),
  };
}

function findEnd(bytes: Uint8Array, read: BoundedReader): number {
  const earliest = Math.max(0, bytes.length - endSize - commentSizeMax);
  for (let at = bytes.length - endSize; at >= earliest; at--) {
    if (read.u32(at) === endSignature) return at;
  }
  throw new ArchiveError("ARCHIVE_NOT_ZIP", null, "not a zip archive (no end of central directory record)");
}

function readCentralHeader(read: BoundedReader, at: number): CentralHeader {
  const nameSize = read.u16(at + 28);
  const rawName = read.slice(at + 46, nameSize);
  return {
    name: decodeName(rawName),
    os: read.u16(at + 4) >> 8,
    flags: read.u16(at + 8),
    method: read.u16(at + 10),
    crc: read.u32(at + 16),
    compressedSize: read.u32(at + 20),
    size: read.u32(at + 24),
    externalAttributes: read.u32(at + 38),
    localOffset: read.u32(at + 42),
    next: at + 46 + nameSize + read.u16(at + 30) + read.u16(at + 32),
  };
}

function decodeName(raw: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    throw new ArchiveError("ARCHIVE_UNSAFE_PATH", new TextDecoder().decode(raw), "the name is not UTF-8");
  }
}

function readEntry(read: BoundedReader, header: CentralHeader): ArchiveEntry {
  const { name } = header;
  const path = checkPath(name);
  const kind = entryKind(header);
  if ((header.flags & 1) !== 0) throw new ArchiveError("ARCHIVE_UNSUPPORTED", name, "encrypted; export the module without a password");
  if (kind === "directory" && header.size !== 0) throw new ArchiveError("ARCHIVE_CORRUPT", name, "a directory entry that holds data");
  if (read.u32(header.localOffset) !== localSignature) throw new ArchiveError("ARCHIVE_CORRUPT", name, `no local header at byte ${header.localOffset}`);
  const dataOffset = header.localOffset + 30 + read.u16(header.localOffset + 26) + read.u16(header.localOffset + 28);
  const data = inflate(read.slice(dataOffset, header.compressedSize), header);
  if (kind === "symlink" && (data.length === 0 || data.length > pathLengthMax)) throw new ArchiveError("ARCHIVE_UNSAFE_SYMLINK", name, "a symlink with an empty or overlong target");
  const unixMode = header.os === unixOs ? (header.externalAttributes >>> 16) & 0o777 : 0;
  // Archives made without unix permissions (on Windows) still need executable scripts.
  const defaultMode = kind === "directory" || path.startsWith("bin/") ? 0o755 : 0o644;
  return { path, kind, mode: unixMode === 0 ? defaultMode : unixMode, data };
}

/** The entry's path without its trailing slash; refuses anything that could land outside the module. */
function checkPath(name: string): string {
  const path = name.endsWith("/") ? name.slice(0, -1) : name;
  const parts = path.split("/");
  const problem =
    path.startsWith("/") || /^[A-Za-z]:/.test(path) ? "an absolute path"
    : parts.includes("..") ? "a path that climbs out with '..'"
    : path.includes("\\") ? "a backslash in the path (a Windows separator)"
    : path.includes("\0") ? "a NUL byte in the path"
    : path === "" || parts.includes("") || parts.includes(".") ? "an empty or '.' part in the path"
    : path.length > pathLengthMax ? `a path longer than ${pathLengthMax} characters`
    : null;
  if (problem !== null) throw new ArchiveError("ARCHIVE_UNSAFE_PATH", name, `${problem}; entries must be relative paths inside the module`);
  return path;
}

function entryKind(header: CentralHeader): EntryKind {
  const type = header.os === unixOs ? (header.externalAttributes >>> 16) & typeMask : 0;
  if (header.name.endsWith("/") || type === typeBits.directory || (header.os !== unixOs && (header.externalAttributes & dosDirectoryBit) !== 0)) return "directory";
  if (type === typeBits.symlink) return "symlink";
  if (type !== 0 && type !== typeBits.file) throw new ArchiveError("ARCHIVE_UNSUPPORTED", header.name, "a device, fifo or socket; a module holds files, directories and symlinks");
  return "file";
}

function inflate(compressed: Uint8Array, header: CentralHeader): Uint8Array {
  let data: Uint8Array;
  if (header.method === 0) data = compressed;
  else if (header.method === 8) {
    try {
      // The cap makes a forged size harmless: inflating stops at what was declared.
      data = inflateRawSync(compressed, { maxOutputLength: Math.max(header.size, 1) });
    } catch (error) {
      const tooLarge = (error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE";
      throw new ArchiveError("ARCHIVE_CORRUPT", header.name, tooLarge ? `inflates to more than the ${header.size} bytes its header declares` : `cannot be inflated (${String(error)})`);
    }
  } else throw new ArchiveError("ARCHIVE_UNSUPPORTED", header.name, `compression method ${header.method}; only stored (0) and deflate (8) are read`);
  if (data.length !== header.size) throw new ArchiveError("ARCHIVE_CORRUPT", header.name, `holds ${data.length} bytes where its header declares ${header.size}`);
  if (crc32(data) !== header.crc) throw new ArchiveError("ARCHIVE_CORRUPT", header.name, "its data does not match its CRC");
  return data;
}

/** No path twice, nothing inside a file or a symlink, and the module's userconfig.xml at the root. */
function checkTree(entries: readonly ArchiveEntry[]): void {
  const byPath = new Map<string, ArchiveEntry>();
  for (const entry of entries) {
    if (byPath.has(entry.path)) throw new ArchiveError("ARCHIVE_DUPLICATE_ENTRY", entry.path, "appears twice in the archive");
    byPath.set(entry.path, entry);
  }
  for (const entry of entries) {
    const parts = entry.path.split("/");
    for (let depth = 1; depth < parts.length; depth++) {
      const parent = byPath.get(parts.slice(0, depth).join("/"));
      if (parent !== undefined && parent.kind !== "directory") throw new ArchiveError("ARCHIVE_DUPLICATE_ENTRY", entry.path, `lies inside ${parent.path}, which the archive also holds as a ${parent.kind}`);
    }
  }
  if (byPath.get("conf/userconfig.xml")?.kind !== "file") {
    const nested = entries.find((entry) => entry.path.endsWith("/conf/userconfig.xml"));
    const hint = nested === undefined ? "" : ` (found ${nested.path}: make the archive from inside the module's directory)`;
    throw new ArchiveError("ARCHIVE_NOT_A_MODULE", null, `no conf/userconfig.xml at the archive's root; a .safe holds a module directory's contents, conf/ and bin/${hint}`);
  }
}
