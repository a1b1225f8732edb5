// The simulator's main job for the mirror in CI: generated fault plans under client writes,
// zero violations of M1-M5. Two test files of 500 plans each (mirror-fault-plans-1 and -2)
// so that vitest runs them on both cores, and a third of 300 plans that stall nodes too
// (mirror-fault-plans-stalls: `--stalls`). TANDEM_MIRROR_PLANS (per file) and
// TANDEM_MIRROR_SEED (added to each file's seed) change how many plans run and which; a
// failure prints the shrunk plan and its replay command.

import { describe, expect, it } from "vitest";
import { fuzzMirror } from "../../drivers/sim/mirror-plan.ts";

const parts = {
  1: { seed: 1_001, plans: 500, stalls: false, title: "part 1 of 2" },
  2: { seed: 1_002, plans: 500, stalls: false, title: "part 2 of 2" },
  stalls: { seed: 5_001, plans: 300, stalls: true, title: "with stalls" },
} as const;

export function mirrorFaultPlans(part: keyof typeof parts): void {
  const { seed: base, plans: defaultPlans, stalls, title } = parts[part];
  const plans = Number(process.env["TANDEM_MIRROR_PLANS"] ?? defaultPlans);
  const seed = base + Number(process.env["TANDEM_MIRROR_SEED"] ?? 0);
  describe(`mirror fault plans (${title})`, () => {
    it(`${plans} generated plans violate no invariant`, () => {
      const summary = fuzzMirror({ runs: plans, seed, shape: { stalls } });
      console.log(`mirror fault plans, ${title}: ${summary.runs} run, ${summary.failure === null ? 0 : 1} violated (fast-check seed ${seed}${stalls ? ", --stalls" : ""}, ${(summary.virtualMs / 1000).toFixed(0)} s simulated)`);
      expect(summary.failure?.report ?? null).toBeNull();
      expect(summary.runs).toBe(plans);
    }, 3_600_000);
  });
}
