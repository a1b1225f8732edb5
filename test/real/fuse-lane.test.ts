// The native lane (native/src/fuse-lane.cc). Alone (OnAlone): writes into extents the
// core armed, and fsyncs, are applied here by libfuse's workers and complete without
// JavaScript; their marks come in the next report; off() gives nothing back, and what comes
// after it is intercepted again. Attached to a peer's lane: an operation whose results
// differ on the two nodes stops the lane, goes back to the core, and its path is reported
// for a resend; a sync that fails here is answered with its error; a stop of its own while
// a sync is under way here waits for it. A mount in intercept mode with a lane, as the
// node service makes it (service/mirror-parts.ts); the applications are child processes.
//
// It needs root, /dev/fuse, losetup, mkfs.ext4 and a free loop device, and fails, never
// skips, without them.

import { execFile, execFileSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { constants as osConstants, tmpdir } from "node:os";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { describeOp, type DiskOp } from "../../core/mirror/disk-ops.ts";
import type { RealDisk } from "../../drivers/real/disk.ts";
import { fuseBinding, mount, type FuseLane, type FuseMount, type NativeLaneReport } from "../../native/fuse.ts";
import { diskUnder, requireFuse, shell } from "./fuse-kit.ts";

const block = 4_096;
const extentBytes = 16 * block;

let scratch = "";
const mounts: FuseMount[] = [];
/** Mounts the tree's disk lies on (heldDisk): unmounted after the tree's, before the rest. */
const belowMounts: FuseMount[] = [];
const lanes: FuseLane[] = [];
const fds: number[] = [];
const tmpfs: string[] = [];
const loops: string[] = [];

requireFuse();

afterEach(() => {
  for (const fuse of mounts.splice(0)) fuse.unmount({ force: true });
  // With force: what the loop device still writes back through it then fails at once.
  for (const fuse of belowMounts.splice(0)) fuse.unmount({ force: true });
  for (const lane of lanes.splice(0)) lane.close();
  for (const fd of fds.splice(0)) closeSync(fd);
  // Lazily (the lane holds a descriptor of the tree until it is collected), and the last
  // first: a loop device's file system, then the tmpfs holding its image.
  for (const dir of tmpfs.splice(0).reverse()) execFileSync("umount", ["-l", dir]);
  // Busy until the lazily unmounted file system is let go: detached then (autoclear).
  for (const device of loops.splice(0)) execFileSync("losetup", ["-d", device]);
  if (scratch !== "") rmSync(scratch, { recursive: true, force: true });
  scratch = "";
});


/** A disk whose writeback fails: ext4 on a loop device over a 64 MiB image kept on a
 *  tmpfs of 6 MiB, mounted at `dir`. Writes land in the page cache; once more than the
 *  tmpfs holds is written back, the loop device's writes fail and so does the fsync that
 *  asked for them (ENOSPC, then EIO: a failed writeback, as a dying disk gives). */
function failingDisk(dir: string): void {
  const backing = join(scratch, "backing");
  mkdirSync(backing);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=6m", "tandem-lane-backing", backing]);
  tmpfs.push(backing);
  const image = ext4Image(backing);
  const device = needing(() => execFileSync("losetup", ["-f", "--show", image], { encoding: "utf8" }).trim());
  loops.push(device);
  execFileSync("mount", [device, dir]);
  tmpfs.push(dir);
}

/** The failure of a step making one of this test's loop-device disks, saying what they need. */
function diskNeeds(error: unknown): Error {
  return new Error(`this test's disk needs mkfs.ext4 (e2fsprogs), losetup (util-linux) and a free loop device: ${(error as Error).message}`);
}

/** `run`, failing with diskNeeds. */
function needing<T>(run: () => T): T {
  try {
    return run();
  } catch (error) {
    throw diskNeeds(error);
  }
}

/** `<dir>/image`: 64 MiB holding ext4 without a journal; its path. */
function ext4Image(dir: string): string {
  const image = join(dir, "image");
  execFileSync("truncate", ["-s", "64M", image]);
  needing(() => execFileSync("mkfs.ext4", ["-q", "-F", "-O", "^has_journal", image]));
  return image;
}

/** A disk whose flushes wait for the test: ext4 (no journal) on a loop device whose image
 *  lies on a FUSE mount of this process's that hands every change to `intercept` (as
 *  the mirror's does), mounted at `<scratch>/tree` with `f` in it. A flush of the loop
 *  device is an fsync of the image: `intercept` may hold it. Asynchronous all through:
 *  the loop device's I/O needs this thread to answer. */
async function heldDisk(intercept: (below: FuseMount, disk: RealDisk<null>, id: number, op: DiskOp) => void): Promise<FuseMount> {
  const run = (command: string, args: string[]) => new Promise<string>((resolve, reject) => execFile(command, args, { encoding: "utf8" }, (error, stdout) => (error === null ? resolve(stdout) : reject(error))));
  scratch = mkdtempSync(join(tmpdir(), "tandem-lane-"));
  const backing = join(scratch, "backing");
  mkdirSync(backing);
  const image = ext4Image(backing);
  mkdirSync(join(scratch, "below-state"));
  let disk: RealDisk<null> | null = null;
  const below: FuseMount = mount(backing, { mode: "intercept", intercept: (id, op) => intercept(below, disk!, id, op) });
  belowMounts.push(below);
  disk = diskUnder(below, join(scratch, "below-state"));
  const device = (
    await run("losetup", ["-f", "--show", image]).catch((error: unknown) => {
      throw diskNeeds(error);
    })
  ).trim();
  loops.push(device);
  const dir = join(scratch, "tree");
  mkdirSync(dir);
  await run("mount", [device, dir]);
  tmpfs.push(dir);
  await writeFile(join(dir, "f"), new Uint8Array(16 * extentBytes / 4));
  return below;
}

/** `<scratch>/<name>` with `f` (256 KiB of zeros) made in it, and a lane over it (its
 *  directory handle). `tmpfsBytes`: the tree is a tmpfs of that size (a disk that fills);
 *  `failing`: it is a failingDisk. */
function laneTree(name: string, tmpfsBytes?: number, failing = false, ready = false): { dir: string; lane: FuseLane } {
  if (scratch === "") scratch = mkdtempSync(join(tmpdir(), "tandem-lane-"));
  const dir = join(scratch, name);
  // `ready`: the test made the directory, f in it (heldDisk).
  if (!ready) {
    mkdirSync(dir);
    if (tmpfsBytes !== undefined) {
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${tmpfsBytes}`, "tandem-lane", dir]);
      tmpfs.push(dir);
    }
    if (failing) failingDisk(dir);
    writeFileSync(join(dir, "f"), new Uint8Array(16 * extentBytes / 4));
  }
  const tree = openSync(dir, "r");
  fds.push(tree);
  const lane = new (fuseBinding().FuseLane)(tree, new Uint8Array(32).fill(7), block, extentBytes);
  lanes.push(lane);
  return { dir, lane };
}

/** laneTree "tree" mounted intercepting with its lane, not on yet; each operation
 *  intercepted, or given back by the lane (`core`), applied with the real disk port and
 *  recorded, as a core with no peer would. */
function laneMount(tmpfsBytes?: number, failing = false, ready = false): { dir: string; fuse: FuseMount; lane: FuseLane; ops: DiskOp[]; core: (id: number, op: DiskOp) => void } {
  const { dir, lane } = laneTree("tree", tmpfsBytes, failing, ready);
  mkdirSync(join(scratch, "state"));
  const ops: DiskOp[] = [];
  let disk: RealDisk<null> | null = null;
  const core = (id: number, op: DiskOp) => {
    ops.push(op);
    disk!.apply(op, (result) => fuse.answer(id, result === null ? 0 : osConstants.errno[result]));
  };
  const fuse = mount(dir, { mode: "intercept", lane, intercept: core });
  mounts.push(fuse);
  disk = diskUnder(fuse, join(scratch, "state"));
  return { dir, fuse, lane, ops, core };
}

/** laneMount with its lane alone on. */
function aloneMount(tmpfsBytes?: number): ReturnType<typeof laneMount> {
  const made = laneMount(tmpfsBytes);
  made.lane.on(null, 7);
  return made;
}

describe("the native lane of a primary alone", () => {
  it("applies writes into armed extents and fsyncs here without JavaScript, and reports their marks", async () => {
    const { dir, lane, ops } = aloneMount();
    lane.arm("f", [0]);
    // Two blocks into extent 0 (armed) in one write and an fdatasync; then a block into
    // extent 2 (not armed).
    const script = [
      "head -c 8192 /dev/zero | tr '\\0' 'A' | dd of=f bs=8192 iflag=fullblock oflag=seek_bytes seek=4096 conv=notrunc,fdatasync status=none",
      "head -c 4096 /dev/zero | tr '\\0' 'B' | dd of=f bs=4096 seek=32 conv=notrunc status=none",
    ].join(" && ");
    expect(await shell(dir, script)).toEqual({ code: 0, stderr: "" });
    expect(ops.map(describeOp)).toEqual(["write f @131072+4096"]);
    const report = lane.harvest();
    expect(report).toMatchObject({ epoch: 7, stopped: false, resubmit: [] });
    // Blocks 1 and 2, as one run [first, count].
    expect(report.marks).toEqual([["f", [1, 2]]]);
    expect(report.touched).toEqual([["f", [0]]]);
    // The write, and the fsync (dd's fdatasync).
    expect(report.completed).toBe(2);
    expect(lane.stats().completed).toBe(2);
    const bytes = readFileSync(join(dir, "f"));
    expect(bytes.subarray(block, 3 * block).every((byte) => byte === 0x41)).toBe(true);
    expect(bytes.subarray(32 * block, 33 * block).every((byte) => byte === 0x42)).toBe(true);
    // The lane wrote it: the disk port's whole-tree fsync must cover it.
    expect(lane.takeWritten()).toEqual(["f"]);
    // Runs merge what touches or overlaps: blocks 6, 4, 5 and 12, 14; then 9, 11, 10, 8.
    const blocks = [6, 4, 5, 12, 14, 9, 11, 10, 8].map((at) => `dd if=/dev/zero of=f bs=4096 seek=${at} count=1 conv=notrunc status=none`);
    expect(await shell(dir, blocks.slice(0, 5).join(" && "))).toEqual({ code: 0, stderr: "" });
    expect(lane.harvest().marks).toEqual([["f", [4, 3, 12, 1, 14, 1]]]);
    expect(await shell(dir, blocks.slice(5).join(" && "))).toEqual({ code: 0, stderr: "" });
    expect(lane.harvest().marks).toEqual([["f", [8, 4]]]);
  });

  it("answers a write this node's disk refuses with its error, marks what it wrote, and reports the error", async () => {
    // A tmpfs of 512 KiB holding f (256 KiB): a write of 1 MiB past its end fills it.
    const { dir, lane, ops } = aloneMount(512 * 1024);
    lane.arm("f", [2 ** 53 - 1]);
    const run = await shell(dir, "dd if=/dev/zero of=f bs=1M count=1 seek=1 conv=notrunc status=none");
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/No space left on device/);
    expect(ops).toEqual([]);
    const report = lane.harvest();
    expect(report.errors[0]).toEqual({ path: "f", op: "write f", errno: osConstants.errno.ENOSPC });
    // What it wrote before the disk was full is marked: from block 256 (1 MiB) on.
    expect(report.marks.length).toBe(1);
    expect(report.marks[0]![1][0]).toBe(256);
  });

  it("off() gives nothing back: a writer going on meanwhile finds its next writes intercepted", async () => {
    const { dir, lane, ops } = aloneMount();
    lane.arm("f", [2 ** 53 - 1]);
    // 3000 writes of one block, each synced (O_DSYNC: the kernel sends an fsync after each).
    const writer = shell(dir, "dd if=/dev/zero of=f bs=4096 count=3000 oflag=dsync conv=notrunc status=none");
    let report: ReturnType<FuseLane["off"]> | null = null;
    const deadline = Date.now() + 20_000;
    while (report === null && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (lane.stats().completed >= 40) report = lane.off();
    }
    expect(report).not.toBeNull();
    expect(report!.stopped).toBe(true);
    expect(report!.resubmit).toEqual([]);
    // The writes it completed, in sequence from block 0: one run.
    expect(report!.marks).toHaveLength(1);
    const [path, runs] = report!.marks[0]!;
    expect(path).toBe("f");
    expect(runs).toHaveLength(2);
    expect(runs[0]).toBe(0);
    expect(runs[1]).toBeGreaterThanOrEqual(20);
    expect(report!.completed).toBe(lane.stats().completed);
    const before = ops.length;
    expect(await writer).toEqual({ code: 0, stderr: "" });
    // After off(), every write and fsync takes the core.
    expect(ops.length).toBeGreaterThan(before);
    expect(lane.stats().completed).toBe(report!.completed);
    expect(ops.slice(before).every((op) => op.kind === "write" || op.kind === "fsync")).toBe(true);
  });
});

/** laneMount with its lane on for session 3, epoch 7, to a peer's lane over laneTree "peer"
 *  (`peerTmpfsBytes`: on a tmpfs of that size), f armed whole, connected: a block of 'A'
 *  written at 0 took the lane. The test's core (`core`) applies here only; it takes what
 *  the lane gives back in a report of its own. `failing`: this node's tree is a
 *  failingDisk. */
async function attachedMount(peerTmpfsBytes?: number, failing = false, ready = false): Promise<ReturnType<typeof laneMount> & { peer: ReturnType<typeof laneTree>; port: number; reports: NativeLaneReport[] }> {
  const peer = laneTree("peer", peerTmpfsBytes);
  const port = 20_000 + (process.pid % 20_000);
  peer.lane.listen("127.0.0.1", port);
  peer.lane.follow(3, 7);
  const made = laneMount(undefined, failing, ready);
  const reports: NativeLaneReport[] = [];
  made.lane.onReport((report) => {
    reports.push(report);
    for (const { id, op } of report.resubmit) made.core(id, op);
  });
  made.lane.on(3, 7, "127.0.0.1", port);
  made.lane.arm("f", [2 ** 53 - 1]);
  // Until the lane is connected its writes take the core: one block at a time until one
  // does not.
  const deadline = Date.now() + 10_000;
  let taken = false;
  while (!taken && Date.now() < deadline) {
    const before = made.ops.length;
    expect(await shell(made.dir, "head -c 4096 /dev/zero | tr '\\0' 'A' | dd of=f bs=4096 conv=notrunc status=none")).toEqual({ code: 0, stderr: "" });
    taken = made.ops.length === before;
  }
  expect(taken, "the lane never connected to its peer's").toBe(true);
  expect(readFileSync(join(peer.dir, "f")).subarray(0, block).every((byte) => byte === 0x41)).toBe(true);
  return { ...made, peer, port, reports };
}

describe("the native lane attached to a peer's", () => {
  it("stops when the two nodes' results differ, gives the operation back, and reports its path for a resend", async () => {
    // The peer's tree: a tmpfs of 512 KiB holding its own f (256 KiB), which a write of
    // 1 MiB past the end fills; this node's has room.
    const { dir, ops, reports } = await attachedMount(512 * 1024);
    const run = await shell(dir, "dd if=/dev/zero of=f bs=1M count=1 seek=1 conv=notrunc status=none");
    // Given back, the core applied it here (the test's core does not replicate).
    expect(run).toEqual({ code: 0, stderr: "" });
    expect(ops.map(describeOp)).toContain("write f @1048576+1048576");
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ epoch: 7, stopped: true, differed: ["f"], errors: [] });
    expect(reports[0]!.why).toBe("write f: ok here, No space left on device on the peer");
    expect(reports[0]!.resubmit.map(({ op }) => describeOp(op))).toEqual(["write f @1048576+1048576"]);
  });

  // A stop waits for the syncs under way here (a durable write's, an fsync's), so that one
  // that fails is answered with its error rather than given back: off() and on() again and
  // again under a writer whose every write is synced must neither hang nor fail it.
  it("stops and starts again under a writer whose writes it syncs, without a hang or a failed write", async () => {
    const { dir, lane, peer, port, core, reports } = await attachedMount();
    // 3000 writes of one block, each synced (O_DSYNC): a path committed to, its writes durable.
    const writer = shell(dir, "dd if=/dev/zero of=f bs=4096 count=3000 oflag=dsync conv=notrunc status=none");
    let done = false;
    void writer.then(() => (done = true));
    let epoch = 7;
    let cycles = 0;
    let durable = 0;
    while (!done) {
      await new Promise((resolve) => setTimeout(resolve, 15));
      durable = Math.max(durable, lane.stats().durableWrites);
      const report = lane.off();
      expect(report.stopped).toBe(true);
      for (const { id, op } of report.resubmit) core(id, op);
      epoch++;
      peer.lane.follow(3, epoch);
      lane.on(3, epoch, "127.0.0.1", port);
      lane.arm("f", [2 ** 53 - 1]);
      cycles++;
    }
    expect(await writer).toEqual({ code: 0, stderr: "" });
    expect(cycles).toBeGreaterThan(5);
    expect(durable).toBeGreaterThan(0);
    expect(reports.every((report) => report.errors.length === 0)).toBe(true);
  });

  // An fsync that fails here (a failed writeback) is answered with this node's error, not
  // given back to the core, which would apply it again on another descriptor and could
  // report a success with the data gone. Here the tree's disk cannot write back 12 MiB.
  it("answers an fsync that fails here with its error, and reports it", async () => {
    const { dir, ops, reports } = await attachedMount(undefined, true);
    const before = ops.length;
    const run = await shell(dir, "head -c 12582912 /dev/urandom | dd of=f bs=1M iflag=fullblock conv=notrunc,fsync status=none");
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/No space left on device|Input\/output error/);
    // Neither the writes nor the fsync went to the core.
    expect(ops.length).toBe(before);
    expect(reports).toHaveLength(1);
    const [failed] = reports[0]!.errors;
    expect(reports[0]).toMatchObject({ epoch: 7, stopped: true, resubmit: [], differed: [] });
    expect([osConstants.errno.ENOSPC, osConstants.errno.EIO]).toContain(failed?.errno);
    expect(failed).toMatchObject({ path: "f", op: "fsync f" });
    expect(reports[0]!.why).toMatch(/^fsync f: (No space left on device|Input\/output error) here$/);
  });

  // A committed path's writes are synced here (durable writes; an O_DSYNC write's own
  // pwrite syncs it too): one that fails answers the write with the error, as write(2)
  // may after a failed writeback, instead of going back to the core, which would write it
  // again and complete it while the file's earlier unsynced writes are gone here only.
  it("answers a synced write that fails here with the error, and reports it", async () => {
    const { dir, lane, ops, reports } = await attachedMount(undefined, true);
    const before = ops.length;
    // 64 KiB writes, each synced (O_DSYNC): after the first, the path is committed to.
    const run = await shell(dir, "head -c 13107200 /dev/urandom | dd of=f bs=64K iflag=fullblock oflag=dsync conv=notrunc status=none");
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/No space left on device|Input\/output error/);
    expect(lane.stats().durableWrites).toBeGreaterThan(0);
    // Nothing went to the core: not the failed write, not anything after it.
    expect(ops.length).toBe(before);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ stopped: true, resubmit: [] });
    const [failed] = reports[0]!.errors;
    expect(failed).toMatchObject({ path: "f", op: "write f" });
    expect(reports[0]!.why).toMatch(/^write f: (No space left on device|Input\/output error) here(, syncing it)?$/);
  });

  // A stop on the lane's own threads (here: the peer's connection ends) while an fsync is
  // being applied here is left pending: the thread that noticed may be the one reading the
  // acknowledgements, so it cannot wait. The last sync to finish completes the stop, and
  // that fsync is answered with its own result, never given back (given back, the core's
  // fsync would be held too, and the writer would never finish). The tree's disk is a
  // heldDisk, whose flushes wait for the test. (A stop that waited on the reading thread
  // would look the same from here: what this shows is the stop's report after the sync,
  // and the sync's own answer.)
  for (const [outcome, errno] of [["succeeds", 0], ["fails", osConstants.errno.EIO]] as const) {
    it(`leaves a stop of its own pending while an fsync here is under way, completing it once the fsync ${outcome}`, async () => {
      const held: number[] = [];
      let hold = false;
      const below = await heldDisk((mounted, disk, id, op) => {
        if (hold && op.kind === "fsync") return void held.push(id);
        disk.apply(op, (result) => mounted.answer(id, result === null ? 0 : osConstants.errno[result]));
      });
      const { dir, ops, peer, reports } = await attachedMount(undefined, false, true);
      hold = true;
      const before = ops.length;
      const writer = shell(dir, "dd if=/dev/zero of=f bs=64K count=1 conv=notrunc,fsync status=none");
      const deadline = Date.now() + 10_000;
      while (held.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(held, "the lane's fsync reached the mount below").toHaveLength(1);
      // The peer goes: the lane's reader sees its connection end and stops, on its own.
      peer.lane.close();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(reports, "no stop while the fsync is under way").toHaveLength(0);
      hold = false;
      below.answer(held[0]!, errno);
      const run = await writer;
      const deadlineReport = Date.now() + 10_000;
      while (reports.length === 0 && Date.now() < deadlineReport) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatchObject({ epoch: 7, stopped: true, why: "the lane's connection to the peer ended" });
      if (errno === 0) {
        // Done here, and acknowledged by the peer before it went (or given back to the core).
        expect(run).toEqual({ code: 0, stderr: "" });
        expect(reports[0]!.errors).toEqual([]);
      } else {
        expect(run.code).not.toBe(0);
        expect(run.stderr).toContain("Input/output error");
        expect(reports[0]!.errors).toMatchObject([{ path: "f", op: "fsync f", errno }]);
        // Answered with its error, not given back.
        expect(reports[0]!.resubmit).toEqual([]);
        expect(ops.length).toBe(before);
      }
    });
  }
});
