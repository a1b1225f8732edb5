// A survivor's write speed (issue 8, the primary that lost its peer): n1 goes on alone
// after n2's node loses power and rewrites, in place, a file that both nodes had (a
// database's table after a failover). Every write of a node alone is marked in its dirty
// map (what the resync sends when the peer is back), so the cost of a mark must not grow
// with the marks already there: when a file's marks were copied at each write, the
// rewrite of a 448 MiB file fell from 124 MiB/s in its first 64 MiB to 17 MiB/s past
// 192 MiB. The file is rewritten in quarters, each timed; the same rewrite of a plain
// directory on the same disk runs alongside as the baseline, and the same through a plain
// FUSE passthrough mount (native/fuse.ts) of another directory there, the most a node
// alone's lane can reach. Printed: MiB/s per quarter, mirrored, passthrough and raw, the
// ratio of the last quarter to the first (flat: about 1), mirrored ÷ passthrough and
// mirrored ÷ raw, and the operations the lane of the node alone completed
// (`TANDEM_MIRROR_LANE=off` in the environment: none, every write through the core).
//
// `node bench/mirror-alone-bench.ts [--mib N]` (as root, the needs of the host tests;
// default 512 MiB). Figures and date: docs/replicator.md ("Measured: a node alone").

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fuseUnavailable, mount } from "../native/fuse.ts";
import { MirrorLab } from "../test/host/mirror-lab.ts";
import { requireHost } from "../test/host/netns-lab.ts";

const quarters = 4;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const mibAt = args.indexOf("--mib");
  const mib = mibAt >= 0 ? Number(args[mibAt + 1]) : 512;
  if (!Number.isInteger(mib) || mib < quarters || mib % quarters !== 0) throw new Error(`--mib ${args[mibAt + 1]}: give a whole number of MiB, a multiple of ${quarters}`);
  requireHost("bench/mirror-alone-bench.ts");
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(unavailable.message);
  const mirror = MirrorLab.create();
  const scratch = mkdtempSync(join(tmpdir(), "tandem-alone-bench-"));
  mkdirSync(join(scratch, "fuse"));
  const passthroughMount = mount(join(scratch, "fuse"));
  try {
    await mirror.begin();
    const enter = ["nsenter", "-t", String(mirror.daemons[0]!.child.pid), "-m", "--"];
    const mirrored = join(mirror.nodes[0]!.dataDir, "table");
    const raw = join(scratch, "table");
    const passthrough = join(scratch, "fuse", "table");
    const dd = (prefix: readonly string[], file: string, count: number, seek: number, truncate: boolean) => {
      const [command, ...args] = [...prefix, "dd", "if=/dev/zero", `of=${file}`, "bs=1M", `count=${count}`, `seek=${seek}`, `conv=fsync${truncate ? "" : ",notrunc"}`, "status=none"];
      execFileSync(command!, args);
    };
    process.stderr.write(`writing the ${mib} MiB file on both nodes, then n2 loses power\n`);
    dd(enter, mirrored, mib, 0, true);
    dd([], raw, mib, 0, true);
    dd([], passthrough, mib, 0, true);
    // Checkpoints clear the marks of the new file once it is durable on both.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await mirror.powerOff(1);
    await mirror.untilRoles(["ALONE", null]);
    const laneBefore = (await mirror.view(0))?.mirror?.lane.completed ?? 0;
    const quarter = mib / quarters;
    const rates: { mirrored: number; passthrough: number; raw: number }[] = [];
    for (let index = 0; index < quarters; index++) {
      const time = (prefix: readonly string[], file: string) => {
        const start = performance.now();
        dd(prefix, file, quarter, index * quarter, false);
        return quarter / ((performance.now() - start) / 1000);
      };
      // Order rotated, so that none always follows another's writeback.
      const runs = { mirrored: () => time(enter, mirrored), passthrough: () => time([], passthrough), raw: () => time([], raw) };
      const order = (["mirrored", "passthrough", "raw"] as const).map((_, at, all) => all[(at + index) % all.length]!);
      const rate = { mirrored: 0, passthrough: 0, raw: 0 };
      for (const name of order) rate[name] = runs[name]();
      rates.push(rate);
      process.stderr.write(`quarter ${index + 1}/${quarters} done\n`);
    }
    const view = await mirror.view(0);
    console.log(`n1 alone rewriting a ${mib} MiB file in place (1 MiB writes, fsync at the end of each quarter) vs the same through a FUSE passthrough and on a raw directory of the same disk`);
    console.log("| quarter | mirrored, alone | passthrough | raw | mirrored ÷ passthrough | mirrored ÷ raw |");
    console.log("|---|---|---|---|---|---|");
    rates.forEach((rate, index) => console.log(`| ${index * quarter}–${(index + 1) * quarter} MiB | ${rate.mirrored.toFixed(0)} MiB/s | ${rate.passthrough.toFixed(0)} MiB/s | ${rate.raw.toFixed(0)} MiB/s | ${(rate.mirrored / rate.passthrough).toFixed(2)} | ${(rate.mirrored / rate.raw).toFixed(2)} |`));
    const last = rates.at(-1)!;
    const first = rates[0]!;
    console.log(`last quarter ÷ first: mirrored ${(last.mirrored / first.mirrored).toFixed(2)}, raw ${(last.raw / first.raw).toFixed(2)}`);
    console.log(`n1: ${view?.state} ${view?.readiness}, ${view?.mirror?.stats.metaWrites} metadata writes, ${(view?.mirror?.lane.completed ?? 0) - laneBefore} operations on the lane of the node alone`);
  } finally {
    await mirror.destroy();
    passthroughMount.unmount({ force: true });
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
