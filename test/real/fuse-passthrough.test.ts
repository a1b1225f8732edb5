// The replicator's FUSE passthrough (native/fuse.ts, native/src/fuse-*.cc) against the file
// system underneath it. Every step runs twice: through the mount, and on a plain reference
// directory beside it; results (data, attributes, error codes) must be the same, and after
// the unmount the directory that was mounted over must hold exactly what the reference
// holds (kinds, sizes, modes, owners, bytes, link targets). Steps: reading what was there
// before the mount; create, write, append, positioned writes, truncate; rename over files and
// directories; unlink (also of an open file); mkdir and rmdir; symlinks; chmod; fsync; a
// 64 MiB file; listings; the errors ENOENT, EEXIST, ENOTEMPTY, EISDIR, ENOTDIR; other
// processes writing through the mount, one as an unprivileged user (its files are its own,
// and the kernel refuses what its permissions do not allow; its write to a set-user-ID file
// clears the bit, its truncate of a set-group-ID file that one); extended attributes, their
// errors, and the kernel asking for a file's security.capability once, not at each write.
// Then the counters, the
// unmount's refusal while a file is open, and a mount whose process is killed with SIGKILL.
//
// It needs root and /dev/fuse and fails, never skips, without them (as .ci/run provides:
// root, Debian's fuse3 and libfuse3-dev, the addon built by `npm ci`).

import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  appendFileSync, chmodSync, chownSync, closeSync, existsSync, fdatasyncSync, fsyncSync, ftruncateSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync,
  readFileSync, readlinkSync, readSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuseBinding, fuseUnavailable, mount, type FuseMount } from "../../native/fuse.ts";

const nobodyUid = 65534;
const nobodyGid = 65534;
const largeFileSize = 64 * 1024 * 1024;
const chunkSize = 1024 * 1024;
const fuseModule = fileURLToPath(new URL("../../native/fuse.ts", import.meta.url));

let scratch = "";
/** Mounted over during the test; compared with `reference` after the unmount. */
let mounted = "";
/** A plain directory that gets the same operations. */
let reference = "";
let fuse: FuseMount | null = null;
const leftMounts = new Set<string>();

/** The two roots, the mount first. */
function roots(): readonly [string, string] {
  return [mounted, reference];
}

/** Runs `step` on both roots and expects the same outcome ("ok" or an errno code). */
function same(what: string, step: (root: string) => unknown): unknown {
  const [viaMount, viaDisk] = roots().map((root) => outcome(() => step(root)));
  expect(viaMount, what).toEqual(viaDisk);
  return viaMount;
}

function outcome(step: () => unknown): unknown {
  try {
    const value = step();
    return value === undefined ? "ok" : value;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === undefined) throw error;
    return code;
  }
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Kind, permission bits, owner, size and content (or target) of everything under `root`. */
function tree(root: string, relative = ""): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const name of readdirSync(join(root, relative)).sort()) {
    const path = relative === "" ? name : `${relative}/${name}`;
    const status = lstatSync(join(root, path));
    const owner = `${status.uid}:${status.gid} ${(status.mode & 0o7777).toString(8)}`;
    if (status.isSymbolicLink()) entries[path] = `symlink -> ${readlinkSync(join(root, path))} ${status.uid}:${status.gid}`;
    else if (status.isDirectory()) {
      entries[path] = `dir ${owner}`;
      Object.assign(entries, tree(root, path));
    } else entries[path] = `file ${owner} ${status.size} ${sha256(readFileSync(join(root, path)))}`;
    const attributes = fuseBinding().xattrs(join(root, path));
    if (typeof attributes !== "number" && attributes.length > 0) entries[path] += ` xattrs ${attributes.map(([name, bytes]) => `${name}=${Buffer.from(bytes).toString("hex")}`).sort().join(",")}`;
  }
  return entries;
}

function isMounted(dir: string): boolean {
  return readFileSync("/proc/mounts", "utf8").split("\n").some((line) => line.split(" ")[1] === dir);
}

/** Runs `command` with `args`; resolves with its exit code and output. */
function run(command: string, args: readonly string[], options: { uid?: number; gid?: number } = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (data: Buffer) => (output += data.toString()));
    child.stderr.on("data", (data: Buffer) => (output += data.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

/** Lays out the same files in both roots. */
function seed(root: string): void {
  writeFileSync(join(root, "existing.txt"), "there before the mount\n");
  mkdirSync(join(root, "docs"));
  writeFileSync(join(root, "docs", "blob.bin"), seedBlob);
  mkdirSync(join(root, "shared"), { mode: 0o777 });
  chmodSync(join(root, "shared"), 0o777);
  writeFileSync(join(root, "shared", "root-only.txt"), "root's\n", { mode: 0o644 });
  chmodSync(join(root, "shared", "root-only.txt"), 0o644);
  symlinkSync("docs/blob.bin", join(root, "blob-link"));
  // Set-user-ID and writable by all: a write by another user must clear the bit.
  writeFileSync(join(root, "shared", "setuid.bin"), "setuid\n");
  chmodSync(join(root, "shared", "setuid.bin"), 0o4777);
  // Set-group-ID without group execute, of a group nobody is not in: the kernel clears it too.
  writeFileSync(join(root, "shared", "setgid.bin"), "setgid\n");
  chmodSync(join(root, "shared", "setgid.bin"), 0o2767);
}
const seedBlob = randomBytes(100_000);

beforeAll(() => {
  const unavailable = fuseUnavailable();
  if (unavailable !== null) {
    throw new Error(`the FUSE passthrough test cannot run: ${unavailable.message} (it runs as root with /dev/fuse, as .ci/run provides; it never skips)`);
  }
  scratch = mkdtempSync(join(tmpdir(), "tandem-fuse-"));
  // The unprivileged child must be able to walk down to shared/.
  chmodSync(scratch, 0o755);
  mounted = join(scratch, "mounted");
  reference = join(scratch, "reference");
  for (const root of roots()) {
    mkdirSync(root, { mode: 0o755 });
    seed(root);
  }
  fuse = mount(mounted);
  leftMounts.add(fuse.dir);
});

afterAll(() => {
  // A failed test may leave a mount: detach it lazily so that nothing stays behind.
  try {
    fuse?.unmount({ force: true });
  } finally {
    for (const dir of leftMounts) {
      if (isMounted(dir)) spawnSync("umount", ["-l", dir], { stdio: "ignore" });
    }
    if (scratch !== "" && [...leftMounts].every((dir) => !isMounted(dir))) rmSync(scratch, { recursive: true, force: true });
  }
});

describe("a FUSE passthrough mounted over a directory", () => {
  it("is a FUSE mount of its own over the directory, and serves what was there before", () => {
    expect(isMounted(mounted), "mounted over the directory").toBe(true);
    expect(fuse!.dir).toBe(mounted);
    expect(fuse!.stats().mounted).toBe(true);
    expect(readFileSync(join(mounted, "existing.txt"), "utf8")).toBe("there before the mount\n");
    expect(sha256(readFileSync(join(mounted, "docs", "blob.bin")))).toBe(sha256(seedBlob));
    expect(sha256(readFileSync(join(mounted, "blob-link")))).toBe(sha256(seedBlob));
    expect(fuseBinding().libfuseVersion).toBeGreaterThanOrEqual(312);
  });

  it("creates, writes, appends, writes at offsets and truncates like the disk underneath", () => {
    same("create", (root) => writeFileSync(join(root, "new.txt"), "first line\n"));
    same("append", (root) => appendFileSync(join(root, "new.txt"), "appended\n"));
    same("exclusive create of an existing file", (root) => writeFileSync(join(root, "new.txt"), "x", { flag: "wx" }));
    same("positioned writes, one past the end", (root) => {
      const fd = openSync(join(root, "sparse.bin"), "w+");
      try {
        writeSync(fd, Buffer.from("middle"), 0, 6, 4096);
        writeSync(fd, Buffer.from("start"), 0, 5, 0);
        writeSync(fd, Buffer.from("past the end"), 0, 12, 10_000);
        const back = Buffer.alloc(16);
        readSync(fd, back, 0, 16, 4094);
        return back.toString("hex");
      } finally {
        closeSync(fd);
      }
    });
    same("truncate a path, longer then shorter", (root) => {
      truncateSync(join(root, "new.txt"), 100);
      truncateSync(join(root, "new.txt"), 5);
      return readFileSync(join(root, "new.txt"), "utf8");
    });
    same("ftruncate an open file", (root) => {
      const fd = openSync(join(root, "sparse.bin"), "r+");
      ftruncateSync(fd, 4100);
      closeSync(fd);
      return statSync(join(root, "sparse.bin")).size;
    });
    same("read what was written", (root) => sha256(readFileSync(join(root, "sparse.bin"))));
    same("O_TRUNC on open", (root) => {
      writeFileSync(join(root, "existing.txt"), "rewritten\n");
      return readFileSync(join(root, "existing.txt"), "utf8");
    });
  });

  it("renames files and directories, over existing ones too, with the disk's errors", () => {
    same("rename", (root) => renameSync(join(root, "new.txt"), join(root, "renamed.txt")));
    same("rename over an existing file", (root) => {
      writeFileSync(join(root, "victim.txt"), "to be replaced");
      renameSync(join(root, "renamed.txt"), join(root, "victim.txt"));
      return readFileSync(join(root, "victim.txt"), "utf8");
    });
    same("the old name is gone", (root) => readFileSync(join(root, "renamed.txt")));
    same("rename into a directory", (root) => renameSync(join(root, "victim.txt"), join(root, "docs", "moved.txt")));
    same("rename a directory over an empty one", (root) => {
      mkdirSync(join(root, "empty"));
      mkdirSync(join(root, "full"));
      writeFileSync(join(root, "full", "inside"), "x");
      renameSync(join(root, "full"), join(root, "empty"));
      return readdirSync(join(root, "empty"));
    });
    same("rename a directory over a non-empty one: ENOTEMPTY", (root) => {
      mkdirSync(join(root, "other"));
      writeFileSync(join(root, "other", "file"), "y");
      renameSync(join(root, "other"), join(root, "empty"));
    });
    same("rename a file over a directory: EISDIR", (root) => renameSync(join(root, "existing.txt"), join(root, "docs")));
    same("rename a missing file: ENOENT", (root) => renameSync(join(root, "missing"), join(root, "whatever")));
  });

  it("unlinks, also a file still open, and makes and removes directories, with the disk's errors", () => {
    same("unlink an open file; its descriptor still reads it", (root) => {
      writeFileSync(join(root, "open-then-unlinked"), "still readable");
      const fd = openSync(join(root, "open-then-unlinked"), "r");
      try {
        unlinkSync(join(root, "open-then-unlinked"));
        const back = Buffer.alloc(14);
        readSync(fd, back, 0, 14, 0);
        return back.toString();
      } finally {
        closeSync(fd);
      }
    });
    same("unlink a missing file: ENOENT", (root) => unlinkSync(join(root, "open-then-unlinked")));
    same("read a missing file: ENOENT", (root) => readFileSync(join(root, "nothing-here")));
    same("mkdir, nested", (root) => {
      mkdirSync(join(root, "a", "b", "c"), { recursive: true });
    });
    same("mkdir an existing directory: EEXIST", (root) => mkdirSync(join(root, "a")));
    same("rmdir a non-empty directory: ENOTEMPTY", (root) => rmdirSync(join(root, "a")));
    same("rmdir a file: ENOTDIR", (root) => rmdirSync(join(root, "existing.txt")));
    same("rmdir an empty directory", (root) => rmdirSync(join(root, "a", "b", "c")));
    same("unlink a directory: EISDIR", (root) => unlinkSync(join(root, "a")));
    same("the directory is gone", (root) => readdirSync(join(root, "a")));
  });

  it("makes and reads symlinks, changes modes and syncs files and directories", () => {
    same("symlink, relative and absolute-looking targets", (root) => {
      symlinkSync("existing.txt", join(root, "link"));
      symlinkSync("/nowhere/at/all", join(root, "dangling"));
      return [readlinkSync(join(root, "link")), readlinkSync(join(root, "dangling")), readFileSync(join(root, "link"), "utf8")];
    });
    same("a symlink is a symlink", (root) => lstatSync(join(root, "link")).isSymbolicLink());
    same("following a dangling link: ENOENT", (root) => readFileSync(join(root, "dangling")));
    same("symlink over an existing name: EEXIST", (root) => symlinkSync("x", join(root, "link")));
    same("chmod", (root) => {
      chmodSync(join(root, "existing.txt"), 0o600);
      chmodSync(join(root, "docs"), 0o750);
      return [statSync(join(root, "existing.txt")).mode & 0o7777, statSync(join(root, "docs")).mode & 0o7777];
    });
    same("chown", (root) => {
      chownSync(join(root, "docs", "moved.txt"), nobodyUid, nobodyGid);
      return statSync(join(root, "docs", "moved.txt")).uid;
    });
    same("fsync and fdatasync a file, fsync a directory", (root) => {
      const fd = openSync(join(root, "synced.txt"), "w");
      writeSync(fd, "durable");
      fdatasyncSync(fd);
      fsyncSync(fd);
      closeSync(fd);
      const dirFd = openSync(join(root, "docs"), "r");
      fsyncSync(dirFd);
      closeSync(dirFd);
    });
  });

  it("lists directories as the disk does", () => {
    same("names", (root) => readdirSync(root).sort());
    same("kinds", (root) =>
      readdirSync(root, { withFileTypes: true })
        .map((entry) => `${entry.name}:${entry.isDirectory() ? "d" : entry.isSymbolicLink() ? "l" : entry.isFile() ? "f" : "?"}`)
        .sort(),
    );
    same("a directory of 500 entries", (root) => {
      mkdirSync(join(root, "many"));
      for (let index = 0; index < 500; index++) writeFileSync(join(root, "many", `entry-${index}`), String(index));
      return readdirSync(join(root, "many")).length;
    });
  });

  it("writes a 64 MiB file in 1 MiB writes and reads it back identical", () => {
    const chunk = randomBytes(chunkSize);
    const expected = createHash("sha256");
    for (const root of roots()) {
      const fd = openSync(join(root, "large.bin"), "w");
      for (let offset = 0; offset < largeFileSize; offset += chunkSize) {
        // Each chunk differs (its index in front), so that a misplaced one shows.
        chunk.writeUInt32BE(offset / chunkSize, 0);
        writeSync(fd, chunk);
        if (root === mounted) expected.update(chunk);
      }
      fsyncSync(fd);
      closeSync(fd);
    }
    const wanted = expected.digest("hex");
    const fd = openSync(join(mounted, "large.bin"), "r");
    const back = createHash("sha256");
    const buffer = Buffer.alloc(chunkSize);
    let total = 0;
    for (let count = readSync(fd, buffer); count > 0; count = readSync(fd, buffer)) {
      back.update(buffer.subarray(0, count));
      total += count;
    }
    closeSync(fd);
    expect(total).toBe(largeFileSize);
    expect(back.digest("hex")).toBe(wanted);
    expect(sha256(readFileSync(join(reference, "large.bin")))).toBe(wanted);
  });

  it("serves other processes: a Node child's fs calls, and an unprivileged user's shell", async () => {
    const script = [
      "const fs = require('node:fs'); const path = require('node:path'); const root = process.argv[1];",
      "fs.mkdirSync(path.join(root, 'child'));",
      "for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(root, 'child', 'f' + i), 'child ' + i);",
      "fs.appendFileSync(path.join(root, 'child', 'f0'), ' more');",
      "fs.renameSync(path.join(root, 'child', 'f1'), path.join(root, 'child', 'g1'));",
      "fs.unlinkSync(path.join(root, 'child', 'f2'));",
      "console.log(fs.readdirSync(path.join(root, 'child')).length);",
    ].join("\n");
    for (const root of roots()) {
      const result = await run(process.execPath, ["-e", script, root]);
      expect(result, `node child on ${root}`).toEqual({ code: 0, output: "49\n" });
    }
    // As nobody: a file of its own in the world-writable directory, and refusals where the
    // permissions say no (the kernel checks them: default_permissions).
    const shell = [
      'printf mine > "$1/shared/own.txt" && echo created',
      'mkdir "$1/shared/own-dir" && echo mkdir',
      'ln -s own.txt "$1/shared/own-link" && echo symlink',
      '(printf x >> "$1/shared/root-only.txt") 2>/dev/null || echo refused-write',
      '(printf x > "$1/not-shared.txt") 2>/dev/null || echo refused-create',
      '(cat "$1/existing.txt") 2>/dev/null || echo refused-read',
      'printf more >> "$1/shared/setuid.bin" && echo wrote-setuid',
      'truncate -s 2 "$1/shared/setgid.bin" && echo cut-setgid',
    ].join("\n");
    const outputs: string[] = [];
    for (const root of roots()) {
      const result = await run("/bin/sh", ["-c", shell, "sh", root], { uid: nobodyUid, gid: nobodyGid });
      expect(result.code, `shell as nobody on ${root}: ${result.output}`).toBe(0);
      outputs.push(result.output);
    }
    expect(outputs[0]).toBe("created\nmkdir\nsymlink\nrefused-write\nrefused-create\nrefused-read\nwrote-setuid\ncut-setgid\n");
    expect(outputs[0]).toBe(outputs[1]);
    for (const name of ["own.txt", "own-dir", "own-link"]) {
      const status = lstatSync(join(mounted, "shared", name));
      expect(`${status.uid}:${status.gid}`, `${name} belongs to its creator`).toBe(`${nobodyUid}:${nobodyGid}`);
    }
    expect(statSync(join(mounted, "shared", "setuid.bin")).mode & 0o7777, "another user's write cleared set-user-ID").toBe(0o777);
    for (const root of roots()) expect(statSync(join(root, "shared", "setgid.bin")).mode & 0o7777, `another user's truncate cleared set-group-ID on ${root}`).toBe(0o767);
  });

  it("clears a set-user-ID bit given while another user's writer had the file open", async () => {
    // The replicator remembers per open file that it has no set-ID bits; a chmod must undo that.
    const shell = 'exec 3>>"$1/shared/late.bin" && printf a >&3 && : > "$1/shared/late.ready" && while [ ! -e "$1/shared/late.go" ]; do sleep 0.01; done && printf b >&3';
    const writers = roots().map(async (root) => {
      writeFileSync(join(root, "shared", "late.bin"), "");
      chmodSync(join(root, "shared", "late.bin"), 0o666);
      const writer = run("/bin/sh", ["-c", shell, "sh", root], { uid: nobodyUid, gid: nobodyGid });
      for (let waited = 0; !existsSync(join(root, "shared", "late.ready")); waited += 10) {
        expect(waited, `the writer on ${root} started`).toBeLessThan(10_000);
        await sleep(10);
      }
      chmodSync(join(root, "shared", "late.bin"), 0o4777);
      writeFileSync(join(root, "shared", "late.go"), "");
      return writer;
    });
    for (const writer of await Promise.all(writers)) expect(await writer).toEqual({ code: 0, output: "" });
    for (const root of roots()) {
      expect(readFileSync(join(root, "shared", "late.bin"), "utf8")).toBe("ab");
      expect(statSync(join(root, "shared", "late.bin")).mode & 0o7777, `on ${root}`).toBe(0o777);
    }
  });

  it("keeps extended attributes as the disk does, with its errors", () => {
    const { setXattr, removeXattr, xattrs } = fuseBinding();
    const value = (text: string) => new TextEncoder().encode(text);
    const listed = (at: string) => {
      const found = xattrs(at);
      return typeof found === "number" ? found : found.map(([name, bytes]) => `${name}=${Buffer.from(bytes).toString()}`).sort();
    };
    same("set on a file and a directory, replaced, listed", (root) => [
      setXattr(join(root, "existing.txt"), "user.a", value("one"), 0),
      setXattr(join(root, "existing.txt"), "user.b", value(""), 0),
      setXattr(join(root, "docs"), "trusted.t", value("root's"), 0),
      setXattr(join(root, "existing.txt"), "user.a", value("two"), 2),
      listed(join(root, "existing.txt")),
      listed(join(root, "docs")),
    ]);
    same("removed; the errors of create, replace, remove, a namespace, a symlink, a missing path", (root) => [
      removeXattr(join(root, "existing.txt"), "user.b"),
      setXattr(join(root, "existing.txt"), "user.a", value("x"), 1),
      setXattr(join(root, "existing.txt"), "user.none", value("x"), 2),
      removeXattr(join(root, "existing.txt"), "user.none"),
      setXattr(join(root, "existing.txt"), "bogus.a", value("x"), 0),
      setXattr(join(root, "link"), "user.a", value("x"), 0),
      setXattr(join(root, "missing"), "user.a", value("x"), 0),
      listed(join(root, "existing.txt")),
    ]);
  });

  it("asks for a file's security.capability at its first write, not at every write", () => {
    const before = fuse!.stats().operations.getxattr;
    const fd = openSync(join(mounted, "capability-probe.bin"), "w");
    for (let index = 0; index < 200; index++) writeSync(fd, Buffer.alloc(4096, index), 0, 4096, index * 4096);
    closeSync(fd);
    // Without FUSE_HANDLE_KILLPRIV_V2 (fuse-kernel-io.h) the kernel asked 200 times.
    expect(fuse!.stats().operations.getxattr - before).toBeLessThanOrEqual(1);
    unlinkSync(join(mounted, "capability-probe.bin"));
  });

  it("counts operations and bytes", () => {
    const stats = fuse!.stats();
    expect(stats.mounted).toBe(true);
    expect(stats.bytesWritten).toBeGreaterThanOrEqual(largeFileSize);
    expect(stats.bytesRead).toBeGreaterThan(0);
    for (const kind of ["create", "write", "read", "rename", "unlink", "mkdir", "rmdir", "symlink", "readlink", "chmod", "chown", "truncate", "fsync", "fsyncdir", "readdir", "setxattr", "getxattr", "listxattr", "removexattr"] as const) {
      expect(stats.operations[kind], kind).toBeGreaterThan(0);
    }
    expect(stats.errors, "the refused operations were counted").toBeGreaterThan(0);
    expect(fuseBinding().modifyingKinds).toEqual(expect.arrayContaining(["create", "write", "rename", "unlink", "fsync"]));
    expect(fuseBinding().modifyingKinds).not.toContain("read");
  });

  it("refuses to unmount while a file is open, then unmounts, idempotently", () => {
    const fd = openSync(join(mounted, "existing.txt"), "r");
    let refused: unknown = null;
    try {
      fuse!.unmount();
    } catch (error) {
      refused = error;
    } finally {
      closeSync(fd);
    }
    expect((refused as { code?: string } | null)?.code).toBe("EBUSY");
    expect(isMounted(mounted)).toBe(true);
    fuse!.unmount();
    fuse!.unmount();
    expect(isMounted(mounted)).toBe(false);
    expect(fuse!.stats().mounted).toBe(false);
  });

  it("left in the directory underneath exactly what the reference directory holds", () => {
    expect(isMounted(mounted)).toBe(false);
    const underneath = tree(mounted);
    expect(underneath["large.bin"]).toBeDefined();
    expect(underneath["shared/own.txt"]).toMatch(/^file 65534:65534 /);
    expect(underneath).toEqual(tree(reference));
  });
});

describe("a FUSE mount whose process dies", () => {
  it("is detached after SIGKILL by libfuse's auto_unmount helper", async () => {
    const dir = join(scratch, "killed");
    mkdirSync(dir);
    writeFileSync(join(dir, "survivor.txt"), "still here");
    leftMounts.add(dir);
    const holder = spawn(process.execPath, ["--input-type=module", "-e", `import { mount } from ${JSON.stringify(fuseModule)}; mount(${JSON.stringify(dir)}); console.log("mounted"); setInterval(() => {}, 1000);`], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise((resolve) => holder.on("exit", resolve));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on("data", (data: Buffer) => data.toString().includes("mounted") && resolve());
      holder.on("exit", (code) => reject(new Error(`the mounting process exited with ${code} before mounting`)));
    });
    expect(isMounted(dir)).toBe(true);
    holder.kill("SIGKILL");
    await exited;
    let waitedMs = 0;
    while (isMounted(dir) && waitedMs < 5_000) {
      await sleep(50);
      waitedMs += 50;
    }
    expect(isMounted(dir), "detached within 5 s").toBe(false);
    expect(readFileSync(join(dir, "survivor.txt"), "utf8")).toBe("still here");
  });
});
