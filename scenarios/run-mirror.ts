// Runs the named mirror scenarios in the simulator.

import { SimMirrorCluster } from "../drivers/sim/sim-mirror-cluster.ts";
import type { Violation } from "../drivers/sim/mirror-world.ts";
import type { MirrorScenario } from "./mirror-cluster.ts";

export interface MirrorScenarioOutcome {
  readonly passed: boolean;
  readonly failure: string | null;
  readonly violations: readonly Violation[];
  readonly timeline: readonly string[];
  readonly cluster: SimMirrorCluster;
}

/** Runs a scenario in virtual time; it passes when it finishes and no invariant broke. */
export async function runMirrorScenarioInSim(scenario: MirrorScenario, options: { seed?: number; print?: (line: string) => void; trace?: boolean } = {}): Promise<MirrorScenarioOutcome> {
  const cluster = new SimMirrorCluster(scenario, { seed: options.seed ?? 1, ...(options.print === undefined ? {} : { print: options.print }), ...(options.trace === undefined ? {} : { trace: options.trace }) });
  let failure: string | null = null;
  try {
    await cluster.begin();
    await scenario.run(cluster);
  } catch (error) {
    failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
  const violations = cluster.finish();
  return { passed: failure === null && violations.length === 0, failure, violations, timeline: cluster.timeline, cluster };
}
