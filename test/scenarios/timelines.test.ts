// Each scenario's timeline is deterministic, so it is kept as text and compared exactly
// (etcd's data-driven tests): a change of behaviour shows up as a readable diff.
// After a deliberate change: TANDEM_UPDATE_TIMELINES=1 npx vitest run test/scenarios
// rewrites the files; review the diff before committing it.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { farmScenarios } from "../../scenarios/farm-scenarios.ts";
import { runScenarioInSim } from "../../scenarios/index.ts";

const update = process.env["TANDEM_UPDATE_TIMELINES"] === "1";

describe("scenario timelines match their recorded text", () => {
  it.each(farmScenarios.map((scenario) => [scenario.name, scenario] as const))("%s", async (name, scenario) => {
    const path = fileURLToPath(new URL(`./timelines/${name}.txt`, import.meta.url));
    const outcome = await runScenarioInSim(scenario);
    const text = `${outcome.timeline.join("\n")}\n`;
    if (update) writeFileSync(path, text);
    expect(existsSync(path), `${path} is missing: run with TANDEM_UPDATE_TIMELINES=1 to record it`).toBe(true);
    expect(text).toBe(readFileSync(path, "utf8"));
  });
});
