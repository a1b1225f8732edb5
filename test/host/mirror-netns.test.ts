// A two-node mirror module on this host, end to end over the real node service: the FUSE
// replicator in intercept mode on the primary and read-only on the secondary, the real disk
// port, authenticated heartbeats and the replication stream between two network namespaces
// (mirror-lab.ts). In order: a first full resync (a 3 MiB file, sent in 1 MiB chunks);
// an application's changes replicated synchronously (the secondary's tree equals the
// primary's as soon as each command returns); the secondary read-only; the primary's
// service killed → the secondary ALONE with the VIP; changes while alone; the old primary
// back → SECOND with an incremental resync (only the changed blocks sent); swap → roles
// back; stop → both trees identical byte for byte, owners and modes included.
//
// Needs root, `ip`, nsenter, nftables, /dev/fuse and both native addons; it FAILS, saying
// which is missing, rather than skip: CI runs as root and must prove this.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { lstatSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuseUnavailable } from "../../native/fuse.ts";
import { until } from "./farm-lab.ts";
import { MirrorLab, mirrorModule, treeOf } from "./mirror-lab.ts";
import { requireHost } from "./netns-lab.ts";
import { defaultMirrorPort } from "../../service/mirror-parts.ts";

const what = "the host mirror test (test/host/mirror-netns.test.ts)";
const nobody = 65534;
const mebibyte = 1024 * 1024;
/** From SIGKILL of the primary's service to the secondary ALONE and Ready (defaults detect in 250–300 ms). */
const takeoverBoundMs = 5_000;

let mirror: MirrorLab;

beforeAll(async () => {
  requireHost(what);
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(`${what}: ${unavailable.message}`);
  mirror = MirrorLab.create();
  // n1 starts with data, n2 empty: the first resync copies it all.
  writeFileSync(join(mirror.nodes[0]!.dataDir, "big"), randomBytes(3 * mebibyte));
  writeFileSync(join(mirror.nodes[0]!.dataDir, "small"), "hello");
  await mirror.startDaemon(0);
  await mirror.startDaemon(1);
}, 60_000);

afterAll(async () => {
  await mirror?.destroy();
}, 60_000);

const dir = (index: number) => mirror.nodes[index]!.dataDir;
/** n1's operations so far: replicated through the core, and completed on the lane. */
const counts = async () => {
  const view = (await mirror.view(0))!.mirror!;
  return { core: view.stats.replicatedOps - view.stats.laneOps, lane: view.lane.completed };
};

describe("a mirror module on two node services", () => {
  it("waits for the operator on a new mirror, starts alone where told, then copies the data whole to the new secondary", async () => {
    expect((await mirror.tandem(0, ["start", "-m", mirrorModule])).code).toBe(0);
    // It listens for its peer first, then, a new node with nobody to ask, waits for the operator.
    await until(async () => (await mirror.view(0))?.mirror?.why.includes("run prim on the node whose data is right") === true, 10_000, () => "n1 did not wait for the operator");
    expect((await mirror.view(0))!.state).toBe("WAIT");
    const prim = await mirror.tandem(0, ["prim", "-m", mirrorModule]);
    expect(prim.code, prim.output).toBe(0);
    await mirror.untilRoles(["ALONE", null]);
    expect((await mirror.tandem(1, ["start", "-m", mirrorModule])).code).toBe(0);
    const [primary] = await mirror.untilRoles(["PRIM", "SECOND"]);
    expect(treeOf(dir(1))).toEqual(treeOf(dir(0)));
    expect(primary!.mirror!.stats.fullResyncs).toBe(1);
    expect(primary!.mirror!.stats.resyncBlockBytes).toBeGreaterThanOrEqual(3 * mebibyte);
    expect(mirror.hasVip(0)).toBe(true);
    expect(mirror.hasVip(1)).toBe(false);
    expect(mirror.scriptRuns(0)).toEqual(["prestart STOP STOP start", "start_prim ALONE ALONE start"]);
    const state = await mirror.tandem(0, ["state", "-m", mirrorModule]);
    expect(state.output).toMatch(/PRIM \(Ready\).*generation \d+@n1, peer n2 SECOND/);
  }, 60_000);

  it("replicates an application's changes before each call returns", async () => {
    const d = dir(0);
    const script = [
      `mkdir ${d}/sub`,
      `printf 'first line\\n' > ${d}/sub/log`,
      `printf 'second line\\n' >> ${d}/sub/log`,
      `dd if=/dev/urandom of=${d}/big bs=4096 count=1 seek=100 conv=notrunc status=none`,
      `mv ${d}/small ${d}/sub/renamed`,
      `ln -s renamed ${d}/sub/link`,
      `chmod 600 ${d}/sub/renamed`,
      `chown ${nobody}:${nobody} ${d}/sub/log`,
      `mkdir -m 777 ${d}/shared`,
      `truncate -s 100 ${d}/sub/renamed`,
      `ln ${d}/sub/renamed ${d}/pair`,
      `printf 'through the second name' >> ${d}/pair`,
      `setfattr -n user.mime -v text/plain ${d}/sub/log`,
      `setfattr -n user.gone -v x ${d}/sub/log`,
      `setfattr -x user.gone ${d}/sub/log`,
      `setfattr -n trusted.tag -v 0x00ff ${d}/sub`,
      `setfacl -m u:${nobody}:--- ${d}/big`,
      `mkdir ${d}/acl`,
      `setfacl -d -m u:${nobody}:rw- ${d}/acl`,
      `printf x > ${d}/acl/inherits`,
      `printf x > ${d}/shared/setuid`,
      `chmod 4777 ${d}/shared/setuid`,
      `sync ${d}/sub/log`,
    ].join(" && ");
    const run = await mirror.app(0, script);
    expect(run.output).toBe("");
    expect(run.code).toBe(0);
    expect(await mirror.app(0, `printf mine > ${d}/shared/nobodys`, nobody)).toEqual({ code: 0, output: "" });
    // A write by someone else clears the set-user-ID bit, as on a local disk (the kernel
    // leaves that to the replicator: fuse-kernel-io.h), on both nodes.
    expect(await mirror.app(0, `printf y >> ${d}/shared/setuid`, nobody)).toEqual({ code: 0, output: "" });
    expect((await mirror.app(0, `getfattr --absolute-names --only-values -n user.mime ${d}/sub/log`)).output).toBe("text/plain");
    const tree = treeOf(d);
    expect(tree["sub/log"]).toMatch(/ xattrs user\.mime=746578742f706c61696e$/);
    expect(tree["sub"]).toMatch(/ xattrs trusted\.tag=00ff$/);
    expect(tree["shared/setuid"]).toMatch(/^file 777 /);
    expect(tree["shared/nobodys"]).toMatch(new RegExp(`^file 644 ${nobody}:${nobody} 4 `));
    // POSIX ACLs: set (a named user denied), inherited from a default ACL (group write
    // kept: no umask under one), and enforced through the mount.
    expect(tree["big"]).toMatch(/ xattrs system\.posix_acl_access=/);
    expect(tree["acl"]).toMatch(/ xattrs system\.posix_acl_default=/);
    expect(tree["acl/inherits"]).toMatch(/^file 664 0:0 1 .* xattrs system\.posix_acl_access=/);
    expect((await mirror.app(0, `cat ${d}/big > /dev/null`, nobody)).output).toContain("Permission denied");
    expect(treeOf(dir(1))).toEqual(tree);
    expect(tree["pair"]).toMatch(/ 123 [0-9a-f]{16} names pair,sub\/renamed$/);
    // Times set by the application (touch -d, as tar and cp -p do), to the nanosecond.
    expect(await mirror.app(0, `touch -d '2001-02-03 04:05:06.123456789 UTC' ${d}/sub/log && touch -h -m -d '@1000000000' ${d}/sub/link`)).toEqual({ code: 0, output: "" });
    for (const [path, mtimeNs] of [["sub/log", 981173106123456789n], ["sub/link", 1000000000000000000n]] as const) {
      for (const node of [0, 1]) expect(lstatSync(join(dir(node), path), { bigint: true }).mtimeNs, `${path} on n${node + 1}`).toBe(mtimeNs);
    }
    expect(lstatSync(join(dir(1), "sub/log"), { bigint: true }).atimeNs).toBe(981173106123456789n);
  }, 60_000);

  it("leaves what <notreplicated> names on the primary alone, replicating the rest", async () => {
    const d = dir(0);
    const before = (await mirror.view(0))!.mirror!;
    const run = await mirror.app(0, [`mkdir ${d}/scratch`, `printf local > ${d}/scratch/a`, `printf local > ${d}/sub/b.tmp`, `printf more >> ${d}/sub/b.tmp`, `printf kept > ${d}/sub/kept`, `sync ${d}/sub/kept`].join(" && "));
    expect(run).toEqual({ code: 0, output: "" });
    // Below the path rule everything was applied by the mount (mkdir, create, write); the
    // regular expression's file took the core for its create (a change of names), the
    // mount learning it then, and its two writes were the mount's.
    const after = (await mirror.view(0))!.mirror!;
    expect(after.excludedLocal - before.excludedLocal).toBe(5);
    const primary = treeOf(d);
    expect(primary["scratch/a"]).toMatch(/^file /);
    expect(primary["sub/b.tmp"]).toMatch(/^file /);
    const secondary = treeOf(dir(1));
    expect([secondary["scratch"], secondary["scratch/a"], secondary["sub/b.tmp"]]).toEqual([undefined, undefined, undefined]);
    expect(secondary["sub/kept"]).toBe(primary["sub/kept"]);
    // Gone again, so that the trees compare equal below.
    expect(await mirror.app(0, `rm -r ${d}/scratch ${d}/sub/b.tmp ${d}/sub/kept`)).toEqual({ code: 0, output: "" });
    expect(treeOf(dir(1))).toEqual(treeOf(d));
  }, 60_000);

  it("takes in-place writes and fsyncs on the native lane once their extents are armed, the secondary applying them", async () => {
    const d = dir(0);
    // The first pass writes each 64 KiB extent through the core (which arms it); the next
    // passes rewrite them in place, each 4 KiB block with its fsync, on the lane.
    const passes = [0, 1, 2].map((pass) => `dd if=/dev/urandom of=${d}/lanefile bs=4096 count=32 conv=notrunc,fsync oflag=dsync status=none && echo pass ${pass}`);
    const run = await mirror.app(0, [`: > ${d}/lanefile`, ...passes].join(" && "));
    expect(run.code, run.output).toBe(0);
    const [primary, secondary] = [await mirror.view(0), await mirror.view(1)];
    expect(primary!.mirror!.lane.on).toBe(true);
    // Two passes of 32 writes and 32 fsyncs at least (the fsyncs of a committed path
    // complete without a frame: below).
    expect(primary!.mirror!.lane.completed).toBeGreaterThanOrEqual(128);
    expect(secondary!.mirror!.lane.applied).toBeGreaterThanOrEqual(64);
    expect(treeOf(dir(1))).toEqual(treeOf(d));
  }, 60_000);

  it("commits a path fsynced after each write: its writes durable on both before they complete, its fsyncs spared a round trip", async () => {
    const d = dir(0);
    const lane = async () => (await mirror.view(0))!.mirror!.lane;
    const delta = async (command: string) => {
      const before = await lane();
      const run = await mirror.app(0, command);
      expect(run, command).toEqual({ code: 0, output: "" });
      const after = await lane();
      return { durableWrites: after.durableWrites - before.durableWrites, sparedFsyncs: after.sparedFsyncs - before.sparedFsyncs };
    };
    // 32 writes, each followed by its fdatasync (O_DSYNC): after the first, the path is
    // committed to; the first write of an extent the last checkpoint disarmed (unwritten
    // for a period) goes through the core, which costs the next fsync its shortcut.
    const commits = await delta(`dd if=/dev/urandom of=${d}/lanefile bs=4096 count=32 conv=notrunc oflag=dsync status=none`);
    expect(commits.durableWrites).toBeGreaterThanOrEqual(16);
    expect(commits.sparedFsyncs).toBeGreaterThanOrEqual(16);
    expect(treeOf(dir(1))).toEqual(treeOf(d));
    // Written in bulk and synced at the end: a few writes go durable, the fsync waits.
    const bulk = await delta(`dd if=/dev/urandom of=${d}/lanefile bs=4096 count=32 conv=notrunc,fdatasync status=none`);
    expect(bulk.durableWrites).toBeLessThanOrEqual(4);
    expect(bulk.sparedFsyncs).toBe(0);
    // Committed again; an fsync with nothing written since is spared, unless an operation
    // went through the core in between (it may have changed the path unsynced).
    await delta(`dd if=/dev/urandom of=${d}/lanefile bs=4096 count=8 conv=notrunc oflag=dsync status=none`);
    const fdatasync = `dd if=/dev/null of=${d}/lanefile conv=notrunc,fdatasync status=none`;
    expect((await delta(fdatasync)).sparedFsyncs).toBe(1);
    expect((await delta(`touch ${d}/sub/renamed && ${fdatasync}`)).sparedFsyncs).toBe(0);
    // With a second name the file may be written through it: its fsyncs are never spared.
    await delta(`ln ${d}/lanefile ${d}/lanefile-2 && dd if=/dev/urandom of=${d}/lanefile bs=4096 count=8 conv=notrunc oflag=dsync status=none`);
    expect((await delta(`dd if=/dev/urandom of=${d}/lanefile-2 bs=4096 count=2 conv=notrunc status=none && ${fdatasync}`)).sparedFsyncs).toBe(0);
    expect(treeOf(dir(1))).toEqual(treeOf(d));
  }, 60_000);

  it("keeps a file rewritten steadily on the lane across checkpoints: the harvest leaves armed what the lane wrote", async () => {
    const d = dir(0);
    // lanefile's two 64 KiB extents are armed (above). Rewritten in place for 4–5 s, every
    // 4 KiB block each pass, each checkpoint (every 0.5 s) finds both extents written since
    // the last one: it keeps them armed, and no write takes the core (a stall of the
    // writer for a whole period, on a loaded machine, costs one per extent). A harvest
    // that disarmed them would send the next write of each through the core, twice a
    // checkpoint: 7 in 4 s.
    const before = await counts();
    const run = await mirror.app(0, `end=$(($(date +%s) + 5)); while [ $(date +%s) -lt $end ]; do dd if=/dev/urandom of=${d}/lanefile bs=4096 count=32 conv=notrunc oflag=dsync status=none || exit 1; done`);
    expect(run).toEqual({ code: 0, output: "" });
    const after = await counts();
    expect(after.lane - before.lane).toBeGreaterThanOrEqual(32 * 8);
    expect(after.core - before.core, `writes through the core (${after.lane - before.lane} on the lane)`).toBeLessThanOrEqual(3);
    expect(treeOf(dir(1))).toEqual(treeOf(d));
  }, 60_000);

  it("arms ahead of a sequential writer: a file rewritten 3 s after it was written takes the lane after its first writes", async () => {
    const d = dir(0);
    expect(await mirror.app(0, `dd if=/dev/zero of=${d}/coldfile bs=1M count=64 conv=fsync status=none`)).toEqual({ code: 0, output: "" });
    // Past the activity log's 2 s: its extents are cold, and disarmed.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const before = await counts();
    const run = await mirror.app(0, `dd if=/dev/urandom of=${d}/coldfile bs=1M count=64 conv=notrunc,fsync status=none`);
    expect(run).toEqual({ code: 0, output: "" });
    const after = await counts();
    // Through the core: the 1st, 2nd, 4th, 8th, 16th and 32nd MiB (each arming as much
    // again ahead, core/mirror/lane.ts), and the final fsync if it met a write there; a
    // stall of the writer past a checkpoint's harvest costs one more. Without arming ahead
    // every write took the core: 64.
    expect(after.core - before.core, `operations through the core (${after.lane - before.lane} on the lane)`).toBeLessThanOrEqual(9);
    expect(after.lane - before.lane).toBeGreaterThanOrEqual(56);
    expect(treeOf(dir(1))).toEqual(treeOf(d));
    expect(await mirror.app(0, `rm ${d}/coldfile`)).toEqual({ code: 0, output: "" });
  }, 60_000);

  it("sends a large write on the lane as frames of 256 KiB, which the secondary applies as they come", async () => {
    const d = dir(0);
    const write = (pass: number) => `dd if=/dev/urandom of=${d}/bigfile bs=1M count=3 conv=notrunc,fsync status=none && echo pass ${pass}`;
    // The first pass arms the file's extents (a new file is armed whole); the next ones
    // rewrite it in place, 1 MiB a write: on the lane, four frames each.
    expect((await mirror.app(0, `: > ${d}/bigfile && ${write(0)}`)).code).toBe(0);
    const before = [(await mirror.view(0))!.mirror!.lane.completed, (await mirror.view(1))!.mirror!.lane.applied];
    const run = await mirror.app(0, [1, 2, 3].map(write).join(" && "));
    expect(run.code, run.output).toBe(0);
    const completed = (await mirror.view(0))!.mirror!.lane.completed - before[0]!;
    const applied = (await mirror.view(1))!.mirror!.lane.applied - before[1]!;
    // Each 1 MiB write taken on the lane is one operation and four frames applied.
    expect(completed).toBeGreaterThan(0);
    expect(applied - completed).toBeGreaterThanOrEqual(3);
    expect(treeOf(dir(1))).toEqual(treeOf(d));
    // Gone again: written whole just now, its extents stay hot for 2 s, and a kill of the
    // primary within them resends it whole (the resync test below counts changed blocks only).
    expect(await mirror.app(0, `rm ${d}/bigfile`)).toEqual({ code: 0, output: "" });
  }, 60_000);

  it("stops the lane when its connection breaks, the writes under way going back to the core, and opens it again", async () => {
    const d = dir(0);
    const lanePort = defaultMirrorPort(mirrorModule) + 1;
    // An application rewriting the lane's file block by block, each with its fsync.
    const writes = mirror.app(0, `i=0; while [ $i -lt 300 ]; do dd if=/dev/urandom of=${d}/lanefile bs=4096 count=1 seek=$((i % 32)) conv=notrunc,fsync status=none || exit 1; i=$((i + 1)); done`);
    await until(async () => ((await mirror.view(0))!.mirror!.lane.completed ?? 0) > 200, 10_000, () => "the lane took none of the application's writes");
    mirror.cutLane(0, lanePort);
    try {
      await until(() => /"event":"mirror.lane_stopped".*"why":"the lane('s connection to the peer ended| could not send to the peer)"/.test(mirror.daemons[0]!.output), 10_000, () => "the lane did not stop when its connection was reset");
    } finally {
      mirror.healLane(0);
    }
    // Every write the application made succeeded, through the lane or the core.
    expect(await writes).toEqual({ code: 0, output: "" });
    const reopened = (await mirror.view(0))!.mirror!.lane.completed;
    await until(async () => (await mirror.view(0))!.mirror!.lane.on, 10_000, () => "the lane did not open again");
    expect((await mirror.app(0, `dd if=/dev/urandom of=${d}/lanefile bs=4096 count=32 conv=notrunc,fsync oflag=dsync status=none`)).code).toBe(0);
    expect((await mirror.view(0))!.mirror!.lane.completed).toBeGreaterThan(reopened);
    expect(treeOf(dir(1))).toEqual(treeOf(d));
  }, 60_000);

  it("keeps the secondary's directory read-only to applications", async () => {
    const { code, output } = await mirror.app(1, `printf x > ${dir(1)}/intruder`);
    expect(code).not.toBe(0);
    expect(output).toContain("Read-only file system");
    expect((await mirror.app(1, `cat ${dir(1)}/sub/log`)).output).toBe("first line\nsecond line\n");
    expect((await mirror.app(1, `getfattr --absolute-names --only-values -n user.mime ${dir(1)}/sub/log`)).output).toBe("text/plain");
    expect((await mirror.app(1, `cat ${dir(1)}/big > /dev/null`, nobody)).output).toContain("Permission denied");
    expect((await mirror.app(1, `setfattr -n user.intruder -v x ${dir(1)}/sub/log`)).output).toContain("Read-only file system");
  }, 30_000);

  it("fails over to the secondary when the primary's service is killed, VIP included; the application left on the old primary can write nothing more", async () => {
    // An application that keeps writing on n1, in its service's mount namespace.
    const d = dir(0);
    const loop = `i=0; while [ $i -lt 400 ]; do i=$((i + 1)); if printf "$i" > ${d}/app-$i 2>/dev/null; then echo "ok $i"; else echo "failed $i"; fi; sleep 0.01; done`;
    const app = spawn("nsenter", ["-t", String(mirror.daemons[0]!.child.pid), "-m", "--", "/bin/sh", "-c", loop], { stdio: ["ignore", "pipe", "ignore"] });
    let appLog = "";
    app.stdout.on("data", (chunk: Buffer) => (appLog += chunk.toString()));
    await until(() => appLog.includes("ok 10"), 10_000, () => `the application did not write: ${appLog}`);
    const killedAt = Date.now();
    await mirror.daemons[0]!.kill();
    mirror.daemons[0] = null;
    await mirror.untilRoles([null, "ALONE"], takeoverBoundMs);
    expect(Date.now() - killedAt).toBeLessThan(takeoverBoundMs);
    expect(mirror.hasVip(1)).toBe(true);
    await until(() => appLog.includes("failed"), 5_000, () => "the application's writes on the old primary kept succeeding");
    app.kill("SIGKILL");
    // Every write the application saw succeed is on n2. After the kill the dead mount
    // answered every write with an error: at most the one write under way at the kill (never
    // acknowledged; its dirty mark has it resent) reached n1's directory and not n2's, where
    // an auto_unmount would have let every later write land underneath, unreplicated.
    const acknowledged = appLog.split("\n").filter((each) => each.startsWith("ok ")).map((each) => `app-${each.slice(3)}`);
    const onN2 = treeOf(dir(1));
    for (const name of acknowledged) expect(onN2[name], `${name} was acknowledged`).toBeDefined();
    const onlyOnN1 = Object.keys(treeOf(d)).filter((path) => path.startsWith("app-") && onN2[path] === undefined);
    expect(onlyOnN1.length, `written on the dead primary only: ${onlyOnN1.join(" ")}`).toBeLessThanOrEqual(1);
    expect(onlyOnN1.filter((name) => acknowledged.includes(name))).toEqual([]);
    const alone = dir(1);
    // A file written through its second name, which then goes: its first name's content must
    // be resent, though only the second was written. A new second name of another file.
    const script = [
      `dd if=/dev/urandom of=${alone}/big bs=4096 count=1 seek=200 conv=notrunc status=none`,
      `printf 'while alone\\n' >> ${alone}/sub/log`,
      `printf new > ${alone}/created-alone`,
      `printf ', then alone' >> ${alone}/pair`,
      `rm ${alone}/pair`,
      `ln ${alone}/created-alone ${alone}/created-alone-2`,
      `setfattr -n user.mime -v text/x-log ${alone}/sub/log`,
      `setfattr -x trusted.tag ${alone}/sub`,
      `setfattr -n user.alone -v 1 ${alone}/created-alone-2`,
    ].join(" && ");
    expect(await mirror.app(1, script)).toEqual({ code: 0, output: "" });
    // Alone, in-place rewrites take the lane of a node alone once the core armed their
    // extents: applied here and completed without the core, marked for the resync below.
    const before = (await mirror.view(1))!.mirror!.lane.completed;
    const passes = [0, 1].map(() => `dd if=/dev/urandom of=${alone}/lanefile bs=4096 count=32 conv=notrunc,fsync oflag=dsync status=none`);
    const rewrite = await mirror.app(1, passes.join(" && "));
    expect(rewrite.code, rewrite.output).toBe(0);
    const lane = (await mirror.view(1))!.mirror!.lane;
    expect(lane.on).toBe(true);
    expect(lane.alone).toBe(true);
    // The second pass's 32 writes and their fsyncs at least.
    expect(lane.completed - before).toBeGreaterThanOrEqual(64);
  }, 30_000);

  it("brings the old primary back as secondary with only the changed blocks resent", async () => {
    await mirror.startDaemon(0);
    const [, primary] = await mirror.untilRoles(["SECOND", "PRIM"]);
    expect(treeOf(dir(0))).toEqual(treeOf(dir(1)));
    // Attributes changed and removed while it was down came with the resync.
    expect(treeOf(dir(0))["sub/log"]).toMatch(/ xattrs user\.mime=746578742f782d6c6f67$/);
    expect(treeOf(dir(0))["sub"]).not.toContain("xattrs");
    const stats = primary!.mirror!.stats;
    expect(stats.fullResyncs).toBe(0);
    expect(stats.resyncs).toBe(1);
    // n1's service was killed: its hot extents count as changed (docs/mirror.md, the
    // activity log): the 64 KiB extent of big's changed block, the log, the new file, and
    // the two extents of the lane's file if no checkpoint cleared them since; far below the
    // 3 MiB file.
    expect(stats.resyncBlockBytes).toBeLessThan(320 * 1024);
    expect(stats.resyncBlockBytes).toBeGreaterThanOrEqual(4096);
  }, 60_000);

  it("swaps the roles back, the VIP following", async () => {
    const swap = await mirror.tandem(1, ["swap", "-m", mirrorModule]);
    expect(swap.code, swap.output).toBe(0);
    await mirror.untilRoles(["PRIM", "SECOND"]);
    expect(mirror.hasVip(0)).toBe(true);
    expect(mirror.hasVip(1)).toBe(false);
    expect(await mirror.app(0, `printf 'after swap\\n' >> ${dir(0)}/sub/log`)).toEqual({ code: 0, output: "" });
    expect(treeOf(dir(1))).toEqual(treeOf(dir(0)));
  }, 60_000);

  it("stops both nodes with the two trees identical", async () => {
    for (const index of [1, 0]) expect((await mirror.tandem(index, ["stop", "-m", mirrorModule, "--wait"])).code).toBe(0);
    expect(treeOf(dir(1))).toEqual(treeOf(dir(0)));
    // start_prim ran twice on n1 (first primary, then after the swap); stop_prim at the
    // start after its service was killed (its application might still run) and at the end;
    // start_second when it came back as secondary, stop_second before the swap made it
    // primary again.
    expect(mirror.scriptRuns(0).map((line) => line.split(" ")[0])).toEqual(["prestart", "start_prim", "stop_prim", "prestart", "start_second", "stop_second", "start_prim", "stop_prim", "poststop"]);
  }, 60_000);
});
