// Every named farm scenario passes in the simulator, with no invariant broken, and its
// timeline is the same on every run.

import { describe, expect, it } from "vitest";
import { farmScenarios } from "../../scenarios/farm-scenarios.ts";
import { runScenarioInSim } from "../../scenarios/index.ts";

describe("farm scenarios in the simulator", () => {
  it.each(farmScenarios.map((scenario) => [scenario.name, scenario] as const))("%s passes", async (_, scenario) => {
    const outcome = await runScenarioInSim(scenario);
    expect(outcome.failure).toBeNull();
    expect(outcome.violations).toEqual([]);
    expect(outcome.cluster.checker.stats.stablePackets).toBeGreaterThan(100);
  });

  it("a scenario's timeline is identical on two runs", async () => {
    const first = await runScenarioInSim(farmScenarios[0]!);
    const second = await runScenarioInSim(farmScenarios[0]!);
    expect(second.timeline).toEqual(first.timeline);
  });

  it("node loss: the lost node's buckets move within 0.5 s", async () => {
    const outcome = await runScenarioInSim(farmScenarios.find((scenario) => scenario.name === "node-loss")!);
    const line = outcome.timeline.find((entry) => entry.includes("n1,n2 own every bucket"));
    const tookMs = Number(/after (\d+) ms/.exec(line ?? "")?.[1]);
    expect(tookMs).toBeLessThanOrEqual(500);
  });
});
