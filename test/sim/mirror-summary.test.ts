// Summaries with coarse dirty maps. A node's hello names its dirty map; past a bound (8 MiB
// of JSON in the service, half a frame) it names coarser marks: the files with the most
// blocks whole, then directories whole (core/mirror/meta.ts, coarsenToFit). A peer that
// plans a resync from such a summary sends more than needed, never less. Here the bound is
// 200 bytes, so that nearly every summary with marks is coarsened, over generated fault
// plans (split brains, losers' changes kept aside, resyncs cut short): the bound adds no
// violation. A plan that also fails without it fails for another reason: it is printed with
// its replay command (and tracked in issue 8's note), not counted against the bound.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { describeMirrorPlan, mirrorPlanArbitrary, mirrorReplayCommand, runMirrorPlan } from "../../drivers/sim/mirror-plan.ts";

const plans = Number(process.env["TANDEM_SUMMARY_PLANS"] ?? 40);

describe("summaries coarsened to 200 bytes", () => {
  it(`add no violation over ${plans} generated fault plans`, { timeout: 600_000 }, () => {
    const failures: string[] = [];
    for (const generated of fc.sample(mirrorPlanArbitrary({}), { numRuns: plans, seed: 7_001 })) {
      const plan = { ...generated, summaryBytes: 200 };
      const bounded = runMirrorPlan(plan).violations;
      if (bounded.length === 0) continue;
      const report = `${bounded[0]!.kind} ${bounded[0]!.detail}\n${describeMirrorPlan(plan)}\nreplay with: ${mirrorReplayCommand(plan)}`;
      if (runMirrorPlan(generated).violations.length === 0) failures.push(report);
      else console.log(`fails without the bound too (not the bound's doing):\n${report}`);
    }
    expect(failures).toEqual([]);
  });
});
