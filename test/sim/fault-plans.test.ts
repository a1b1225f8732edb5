// The simulator's main job in CI: many generated farm fault plans, zero violations.
// TANDEM_SIM_PLANS and TANDEM_SIM_SEED change how many plans run and which.

import { describe, expect, it } from "vitest";
import { fuzzFarm } from "../../drivers/sim/farm-fuzz.ts";

const plans = Number(process.env["TANDEM_SIM_PLANS"] ?? 1000);
const seed = Number(process.env["TANDEM_SIM_SEED"] ?? 20_261_123);

describe("farm fault plans", () => {
  it(`${plans} generated plans over 2 to 16 nodes violate no invariant`, () => {
    const summary = fuzzFarm({ runs: plans, seed });
    console.log(`farm fault plans: ${summary.runs} run, ${summary.failure === null ? 0 : 1} violated (fast-check seed ${seed}, ${(summary.virtualMs / 1000).toFixed(0)} s simulated)`);
    // On failure the report holds the violations, the shrunk plan and the replay command.
    expect(summary.failure?.report ?? null).toBeNull();
    expect(summary.runs).toBe(plans);
  }, 1_200_000);
});
