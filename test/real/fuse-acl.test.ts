// POSIX ACLs through the replicator's mount (native/src/fuse-passthrough.cc, "POSIX ACLs"):
// an application (a shell, as root with umask 022, and as nobody) sets ACLs with setfacl,
// creates files and directories under default ACLs, and is refused or allowed by named
// entries, exactly as in a plain reference directory beside the mount: same ACLs
// (getfacl), same modes, same refusals. What the mount handed to JavaScript, replayed on a
// second tree (what the secondary does), and the tree read and installed whole into an
// empty one (a full resync) give the same ACLs again. A file system inside the tree that
// keeps no ACLs (ramfs) is used as before.
//
// It needs root, /dev/fuse, setfacl and getfacl (Debian's acl), and a file system in
// tmpdir() that keeps ACLs; it fails, never skips, without them.

import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { DiskOp, DiskResult, PathSnapshot } from "../../core/mirror/disk-ops.ts";
import { RealDisk } from "../../drivers/real/disk.ts";
import { fuseBinding, mount, type FuseMount } from "../../native/fuse.ts";
import { diskUnder, requireFuse, shell } from "./fuse-kit.ts";

const nobody = 65534;
const blockSize = 64 * 1024;

let scratch = "";
const mounts: FuseMount[] = [];

requireFuse();

beforeAll(() => {
  for (const tool of ["setfacl", "getfacl"]) {
    const found = spawnSync("sh", ["-c", `command -v ${tool}`]);
    expect(found.status, `${tool} is needed (Debian's acl package; .ci/run installs it)`).toBe(0);
  }
  const probe = mkdtempSync(join(tmpdir(), "tandem-acl-probe-"));
  try {
    const set = spawnSync("setfacl", ["-m", "u:nobody:r", probe], { encoding: "utf8" });
    expect(set.status, `the file system under ${tmpdir()} must keep POSIX ACLs: ${set.stderr}`).toBe(0);
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
});

afterEach(() => {
  for (const fuse of mounts.splice(0)) fuse.unmount({ force: true });
  if (scratch !== "") rmSync(scratch, { recursive: true, force: true });
  scratch = "";
});

/** A fresh scratch directory with the named empty trees in it, all reachable by nobody. */
function trees<const Names extends readonly string[]>(...names: Names): { readonly [K in keyof Names]: string } {
  scratch = mkdtempSync(join(tmpdir(), "tandem-acl-"));
  chmodSync(scratch, 0o755);
  return names.map((name) => {
    const dir = join(scratch, name);
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    return dir;
  }) as { readonly [K in keyof Names]: string };
}

function errnoOf(result: DiskResult): number {
  return result === null ? 0 : osConstants.errno[result];
}

/** An intercepting mount over `dir` that applies each op with the real disk port, as the
 *  primary's core does, and records it. */
function interceptingMount(dir: string): { fuse: FuseMount; ops: DiskOp[] } {
  const ops: DiskOp[] = [];
  let disk: RealDisk<null> | null = null;
  const fuse = mount(dir, {
    mode: "intercept",
    intercept: (id, op) => {
      ops.push(op);
      disk!.apply(op, (result) => fuse.answer(id, errnoOf(result)));
    },
  });
  mounts.push(fuse);
  disk = diskUnder(fuse, join(scratch, "state-primary"));
  mkdirSync(join(scratch, "state-primary"), { recursive: true });
  return { fuse, ops };
}

function diskAt(root: string, state: string): RealDisk<null> {
  mkdirSync(join(scratch, state), { recursive: true });
  return new RealDisk<null>({
    root,
    metaFile: join(scratch, state, "meta.json"),
    preserveDir: join(scratch, state, "preserved"),
    codec: { encode: () => null, decode: () => null },
  });
}

function call<T>(run: (done: (result: T) => void) => void): Promise<T> {
  return new Promise((resolve) => run(resolve));
}

/** What `script` prints under /bin/sh in `cwd` (as `uid` when given); it must exit 0. A
 *  child process, never spawnSync: I/O through an intercepting mount waits for this thread. */
function output(cwd: string, script: string, uid?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", script], { cwd, stdio: ["ignore", "pipe", "pipe"], ...(uid === undefined ? {} : { uid, gid: uid }) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${script} in ${cwd}: exit ${code}: ${stderr}`))));
  });
}

/** Every path's ACLs and mode under `dir`, as getfacl and stat print them (the root excluded). */
function aclsOf(dir: string): Promise<string> {
  return output(dir, "find . -mindepth 1 | sort | while read -r p; do stat -c '%n %A %U:%G' \"$p\"; getfacl -p -c \"$p\"; done");
}

// As root, umask 022: default ACLs inherited by files and directories (group write kept:
// no umask under a default ACL), a named user denied on a world-readable file and allowed
// on a private one, a mask narrowed by chmod, an ACL removed, and a plain file the umask
// still shapes.
const asRoot = [
  "umask 022",
  "mkdir shared && setfacl -m u:nobody:rwx shared && setfacl -d -m u::rwx,g::rwx,o::r-x,u:nobody:rw- shared",
  "touch shared/file && mkdir shared/sub && touch shared/sub/deeper",
  "echo secret > denied && chmod 0644 denied && setfacl -m u:nobody:--- denied",
  "echo open > granted && chmod 0600 granted && setfacl -m u:nobody:r-- granted",
  "echo narrowed > narrowed && setfacl -m u:nobody:rw- narrowed && chmod g-w narrowed",
  "echo cleared > cleared && setfacl -m u:nobody:rw- cleared && setfacl -b cleared",
  "touch plain && mkdir plaindir",
].join(" && ");

// As nobody: what the ACLs allow and refuse, each step's exit code on one line.
const asNobody = [
  "cat denied > /dev/null 2>&1; echo denied-read $?",
  "cat granted > /dev/null 2>&1; echo granted-read $?",
  "echo more >> narrowed 2>/dev/null; echo narrowed-append $?",
  "touch shared/mine 2>/dev/null; echo shared-create $?",
  "echo x >> shared/file 2>/dev/null; echo inherited-append $?",
  "touch plaindir/nope 2>/dev/null; echo plaindir-create $?",
].join("; ");

function asNobodyIn(dir: string): Promise<string> {
  return output(dir, asNobody, nobody);
}

describe("POSIX ACLs through an intercepting mount", () => {
  it("are set, inherited and enforced as in a plain directory, and replayed alike on a second tree", async () => {
    const [mounted, reference, peer] = trees("tree", "reference", "peer");
    const { ops } = interceptingMount(mounted);

    expect(await shell(reference, asRoot)).toEqual({ code: 0, stderr: "" });
    expect(await shell(mounted, asRoot)).toEqual({ code: 0, stderr: "" });
    const expected = await aclsOf(reference);
    // The reference itself shows what is tested: inherited group write, the named entries.
    expect(expected).toContain("./shared/file -rw-rw-r-- root:root\nuser::rw-\nuser:nobody:rw-\n");
    expect(expected).toContain("./shared/sub drwxrwxr-x root:root\nuser::rwx\nuser:nobody:rw-\n");
    expect(expected).toContain("./plain -rw-r--r-- root:root\nuser::rw-\ngroup::r--\nother::r--\n");
    expect(await aclsOf(mounted)).toBe(expected);

    const refused = await asNobodyIn(reference);
    expect(refused).toContain("denied-read 1");
    expect(refused).toContain("granted-read 0");
    expect(await asNobodyIn(mounted)).toBe(refused);
    expect(await aclsOf(mounted)).toBe(await aclsOf(reference));

    // The ACLs reached JavaScript as attributes, to be shipped to the peer (setfacl -b
    // sets the minimal ACL, which the file system underneath keeps as none).
    const names = new Set(ops.flatMap((op) => (op.kind === "setxattr" || op.kind === "removexattr" ? [`${op.kind} ${op.name}`] : [])));
    expect(names).toEqual(new Set(["setxattr system.posix_acl_access", "setxattr system.posix_acl_default"]));

    // The secondary applies the same operations to its own tree: the same ACLs and modes.
    const secondary = diskAt(peer, "state-peer");
    for (const op of ops) expect(await call<DiskResult>((done) => secondary.apply(op, done)), JSON.stringify(op, (_, v) => (v instanceof Uint8Array ? v.length : v))).toBeNull();
    expect(await aclsOf(peer)).toBe(await aclsOf(reference));
  });

  it("come through a full resync: every path read on one tree and installed on an empty one", async () => {
    const [source, target] = trees("source", "target");
    expect(await shell(source, asRoot)).toEqual({ code: 0, stderr: "" });
    const from = diskAt(source, "state-source");
    const to = diskAt(target, "state-target");
    const copy = async (path: string): Promise<void> => {
      const snapshot = await call<PathSnapshot | string>((done) => from.read(path, "all", blockSize, done));
      if (typeof snapshot === "string") throw new Error(`read ${path}: ${snapshot}`);
      if (path !== "") expect(await call<DiskResult>((done) => to.install(path, snapshot, blockSize, done)), `install ${path}`).toBeNull();
      if (snapshot.kind === "dir") for (const child of snapshot.children) await copy(path === "" ? child : `${path}/${child}`);
    };
    await copy("");
    expect(await aclsOf(target)).toBe(await aclsOf(source));
    expect(await asNobodyIn(target)).toBe(await asNobodyIn(source));
  });

  it("leave the umask to the caller's process where no default ACL applies", async () => {
    const [mounted, reference] = trees("tree", "reference");
    interceptingMount(mounted);
    const script = "umask 027 && touch f && mkdir d && mkdir -m 0777 d/e && umask 0 && touch g";
    expect(await shell(reference, script)).toEqual({ code: 0, stderr: "" });
    expect(await shell(mounted, script)).toEqual({ code: 0, stderr: "" });
    expect(await aclsOf(reference)).toContain("./f -rw-r-----");
    expect(await aclsOf(mounted)).toBe(await aclsOf(reference));
  });
});

describe("POSIX ACLs through a passthrough mount", () => {
  it("are set, inherited and enforced as in a plain directory", async () => {
    const [mounted, reference] = trees("tree", "reference");
    mounts.push(mount(mounted, { mode: "passthrough" }));
    expect(await shell(reference, asRoot)).toEqual({ code: 0, stderr: "" });
    expect(await shell(mounted, asRoot)).toEqual({ code: 0, stderr: "" });
    expect(await aclsOf(mounted)).toBe(await aclsOf(reference));
    expect(await asNobodyIn(mounted)).toBe(await asNobodyIn(reference));
    // getfacl through the mount reads what is underneath (the kernel asks the handler).
    expect(fuseBinding().xattrs(join(mounted, "granted"))).not.toBe(osConstants.errno.EOPNOTSUPP);
  });

  it("lets a file system inside the tree that keeps no ACLs (ramfs) be read and written as before", async () => {
    const [mounted] = trees("tree");
    const inner = join(mounted, "ram");
    mkdirSync(inner);
    execFileSync("mount", ["-t", "ramfs", "tandem-acl-ramfs", inner]);
    try {
      chmodSync(inner, 0o777);
      mounts.push(mount(mounted, { mode: "passthrough" }));
      // The kernel asks each path's ACL, which ramfs answers EOPNOTSUPP: taken for an
      // error of the check itself, every open there would fail.
      expect(await output(mounted, "printf kept > ram/f && cat ram/f", nobody)).toBe("kept");
      expect(await output(mounted, "getfacl -p -c ram/f")).toBe("user::rw-\ngroup::r--\nother::r--\n\n");
    } finally {
      for (const fuse of mounts.splice(0)) fuse.unmount({ force: true });
      execFileSync("umount", [inner]);
    }
  });
});
