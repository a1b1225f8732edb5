// Runs named scenarios in the simulator and prints their timeline.

import { SimCluster } from "../drivers/sim/sim-cluster.ts";
import type { Violation } from "../drivers/sim/farm-checker.ts";
import type { Scenario } from "./cluster.ts";
import { farmScenarios } from "./farm-scenarios.ts";
import { moduleScenarios, type ModuleScenario } from "./module-scenarios.ts";
import { mirrorScenarios } from "./mirror-scenarios.ts";
import { runMirrorScenarioInSim } from "./run-mirror.ts";
import type { MirrorScenario } from "./mirror-cluster.ts";

export function scenarioNames(): string[] {
  return [...farmScenarios, ...mirrorScenarios, ...moduleScenarios].map((scenario) => scenario.name);
}

export interface ScenarioOutcome {
  readonly passed: boolean;
  readonly failure: string | null;
  readonly violations: readonly Violation[];
  readonly timeline: readonly string[];
  readonly cluster: SimCluster;
}

/** Runs a scenario in virtual time; it passes when it finishes and no invariant broke. */
export async function runScenarioInSim(scenario: Scenario, options: { seed?: number; print?: (line: string) => void } = {}): Promise<ScenarioOutcome> {
  const cluster = new SimCluster(scenario, { seed: options.seed ?? 1, ...(options.print === undefined ? {} : { print: options.print }) });
  cluster.bootAll(scenario.initiallyOff);
  let failure: string | null = null;
  try {
    await scenario.run(cluster);
  } catch (error) {
    failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
  cluster.checker.stop();
  const violations = cluster.checker.violations;
  return { passed: failure === null && violations.length === 0, failure, violations, timeline: cluster.timeline, cluster };
}

export async function runScenarioByName(name: string, print: (line: string) => void): Promise<number> {
  const moduleScenario = moduleScenarios.find((each) => each.name === name);
  if (moduleScenario !== undefined) return runModuleScenario(moduleScenario, print);
  const mirrorScenario = mirrorScenarios.find((each) => each.name === name);
  if (mirrorScenario !== undefined) return runMirrorScenario(mirrorScenario, print);
  const scenario = farmScenarios.find((each) => each.name === name);
  if (scenario === undefined) {
    print(`tandem sim: no scenario "${name}"; the scenarios are: ${scenarioNames().join(", ")}`);
    return 2;
  }
  print(`scenario ${scenario.name}: ${scenario.summary}`);
  const outcome = await runScenarioInSim(scenario, { print });
  if (outcome.failure !== null) print(`FAILED: ${outcome.failure}`);
  for (const violation of outcome.violations) print(`VIOLATION [${violation.invariant}] t=${violation.atMs.toFixed(3)} ms: ${violation.message}`);
  if (outcome.passed) print(`scenario ${scenario.name} passed: ${outcome.cluster.checker.stats.packets} client packets checked, no invariant broken`);
  return outcome.passed ? 0 : 1;
}

async function runMirrorScenario(scenario: MirrorScenario, print: (line: string) => void): Promise<number> {
  print(`scenario ${scenario.name}: ${scenario.summary}`);
  const outcome = await runMirrorScenarioInSim(scenario, { print });
  if (outcome.failure !== null) print(`FAILED: ${outcome.failure}`);
  for (const violation of outcome.violations) print(`VIOLATION [${violation.kind}] t=${violation.atMs.toFixed(1)} ms: ${violation.detail}`);
  const clients = outcome.cluster.world.clients;
  if (outcome.passed) print(`scenario ${scenario.name} passed: ${clients.stats.acked} writes acknowledged, ${clients.expected.size - clients.uncertain.size} paths checked on the primary, trees identical`);
  return outcome.passed ? 0 : 1;
}

function runModuleScenario(scenario: ModuleScenario, print: (line: string) => void): number {
  print(`scenario ${scenario.name}: ${scenario.summary}`);
  try {
    scenario.run(print);
  } catch (error) {
    print(`FAILED: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    return 1;
  }
  print(`scenario ${scenario.name} passed`);
  return 0;
}
