// The core's marks of a node alone (issue 8): what each write costs to mark, the memory
// the marks hold and the summary they make, for a file rewritten in sequence (1 MiB
// writes) and for scattered 4 KiB writes. The core marks a write as it does in
// core/mirror/mirror.ts (unionDirty of dirtyOf, persistent: every earlier map stays as it
// was); the baseline, run alongside on the same writes, is a plain mutable Map of Sets
// with one Set.add per block (no persistence, nothing bounded: the cheapest form of a
// Set per path). Printed per workload: µs per write and retained heap, ours and the
// baseline's, with the ratio; whether the path stayed marked by block (not whole); the
// runs it holds; the summary's JSON bytes (coarsenToFit within 8 MiB) and the metadata
// record's (mirrorMetaCodec).
//
// `node --expose-gc bench/mirror-marks-bench.ts [--quick]` (no root). Figures and date:
// docs/replicator.md ("Measured: marks").

import { performance } from "node:perf_hooks";
import { mirrorMetaCodec } from "../drivers/real/mirror-codec.ts";
import { coarsenToFit, dirtyJsonBytes, dirtyOf, emptyDirty, newMeta, RunBlocks, summaryDirtyBytesMax, unionDirty, type DirtyMap } from "../core/mirror/meta.ts";
import type { DiskOp } from "../core/mirror/disk-ops.ts";

const blockSize = 4096;

interface Workload {
  readonly name: string;
  readonly writes: readonly DiskOp[];
}

function workloads(quick: boolean): Workload[] {
  const gib = quick ? 2 : 8;
  const sequential = Array.from({ length: gib * 1024 }, (_, index): DiskOp => ({ kind: "write", path: "vm.img", offset: index * 2 ** 20, data: new Uint8Array(2 ** 20) }));
  // A deterministic spread over a 64 GiB file (2^24 blocks): the top 24 bits of a 32-bit
  // linear congruential walk (no Math.random).
  const scatteredCount = quick ? 100_000 : 400_000;
  let state = 12_345;
  const scattered = Array.from({ length: scatteredCount }, (): DiskOp => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return { kind: "write", path: "table", offset: (state >>> 8) * blockSize, data: new Uint8Array(blockSize) };
  });
  return [
    { name: `${gib} GiB rewritten in sequence (1 MiB writes)`, writes: sequential },
    { name: `${scatteredCount} scattered 4 KiB writes (64 GiB file)`, writes: scattered },
  ];
}

function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("run with node --expose-gc bench/mirror-marks-bench.ts (the retained heap needs a collection before each reading)");
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

interface Measured {
  readonly microsPerWrite: number;
  readonly heapBytes: number;
}

/** The core's way: each write's marks, then a persistent union. */
function ours(writes: readonly DiskOp[]): Measured & { readonly dirty: DirtyMap } {
  const before = heapUsed();
  let dirty: DirtyMap = emptyDirty;
  const start = performance.now();
  for (const op of writes) dirty = unionDirty(dirty, dirtyOf(op, blockSize));
  const elapsed = performance.now() - start;
  return { microsPerWrite: (elapsed * 1000) / writes.length, heapBytes: heapUsed() - before, dirty };
}

/** The baseline: a mutable Map of Sets, one add per block. */
function baseline(writes: readonly DiskOp[]): Measured & { readonly marks: ReadonlyMap<string, ReadonlySet<number>>; readonly blocks: number } {
  const before = heapUsed();
  const marks = new Map<string, Set<number>>();
  const start = performance.now();
  for (const op of writes) {
    if (op.kind !== "write") continue;
    let set = marks.get(op.path);
    if (set === undefined) marks.set(op.path, (set = new Set()));
    for (let block = Math.floor(op.offset / blockSize), last = Math.floor((op.offset + op.data.length - 1) / blockSize); block <= last; block++) set.add(block);
  }
  const elapsed = performance.now() - start;
  let blocks = 0;
  for (const set of marks.values()) blocks += set.size;
  // Returned, so that the reading after a collection counts them.
  return { microsPerWrite: (elapsed * 1000) / writes.length, heapBytes: heapUsed() - before, marks, blocks };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function main(): void {
  const quick = process.argv.includes("--quick");
  console.log(`Marks of a node alone, core/mirror/meta.ts (baseline: a mutable Map of Sets)${quick ? " (--quick)" : ""}`);
  for (const { name, writes } of workloads(quick)) {
    const base = baseline(writes);
    const mine = ours(writes);
    const [path, entry] = [...mine.dirty][0]!;
    const runs = entry.all ? 0 : RunBlocks.runsOf(entry.blocks).length / 2;
    const summary = coarsenToFit(mine.dirty, summaryDirtyBytesMax);
    const record = JSON.stringify(mirrorMetaCodec.encode({ ...newMeta(), gen: "2@n1", dirtyBase: "1@n1", dirty: mine.dirty })).length;
    if (base.marks.size !== mine.dirty.size) throw new Error(`${name}: the baseline marked ${base.marks.size} paths, the core ${mine.dirty.size}`);
    console.log(`  ${name}`);
    console.log(`    per write  ${mine.microsPerWrite.toFixed(2)} µs   baseline ${base.microsPerWrite.toFixed(2)} µs   ratio ${(mine.microsPerWrite / base.microsPerWrite).toFixed(2)}`);
    console.log(`    heap       ${mib(mine.heapBytes)}   baseline ${mib(base.heapBytes)} (${base.blocks} blocks)   ratio ${(mine.heapBytes / base.heapBytes).toFixed(3)}`);
    console.log(`    ${path}: ${entry.all ? "marked whole (a resync sends all of it)" : `${entry.blocks.size} blocks in ${runs} runs`}; summary ${dirtyJsonBytes(summary)} bytes${summary.get(path)?.all === true && !entry.all ? " (named whole to fit)" : ""}; metadata record ${record} bytes`);
  }
}

main();
