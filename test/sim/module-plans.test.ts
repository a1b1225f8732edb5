// Module fault plans: generated plans keep M1–M4, plans that once found bugs stay clean,
// and a failure prints a replay command that the CLI runs.

import { describe, expect, it } from "vitest";
import { decodeModulePlan, encodeModulePlan, fuzzModule, moduleReplayCommand, runModulePlan, type ModulePlan } from "../../drivers/sim/module-plan.ts";
import { runCli } from "../cli/run-cli.ts";

/** Plans that found bugs, shrunk; each must stay clean. */
const regressions: readonly { readonly bug: string; readonly plan: ModulePlan }[] = [
  {
    bug: "a probe asked before another class was enabled was dropped with its 'outstanding' mark kept: the witness was never probed again and the module waited for ever",
    plan: { kind: "module", maxLoop: 1, handleTimeMs: 0, faults: [{ atMs: 19_050, verb: "witnessDown" }, { atMs: 20_050, verb: "witnessUp" }, { atMs: 20_550, verb: "restart" }] },
  },
  {
    bug: "hung scripts, then an operator's stop and start: a timed-out transition script was run again with force as if it stopped something, and the operator's start must clear the maxloop count",
    plan: { kind: "module", maxLoop: 1, handleTimeMs: 0, faults: [{ atMs: 0, verb: "hangScripts" }, { atMs: 55, verb: "releaseScripts" }, { atMs: 3_305, verb: "hangScripts" }, { atMs: 3_360, verb: "releaseScripts" }, { atMs: 3_360, verb: "stop" }, { atMs: 3_361, verb: "start" }] },
  },
];

describe("module fault plans", () => {
  it("2000 generated plans keep every invariant", () => {
    const summary = fuzzModule({ runs: 2_000, seed: 20_261_129 });
    expect(summary.failure?.report ?? null).toBeNull();
    expect(summary.runs).toBe(2_000);
  });

  it.each(regressions.map((each) => [each.bug, each.plan] as const))("regression: %s", (_, plan) => {
    expect(runModulePlan(plan).violations).toEqual([]);
  });

  it("a crash loop past maxloop stops the module, and the operator's start brings it back", () => {
    const crashes = Array.from({ length: 6 }, (_, index) => ({ atMs: 2_000 + index * 3_000, verb: "crashApp" as const }));
    const result = runModulePlan({ kind: "module", maxLoop: 2, handleTimeMs: 0, faults: crashes });
    expect(result.violations).toEqual([]);
    expect(result.world.logs.filter((log) => log.entry.event === "module.maxloop")).toHaveLength(1);
  });

  it("a token round-trips, and the replay command runs the plan", () => {
    const plan = regressions[0]!.plan;
    expect(decodeModulePlan(encodeModulePlan(plan))).toEqual(plan);
    const { code, output } = runCli(["sim", ...moduleReplayCommand(plan).split(" ").slice(4)]);
    expect(code).toBe(0);
    expect(output).toContain("no violation");
    expect(() => decodeModulePlan("bm90LWEtcGxhbg")).toThrow(/not a plan|not a module plan/);
  });
});
