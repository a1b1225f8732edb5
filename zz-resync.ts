import { execFileSync } from "node:child_process";
import { MirrorLab } from "./test/host/mirror-lab.ts";
const mirror = MirrorLab.create();
await mirror.begin();
const enter = ["nsenter", "-t", String(mirror.daemons[0]!.child.pid), "-m", "--"];
const dir = mirror.nodes[0]!.dataDir;
const cpu = (pid: number) => { const f = execFileSync("cat", [`/proc/${pid}/stat`], { encoding: "utf8" }).split(" "); return (Number(f[13]) + Number(f[14])) / 100; };
try {
  const n1 = mirror.daemons[0]!.child.pid!, n2 = mirror.daemons[1]!.child.pid!;
  execFileSync(enter[0]!, [...enter.slice(1), "dd", "if=/dev/zero", `of=${dir}/seq.bin`, "bs=1M", "count=1024", "conv=fsync"], { stdio: "ignore" });
  const mb = Number(process.argv[2] ?? 1024);
  execFileSync(enter[0]!, [...enter.slice(1), "dd", "if=/dev/zero", `of=${dir}/seq.bin`, "bs=1M", `count=${mb}`, "conv=notrunc"], { stdio: "ignore" });
  const c0 = cpu(n1);
  process.kill(n2, "SIGSTOP");
  await new Promise((r) => setTimeout(r, 1500));
  process.kill(n2, "SIGCONT");
  const t0 = Date.now();
  for (;;) {
    const v = await mirror.view(0);
    const line = `${((Date.now() - t0) / 1000).toFixed(1)} s: ${v?.state} ${v?.readiness} n1 cpu ${(cpu(n1) - c0).toFixed(1)} s`;
    console.log(line);
    if ((v?.readiness === "Ready" && v?.state === "PRIM" && Date.now() - t0 > 3000) || Date.now() - t0 > 120000) break;
    await new Promise((r) => setTimeout(r, 2000));
  }
  for (const line of mirror.daemons[0]!.output.split("\n")) if (/attach|resync|lost/.test(line)) console.log("  n1: " + line.slice(0, 250));
} finally {
  await mirror.destroy();
}
