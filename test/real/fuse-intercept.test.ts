// The replicator's FUSE mount in intercept and read-only modes (native/src/fuse-*.cc):
// every change an application makes through the mount reaches JavaScript as the core's
// DiskOp (paths relative to the root, owners of new paths, the written bytes), and the
// application gets exactly what JavaScript answers, errors included; here the answer comes
// from applying the op with the real disk port (drivers/real/disk.ts) through the mount's
// directory handle, as the mirror does. Read-only mode refuses every change with EROFS and
// still serves reads. An operation nobody answers is answered EIO when the mount is
// unmounted with force. The applications are child processes (a shell, a Node script), as
// in production: I/O through the mount from the thread that answers would wait for itself.
//
// It needs root and /dev/fuse and fails, never skips, without them.

import { constants as osConstants, tmpdir } from "node:os";
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { describeOp, pathsOf, type DiskOp, type DiskResult } from "../../core/mirror/disk-ops.ts";
import type { RealDisk } from "../../drivers/real/disk.ts";
import { mount, type FuseMount } from "../../native/fuse.ts";
import { diskUnder, requireFuse, shell } from "./fuse-kit.ts";

const nobody = 65534;

let scratch = "";
const mounts: FuseMount[] = [];

requireFuse();

afterEach(() => {
  for (const fuse of mounts.splice(0)) fuse.unmount({ force: true });
  if (scratch !== "") rmSync(scratch, { recursive: true, force: true });
  scratch = "";
});

function freshDir(): string {
  scratch = mkdtempSync(join(tmpdir(), "tandem-intercept-"));
  const dir = join(scratch, "tree");
  mkdirSync(dir);
  mkdirSync(join(scratch, "state"));
  return dir;
}


function errnoOf(result: DiskResult): number {
  return result === null ? 0 : osConstants.errno[result];
}

/** A mount over `dir` that applies each intercepted op with the real disk port (or answers
 *  what `answer` returns instead) and records it. */
function interceptingMount(dir: string, answer?: (op: DiskOp) => DiskResult | "never" | "apply", excluded?: readonly string[]): { fuse: FuseMount; ops: DiskOp[] } {
  const ops: DiskOp[] = [];
  let disk: RealDisk<null> | null = null;
  const fuse = mount(dir, {
    mode: "intercept",
    ...(excluded === undefined ? {} : { excluded }),
    intercept: (id, op) => {
      ops.push(op);
      const forced = answer?.(op) ?? "apply";
      if (forced === "never") return;
      if (forced !== "apply") {
        fuse.answer(id, errnoOf(forced));
        return;
      }
      disk!.apply(op, (result) => fuse.answer(id, errnoOf(result)));
    },
  });
  mounts.push(fuse);
  disk = diskUnder(fuse, join(scratch, "state"));
  return { fuse, ops };
}

describe("a FUSE mount that intercepts", () => {
  it("hands every change to JavaScript as a DiskOp and answers the application what it answered", async () => {
    const dir = freshDir();
    const { fuse, ops } = interceptingMount(dir);
    const script = [
      "mkdir d",
      "printf hello > d/f",
      "printf XY | dd of=d/f bs=2 seek=3 oflag=seek_bytes conv=notrunc status=none",
      "mv d/f d/g",
      "ln -s g d/l",
      "chmod 640 d/g",
      "truncate -s 4 d/g",
      "chown 65534:65534 d/g",
      "mkdir e && rmdir e",
      "rm d/l",
      "sync d/g",
    ].join(" && ");
    expect(await shell(dir, script)).toEqual({ code: 0, stderr: "" });
    const described = ops.map(describeOp);
    expect(described).toEqual([
      "mkdir d",
      "create d/f",
      "write d/f @0+5",
      "write d/f @3+2",
      "rename d/f d/g",
      "symlink d/l -> g",
      "setattr d/g",
      "truncate d/g 4",
      "chown d/g",
      "mkdir e",
      "rmdir e",
      "unlink d/l",
      "fsync d/g",
    ]);
    expect(ops[0]).toMatchObject({ kind: "mkdir", path: "d", owner: { uid: 0, gid: 0 } });
    expect(ops[2]).toMatchObject({ kind: "write", offset: 0, data: new Uint8Array(Buffer.from("hello")) });
    expect(ops[6]).toMatchObject({ kind: "setattr", mode: 0o640 });
    expect(ops[8]).toMatchObject({ kind: "chown", uid: nobody, gid: nobody });
    expect(fuse.stats()).toMatchObject({ intercepted: ops.length, waiting: 0 });
    fuse.unmount();
    mounts.splice(0);
    expect(readFileSync(join(dir, "d/g"), "utf8")).toBe("helX");
    expect(lstatSync(join(dir, "d/g"))).toMatchObject({ uid: nobody, gid: nobody });
    expect(lstatSync(join(dir, "d/g")).mode & 0o7777).toBe(0o640);
  });

  it("hands utimensat over as a times operation: a time given, now read once here, a time omitted", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "f"), "x");
    writeFileSync(join(dir, "g"), "y");
    const { ops } = interceptingMount(dir);
    const before = Date.now() / 1000;
    // A time given (touch -d), both set to now (touch), one left alone (touch -m).
    expect(await shell(dir, "touch -d '2001-02-03 04:05:06.123456789 UTC' f && touch g && touch -m -d '@1000000000' g")).toEqual({ code: 0, stderr: "" });
    const after = Date.now() / 1000;
    const times = ops.filter((op): op is Extract<DiskOp, { kind: "times" }> => op.kind === "times");
    expect(times.map((op) => op.path)).toEqual(["f", "g", "g"]);
    expect(times[0]).toMatchObject({ atime: { s: 981173106, ns: 123456789 }, mtime: { s: 981173106, ns: 123456789 } });
    // "now" comes resolved, the same for both times.
    expect(times[1]!.atime).toEqual(times[1]!.mtime);
    expect(times[1]!.atime!.s).toBeGreaterThanOrEqual(Math.floor(before));
    expect(times[1]!.atime!.s).toBeLessThanOrEqual(Math.ceil(after));
    expect(times[2]).toMatchObject({ atime: null, mtime: { s: 1000000000, ns: 0 } });
    // Applied underneath by the real disk port, to the nanosecond: the access time kept, the modification time set.
    const g = lstatSync(join(dir, "g"), { bigint: true });
    expect(g.mtimeNs).toBe(1000000000n * 1000000000n);
    expect(g.atimeNs).toBe(BigInt(times[1]!.atime!.s) * 1000000000n + BigInt(times[1]!.atime!.ns));
    const f = lstatSync(join(dir, "f"), { bigint: true });
    expect(f.mtimeNs).toBe(981173106123456789n);
  });

  it("gives a new path the owner of the process that made it", async () => {
    const dir = freshDir();
    const { ops } = interceptingMount(dir);
    expect(await shell(dir, "mkdir -m 777 open")).toMatchObject({ code: 0 });
    expect(await shell(dir, "printf x > open/mine && ln -s mine open/link", nobody)).toEqual({ code: 0, stderr: "" });
    expect(ops.filter((op) => op.kind === "create" || op.kind === "symlink")).toMatchObject([
      { kind: "create", path: "open/mine", owner: { uid: nobody, gid: nobody } },
      { kind: "symlink", path: "open/link", target: "mine", owner: { uid: nobody, gid: nobody } },
    ]);
    expect(lstatSync(join(dir, "open/mine"))).toMatchObject({ uid: nobody, gid: nobody });
    expect(readlinkSync(join(dir, "open/link"))).toBe("mine");
  });

  it("gives a new directory under a set-group-ID one the bit and the group, as a local disk does", async () => {
    const dir = freshDir();
    const reference = join(scratch, "reference");
    mkdirSync(reference);
    interceptingMount(dir);
    const script = `mkdir -m 2775 team && chown 0:${nobody} team && mkdir team/sub && touch team/f && mkdir -m 0700 team/private`;
    for (const root of [reference, dir]) expect(await shell(root, script)).toEqual({ code: 0, stderr: "" });
    for (const path of ["team", "team/sub", "team/f", "team/private"]) {
      const [want, got] = [reference, dir].map((root) => lstatSync(join(root, path)));
      expect(`${path} ${(got!.mode & 0o7777).toString(8)} ${got!.gid}`).toBe(`${path} ${(want!.mode & 0o7777).toString(8)} ${want!.gid}`);
    }
    expect(lstatSync(join(dir, "team")).mode & 0o7777).toBe(0o2775);
    expect(lstatSync(join(dir, "team/sub")).mode & 0o7777).toBe(0o2755);
  });

  it("applies changes of excluded paths itself, handing over only those that touch a replicated one", async () => {
    const dir = freshDir();
    mkdirSync(join(dir, "data"));
    const { fuse, ops } = interceptingMount(dir, undefined, ["tmp", "cache/deep"]);
    const local = [
      "mkdir -p tmp/a cache/deep/b",
      "printf one > tmp/a/f && printf more >> tmp/a/f && truncate -s 2 tmp/a/f && chmod 600 tmp/a/f",
      "mv tmp/a/f tmp/g && ln tmp/g tmp/h && ln -s g tmp/link && mkfifo tmp/fifo && setfattr -n user.x -v y tmp/g",
      "printf two > cache/deep/b/f && sync tmp/g && rm tmp/h && rmdir tmp/a",
      "touch -d @1000000000 tmp/g",
      "printf three > cache/shallow",
    ].join(" && ");
    expect(await shell(dir, local)).toEqual({ code: 0, stderr: "" });
    // Only cache and cache/shallow (not below cache/deep) reached the core.
    expect(new Set(ops.map((op) => `${op.kind} ${pathsOf(op).join(" ")}`))).toEqual(new Set(["mkdir cache", "create cache/shallow", "write cache/shallow"]));
    expect(fuse.stats().excludedOps).toBeGreaterThanOrEqual(14);
    expect(readFileSync(join(dir, "tmp/g"), "utf8")).toBe("on");
    expect((lstatSync(join(dir, "tmp/g")).mode & 0o777).toString(8)).toBe("600");
    expect(readlinkSync(join(dir, "tmp/link"))).toBe("g");
    expect(lstatSync(join(dir, "tmp/fifo")).isFIFO()).toBe(true);
    expect(readFileSync(join(dir, "cache/deep/b/f"), "utf8")).toBe("two");

    // Across the line: a name moved in or out, a second name: the core decides.
    ops.length = 0;
    expect(await shell(dir, "mv tmp/g data/g && mv data/g tmp/back && ln tmp/back data/x; mkfifo data/fifo; true")).toMatchObject({ code: 0 });
    expect(ops.map((op) => `${op.kind} ${pathsOf(op).join(" ")}`)).toEqual(["rename tmp/g data/g", "rename data/g tmp/back", "link tmp/back data/x"]);
  });

  it("applies a learned excluded path's writes itself, its changes of names still through the core", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "app.log"), "");
    const { fuse, ops } = interceptingMount(dir);
    fuse.exclude("app.log");
    expect(await shell(dir, "printf a >> app.log && printf b >> app.log && sync app.log && chmod 640 app.log && mv app.log app.log.1 && printf c > app.log")).toEqual({ code: 0, stderr: "" });
    expect(ops.map((op) => `${op.kind} ${pathsOf(op).join(" ")}`)).toEqual(["rename app.log app.log.1", "create app.log"]);
    expect(readFileSync(join(dir, "app.log.1"), "utf8")).toBe("ab");
    expect(readFileSync(join(dir, "app.log"), "utf8")).toBe("c");
    expect(fuse.stats().excludedOps).toBeGreaterThanOrEqual(4);
  });

  it("answers the application the error JavaScript gives, and changes nothing then", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "full"), "before");
    interceptingMount(dir, (op) => (op.kind === "write" ? "ENOSPC" : op.kind === "mkdir" ? "EIO" : "apply"));
    const write = await shell(dir, "printf more | dd of=full oflag=append conv=notrunc status=none");
    expect(write.code).not.toBe(0);
    expect(write.stderr).toContain("No space left on device");
    const mkdir = await shell(dir, "mkdir d");
    expect(mkdir.stderr).toContain("Input/output error");
    expect(readFileSync(join(dir, "full"), "utf8")).toBe("before");
  });

  it("hands a hard link over as a second name, read and written coherently through both", async () => {
    const dir = freshDir();
    const { ops } = interceptingMount(dir);
    // f read (its pages and attributes cached by the kernel), then written through g, then
    // read through f again at once: the write through g is there.
    const script = "printf abcdef > f && ln f g && cat f > /dev/null && printf XY | dd of=g bs=2 seek=1 conv=notrunc status=none && cat f > seen";
    expect(await shell(dir, script)).toEqual({ code: 0, stderr: "" });
    expect(ops.map(describeOp)).toEqual(expect.arrayContaining(["link f g", "write g @2+2"]));
    expect(readFileSync(join(dir, "seen"), "utf8")).toBe("abXYef");
    expect(lstatSync(join(dir, "f")).ino).toBe(lstatSync(join(dir, "g")).ino);
    const directory = await shell(dir, "mkdir d && ln d e");
    expect(directory.code).not.toBe(0);
    expect(ops.map(describeOp)).not.toContain("link d e");
  });

  it("hands extended attributes over as setxattr and removexattr, serving their reads itself", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "f"), "x");
    const { fuse, ops } = interceptingMount(dir);
    const script = "setfattr -n user.a -v one f && setfattr -n user.b -v 0x00ff f && setfattr -x user.b f && getfattr --absolute-names --only-values -n user.a f > seen";
    expect(await shell(dir, script)).toEqual({ code: 0, stderr: "" });
    const changes = ops.filter((op) => op.kind === "setxattr" || op.kind === "removexattr");
    expect(changes).toEqual([
      { kind: "setxattr", path: "f", name: "user.a", value: new Uint8Array(Buffer.from("one")) },
      { kind: "setxattr", path: "f", name: "user.b", value: new Uint8Array([0, 255]) },
      { kind: "removexattr", path: "f", name: "user.b" },
    ]);
    // getfattr's read reached the file system, not JavaScript (only the three changes did).
    expect(fuse.stats().operations.getxattr).toBeGreaterThan(0);
    expect(readFileSync(join(dir, "seen"), "utf8")).toBe("one");
    // XATTR_CREATE and XATTR_REPLACE travel as `how`; the disk's ENODATA reaches the caller.
    const python = `import os\ntry: os.setxattr('f', 'user.z', b'v', os.XATTR_REPLACE)\nexcept OSError as e: print(e.strerror)\nos.setxattr('f', 'user.c', b'v', os.XATTR_CREATE)`;
    expect(await shell(dir, `python3 -c "${python}" > replaced`)).toEqual({ code: 0, stderr: "" });
    expect(readFileSync(join(dir, "replaced"), "utf8")).toBe("No data available\n");
    expect(ops.filter((op) => op.kind === "setxattr").slice(2)).toMatchObject([{ name: "user.z", how: "replace" }, { name: "user.c", how: "create" }]);
  });

  it("opens the file when another creator won the race", async () => {
    const dir = freshDir();
    let handle = "";
    const { fuse, ops } = interceptingMount(dir, (op) => {
      if (op.kind !== "create" || op.path !== "raced") return "apply";
      // Another creator made it between the kernel's lookup and this create.
      writeFileSync(join(handle, "raced"), "theirs");
      return "EEXIST";
    });
    handle = `/proc/self/fd/${fuse.handleFd}`;
    // Without O_EXCL the existing file is opened (and, for O_TRUNC, truncated), as on a local disk.
    expect(await shell(dir, "printf mine > raced")).toEqual({ code: 0, stderr: "" });
    expect(ops.map(describeOp)).toEqual(expect.arrayContaining(["create raced", "truncate raced 0", "write raced @0+4"]));
    expect(readFileSync(join(handle, "raced"), "utf8")).toBe("mine");
    // With O_EXCL the application hears EEXIST.
    const exclusive = await shell(dir, "set -C; printf again > raced");
    expect(exclusive.code).not.toBe(0);
    expect(readFileSync(join(handle, "raced"), "utf8")).toBe("mine");
  });

  it("answers EIO to an operation still waiting when the mount is unmounted with force", async () => {
    const dir = freshDir();
    const { fuse } = interceptingMount(dir, (op) => (op.kind === "write" ? "never" : "apply"));
    const stuck = shell(dir, "printf x > f");
    for (let attempt = 0; attempt < 500 && fuse.stats().waiting === 0; attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(fuse.stats().waiting).toBe(1);
    fuse.unmount({ force: true });
    mounts.splice(0);
    const { code, stderr } = await stuck;
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/I\/O error|Input\/output error|Transport endpoint is not connected|Software caused connection abort/);
  });
});

describe("a read-only FUSE mount", () => {
  it("serves reads and refuses every change with EROFS, opens for writing included", async () => {
    const dir = freshDir();
    mkdirSync(join(dir, "d"));
    writeFileSync(join(dir, "d/f"), "kept");
    mounts.push(mount(dir, { mode: "readonly" }));
    expect(readFileSync(join(dir, "d/f"), "utf8")).toBe("kept");
    for (const script of ["printf x > d/new", "printf x >> d/f", "mkdir e", "rm d/f", "mv d/f d/g", "chmod 600 d/f", "touch d/f", "ln -s f d/l", "truncate -s 0 d/f"]) {
      const { code, stderr } = await shell(dir, script);
      expect(code, script).not.toBe(0);
      expect(stderr, script).toContain("Read-only file system");
    }
    expect(readFileSync(join(dir, "d/f"), "utf8")).toBe("kept");
  });

  it("shows at once what changed underneath (nothing cached)", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "f"), "one");
    const fuse = mount(dir, { mode: "readonly" });
    mounts.push(fuse);
    expect(readFileSync(join(dir, "f"), "utf8")).toBe("one");
    writeFileSync(`/proc/self/fd/${fuse.handleFd}/f`, "two, longer");
    expect(readFileSync(join(dir, "f"), "utf8")).toBe("two, longer");
  });
});
