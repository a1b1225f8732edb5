// The simulator's main job for the mirror in CI: generated fault plans under client writes,
// zero violations of M1-M5. Two test files of 500 plans each (mirror-fault-plans-1 and -2)
// so that vitest runs them on both cores. TANDEM_MIRROR_PLANS (per file) and
// TANDEM_MIRROR_SEED (added to each file's seed) change how many plans run and which; a
// failure prints the shrunk plan and its replay command.

import { describe, expect, it } from "vitest";
import { fuzzMirror } from "../../drivers/sim/mirror-plan.ts";

export function mirrorFaultPlans(part: 1 | 2): void {
  const plans = Number(process.env["TANDEM_MIRROR_PLANS"] ?? 500);
  const seed = 1_000 + part + Number(process.env["TANDEM_MIRROR_SEED"] ?? 0);
  describe(`mirror fault plans (part ${part} of 2)`, () => {
    it(`${plans} generated plans violate no invariant`, () => {
      const summary = fuzzMirror({ runs: plans, seed });
      console.log(`mirror fault plans, part ${part}: ${summary.runs} run, ${summary.failure === null ? 0 : 1} violated (fast-check seed ${seed}, ${(summary.virtualMs / 1000).toFixed(0)} s simulated)`);
      expect(summary.failure?.report ?? null).toBeNull();
      expect(summary.runs).toBe(plans);
    }, 3_600_000);
  });
}
