// A mirror module with two replicated directories on this host (mirror-lab.ts): SafeKit's
// <rfs> may hold several <replicated dir>, and tandem loads such a module unchanged. Each
// directory has its own FUSE mount and native lane; the core sees one tree whose entries
// are the directories (core/mirror/volumes.ts) and one lane (CompositeLane). In order: the
// first full copy of both; an application's changes in both replicated before each call
// returns; in-place writes of both on their lanes; one lane's connection broken → every
// lane stops, the writes go on through the core, the lanes open again; the primary's
// service killed → the secondary ALONE, changes in both while alone; the old primary back
// with an incremental resync of both; stop → both directories identical on both nodes.
//
// Needs root, `ip`, nsenter, nft, /dev/fuse and both native addons; fails saying which is
// missing.

import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuseUnavailable } from "../../native/fuse.ts";
import { defaultMirrorPort } from "../../service/mirror-parts.ts";
import { until } from "./farm-lab.ts";
import { MirrorLab, mirrorModule, notingModule, treeOf } from "./mirror-lab.ts";
import { requireHost } from "./netns-lab.ts";

const what = "the mirror test of several directories (test/host/mirror-dirs.test.ts)";
const mebibyte = 1024 * 1024;

let mirror: MirrorLab;

/** Both directories of node `index`, as one record of relative paths. */
function trees(index: number): { readonly data: Record<string, string>; readonly logs: Record<string, string> } {
  const node = mirror.nodes[index]!;
  return { data: treeOf(node.dataDir), logs: treeOf(node.moreDirs[0]!) };
}

beforeAll(async () => {
  requireHost(what);
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(`${what}: ${unavailable.message}`);
  mirror = MirrorLab.create({ ...notingModule, moreDirs: ["logs"] });
  const n1 = mirror.nodes[0]!;
  writeFileSync(join(n1.dataDir, "table"), randomBytes(2 * mebibyte));
  mkdirSync(join(n1.moreDirs[0]!, "2026"));
  writeFileSync(join(n1.moreDirs[0]!, "2026", "journal"), "first line\n");
  await mirror.begin();
}, 120_000);

afterAll(async () => {
  await mirror?.destroy();
}, 60_000);

describe("a mirror module with two replicated directories", () => {
  it("copies both whole to the new secondary, each into its own directory", async () => {
    expect(trees(1)).toEqual(trees(0));
    expect(Object.keys(trees(1).logs)).toEqual(["2026", "2026/journal"]);
    const view = (await mirror.view(0))!;
    expect(view.mirror!.dir).toBe(`${mirror.nodes[0]!.dataDir}, ${mirror.nodes[0]!.moreDirs[0]}`);
    expect(view.mirror!.stats.fullResyncs).toBe(1);
    expect(view.mirror!.stats.resyncBlockBytes).toBeGreaterThanOrEqual(2 * mebibyte);
  }, 30_000);

  it("replicates an application's changes in both before each call returns", async () => {
    const [data, logs] = [mirror.nodes[0]!.dataDir, mirror.nodes[0]!.moreDirs[0]!];
    const script = [
      `dd if=/dev/urandom of=${data}/table bs=4096 count=2 seek=100 conv=notrunc,fsync status=none`,
      `printf 'second line\\n' >> ${logs}/2026/journal`,
      `mkdir ${logs}/2027 && printf x > ${logs}/2027/new && mv ${logs}/2027/new ${logs}/2027/renamed`,
      `printf y > ${data}/other && chmod 600 ${data}/other && rm ${logs}/2026/journal`,
    ].join(" && ");
    expect(await mirror.app(0, script)).toEqual({ code: 0, output: "" });
    expect(trees(1)).toEqual(trees(0));
    // A rename from one directory to the other is a copy across file systems, as between
    // two disks: mv copies and removes.
    expect(await mirror.app(0, `mv ${data}/other ${logs}/moved`)).toEqual({ code: 0, output: "" });
    expect(trees(1)).toEqual(trees(0));
    expect(trees(1).logs["moved"]).toBeDefined();
  }, 30_000);

  it("takes in-place writes and fsyncs of each directory on its own lane", async () => {
    let completed = (await mirror.view(0))!.mirror!.lane.completed;
    for (const dir of [mirror.nodes[0]!.dataDir, mirror.nodes[0]!.moreDirs[0]!]) {
      // The first pass goes through the core (which arms the extents), the next two on the lane.
      const passes = [0, 1, 2].map(() => `dd if=/dev/urandom of=${dir}/lanefile bs=4096 count=32 conv=notrunc,fsync oflag=dsync status=none`);
      expect(await mirror.app(0, [`: > ${dir}/lanefile`, ...passes].join(" && "))).toEqual({ code: 0, output: "" });
      const view = (await mirror.view(0))!.mirror!;
      expect(view.lane.on).toBe(true);
      expect(view.lane.completed - completed, dir).toBeGreaterThanOrEqual(128);
      completed = view.lane.completed;
    }
    // Two passes of 32 writes in each directory at least; their fsyncs (a committed path's,
    // docs/replicator.md "Commits") mostly complete without a frame.
    expect((await mirror.view(1))!.mirror!.lane.applied).toBeGreaterThanOrEqual(128);
    expect(trees(1)).toEqual(trees(0));
  }, 60_000);

  it("stops every lane when one's connection breaks, the writes going on through the core, then opens them again", async () => {
    const logs = mirror.nodes[0]!.moreDirs[0]!;
    const writes = mirror.app(0, `i=0; while [ $i -lt 300 ]; do dd if=/dev/urandom of=${logs}/lanefile bs=4096 count=1 seek=$((i % 32)) conv=notrunc,fsync status=none || exit 1; i=$((i + 1)); done`);
    const before = (await mirror.view(0))!.mirror!.lane.completed;
    await until(async () => (await mirror.view(0))!.mirror!.lane.completed - before > 100, 10_000, () => "the second directory's lane took none of the writes");
    // The second directory's lane: <heart port> + 2.
    mirror.cutLane(0, defaultMirrorPort(mirrorModule) + 2);
    try {
      await until(() => /"event":"mirror.lane_stopped".*"why":"the lane('s connection to the peer ended| could not send to the peer)/.test(mirror.daemons[0]!.output), 10_000, () => "the lanes did not stop when one's connection was reset");
    } finally {
      mirror.healLane(0);
    }
    expect(await writes).toEqual({ code: 0, output: "" });
    await until(async () => (await mirror.view(0))!.mirror!.lane.on, 10_000, () => "the lanes did not open again");
    const reopened = (await mirror.view(0))!.mirror!.lane.completed;
    const data = mirror.nodes[0]!.dataDir;
    expect((await mirror.app(0, `dd if=/dev/urandom of=${data}/lanefile bs=4096 count=32 conv=notrunc,fsync oflag=dsync status=none`)).code).toBe(0);
    expect((await mirror.view(0))!.mirror!.lane.completed).toBeGreaterThan(reopened);
    expect(trees(1)).toEqual(trees(0));
  }, 60_000);

  it("fails over with both, then brings the old primary back with only the changes of both resent", async () => {
    await mirror.daemons[0]!.kill();
    mirror.daemons[0] = null;
    await mirror.untilRoles([null, "ALONE"], 10_000);
    const [data, logs] = [mirror.nodes[1]!.dataDir, mirror.nodes[1]!.moreDirs[0]!];
    expect(await mirror.app(1, `dd if=/dev/urandom of=${data}/table bs=4096 count=1 seek=300 conv=notrunc status=none && printf alone > ${logs}/2027/alone`)).toEqual({ code: 0, output: "" });
    await mirror.startDaemon(0);
    const [, primary] = await mirror.untilRoles(["SECOND", "PRIM"], 60_000);
    expect(trees(0)).toEqual(trees(1));
    expect(trees(0).logs["2027/alone"]).toBeDefined();
    const stats = primary!.mirror!.stats;
    expect([stats.fullResyncs, stats.resyncs]).toEqual([0, 1]);
    expect(stats.resyncBlockBytes).toBeLessThan(mebibyte);
  }, 90_000);

  it("stops both nodes with both directories identical", async () => {
    for (const index of [0, 1]) expect((await mirror.tandem(index, ["stop", "-m", mirrorModule, "--wait"])).code).toBe(0);
    expect(trees(0)).toEqual(trees(1));
  }, 60_000);
});
