import { spawn, execFileSync } from "node:child_process";
import { MirrorLab } from "./test/host/mirror-lab.ts";
import { measure, emptySamples, record, fullShape, median } from "./bench/fuse-bench.ts";
const mirror = MirrorLab.create();
await mirror.begin();
const enter = ["nsenter", "-t", String(mirror.daemons[0]!.child.pid), "-m", "--"];
const dir = mirror.nodes[0]!.dataDir;
const mode = process.argv[2] ?? "plain";
const runs = Number(process.argv[3] ?? 3);
try {
  for (let i = 0; i < runs; i++) {
    const s = emptySamples();
    const before = (await mirror.view(0))?.mirror;
    let perf: ReturnType<typeof spawn> | null = null;
    if (mode !== "plain" && i === runs - 1) {
      const pids = `${mirror.daemons[0]!.child.pid},${mirror.daemons[1]!.child.pid}`;
      const args = mode === "trace" ? ["trace", "-s", "-p", pids, "-o", "/tmp/perf-trace.txt"] : ["record", "-g", "-o", "/tmp/perf.data", "-p", pids];
      perf = spawn("perf", args, { stdio: "inherit" });
      await new Promise((r) => setTimeout(r, 1500));
    }
    record(s, await measure("rewrite", dir, false, enter), fullShape);
    if (perf) { perf.kill("SIGINT"); await new Promise((r) => perf!.on("exit", r)); }
    const after = (await mirror.view(0))?.mirror;
    console.log(`run ${i}: ${median(s.rewriteMiBps).toFixed(0)} MiB/s; ops ${after!.stats.replicatedOps - before!.stats.replicatedOps}, lane ${after!.lane.completed - before!.lane.completed}, meta ${after!.stats.metaWrites - before!.stats.metaWrites}, lane on ${after!.lane.on}`);
  }
  const view = await mirror.view(0);
  console.log(view?.mirror?.stats.replicatedOps, view?.mirror?.lane.completed);
} finally {
  await mirror.destroy();
}
