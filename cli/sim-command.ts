// `tandem sim`: fault-plan runs, replays and named scenarios in the simulator.

import { parseArgs } from "node:util";
import { fuzzFarm } from "../drivers/sim/farm-fuzz.ts";
import { decodePlan, describePlan, runPlan } from "../drivers/sim/farm-plan.ts";
import { decodeModulePlan, describeModulePlan, fuzzModule, runModulePlan } from "../drivers/sim/module-plan.ts";
import { decodeMirrorPlan, describeMirrorPlan, fuzzMirror, runMirrorPlan } from "../drivers/sim/mirror-plan.ts";
import type { MirrorPlantedBug } from "../drivers/sim/mirror-world.ts";
import type { PlantedBug } from "../drivers/sim/kernel-filter.ts";
import { runScenarioByName, scenarioNames } from "../scenarios/index.ts";

const usage = `usage: tandem sim [options]
  --module farm|mirror|light
                         farm: the farm protocol over N nodes; mirror: a two-node mirror
                         under client writes; light: one module's life cycle (scripts,
                         checkers, errd, failover rules)
  --seeds N              how many generated fault plans to run (default 100)
  --seed S               fast-check seed that generates the plans (default: random, printed)
  --nodes N              fixed node count (default: 2 to 16 drawn per plan)
  --replay TOKEN         replay one plan exactly, with its event trace
  --scenario NAME        run a named scenario and print its timeline (${scenarioNames().join(", ")})
  --trace                with --replay: print the full event trace (default: the last 60 lines)
  --bug NAME             plant a bug the simulator must catch (farm: see kernel-filter.ts;
                         mirror: ack-before-peer, clear-drops-armed,
                         ahead-unmarked, lane-forgets-marks, lane-ignores-arming,
                         lane-spares-after-core)
  --stalls               mirror: stall nodes too (pause and resume a service's event loop)
  --json                 print the summary as JSON`;

export async function simCommand(argv: readonly string[], print: (line: string) => void): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      module: { type: "string", default: "farm" },
      seeds: { type: "string", default: "100" },
      seed: { type: "string" },
      nodes: { type: "string" },
      replay: { type: "string" },
      scenario: { type: "string" },
      bug: { type: "string", default: "none" },
      trace: { type: "boolean", default: false },
      stalls: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    print(usage);
    return 0;
  }
  if (values.module === "light") return simLight(values, print);
  if (values.module === "mirror") return simMirror(values, print);
  if (values.module !== "farm") {
    print(`tandem sim: --module ${values.module}: expected farm, mirror or light`);
    return 2;
  }
  if (values.replay !== undefined) return replay(values.replay, values.trace, print);
  if (values.scenario !== undefined) return runScenarioByName(values.scenario, print);
  const runs = positiveInteger(values.seeds, "--seeds");
  const nodeCount = values.nodes === undefined ? undefined : positiveInteger(values.nodes, "--nodes");
  if (nodeCount !== undefined && (nodeCount < 1 || nodeCount > 16)) throw new Error(`--nodes ${nodeCount}: a simulated farm has 1 to 16 nodes`);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 0x7fff_ffff) : positiveInteger(values.seed, "--seed");
  const bug = values.bug as PlantedBug;
  print(`tandem sim: ${runs} farm fault plans, fast-check seed ${seed}, ${nodeCount === undefined ? "2-16" : nodeCount} nodes${bug === "none" ? "" : `, planted bug ${bug}`}`);
  const startedMs = performance.now();
  const summary = fuzzFarm({
    runs,
    seed,
    shape: { ...(nodeCount === undefined ? {} : { nodeCount }), bug },
    onProgress: (done, total) => process.stderr.isTTY && process.stderr.write(`\r  ${done}/${total} plans`),
  });
  if (process.stderr.isTTY) process.stderr.write("\r");
  const wallMs = performance.now() - startedMs;
  const violated = summary.failure === null ? 0 : 1;
  if (values.json) {
    print(JSON.stringify({ runs: summary.runs, violated, seed, wallMs: Math.round(wallMs), virtualMs: Math.round(summary.virtualMs), replay: summary.failure?.command ?? null }));
  } else {
    print(`plans run: ${summary.runs}, violated an invariant: ${violated} (${(wallMs / 1000).toFixed(1)} s wall, ${(summary.virtualMs / 1000).toFixed(0)} s simulated)`);
    if (summary.failure !== null) print(summary.failure.report);
  }
  return violated === 0 ? 0 : 1;
}

function simLight(values: { seeds: string; seed?: string; replay?: string; json: boolean }, print: (line: string) => void): number {
  if (values.replay !== undefined) {
    const plan = decodeModulePlan(values.replay);
    print("replaying module plan:");
    print(describeModulePlan(plan).replace(/^/gm, "  "));
    const result = runModulePlan(plan);
    for (const { atMs, entry, ready } of result.world.trail) {
      if (entry?.level === "debug") continue;
      print(`  ${atMs} ms ${ready === undefined ? `${entry!.event} ${JSON.stringify(entry!.fields)}` : ready ? "ready" : "not ready"}`);
    }
    for (const violation of result.violations) print(`[${violation.invariant}] t=${violation.atMs} ms: ${violation.message}`);
    if (result.violations.length === 0) print("no violation");
    return result.violations.length === 0 ? 0 : 1;
  }
  const runs = positiveInteger(values.seeds, "--seeds");
  const seed = values.seed === undefined ? Math.floor(Math.random() * 0x7fff_ffff) : positiveInteger(values.seed, "--seed");
  print(`tandem sim: ${runs} module fault plans, fast-check seed ${seed}`);
  const startedMs = performance.now();
  const summary = fuzzModule({ runs, seed, onProgress: (done, total) => process.stderr.isTTY && process.stderr.write(`\r  ${done}/${total} plans`) });
  if (process.stderr.isTTY) process.stderr.write("\r");
  const violated = summary.failure === null ? 0 : 1;
  if (values.json) print(JSON.stringify({ runs: summary.runs, violated, seed, replay: summary.failure?.command ?? null }));
  else {
    print(`plans run: ${summary.runs}, violated an invariant: ${violated} (${((performance.now() - startedMs) / 1000).toFixed(1)} s wall)`);
    if (summary.failure !== null) print(summary.failure.report);
  }
  return violated;
}

function simMirror(values: { seeds: string; seed?: string; replay?: string; bug: string; trace: boolean; stalls: boolean; json: boolean }, print: (line: string) => void): number {
  if (values.replay !== undefined) {
    const plan = decodeMirrorPlan(values.replay);
    print("replaying mirror plan:");
    print(describeMirrorPlan(plan).replace(/^/gm, "  "));
    const result = runMirrorPlan(plan, { trace: true });
    const lines = result.world.trace.filter((line) => values.trace || !line.includes(" debug "));
    const shown = values.trace ? lines : lines.slice(-200);
    print(values.trace ? "trace:" : `trace (last ${shown.length} of ${lines.length} lines without debug; --trace for all):`);
    for (const line of shown) print(`  ${line}`);
    for (const violation of result.violations) print(`[${violation.kind}] t=${violation.atMs.toFixed(1)} ms: ${violation.detail}`);
    if (result.violations.length === 0) print("no violation");
    return result.violations.length === 0 ? 0 : 1;
  }
  const bugs: readonly MirrorPlantedBug[] = ["none", "ack-before-peer", "clear-drops-armed", "ahead-unmarked", "lane-forgets-marks", "lane-ignores-arming", "lane-spares-after-core"];
  if (!bugs.includes(values.bug as MirrorPlantedBug)) throw new Error(`--bug ${values.bug}: a mirror plan plants one of ${bugs.join(", ")}`);
  const runs = positiveInteger(values.seeds, "--seeds");
  const seed = values.seed === undefined ? Math.floor(Math.random() * 0x7fff_ffff) : positiveInteger(values.seed, "--seed");
  print(`tandem sim: ${runs} mirror fault plans${values.stalls ? " with stalls" : ""}, fast-check seed ${seed}${values.bug === "none" ? "" : `, planted bug ${values.bug}`}`);
  const startedMs = performance.now();
  const summary = fuzzMirror({ runs, seed, shape: { bug: values.bug as MirrorPlantedBug, stalls: values.stalls }, onProgress: (done, total) => process.stderr.isTTY && process.stderr.write(`\r  ${done}/${total} plans`) });
  if (process.stderr.isTTY) process.stderr.write("\r");
  const wallMs = performance.now() - startedMs;
  const violated = summary.failure === null ? 0 : 1;
  if (values.json) print(JSON.stringify({ runs: summary.runs, violated, seed, wallMs: Math.round(wallMs), virtualMs: Math.round(summary.virtualMs), replay: summary.failure?.command ?? null }));
  else {
    print(`plans run: ${summary.runs}, violated an invariant: ${violated} (${(wallMs / 1000).toFixed(1)} s wall, ${(summary.virtualMs / 1000).toFixed(0)} s simulated)`);
    if (summary.failure !== null) print(summary.failure.report);
  }
  return violated;
}

function replay(token: string, fullTrace: boolean, print: (line: string) => void): number {
  const plan = decodePlan(token);
  print("replaying plan:");
  print(describePlan(plan).replace(/^/gm, "  "));
  const result = runPlan(plan, { trace: true });
  const lines = fullTrace ? result.trace : result.trace.slice(-60);
  print(fullTrace ? "trace:" : `trace (last ${lines.length} of ${result.trace.length} lines; --trace for all):`);
  for (const line of lines) print(`  ${line}`);
  if (result.violations.length === 0) {
    print(`no violation (${result.stats.events} events, converged ${result.stats.convergedAfterMs} ms after the faults stopped)`);
    return 0;
  }
  for (const violation of result.violations) print(`[${violation.invariant}] t=${violation.atMs.toFixed(3)} ms: ${violation.message}`);
  return 1;
}

function positiveInteger(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${flag} ${text}: expected a whole number`);
  return value;
}
