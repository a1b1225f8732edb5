// Runs a farm scenario of scenarios/farm-scenarios.ts (lab-cluster.ts) or a mirror
// scenario of scenarios/mirror-scenarios.ts (lab-mirror.ts: PostgreSQL on two nodes),
// unchanged, on the Docker lab, in real time: `tandem lab scenario NAME` (the route is
// the CLI's). Each run starts from a fresh lab; the lab is left as the scenario ended, for
// a look (`tandem lab status`, `docker exec`), until `tandem lab down`.

import { performance } from "node:perf_hooks";
import type { Scenario } from "../scenarios/cluster.ts";
import { farmScenarios } from "../scenarios/farm-scenarios.ts";
import type { MirrorScenario } from "../scenarios/mirror-cluster.ts";
import { mirrorScenarios } from "../scenarios/mirror-scenarios.ts";
import { moduleScenarios } from "../scenarios/module-scenarios.ts";
import { DockerUnavailable } from "./images.ts";
import { Lab } from "./lab.ts";
import { LabCluster, type LabClusterOptions } from "./lab-cluster.ts";
import { runMirrorScenarioOnLab } from "./lab-mirror.ts";

export interface LabScenarioOutcome {
  readonly scenario: string;
  readonly passed: boolean;
  /** "ScenarioFailure: …", "LabUnsupported: …" or another error; null when it passed. */
  readonly failure: string | null;
  readonly timeline: readonly string[];
  /** Setting up the fresh lab (down, up, watchers), then the scenario itself. */
  readonly setupMs: number;
  readonly runMs: number;
}

/** Runs `scenario` on a fresh lab. Errors setting up the lab (Docker unreachable, say) are thrown. */
export async function runOnLab(scenario: Scenario, options: LabClusterOptions = {}): Promise<LabScenarioOutcome> {
  const setupStarted = performance.now();
  const cluster = await LabCluster.create(scenario, options);
  const runStarted = performance.now();
  let failure: string | null = null;
  try {
    await scenario.run(cluster);
  } catch (error) {
    failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    cluster.note(`FAILED: ${failure}`);
  } finally {
    await cluster.close();
  }
  return { scenario: scenario.name, passed: failure === null, failure, timeline: cluster.timeline, setupMs: Math.round(runStarted - setupStarted), runMs: Math.round(performance.now() - runStarted) };
}

/** `tandem lab scenario NAME`: 0 passed, 1 failed, 2 no such farm or mirror scenario, 3 Docker not reachable. */
export async function runScenarioOnLab(name: string, print: (line: string) => void): Promise<number> {
  const mirror = mirrorScenarios.find((each) => each.name === name);
  if (mirror !== undefined) return runMirrorOnLab(mirror, print);
  const scenario = farmScenarios.find((each) => each.name === name);
  if (scenario === undefined) {
    const why = moduleScenarios.some((each) => each.name === name) ? `"${name}" is a module scenario, which runs only in the simulator (tandem sim --scenario ${name})` : `no farm or mirror scenario "${name}"`;
    print(`tandem lab scenario: ${why}; the farm scenarios are: ${farmScenarios.map((each) => each.name).join(", ")}; the mirror scenarios: ${mirrorScenarios.map((each) => each.name).join(", ")}`);
    return 2;
  }
  print(`scenario ${scenario.name} on the Docker lab (real time): ${scenario.summary}`);
  let outcome: LabScenarioOutcome;
  try {
    outcome = await runOnLab(scenario, { print, progress: (line) => print(`lab: ${line}`) });
  } catch (error) {
    if (error instanceof DockerUnavailable) {
      print(`tandem lab scenario: ${error.message}`);
      return 3;
    }
    print(`tandem lab scenario: the lab could not be set up: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
  print(outcome.passed ? `scenario ${scenario.name} passed on the lab in ${(outcome.runMs / 1000).toFixed(1)} s (lab set up in ${(outcome.setupMs / 1000).toFixed(1)} s)` : `scenario ${scenario.name} FAILED on the lab: ${outcome.failure}`);
  print("the lab is left as the scenario ended it: tandem lab status to look, tandem lab down to remove it");
  return outcome.passed ? 0 : 1;
}

async function runMirrorOnLab(scenario: MirrorScenario, print: (line: string) => void): Promise<number> {
  print(`mirror scenario ${scenario.name} on the Docker lab (real time, PostgreSQL 15 replicated): ${scenario.summary}`);
  const lab = new Lab({ progress: (line) => print(`lab: ${line}`) });
  try {
    await lab.requireDocker();
  } catch (error) {
    if (!(error instanceof DockerUnavailable)) throw error;
    print(`tandem lab scenario: ${error.message}`);
    return 3;
  }
  const outcome = await runMirrorScenarioOnLab(scenario, { lab, print });
  const waits = outcome.waits.map((wait) => `${wait.description} ${wait.tookMs.toFixed(0)} ms (simulator's bound ${wait.boundMs})`).join("; ");
  print(outcome.passed ? `scenario ${scenario.name} passed on the lab in ${(outcome.runMs / 1000).toFixed(1)} s (lab and database set up in ${(outcome.setupMs / 1000).toFixed(1)} s)${waits === "" ? "" : `; ${waits}`}` : `scenario ${scenario.name} FAILED on the lab: ${outcome.failure}`);
  print("the lab is left as the scenario ended it: tandem lab status to look, tandem lab down to remove it");
  return outcome.passed ? 0 : 1;
}
