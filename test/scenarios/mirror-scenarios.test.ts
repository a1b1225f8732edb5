// The named mirror scenarios pass in the simulator: each finishes within its deadlines,
// and at its end both nodes converge in sync with every acknowledged write in place.

import { describe, expect, it } from "vitest";
import { mirrorScenarios } from "../../scenarios/mirror-scenarios.ts";
import { runMirrorScenarioInSim } from "../../scenarios/run-mirror.ts";

describe("mirror scenarios in the simulator", () => {
  it.each(mirrorScenarios.map((scenario) => [scenario.name, scenario] as const))("%s", async (_, scenario) => {
    const outcome = await runMirrorScenarioInSim(scenario, { seed: 1 });
    const report = [outcome.failure ?? "", ...outcome.violations.map((violation) => `[${violation.kind}] ${violation.atMs.toFixed(1)} ms: ${violation.detail}`), ...outcome.timeline.slice(-80)].join("\n");
    expect(outcome.passed, report).toBe(true);
    expect(outcome.cluster.world.clients.stats.acked, "writes were acknowledged").toBeGreaterThan(100);
    // Only a real split brain is reported as one (a swap's handover once was).
    if (scenario.name !== "split-brain-no-witness" && scenario.name !== "split-brain-preserve-fails") expect(outcome.cluster.world.logs.filter((log) => log.entry.event === "mirror.splitbrain").map((log) => log.entry.fields["why"])).toEqual([]);
  }, 60_000);

  it("split brain without a witness: both sides were primary, the loser's changes were set aside", async () => {
    const scenario = mirrorScenarios.find((each) => each.name === "split-brain-no-witness")!;
    const outcome = await runMirrorScenarioInSim(scenario, { seed: 1 });
    expect(outcome.passed).toBe(true);
    const world = outcome.cluster.world;
    expect(world.diverged()).toBe(true);
    const preserved = world.nodes.flatMap((node) => node.disk.preservedLabels());
    expect(preserved.length).toBeGreaterThan(0);
    expect(world.logs.some((log) => log.entry.event === "mirror.splitbrain_preserved")).toBe(true);
  });

  it("split brain with a witness: never two primaries", async () => {
    for (const name of ["split-brain-witness", "mirror-flapping-network"]) {
      const outcome = await runMirrorScenarioInSim(mirrorScenarios.find((each) => each.name === name)!, { seed: 1 });
      expect(outcome.passed, name).toBe(true);
      expect(outcome.cluster.world.diverged(), name).toBe(false);
    }
  }, 60_000);

  it("the secondary down while writes go on gets an incremental resync, not a full one", async () => {
    const outcome = await runMirrorScenarioInSim(mirrorScenarios.find((each) => each.name === "secondary-down-resync")!, { seed: 1 });
    expect(outcome.passed).toBe(true);
    const primary = outcome.cluster.world.node("n1").runtime!.state.stats;
    expect(primary.resyncs).toBeGreaterThanOrEqual(2);
    expect(primary.fullResyncs).toBe(1); // the new mirror's first sync only
  });
});
