// Proof that the checker can fail: a planted bug is found, shrunk, and its printed replay
// reproduces it; and the same seed always produces the same run.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { runCli } from "../cli/run-cli.ts";
import { fuzzFarm } from "../../drivers/sim/farm-fuzz.ts";
import { decodePlan, encodePlan, farmPlanArbitrary, runPlan, type FarmPlan } from "../../drivers/sim/farm-plan.ts";

describe("the checker finds a planted bug", () => {
  const summary = fuzzFarm({ runs: 300, seed: 7, shape: { bug: "filter-keeps-buckets", nodeCountMax: 6 } });

  it("a kernel filter that keeps its buckets after leaving is reported as a violation", () => {
    expect(summary.failure).not.toBeNull();
    expect(summary.failure!.violations.length).toBeGreaterThan(0);
    expect(summary.failure!.report).toContain("npm run sim -- --replay ");
  });

  it("the shrunk plan is small: at most two faults", () => {
    expect(summary.failure!.plan.faults.length).toBeLessThanOrEqual(2);
  });

  it("replaying the token reproduces the same violations", () => {
    const plan = decodePlan(summary.failure!.token);
    expect(runPlan(plan).violations).toEqual(summary.failure!.violations);
  });

  it("the printed command replays it from the command line, exits 1 and shows the trace", () => {
    const { code, output } = runCli(["sim", "--replay", summary.failure!.token]);
    expect(code).toBe(1);
    expect(output).toContain(`[${summary.failure!.violations[0]!.invariant}]`);
    expect(output).toContain("trace (last");
  });

  it("without the planted bug the same shrunk plan passes", () => {
    const fixed: FarmPlan = { ...summary.failure!.plan, bug: "none" };
    expect(runPlan(fixed).violations).toEqual([]);
  });
});

describe("determinism", () => {
  const plans = fc.sample(farmPlanArbitrary({ nodeCountMax: 8 }), { seed: 99, numRuns: 5 });

  it.each(plans.map((plan, index) => [index, plan] as const))("plan %i run twice gives identical event traces", (_, plan) => {
    const first = runPlan(plan, { trace: true });
    const second = runPlan(plan, { trace: true });
    expect(first.trace.length).toBeGreaterThan(100);
    expect(second.trace).toEqual(first.trace);
    expect(second.stats).toEqual(first.stats);
  });

  it("a different seed gives a different trace", () => {
    const plan = { ...plans[0]!, link: { ...plans[0]!.link, jitterMs: 5 } };
    const other = { ...plan, seed: plan.seed ^ 1 };
    expect(runPlan(other, { trace: true }).trace).not.toEqual(runPlan(plan, { trace: true }).trace);
  });

  it("a plan survives encoding into a replay token unchanged", () => {
    for (const plan of plans) expect(decodePlan(encodePlan(plan))).toEqual(plan);
  });

  it("a damaged replay token is refused with a message that says so", () => {
    expect(() => decodePlan("not-a-token")).toThrow(/replay token/);
    const { code, output } = runCli(["sim", "--replay", "eyJmb28iOjF9"]);
    expect(code).toBe(2);
    expect(output).toContain("replay token is not a farm plan");
  });
});
