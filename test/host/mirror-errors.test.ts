// Disk errors under a mirror module on this host (mirror-lab.ts): each node's replicated
// directory is a small tmpfs of its own, so a disk can fill up. The application must get
// the error a local disk would give, and the two sides must never end up silently
// different:
// - the primary's disk full: the application's write fails with ENOSPC, as on a local
//   disk (the secondary, whose disk had room, is left as the primary's: both in sync);
// - only the secondary's disk full: the application's write succeeds (the primary had
//   room); the secondary stops following, not up to date, and the primary goes on alone;
//   room again (the application removed the file), the secondary resyncs and the trees
//   are equal.
//
// Needs root, `ip`, nsenter, nft, /dev/fuse and both native addons; fails saying which is
// missing.

import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuseUnavailable } from "../../native/fuse.ts";
import { MirrorLab, mirrorModule, treeOf } from "./mirror-lab.ts";
import { requireHost } from "./netns-lab.ts";

const what = "the mirror disk-error test (test/host/mirror-errors.test.ts)";
const mebibyte = 1024 * 1024;

let mirror: MirrorLab;
const mounted: string[] = [];

beforeAll(async () => {
  requireHost(what);
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(`${what}: ${unavailable.message}`);
  mirror = MirrorLab.create();
  // n1 has 16 MiB, n2 8 MiB.
  for (const [index, size] of [[0, "16m"], [1, "8m"]] as const) {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", mirror.nodes[index]!.dataDir]);
    mounted.push(mirror.nodes[index]!.dataDir);
  }
  await mirror.begin();
}, 120_000);

afterAll(async () => {
  // The services first (their mounts are over the tmpfs), then the tmpfs, then the rest.
  await Promise.all((mirror?.daemons ?? []).map((daemon) => daemon?.stop()));
  for (const dir of mounted) execFileSync("umount", ["-l", dir]);
  await mirror?.destroy();
}, 60_000);

const dir = (index: number) => mirror.nodes[index]!.dataDir;

describe("disk errors under a mirror module", () => {
  it("gives the application ENOSPC when the primary's disk is full, and leaves both sides alike", async () => {
    const fill = await mirror.app(0, `dd if=/dev/zero of=${dir(0)}/too-big bs=1M count=20 conv=fsync status=none`);
    expect(fill.code).not.toBe(0);
    expect(fill.output).toContain("No space left on device");
    await mirror.app(0, `rm -f ${dir(0)}/too-big`);
    await mirror.untilRoles(["PRIM", "SECOND"], 30_000);
    expect(treeOf(dir(1))).toEqual(treeOf(dir(0)));
  }, 60_000);

  it("when only the secondary's disk fills up: the write succeeds, the secondary stops following, then resyncs once there is room", async () => {
    // 12 MiB fit on n1 (16 MiB), not on n2 (8 MiB).
    const write = await mirror.app(0, `dd if=/dev/urandom of=${dir(0)}/big bs=1M count=12 conv=fsync status=none`);
    expect(write, "the primary had room: the application's write succeeds").toEqual({ code: 0, output: "" });
    const [primary, secondary] = await Promise.all([mirror.view(0), mirror.view(1)]);
    // The secondary detaches and retries each second (each try fails while there is no room):
    // never a Ready secondary, never counted up to date.
    expect(primary!.state, "the primary goes on").toMatch(/^(ALONE|PRIM)$/);
    expect(secondary!.mirror!.consistent, "the secondary is not up to date, and says so").toBe(false);
    expect(`${secondary!.state} ${secondary!.readiness}`).not.toBe("SECOND Ready");
    expect((await mirror.app(0, `stat -c %s ${dir(0)}/big`)).output.trim()).toBe(String(12 * mebibyte));
    // Room again: the application removes the file; the secondary retries and resyncs.
    expect((await mirror.app(0, `rm ${dir(0)}/big && printf after > ${dir(0)}/after`)).code).toBe(0);
    await mirror.untilRoles(["PRIM", "SECOND"], 60_000);
    expect(treeOf(dir(1))).toEqual(treeOf(dir(0)));
  }, 120_000);
});
