// `<tocheck>` on this host (mirror-lab.ts): each node's data lives on a disk of its own (a
// tmpfs) mounted on the replicated directory, with a marker file at its root that the
// module names in <tocheck>. n2's disk is not mounted when its service starts: without the
// check its empty mount point would take a full copy of n1's data (filling the root file
// system, and hidden once the disk is mounted). With it, n2's module stops at start, says
// which path is missing, and nothing of n1's reaches the mount point; once the disk is
// mounted and the service restarted, n2 starts as secondary and syncs.
//
// Needs root, `ip`, nsenter, nft, /dev/fuse and both native addons; fails saying which is
// missing.

import { execFileSync } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuseUnavailable } from "../../native/fuse.ts";
import { until } from "./farm-lab.ts";
import { MirrorLab, mirrorModule, notingModule, treeOf } from "./mirror-lab.ts";
import { requireHost } from "./netns-lab.ts";

const what = "the mirror <tocheck> test (test/host/mirror-tocheck.test.ts)";
const marker = "DISK-MOUNTED";

let mirror: MirrorLab;
const mounted: string[] = [];

/** Mounts node `index`'s data disk (a tmpfs) with its marker, before its service starts. */
function mountDisk(index: number): void {
  const dir = mirror.nodes[index]!.dataDir;
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", dir]);
  mounted.push(dir);
  writeFileSync(join(dir, marker), "");
}

beforeAll(() => {
  requireHost(what);
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(`${what}: ${unavailable.message}`);
  mirror = MirrorLab.create({ ...notingModule, toCheck: [marker] });
}, 60_000);

afterAll(async () => {
  await Promise.all((mirror?.daemons ?? []).map((daemon) => daemon?.stop()));
  for (const dir of mounted.reverse()) execFileSync("umount", ["-l", dir]);
  await mirror?.destroy();
}, 60_000);

describe("a mirror module's <tocheck> paths", () => {
  it("keep a node whose disk is not mounted from starting, nothing copied onto its mount point", async () => {
    mountDisk(0);
    writeFileSync(join(mirror.nodes[0]!.dataDir, "table"), "committed rows");
    await mirror.startDaemon(0);
    await mirror.startDaemon(1);
    expect((await mirror.tandem(0, ["start", "-m", mirrorModule])).code).toBe(0);
    await until(async () => (await mirror.view(0))?.mirror?.why.includes("run prim") === true, 10_000, () => "n1 did not wait for the operator");
    expect((await mirror.tandem(0, ["prim", "-m", mirrorModule])).code).toBe(0);
    await mirror.untilRoles(["ALONE", null]);
    expect((await mirror.tandem(1, ["start", "-m", mirrorModule])).code).toBe(0);
    let why = "";
    await until(
      async () => {
        const view = await mirror.view(1);
        why = view?.mirror?.why ?? "";
        return view?.state === "STOP" && why.includes(marker);
      },
      10_000,
      () => `n2 did not stop for its missing ${marker}: ${why}`,
    );
    const state = await mirror.tandem(1, ["state", "-m", mirrorModule]);
    expect(state.output).toContain(`<tocheck> missing in the replicated directory: ${marker}`);
    // It ran no script, and its mount point holds nothing of n1's.
    expect(mirror.scriptRuns(1)).toEqual([]);
    expect(readdirSync(mirror.nodes[1]!.dataDir)).toEqual([]);
    expect((await mirror.view(0))!.state).toBe("ALONE");
  }, 60_000);

  it("start it once the disk is mounted: it syncs as secondary", async () => {
    await mirror.daemons[1]!.stop();
    mountDisk(1);
    await mirror.startDaemon(1);
    expect((await mirror.tandem(1, ["start", "-m", mirrorModule])).code).toBe(0);
    await mirror.untilRoles(["PRIM", "SECOND"], 30_000);
    expect(treeOf(mirror.nodes[1]!.dataDir)).toEqual(treeOf(mirror.nodes[0]!.dataDir));
    expect(treeOf(mirror.nodes[1]!.dataDir)["table"]).toBeDefined();
  }, 60_000);
});
