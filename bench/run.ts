// `npm run bench`: prints every farm figure with its baseline and the ratio between them.
// Figures from the simulator are exact for a given seed; wall-clock figures vary by machine.

import { bucketSpread, failoverSample, falseFailovers, percentile, planRate, safekitTimings, simulatorSpeed } from "./farm-bench.ts";
import { defaultFarmTimings } from "../core/farm-config.ts";
import { filterBenchShape, filterFigureLines, filterFigures, filterSectionTitle } from "./filter-bench.ts";
import { serviceFigures } from "./service-bench.ts";
import { mirrorFigureLines } from "./mirror-bench.ts";

const quick = process.argv.includes("--quick");
// `npm run bench -- --mirror`: only the mirror's simulator figures (section 9; no root needed).
if (process.argv.includes("--mirror")) {
  console.log("9. Mirror module in the simulator" + (quick ? " (--quick)" : ""));
  for (const line of mirrorFigureLines(quick)) console.log(line);
  process.exit(0);
}
const runs = quick ? 20 : 40;
const idleMinutes = quick ? 2 : 10;
const out = (line = "") => console.log(line);
const fixed = (value: number, digits = 0) => value.toFixed(digits);

out("tandem farm benchmarks" + (quick ? " (--quick)" : ""));
out();
out("1. Simulator speed, 3-node farm (baseline: the wall clock, 1x)");
for (const row of simulatorSpeed()) out(`   ${row.load.padEnd(28)} ${String(row.requestsPerSecond).padStart(5)} req/s answered   ${fixed(row.speedup).padStart(6)}x real time`);
const three = planRate(quick ? 50 : 200, 3);
const mixed = planRate(quick ? 50 : 200);
out(`   fault plans per minute: ${fixed(three.plansPerMinute)} with 3 nodes, ${fixed(mixed.plansPerMinute)} with 2-16 nodes (each ~6 s simulated)`);
out();
out("2. Buckets over 64 nodes with weights 1-5 (baseline: hash mod N)");
for (const bucketCount of [256, 4096]) {
  for (const row of bucketSpread(bucketCount)) {
    out(`   ${String(bucketCount).padStart(4)} buckets  ${row.scheme.padEnd(38)} share/fair share ${fixed(row.minRatio, 2)}..${fixed(row.maxRatio, 2)}   one node leaves: ${String(row.moved).padStart(4)} moved (it owned ${row.ownedByLeaver})`);
  }
}
out();
out(`3. Power-off of 1 of 3 nodes under load, ${runs} runs (baseline: SafeKit default timings, pulse 100 ms x 10)`);
const ours = Array.from({ length: runs }, (_, seed) => failoverSample(seed + 1, defaultFarmTimings));
const theirs = Array.from({ length: runs }, (_, seed) => failoverSample(seed + 1, safekitTimings));
for (const [label, pick] of [["detection", (s: { detectionMs: number }) => s.detectionMs], ["clients answered again", (s: { servedAgainMs: number }) => s.servedAgainMs]] as const) {
  const a = ours.map(pick);
  const b = theirs.map(pick);
  out(`   ${label.padEnd(24)} tandem p50 ${fixed(percentile(a, 0.5)).padStart(5)} ms p99 ${fixed(percentile(a, 0.99)).padStart(5)} ms | baseline p50 ${fixed(percentile(b, 0.5)).padStart(5)} ms p99 ${fixed(percentile(b, 0.99)).padStart(5)} ms | ratio p50 ${fixed(percentile(a, 0.5) / percentile(b, 0.5), 2)}`);
}
out();
out(`4. False failovers, 3 idle nodes, ${idleMinutes} simulated minutes at 1 % loss and 20 ms jitter`);
const falseOurs = falseFailovers(defaultFarmTimings, idleMinutes * 60_000);
const falseTheirs = falseFailovers(safekitTimings, idleMinutes * 60_000);
out(`   tandem ${falseOurs}   baseline ${falseTheirs}`);
out();
const windowSeconds = quick ? 10 : 30;
out(`5. Node service (dist/), 3 light modules each with a tcp checker and an errd watch, ${windowSeconds} s windows (baseline: an idle Node process)`);
const service = await serviceFigures(windowSeconds * 1_000);
const row = (label: string, use: { rssMb: number; cpuPercent: number }) =>
  out(`   ${label.padEnd(34)} RSS ${fixed(use.rssMb, 1).padStart(6)} MB (x${fixed(use.rssMb / service.baseline.rssMb, 2)} baseline; goal <= 100 MB)   CPU ${fixed(use.cpuPercent, 2).padStart(5)} % of a core (baseline ${fixed(service.baseline.cpuPercent, 2)} %; goal idle <= 1 %)`);
row("idle (default intervals)", service.idle);
row(`loaded (1 s intervals, ${fixed(service.requestsPerSecond)} requests/s)`, service.loaded);
row("baseline: idle Node process", service.baseline);
out();
out(`6. ${filterSectionTitle(filterBenchShape(quick))}`);
for (const line of filterFigureLines(await filterFigures({ quick }))) out(line);
out();
out("7-8. Farm on the host and in the Docker lab: their own commands (docs/benchmarks.md)");
out();
out("9. Mirror module in the simulator");
for (const line of mirrorFigureLines(quick)) out(line);
