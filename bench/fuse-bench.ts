// The FUSE passthrough's cost (native/fuse.ts): the baselines of issue 8, against which the
// mirrored directory will be measured. Each workload runs on a RAW directory and on a
// PASSTHROUGH directory (the same file system, mounted over with the passthrough), in
// alternating order (ABBA), and the figures are medians over the rounds:
//   - sequential write: 1 GiB in 1 MiB writes, fsync at the end (MiB/s), into a new file and
//     over the file just written (see sequential() on why both);
//   - 4 KiB write + fdatasync latency, p50 and p99 over 2000 iterations (µs), twice: appending
//     (the file grows, so each fdatasync commits ext4's journal), and in place in a
//     preallocated 16 MiB file (PostgreSQL's WAL pattern: no metadata to commit);
//   - small-file creates: 5000 files of 1 KiB, create + write + close (files/s).
//
// Who does what. This process holds the mount: the addon's native threads (libfuse's
// workers) serve the file system, as the node service will. The I/O runs in a CHILD
// process (this file with --worker), synchronous fs calls timed with hrtime, as an
// application would issue them. Doing the I/O here instead would put the application and
// its file system in one process: every synchronous call would block this event loop
// (harmless to the native workers, but the figures would then describe an arrangement that
// never exists in production), and async fs calls would queue on libuv's four threads,
// measuring that pool rather than the mount. The same child program runs against both
// directories, so the mount is the only difference. A `sync` runs before each measurement.
//
// `node bench/fuse-bench.ts [--quick] [--rounds N] [--dir BASE]` (as root; BASE defaults to
// the system's temporary directory, and should be on the disk being measured). The figures
// and their date are in docs/replicator.md.

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fuseBinding, fuseUnavailable, mount, type FuseMount } from "../native/fuse.ts";

const mebibyte = 1024 * 1024;
/** The in-place fdatasync workload writes over a file of this size (a WAL segment's). */
const preallocatedSize = 16 * mebibyte;

export interface Shape {
  readonly sequentialSize: number;
  readonly writeSize: number;
  readonly syncIterationCount: number;
  readonly syncWarmupCount: number;
  readonly syncWriteSize: number;
  readonly createCount: number;
  readonly createSize: number;
  readonly roundCount: number;
}

export const fullShape: Shape = {
  sequentialSize: 1024 * mebibyte,
  writeSize: mebibyte,
  syncIterationCount: 2000,
  syncWarmupCount: 100,
  syncWriteSize: 4096,
  createCount: 5000,
  createSize: 1024,
  roundCount: 3,
};

export const quickShape: Shape = { ...fullShape, sequentialSize: 256 * mebibyte, syncIterationCount: 500, createCount: 1000, roundCount: 2 };

export type Workload = "sequential" | "rewrite" | "cold-rewrite" | "append" | "overwrite" | "creates";

/** What a worker prints (one JSON line). */
export type WorkerResult =
  | { readonly workload: "sequential" | "rewrite" | "cold-rewrite"; readonly seconds: number }
  | { readonly workload: "append" | "overwrite"; readonly latenciesUs: readonly number[] }
  | { readonly workload: "creates"; readonly seconds: number };

// ---- the worker: the application's side ----

function elapsedSeconds(startNs: bigint): number {
  return Number(process.hrtime.bigint() - startNs) / 1e9;
}

/** A new file (`fresh`), or over the same file written just before (untimed, fsynced), so that
 *  the page cache already holds its pages. This machine is a VM whose freed memory goes
 *  cold within seconds (its host takes the pages back): the first GiB of new page cache can
 *  cost seconds to fault in, ten times the write itself, and varies from run to run. The
 *  overwrite shows the data path without that; the new file shows what an application
 *  creating files meets here. `coldMs`: how long the file rests between the two (a
 *  mirror's activity log forgets what was not written for 2 s: the cold rewrite is an
 *  application overwriting older data). */
function sequential(dir: string, shape: Shape, fresh: boolean, coldMs = 0): WorkerResult {
  const buffer = randomBytes(shape.writeSize);
  const path = join(dir, "sequential.bin");
  if (!fresh) {
    const fd = openSync(path, "w");
    for (let written = 0; written < shape.sequentialSize; written += buffer.length) writeSync(fd, buffer);
    fsyncSync(fd);
    closeSync(fd);
    if (coldMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, coldMs);
  }
  const start = process.hrtime.bigint();
  const fd = openSync(path, fresh ? "w" : "r+");
  for (let written = 0; written < shape.sequentialSize; written += buffer.length) writeSync(fd, buffer);
  fsyncSync(fd);
  closeSync(fd);
  const seconds = elapsedSeconds(start);
  rmSync(path);
  return { workload: fresh ? "sequential" : coldMs > 0 ? "cold-rewrite" : "rewrite", seconds };
}

function syncLatency(dir: string, shape: Shape, workload: "append" | "overwrite"): WorkerResult {
  const buffer = randomBytes(shape.syncWriteSize);
  const path = join(dir, `${workload}.bin`);
  const fd = openSync(path, workload === "append" ? "a" : "w+");
  const blockCount = preallocatedSize / shape.syncWriteSize;
  if (workload === "overwrite") {
    for (let index = 0; index < blockCount; index++) writeSync(fd, buffer);
    fsyncSync(fd);
  }
  const latenciesUs: number[] = [];
  for (let index = 0; index < shape.syncWarmupCount + shape.syncIterationCount; index++) {
    const start = process.hrtime.bigint();
    if (workload === "append") writeSync(fd, buffer);
    else writeSync(fd, buffer, 0, buffer.length, (index % blockCount) * shape.syncWriteSize);
    fdatasyncSync(fd);
    if (index >= shape.syncWarmupCount) latenciesUs.push(elapsedSeconds(start) * 1e6);
  }
  closeSync(fd);
  rmSync(path);
  return { workload, latenciesUs };
}

function creates(dir: string, shape: Shape): WorkerResult {
  const buffer = randomBytes(shape.createSize);
  const into = join(dir, "creates");
  mkdirSync(into);
  const start = process.hrtime.bigint();
  for (let index = 0; index < shape.createCount; index++) {
    const fd = openSync(join(into, `file-${index}`), "wx");
    writeSync(fd, buffer);
    closeSync(fd);
  }
  const seconds = elapsedSeconds(start);
  rmSync(into, { recursive: true });
  return { workload: "creates", seconds };
}

function runWorker(workload: Workload, dir: string, shape: Shape): void {
  const result =
    workload === "sequential" || workload === "rewrite" || workload === "cold-rewrite"
      ? sequential(dir, shape, workload === "sequential", workload === "cold-rewrite" ? coldRewriteRestMs : 0)
      : workload === "creates" ? creates(dir, shape) : syncLatency(dir, shape, workload);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---- the parent: mount, alternate, report ----

export function percentile(values: readonly number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

export function median(values: readonly number[]): number {
  return percentile(values, 0.5);
}

/** Runs one workload in a child process against `dir`; the parent's event loop stays idle.
 *  `prefix` runs the child through another program (nsenter into a service's mounts). */
export function measure(workload: Workload, dir: string, quick: boolean, prefix: readonly string[] = []): Promise<WorkerResult> {
  spawnSync("sync");
  const args = [fileURLToPath(import.meta.url), "--worker", workload, dir, ...(quick ? ["--quick"] : [])];
  return new Promise((resolve, reject) => {
    const [command, ...rest] = [...prefix, process.execPath, ...args];
    const child = spawn(command!, rest, { stdio: ["ignore", "pipe", "inherit"] });
    let output = "";
    child.stdout.on("data", (data: Buffer) => (output += data.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`the ${workload} worker on ${dir} exited with ${code}`));
      else resolve(JSON.parse(output) as WorkerResult);
    });
  });
}

/** How long the cold rewrite's file rests before it is rewritten. */
const coldRewriteRestMs = 3_000;

export interface Samples {
  readonly sequentialMiBps: number[];
  readonly rewriteMiBps: number[];
  readonly coldRewriteMiBps: number[];
  readonly appendP50Us: number[];
  readonly appendP99Us: number[];
  readonly overwriteP50Us: number[];
  readonly overwriteP99Us: number[];
  readonly createsPerSecond: number[];
}

export function emptySamples(): Samples {
  return { sequentialMiBps: [], rewriteMiBps: [], coldRewriteMiBps: [], appendP50Us: [], appendP99Us: [], overwriteP50Us: [], overwriteP99Us: [], createsPerSecond: [] };
}

export function record(samples: Samples, result: WorkerResult, shape: Shape): void {
  if ("latenciesUs" in result) {
    const [p50, p99] = result.workload === "append" ? [samples.appendP50Us, samples.appendP99Us] : [samples.overwriteP50Us, samples.overwriteP99Us];
    p50.push(percentile(result.latenciesUs, 0.5));
    p99.push(percentile(result.latenciesUs, 0.99));
  } else if (result.workload === "creates") {
    samples.createsPerSecond.push(shape.createCount / result.seconds);
  } else {
    const rates = result.workload === "sequential" ? samples.sequentialMiBps : result.workload === "cold-rewrite" ? samples.coldRewriteMiBps : samples.rewriteMiBps;
    rates.push(shape.sequentialSize / mebibyte / result.seconds);
  }
}

export function fileSystemOf(dir: string): string {
  const result = spawnSync("df", ["--output=fstype,source", dir], { encoding: "utf8" });
  const line = result.stdout?.trim().split("\n")[1]?.trim().replace(/\s+/g, " ");
  return line ?? "unknown";
}

interface DaemonUse {
  cpuSeconds: number;
  writeRequests: number;
  bytesWritten: number;
}

async function runParent(shape: Shape, quick: boolean, base: string): Promise<void> {
  const unavailable = fuseUnavailable();
  if (unavailable !== null) {
    console.error(`error: ${unavailable.message}`);
    process.exit(1);
  }
  const scratch = mkdtempSync(join(base, "tandem-fuse-bench-"));
  const raw = join(scratch, "raw");
  const mounted = join(scratch, "passthrough");
  mkdirSync(raw);
  mkdirSync(mounted);
  let fuse: FuseMount | null = null;
  try {
    fuse = mount(mounted);
    const samples = { raw: emptySamples(), passthrough: emptySamples() };
    const daemon: DaemonUse = { cpuSeconds: 0, writeRequests: 0, bytesWritten: 0 };
    const kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    const libfuse = fuseBinding().libfuseVersion;
    const loadAverage = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
    console.log(`FUSE passthrough vs the raw directory: kernel ${kernel}, libfuse ${Math.floor(libfuse / 100)}.${libfuse % 100}, ${cpus().length} cores, ${fileSystemOf(raw)}; ${shape.roundCount} rounds (ABBA), medians${quick ? " (--quick)" : ""}; load average ${loadAverage()}`);
    for (let round = 0; round < shape.roundCount; round++) {
      for (const workload of ["sequential", "rewrite", "append", "overwrite", "creates"] as const) {
        const order = round % 2 === 0 ? (["raw", "passthrough"] as const) : (["passthrough", "raw"] as const);
        for (const which of order) {
          const before = which === "passthrough" ? { cpu: process.cpuUsage(), stats: fuse.stats() } : null;
          const result = await measure(workload, which === "raw" ? raw : mounted, quick);
          record(samples[which], result, shape);
          if (before !== null && workload === "rewrite") {
            const cpu = process.cpuUsage(before.cpu);
            const after = fuse.stats();
            daemon.cpuSeconds += (cpu.user + cpu.system) / 1e6;
            daemon.writeRequests += after.operations.write - before.stats.operations.write;
            daemon.bytesWritten += after.bytesWritten - before.stats.bytesWritten;
          }
        }
      }
      process.stderr.write(`round ${round + 1}/${shape.roundCount} done\n`);
    }
    report(shape, samples, daemon);
    console.log(`load average at the end: ${loadAverage()} (other work on the machine disturbs these figures)`);
  } finally {
    fuse?.unmount({ force: true });
    rmSync(scratch, { recursive: true, force: true });
  }
}

function report(shape: Shape, samples: { raw: Samples; passthrough: Samples }, daemon: DaemonUse): void {
  const rows: [string, (s: Samples) => number[], string, number][] = [
    [`sequential write ${shape.sequentialSize / mebibyte} MiB, ${shape.writeSize / mebibyte} MiB writes + fsync, new file`, (s) => s.sequentialMiBps, "MiB/s", 0],
    [`  the same over the cached file just written`, (s) => s.rewriteMiBps, "MiB/s", 0],
    [`${shape.syncWriteSize / 1024} KiB append + fdatasync p50 (${shape.syncIterationCount}x)`, (s) => s.appendP50Us, "µs", 0],
    [`${shape.syncWriteSize / 1024} KiB append + fdatasync p99`, (s) => s.appendP99Us, "µs", 0],
    [`${shape.syncWriteSize / 1024} KiB in-place write + fdatasync p50 (${shape.syncIterationCount}x)`, (s) => s.overwriteP50Us, "µs", 0],
    [`${shape.syncWriteSize / 1024} KiB in-place write + fdatasync p99`, (s) => s.overwriteP99Us, "µs", 0],
    [`small-file creates (${shape.createCount} x ${shape.createSize / 1024} KiB)`, (s) => s.createsPerSecond, "files/s", 0],
  ];
  console.log(`${"".padEnd(60)} ${"raw".padStart(14)} ${"passthrough".padStart(14)} ${"ratio".padStart(7)}`);
  for (const [label, pick, unit, digits] of rows) {
    const raw = median(pick(samples.raw));
    const passthrough = median(pick(samples.passthrough));
    const cell = (value: number) => `${value.toFixed(digits)} ${unit}`.padStart(14);
    console.log(`${label.padEnd(60)} ${cell(raw)} ${cell(passthrough)} ${(passthrough / raw).toFixed(2).padStart(7)}`);
  }
  console.log("(ratio: passthrough / raw; above 1 is slower for latencies, below 1 is slower for rates)");
  const gib = daemon.bytesWritten / (1024 * mebibyte);
  console.log(
    `passthrough daemon during the sequential rewrites: ${(daemon.cpuSeconds / gib).toFixed(2)} CPU s per GiB, ` +
      `${(daemon.bytesWritten / Math.max(1, daemon.writeRequests) / 1024).toFixed(0)} KiB per write request`,
  );
}

// ---- entry ----

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const baseShape = quick ? quickShape : fullShape;
const roundsAt = args.indexOf("--rounds");
const shape: Shape = roundsAt >= 0 ? { ...baseShape, roundCount: Math.max(1, Number(args[roundsAt + 1])) } : baseShape;
const workerAt = args.indexOf("--worker");
const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (!isMain) {
  // Imported (bench/mirror-host-bench.ts): nothing to run.
} else if (workerAt >= 0) {
  runWorker(args[workerAt + 1] as Workload, args[workerAt + 2]!, shape);
} else {
  const dirAt = args.indexOf("--dir");
  await runParent(shape, quick, dirAt >= 0 ? args[dirAt + 1]! : tmpdir());
}
