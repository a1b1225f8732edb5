import { execFileSync } from "node:child_process";
import { MirrorLab } from "./test/host/mirror-lab.ts";
const mirror = MirrorLab.create();
await mirror.begin();
const enter = ["nsenter", "-t", String(mirror.daemons[0]!.child.pid), "-m", "--"];
const dir = mirror.nodes[0]!.dataDir;
const runs = Number(process.argv[2] ?? 3);
async function stat() { const m = (await mirror.view(0))!.mirror!; return { ops: m.stats.replicatedOps, lane: m.lane.completed, meta: m.stats.metaWrites }; }
function dd(extra: string[]): number {
  const t = process.hrtime.bigint();
  execFileSync(enter[0]!, [...enter.slice(1), "dd", "if=/dev/zero", `of=${dir}/seq.bin`, "bs=1M", "count=1024", "conv=fsync", ...extra], { stdio: "ignore" });
  return 1024 / (Number(process.hrtime.bigint() - t) / 1e9);
}
const seen = new Set<string>();
try {
  for (let i = 0; i < runs; i++) {
    const a = await stat();
    const first = dd([]);
    const b = await stat();
    await new Promise((r) => setTimeout(r, Number(process.argv[3] ?? 0)));
    const b2 = await stat(); void b2;
    const second = dd(["conv=notrunc,fsync"]);
    const c = await stat();
    execFileSync(enter[0]!, [...enter.slice(1), "rm", `${dir}/seq.bin`]);
    for (const line of mirror.daemons[0]!.output.split("\n")) if (/lane|checkpoint|warn|error/.test(line) && !seen.has(line)) { seen.add(line); console.log("  n1: " + line.slice(0, 300)); }
    console.log(`run ${i}: new ${first.toFixed(0)} MiB/s ops ${b.ops - a.ops} lane ${b.lane - a.lane} meta ${b.meta - a.meta} | rewrite ${second.toFixed(0)} MiB/s ops ${c.ops - b.ops} lane ${c.lane - b.lane} meta ${c.meta - b.meta}`);
  }
} finally {
  await mirror.destroy();
}
