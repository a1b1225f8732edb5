// The mirror module's cost for an application, on this host (issue 8's figures): a
// two-node mirror of real node services in network namespaces (test/host/mirror-lab.ts),
// n1 primary, n2 secondary, replicating synchronously (async="none": a write returns once
// applied on both, an fsync once durable on both). The workloads of bench/fuse-bench.ts
// (sequential 1 MiB writes + fsync, 4 KiB write + fdatasync latency, small-file creates)
// run, in alternating order, on three directories of the same file system:
//   RAW          a plain directory;
//   PASSTHROUGH  a plain FUSE passthrough mount held by this process (native/fuse.ts);
//   MIRRORED     n1's replicated directory, from inside n1's mount namespace (nsenter);
//   EXCLUDED     its `scratch/bench`, left out of replication (`<notreplicated path>`): what
//                an application pays for scratch space in the mirrored directory.
// Ratios: mirrored ÷ passthrough and mirrored ÷ raw; the network round trip between the
// namespaces (ping) is printed beside the fsync latencies, for the goal "≤ local + one
// round trip + 50 µs". Then pgbench (TPS, mirrored ÷ local) when PostgreSQL 15 is there.
//
// `node bench/mirror-host-bench.ts [--quick] [--rounds N] [--pin] [--workloads W,...]` (as
// root, the same needs as the host tests; `--workloads` runs only those of rewrite,
// cold-rewrite, overwrite, append, creates, and no pgbench). `--pin` runs this process
// (the workloads, the passthrough's threads) and n1's service on CPU 0 and n2's service
// on CPU 1: the split two machines give, where the peer's half of a mirrored write runs
// elsewhere, on one host (the disk stays shared).
// The figures and their date are in docs/replicator.md.

import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fuseUnavailable, mount, type FuseMount } from "../native/fuse.ts";
import { MirrorLab, mirrorModule } from "../test/host/mirror-lab.ts";
import { requireHost } from "../test/host/netns-lab.ts";
import { emptySamples, fileSystemOf, fullShape, measure, median, quickShape, record, type Samples, type Shape, type Workload } from "./fuse-bench.ts";

const mebibyte = 1024 * 1024;
const pgBin = "/usr/lib/postgresql/15/bin";
const allWorkloads: readonly Workload[] = ["rewrite", "cold-rewrite", "overwrite", "append", "creates"];
type Place = "raw" | "passthrough" | "mirrored" | "excluded";
const allPlaces: readonly Place[] = ["raw", "passthrough", "mirrored", "excluded"];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const roundsAt = args.indexOf("--rounds");
  const base = quick ? quickShape : fullShape;
  const shape: Shape = roundsAt >= 0 ? { ...base, roundCount: Math.max(1, Number(args[roundsAt + 1])) } : base;
  const pin = args.includes("--pin");
  const chosenAt = args.indexOf("--workloads");
  const chosen = chosenAt >= 0 ? (args[chosenAt + 1] ?? "").split(",") : null;
  const unknown = chosen?.find((name) => !allWorkloads.includes(name as Workload));
  if (unknown !== undefined) throw new Error(`--workloads: no workload "${unknown}" (known: ${allWorkloads.join(", ")})`);
  const workloads = chosen === null ? allWorkloads : allWorkloads.filter((name) => chosen.includes(name));
  requireHost("bench/mirror-host-bench.ts");
  // Every thread of this process, and what it starts from now on (n1's service), on CPU 0.
  if (pin) pinTo(process.pid, 0);
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(unavailable.message);
  const mirror = MirrorLab.create();
  const scratch = mkdtempSync(join(tmpdir(), "tandem-mirror-bench-"));
  // PostgreSQL (user postgres) reaches its local data directory below it.
  chmodSync(scratch, 0o755);
  let passthrough: FuseMount | null = null;
  try {
    const raw = join(scratch, "raw");
    const mounted = join(scratch, "passthrough");
    mkdirSync(raw);
    mkdirSync(mounted);
    passthrough = mount(mounted);
    await mirror.begin();
    if (pin) pinTo(mirror.daemons[1]!.child.pid!, 1);
    const enter = ["nsenter", "-t", String(mirror.daemons[0]!.child.pid), "-m", "--"];
    const excluded = join(mirror.nodes[0]!.dataDir, "scratch", "bench");
    execFileSync(enter[0]!, [...enter.slice(1), "mkdir", "-p", excluded]);
    const places: Record<Place, { dir: string; prefix: readonly string[] }> = {
      raw: { dir: raw, prefix: [] },
      passthrough: { dir: mounted, prefix: [] },
      mirrored: { dir: mirror.nodes[0]!.dataDir, prefix: enter },
      excluded: { dir: excluded, prefix: enter },
    };
    const samples: Record<Place, Samples> = { raw: emptySamples(), passthrough: emptySamples(), mirrored: emptySamples(), excluded: emptySamples() };
    console.log(`mirrored directory vs FUSE passthrough vs raw: ${fileSystemOf(raw)}; ${shape.roundCount} rounds (order rotated), medians${quick ? " (--quick)" : ""}${pin ? "; pinned: workloads, passthrough and n1 on CPU 0, n2 on CPU 1" : ""}`);
    for (let round = 0; round < shape.roundCount; round++) {
      const order: Place[] = allPlaces.map((_, index, all) => all[(index + round) % all.length]!);
      for (const workload of workloads) {
        for (const place of order) record(samples[place], await measure(workload, places[place].dir, quick, places[place].prefix), shape);
      }
      process.stderr.write(`round ${round + 1}/${shape.roundCount} done\n`);
    }
    report(shape, samples, roundTripUs(mirror), workloads);
    const view = await mirror.view(0);
    const stats = view?.mirror?.stats;
    console.log(`n1 after the runs: ${view?.state} ${view?.readiness}, ${stats?.replicatedOps} operations replicated, ${stats?.metaWrites} metadata writes (${((stats?.metaWrites ?? 0) / Math.max(1, stats?.replicatedOps ?? 0)).toFixed(2)} per operation), ${stats?.resyncs} resyncs; the lane ${view?.mirror?.lane.on === true ? "on" : "off"} (TANDEM_MIRROR_LANE=${process.env["TANDEM_MIRROR_LANE"] ?? "on"}), ${view?.mirror?.lane.completed ?? 0} operations completed on it (${view?.mirror?.lane.durableWrites ?? 0} writes made durable on both, ${view?.mirror?.lane.sparedFsyncs ?? 0} fsyncs spared a round trip)`);
    if (chosen === null) await pgbenchSection(mirror, scratch, enter);
  } finally {
    passthrough?.unmount({ force: true });
    await mirror.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Every thread of process `pid` (and what it starts after) on CPU `cpu` alone. */
function pinTo(pid: number, cpu: number): void {
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

/** The median round trip between the two node namespaces, µs (ping, 50 packets). */
function roundTripUs(mirror: MirrorLab): number {
  const output = execFileSync("ip", ["netns", "exec", mirror.nodes[0]!.ns, "ping", "-q", "-c", "50", "-i", "0.01", mirror.nodes[1]!.ip], { encoding: "utf8" });
  const average = /= [\d.]+\/([\d.]+)\//.exec(output)?.[1];
  return average === undefined ? Number.NaN : Number(average) * 1000;
}

function report(shape: Shape, samples: Record<Place, Samples>, rttUs: number, workloads: readonly Workload[]): void {
  const rows: [Workload, string, (s: Samples) => number[], string][] = [
    ["rewrite", `sequential write ${shape.sequentialSize / mebibyte} MiB over a cached file, 1 MiB writes + fsync`, (s) => s.rewriteMiBps, "MiB/s"],
    ["cold-rewrite", `  the same over a file written 3 s before`, (s) => s.coldRewriteMiBps, "MiB/s"],
    ["overwrite", `4 KiB in-place write + fdatasync p50`, (s) => s.overwriteP50Us, "µs"],
    ["overwrite", `4 KiB in-place write + fdatasync p99`, (s) => s.overwriteP99Us, "µs"],
    ["append", `4 KiB append + fdatasync p50`, (s) => s.appendP50Us, "µs"],
    ["append", `4 KiB append + fdatasync p99`, (s) => s.appendP99Us, "µs"],
    ["creates", `small-file creates (${shape.createCount} x 1 KiB)`, (s) => s.createsPerSecond, "files/s"],
  ];
  console.log(`${"".padEnd(66)} ${"raw".padStart(12)} ${"passthrough".padStart(12)} ${"mirrored".padStart(12)} ${"÷ passthr.".padStart(10)} ${"÷ raw".padStart(7)} ${"excluded".padStart(12)} ${"÷ passthr.".padStart(10)}`);
  for (const [workload, label, pick, unit] of rows) {
    if (!workloads.includes(workload)) continue;
    const [raw, passthrough, mirrored, excluded] = allPlaces.map((place) => median(pick(samples[place])));
    const cell = (value: number) => `${value.toFixed(0)} ${unit}`.padStart(12);
    console.log(`${label.padEnd(66)} ${cell(raw!)} ${cell(passthrough!)} ${cell(mirrored!)} ${(mirrored! / passthrough!).toFixed(2).padStart(10)} ${(mirrored! / raw!).toFixed(2).padStart(7)} ${cell(excluded!)} ${(excluded! / passthrough!).toFixed(2).padStart(10)}`);
  }
  if (!workloads.includes("overwrite")) return;
  const local = median(samples.raw.overwriteP50Us);
  console.log(`network round trip n1 -> n2: ${rttUs.toFixed(0)} µs; goal for the 4 KiB write + fdatasync p50: local ${local.toFixed(0)} + ${rttUs.toFixed(0)} + 50 = ${(local + rttUs + 50).toFixed(0)} µs, measured ${median(samples.mirrored.overwriteP50Us).toFixed(0)} µs`);
}

/** pgbench (TPC-B-like, scale 4, 4 clients, 20 s) against PostgreSQL on a plain directory
 *  and on the mirrored one; skipped with a note when PostgreSQL 15 is not installed. */
async function pgbenchSection(mirror: MirrorLab, scratch: string, enter: readonly string[]): Promise<void> {
  if (!existsSync(join(pgBin, "pgbench"))) {
    console.log(`pgbench: skipped (${pgBin} is not there: apt-get install postgresql-15)`);
    return;
  }
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  const local = join(scratch, "pglocal");
  const mirrored = join(mirror.nodes[0]!.dataDir, "pg");
  const results: Record<string, number> = {};
  let laneDuring = "";
  for (const [name, dir, prefix] of [["local", local, []], ["mirrored", mirrored, enter]] as const) {
    const run = (command: string) => {
      const result = spawnSync(prefix[0] ?? "/bin/sh", [...prefix.slice(1), ...(prefix.length > 0 ? ["/bin/sh"] : []), "-c", command], { encoding: "utf8" });
      if (result.status !== 0) throw new Error(`${name}: ${command}: ${result.stderr}`);
      return result.stdout;
    };
    run(`mkdir -p ${dir} && chown ${uid}:${gid} ${dir}`);
    const asPostgres = (command: string) => run(`runuser -u postgres -- ${command}`);
    asPostgres(`${pgBin}/initdb -D ${dir} -A trust --no-sync`);
    // The socket outside the replicated tree: a mirrored directory holds no sockets.
    const sockets = join(scratch, `sockets-${name}`);
    run(`mkdir -p ${sockets} && chown ${uid}:${gid} ${sockets}`);
    run(`printf "listen_addresses = ''\\nunix_socket_directories = '${sockets}'\\n" >> ${dir}/postgresql.conf`);
    asPostgres(`${pgBin}/pg_ctl -D ${dir} -l ${sockets}/postgresql.log -w start`);
    try {
      asPostgres(`${pgBin}/pgbench -h ${sockets} -i -s 4 -q postgres`);
      const before = name === "mirrored" ? (await mirror.view(0))?.mirror : undefined;
      const output = asPostgres(`${pgBin}/pgbench -h ${sockets} -c 4 -j 2 -T 20 postgres`);
      results[name] = Number(/tps = ([\d.]+)/.exec(output)?.[1] ?? Number.NaN);
      const after = before === undefined ? undefined : (await mirror.view(0))?.mirror;
      if (before !== undefined && before !== null && after !== undefined && after !== null) {
        const [was, is] = [before.lane, after.lane];
        // replicatedOps counts the lane's operations too (as its reports come).
        const coreOps = (stats: typeof after.stats) => stats.replicatedOps - stats.laneOps;
        laneDuring = `; during the mirrored run the core replicated ${coreOps(after.stats) - coreOps(before.stats)} operations and the lane completed ${is.completed - was.completed} (${is.durableWrites - was.durableWrites} writes made durable on both, ${is.sparedFsyncs - was.sparedFsyncs} fsyncs spared)`;
      }
    } finally {
      asPostgres(`${pgBin}/pg_ctl -D ${dir} -m fast -w stop`);
    }
  }
  console.log(`pgbench (scale 4, 4 clients, 20 s): local ${results["local"]!.toFixed(0)} TPS, mirrored ${results["mirrored"]!.toFixed(0)} TPS, ratio ${(results["mirrored"]! / results["local"]!).toFixed(2)}${laneDuring}`);
}

await main();
