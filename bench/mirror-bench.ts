// Mirror figures from the simulator (issue: mirror module in simulation): resync bytes per
// byte changed while the peer was down, failover time, fault plans per minute. Exact for
// their seeds. Run alone with `node bench/mirror-bench.ts [--quick]`, or as section 9 of
// `npm run bench`.

import fc from "fast-check";
import type { DiskOp } from "../core/mirror/disk-ops.ts";
import { inSync } from "../drivers/sim/mirror-checker.ts";
import { randomBytes } from "../drivers/sim/mirror-clients.ts";
import { mirrorPlanArbitrary, runMirrorPlan } from "../drivers/sim/mirror-plan.ts";
import { MirrorWorld } from "../drivers/sim/mirror-world.ts";
import { Prng } from "../drivers/sim/prng.ts";

const blockSize = 4_096;

/** Runs `ops` one after the other through the VIP; throws if one fails. */
function runOps(world: MirrorWorld, ops: readonly DiskOp[]): void {
  let index = 0;
  let waiting = false;
  let failure: string | null = null;
  const next = (): void => {
    if (index >= ops.length) return;
    const op = ops[index]!;
    waiting = true;
    world.submit(op, (result) => {
      waiting = false;
      if (result === "unreachable") {
        world.schedule(world.nowMs + 10, next);
        waiting = true;
        return;
      }
      if (result !== null) failure = `${op.kind} ${"path" in op ? op.path : ""}: ${result}`;
      index++;
      next();
    });
  };
  next();
  const done = world.runUntilCondition(() => (index >= ops.length && !waiting) || failure !== null, world.nowMs + 600_000, 10);
  if (failure !== null || !done) throw new Error(`bench workload failed: ${failure ?? "did not finish"}`);
}

const bytes = (length: number, prng: Prng): Uint8Array => randomBytes(length, prng.u32());

interface Workload {
  readonly name: string;
  readonly dataset: (prng: Prng) => DiskOp[];
  /** The operations while the secondary is down, the bytes they change, and the files they touch. */
  readonly outage: (prng: Prng) => { ops: DiskOp[]; changedBytes: number; files: string[] };
}

const bigFileBytes = 16 * 1024 * 1024;
const smallFiles = 2_000;

export const workloads: readonly Workload[] = [
  {
    name: "appends to a 16 MiB file (1000 x 1000 B)",
    dataset: (prng) => [{ kind: "create", path: "log", mode: 0o644 }, ...Array.from({ length: bigFileBytes / 65_536 }, (_, index): DiskOp => ({ kind: "write", path: "log", offset: index * 65_536, data: bytes(65_536, prng) })), { kind: "fsync", path: null }],
    outage: (prng) => ({
      ops: [...Array.from({ length: 1_000 }, (_, index): DiskOp => ({ kind: "write", path: "log", offset: bigFileBytes + index * 1_000, data: bytes(1_000, prng) })), { kind: "fsync", path: null }],
      changedBytes: 1_000 * 1_000,
      files: ["log"],
    }),
  },
  {
    name: "random 4 KiB overwrites of a 16 MiB file (256)",
    dataset: (prng) => [{ kind: "create", path: "table", mode: 0o644 }, ...Array.from({ length: bigFileBytes / 65_536 }, (_, index): DiskOp => ({ kind: "write", path: "table", offset: index * 65_536, data: bytes(65_536, prng) })), { kind: "fsync", path: null }],
    outage: (prng) => {
      const blocks = new Set<number>();
      while (blocks.size < 256) blocks.add(prng.int(0, bigFileBytes / blockSize - 1));
      return { ops: [...[...blocks].map((block): DiskOp => ({ kind: "write", path: "table", offset: block * blockSize, data: bytes(blockSize, prng) })), { kind: "fsync", path: null }], changedBytes: 256 * blockSize, files: ["table"] };
    },
  },
  {
    name: `many small files (${smallFiles} x 2 KiB: 200 changed, 50 new)`,
    dataset: (prng) => [
      { kind: "mkdir", path: "files", mode: 0o755 },
      ...Array.from({ length: smallFiles }, (_, index): DiskOp[] => [
        { kind: "create", path: `files/${index}`, mode: 0o644 },
        { kind: "write", path: `files/${index}`, offset: 0, data: bytes(2_048, prng) },
      ]).flat(),
      { kind: "fsync", path: null },
    ],
    outage: (prng) => {
      const changed = new Set<number>();
      while (changed.size < 200) changed.add(prng.int(0, smallFiles - 1));
      const ops: DiskOp[] = [...changed].map((index) => ({ kind: "write", path: `files/${index}`, offset: prng.int(0, 3) * 512, data: bytes(512, prng) }));
      for (let index = 0; index < 50; index++) ops.push({ kind: "create", path: `files/new${index}`, mode: 0o644 }, { kind: "write", path: `files/new${index}`, offset: 0, data: bytes(2_048, prng) });
      ops.push({ kind: "fsync", path: null });
      return { ops, changedBytes: 200 * 512 + 50 * 2_048, files: [...[...changed].map((index) => `files/${index}`), ...Array.from({ length: 50 }, (_, index) => `files/new${index}`)] };
    },
  },
];

export interface ResyncFigure {
  readonly workload: string;
  readonly changedBytes: number;
  readonly resyncBytes: number;
  /** What resending every file modified during the outage would send. */
  readonly wholeFileBytes: number;
  readonly resyncMs: number;
  readonly full: boolean;
  readonly blockSize: number;
}

/** One workload: a dataset in sync, the secondary powered off, the outage's writes, the
 *  secondary back; the primary's resync counters. */
export function resyncFigure(workload: Workload, seed = 1, blockSize = 4_096): ResyncFigure {
  const prng = new Prng(seed);
  const world = new MirrorWorld({ seed, clients: { count: 0 }, blockSize });
  world.powerOn("n1");
  world.powerOn("n2");
  world.runFor(1_000);
  world.command("n1", "prim");
  if (!world.runUntilCondition(() => inSync(world), world.nowMs + 10_000)) throw new Error("the bench mirror did not form");
  runOps(world, workload.dataset(prng));
  // Let checkpoints clear the dirty marks of the dataset (durable on both).
  world.runFor(3_000);
  world.powerOff("n2");
  world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 5_000);
  const outage = workload.outage(prng);
  runOps(world, outage.ops);
  const primary = world.node("n1").runtime!.state;
  const before = primary.stats.resyncBlockBytes;
  const fullBefore = primary.stats.fullResyncs;
  world.powerOn("n2");
  const startMs = world.nowMs;
  if (!world.runUntilCondition(() => inSync(world), world.nowMs + 60_000, 1)) throw new Error("the bench mirror did not resync");
  const wholeFileBytes = outage.files.reduce((sum, path) => sum + (world.node("n1").disk.fileBytes(path)?.length ?? 0), 0);
  return { workload: workload.name, changedBytes: outage.changedBytes, resyncBytes: primary.stats.resyncBlockBytes - before, wholeFileBytes, resyncMs: world.nowMs - startMs, full: primary.stats.fullResyncs > fullBefore, blockSize };
}

/** Primary power-off under client writes → the application started on the secondary, in simulated ms. */
export function failoverSample(seed: number, timings?: { pulseMs: number; timeoutMs: number }): number {
  const world = new MirrorWorld({ seed, clients: { count: 3 }, ...(timings === undefined ? {} : { timings }) });
  world.powerOn("n1");
  world.powerOn("n2");
  world.runFor(Math.max(1_000, 2 * (timings?.timeoutMs ?? 0)));
  world.command("n1", "prim");
  world.runUntilCondition(() => inSync(world), world.nowMs + 120_000);
  world.clients.start();
  world.runFor(1_000 + new Prng(seed).int(0, 1_000));
  const offMs = world.nowMs;
  world.powerOff("n1");
  const started = world.runUntilCondition(() => world.logs.some((log) => log.atMs >= offMs && log.node === "n2" && log.entry.event === "mirror.primary"), offMs + 120_000, 1);
  if (!started) throw new Error(`seed ${seed}: n2 did not take over`);
  return world.logs.find((log) => log.atMs >= offMs && log.node === "n2" && log.entry.event === "mirror.primary")!.atMs - offMs;
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Mirror fault plans (2 nodes, client writes, ~20 s of faults then convergence and checks) per wall minute. */
export function planRate(count: number): { plansPerMinute: number; simulatedSeconds: number } {
  const plans = fc.sample(mirrorPlanArbitrary(), { seed: 42, numRuns: count });
  const started = performance.now();
  let simulatedMs = 0;
  for (const plan of plans) {
    const result = runMirrorPlan(plan);
    if (result.violations.length > 0) throw new Error(`a bench plan violated an invariant: ${result.violations[0]!.detail}`);
    simulatedMs += result.world.nowMs;
  }
  const wallMs = performance.now() - started;
  return { plansPerMinute: (count / wallMs) * 60_000, simulatedSeconds: simulatedMs / 1_000 / count };
}

export function mirrorFigureLines(quick: boolean): string[] {
  const lines: string[] = [];
  const fixed = (value: number, digits = 0) => value.toFixed(digits);
  lines.push("   resync after the secondary was down (baseline: resending every modified file whole)");
  const figures = workloads.map((workload) => resyncFigure(workload));
  // A file smaller than a block is sent whole: the small-file case again with 512-byte blocks.
  figures.push(resyncFigure(workloads[2]!, 1, 512));
  for (const figure of figures) {
    lines.push(
      `   ${`${figure.workload}, ${figure.blockSize} B blocks`.padEnd(66)} changed ${fixed(figure.changedBytes / 1024).padStart(5)} KiB  resync ${fixed(figure.resyncBytes / 1024).padStart(6)} KiB = ${fixed(figure.resyncBytes / figure.changedBytes, 3)} x changed (goal <= 1.05)  whole files ${fixed(figure.wholeFileBytes / 1024).padStart(6)} KiB = ${fixed(figure.wholeFileBytes / figure.changedBytes, 2)} x  in ${fixed(figure.resyncMs)} ms${figure.full ? " (FULL resync)" : ""}`,
    );
  }
  const runs = quick ? 10 : 20;
  const ours = Array.from({ length: runs }, (_, seed) => failoverSample(seed + 1));
  const theirs = Array.from({ length: runs }, (_, seed) => failoverSample(seed + 1, { pulseMs: 700, timeoutMs: 30_000 }));
  lines.push(`   failover, primary power-off -> application started on the secondary (start_prim 40 ms), ${runs} runs (baseline: SafeKit's default heart, pulse 700 ms, timeout 30 s)`);
  lines.push(`   tandem p50 ${fixed(percentile(ours, 0.5))} ms p99 ${fixed(percentile(ours, 0.99))} ms | baseline p50 ${fixed(percentile(theirs, 0.5))} ms p99 ${fixed(percentile(theirs, 0.99))} ms | ratio p50 ${fixed(percentile(ours, 0.5) / percentile(theirs, 0.5), 3)} (goal <= 1 s + start)`);
  const rate = planRate(quick ? 20 : 60);
  lines.push(`   fault plans per minute, 2-node mirror under 3 writing clients: ${fixed(rate.plansPerMinute)} (each ~${fixed(rate.simulatedSeconds)} s simulated; baseline: the wall clock)`);
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log("9. Mirror module in the simulator");
  for (const line of mirrorFigureLines(process.argv.includes("--quick"))) console.log(line);
}
