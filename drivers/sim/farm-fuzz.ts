// Runs many generated farm fault plans through fast-check, which shrinks a failing plan
// to a small one; the result carries one command line that replays it exactly.

import fc from "fast-check";
import { describePlan, encodePlan, farmPlanArbitrary, runPlan, type FarmPlan, type PlanShape } from "./farm-plan.ts";
import type { Violation } from "./farm-checker.ts";

export interface FuzzOptions {
  readonly runs: number;
  /** fast-check's seed: the same seed generates the same plans. */
  readonly seed: number;
  readonly shape?: PlanShape;
  readonly onProgress?: (done: number, runs: number) => void;
}

export interface FuzzFailure {
  readonly plan: FarmPlan;
  readonly violations: readonly Violation[];
  readonly token: string;
  readonly command: string;
  /** fast-check's own replay coordinates. */
  readonly fastCheck: { readonly seed: number; readonly path: string };
  /** A readable report: the violations, the shrunk plan and the command. */
  readonly report: string;
}

export interface FuzzSummary {
  readonly runs: number;
  readonly failure: FuzzFailure | null;
  readonly virtualMs: number;
  readonly events: number;
}

export function replayCommand(token: string): string {
  return `npm run sim -- --replay ${token}`;
}

export function fuzzFarm(options: FuzzOptions): FuzzSummary {
  let done = 0;
  let virtualMs = 0;
  let events = 0;
  const property = fc.property(farmPlanArbitrary(options.shape), (plan) => {
    const result = runPlan(plan);
    done++;
    virtualMs += result.stats.virtualMs;
    events += result.stats.events;
    if (done % 25 === 0) options.onProgress?.(done, options.runs);
    return result.violations.length === 0;
  });
  const details = fc.check(property, { numRuns: options.runs, seed: options.seed, endOnFailure: false });
  if (!details.failed || details.counterexample === null) return { runs: details.numRuns, failure: null, virtualMs, events };
  const plan = details.counterexample[0];
  const violations = runPlan(plan).violations;
  const token = encodePlan(plan);
  const command = replayCommand(token);
  const report = [
    `VIOLATION in a farm fault plan (found after ${details.numRuns} plans, shrunk ${details.numShrinks} times)`,
    ...violations.map((violation) => `  [${violation.invariant}] t=${violation.atMs.toFixed(3)} ms: ${violation.message}`),
    "plan:",
    describePlan(plan).replace(/^/gm, "  "),
    `fast-check: seed=${details.seed} path="${details.counterexamplePath}"`,
    "replay with:",
    `  ${command}`,
  ].join("\n");
  return {
    runs: details.numRuns,
    failure: { plan, violations, token, command, fastCheck: { seed: details.seed, path: details.counterexamplePath ?? "" }, report },
    virtualMs,
    events,
  };
}
