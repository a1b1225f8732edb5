// Resync throughput on this host (issue 8's "resync throughput"): a full copy of a
// primary's replicated directory onto a new secondary, by real node services in network
// namespaces (test/host/mirror-lab.ts), against the classic way to copy a tree between two
// hosts, run alongside on the same data: tar piped over TCP between the same namespaces
// and unpacked on the other side, then synced to disk (what the secondary's resync ends
// with too).
//
// The data: large files (1 MiB writes) and small files (16 KiB), written under n1's
// directory before its service starts; both copies read it from the page cache. Each
// round: the baseline, then `tandem second fullsync` on n2 (the first round: n2's first
// start, a new node), timed from the command to n2 SECOND and Ready.
//
// `node bench/mirror-resync-bench.ts [--quick] [--rounds N] [--large COUNTxMIB]` (as root,
// the needs of the host tests). Figures and date: docs/replicator.md ("Measured: resync").

import { execFileSync, spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fuseUnavailable } from "../native/fuse.ts";
import { until } from "../test/host/farm-lab.ts";
import { MirrorLab, mirrorModule } from "../test/host/mirror-lab.ts";
import { requireHost } from "../test/host/netns-lab.ts";

const mebibyte = 1024 * 1024;
const baselinePort = 47_911;

interface Shape {
  readonly largeFiles: number;
  readonly largeMiB: number;
  readonly smallFiles: number;
  readonly smallKiB: number;
  readonly rounds: number;
}

const fullShape: Shape = { largeFiles: 4, largeMiB: 192, smallFiles: 4_000, smallKiB: 16, rounds: 3 };
const quickShape: Shape = { largeFiles: 2, largeMiB: 96, smallFiles: 1_000, smallKiB: 16, rounds: 2 };

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const base = args.includes("--quick") ? quickShape : fullShape;
  const roundsAt = args.indexOf("--rounds");
  const largeAt = args.indexOf("--large");
  const shape: Shape = {
    ...base,
    ...(roundsAt >= 0 ? { rounds: Math.max(1, Number(args[roundsAt + 1])) } : {}),
    // --large COUNTxMIB: the large files (e.g. 1x1024: one file of 1 GiB).
    ...(largeAt >= 0 ? { largeFiles: Number(args[largeAt + 1]!.split("x")[0]), largeMiB: Number(args[largeAt + 1]!.split("x")[1]) } : {}),
  };
  requireHost("bench/mirror-resync-bench.ts");
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(unavailable.message);
  const mirror = MirrorLab.create();
  const scratch = mkdtempSync(join(tmpdir(), "tandem-resync-bench-"));
  try {
    const bytes = writeDataset(mirror.nodes[0]!.dataDir, shape);
    console.log(`full resync vs tar over TCP between the namespaces: ${(bytes / mebibyte).toFixed(0)} MiB (${shape.largeFiles} × ${shape.largeMiB} MiB, ${shape.smallFiles} × ${shape.smallKiB} KiB), ${shape.rounds} rounds`);
    for (const index of [0, 1]) await mirror.startDaemon(index);
    await must(mirror.tandem(0, ["start", "-m", mirrorModule]));
    await until(async () => (await mirror.view(0))?.mirror?.why.includes("run prim") === true, 20_000, () => "n1 did not wait for the operator");
    await must(mirror.tandem(0, ["prim", "-m", mirrorModule]));
    await mirror.untilRoles(["ALONE", null], 60_000);
    const rows: { baseline: number; resync: number; sent: number }[] = [];
    for (let round = 0; round < shape.rounds; round++) {
      const baseline = await tarOverTcp(mirror, scratch);
      const stats = async () => (await mirror.view(0))?.mirror?.stats;
      const before = (await stats())?.resyncBlockBytes ?? 0;
      const resyncs = (await stats())?.resyncs ?? 0;
      await must(mirror.tandem(1, round === 0 ? ["start", "-m", mirrorModule] : ["second", "fullsync", "-m", mirrorModule]));
      // Timed from the primary's attachment of n2 (its start, or its detaching, is not the copy).
      await until(async () => ((await stats())?.resyncs ?? 0) > resyncs, 60_000, () => "n1 did not attach n2", 5);
      const started = performance.now();
      const cpuBefore = mirror.daemons.map((daemon) => cpuSeconds(daemon!.child.pid!));
      // What `tandem state` says on the primary a second in (the first round).
      const progress = round > 0 ? null : setTimeout(() => void mirror.tandem(0, ["state", "-m", mirrorModule]).then(({ output }) => console.error(`n1 after 1 s: ${output.trim()}`)), 1_000);
      await mirror.untilRoles(["PRIM", "SECOND"], 600_000);
      if (progress !== null) clearTimeout(progress);
      const seconds = (performance.now() - started) / 1000;
      const cpu = mirror.daemons.map((daemon, index) => cpuSeconds(daemon!.child.pid!) - cpuBefore[index]!);
      const sent = ((await mirror.view(0))?.mirror?.stats.resyncBlockBytes ?? 0) - before;
      rows.push({ baseline: bytes / mebibyte / baseline, resync: bytes / mebibyte / seconds, sent });
      console.error(`round ${round + 1}/${shape.rounds}: tar over TCP ${(bytes / mebibyte / baseline).toFixed(0)} MiB/s, resync ${(bytes / mebibyte / seconds).toFixed(0)} MiB/s (${seconds.toFixed(1)} s, ${(sent / mebibyte).toFixed(0)} MiB of blocks sent; CPU s: primary ${cpu[0]!.toFixed(1)}, secondary ${cpu[1]!.toFixed(1)})`);
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const baseline = median(rows.map((row) => row.baseline));
    const resync = median(rows.map((row) => row.resync));
    console.log(`tar over TCP + sync: ${baseline.toFixed(0)} MiB/s; full resync: ${resync.toFixed(0)} MiB/s; ratio ${(resync / baseline).toFixed(2)} (medians; blocks sent per round ÷ data: ${rows.map((row) => (row.sent / bytes).toFixed(2)).join(", ")})`);
  } finally {
    await mirror.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Writes the dataset under `dir` (underneath: before any service mounts it); its bytes. */
function writeDataset(dir: string, shape: Shape): number {
  const chunk = Buffer.alloc(mebibyte);
  let bytes = 0;
  mkdirSync(join(dir, "large"), { recursive: true });
  for (let file = 0; file < shape.largeFiles; file++) {
    const fd = openSync(join(dir, "large", `f${file}`), "w");
    for (let mib = 0; mib < shape.largeMiB; mib++) {
      // Data that does not compress.
      randomFillSync(chunk);
      writeSync(fd, chunk);
      bytes += chunk.length;
    }
    closeSync(fd);
  }
  const small = chunk.subarray(0, shape.smallKiB * 1024);
  for (let file = 0; file < shape.smallFiles; file++) {
    const sub = join(dir, "small", String(file % 40));
    if (file < 40) mkdirSync(sub, { recursive: true });
    const fd = openSync(join(sub, `s${file}`), "w");
    writeSync(fd, small);
    closeSync(fd);
    bytes += small.length;
  }
  execFileSync("sync");
  return bytes;
}

/** tar of n1's data directory (underneath) piped over TCP from n1's namespace into n2's,
 *  unpacked into a fresh directory and synced; its duration in seconds. */
async function tarOverTcp(mirror: MirrorLab, scratch: string): Promise<number> {
  const [n1, n2] = mirror.nodes;
  const target = join(scratch, "copy");
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target);
  execFileSync("sync");
  const server = `const net = require("node:net"); const { spawn } = require("node:child_process");
    const listener = net.createServer((socket) => { const tar = spawn("tar", ["-x", "-C", ${JSON.stringify(target)}], { stdio: ["pipe", "inherit", "inherit"] });
      socket.pipe(tar.stdin); tar.on("close", (code) => { const sync = spawn("sync", ["-f", ${JSON.stringify(target)}], { stdio: "inherit" }); sync.on("close", () => process.exit(code)); }); listener.close(); });
    listener.listen(${baselinePort}, ${JSON.stringify(n2!.ip)}, () => process.stdout.write("ready\\n"));`;
  const client = `const net = require("node:net"); const { spawn } = require("node:child_process");
    const socket = net.connect(${baselinePort}, ${JSON.stringify(n2!.ip)}, () => { const tar = spawn("tar", ["-c", "-C", ${JSON.stringify(n1!.dataDir)}, "."], { stdio: ["ignore", "pipe", "inherit"] }); tar.stdout.pipe(socket); });`;
  const receiving = spawn("ip", ["netns", "exec", n2!.ns, process.execPath, "-e", server], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    receiving.stdout.once("data", () => resolve());
    receiving.once("exit", (code) => reject(new Error(`the baseline's receiver exited (${code}) before listening`)));
  });
  const started = performance.now();
  const sending = spawn("ip", ["netns", "exec", n1!.ns, process.execPath, "-e", client], { stdio: "inherit" });
  const code = await new Promise<number | null>((resolve) => receiving.once("exit", resolve));
  const seconds = (performance.now() - started) / 1000;
  sending.kill();
  if (code !== 0) throw new Error(`the baseline's tar over TCP failed (exit ${code})`);
  return seconds;
}

/** User + system CPU seconds of a process so far (/proc/PID/stat, clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function must(result: Promise<{ code: number; output: string }>): Promise<void> {
  const { code, output } = await result;
  if (code !== 0) throw new Error(`tandem: ${output}`);
}

await main();
