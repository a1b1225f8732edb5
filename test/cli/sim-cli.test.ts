// The `tandem sim` command line: summaries, scenarios and errors a user can act on.

import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const cli = fileURLToPath(new URL("../../cli/tandem.ts", import.meta.url));

function run(args: readonly string[]): { code: number; output: string } {
  try {
    return { code: 0, output: execFileSync(process.execPath, [cli, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
  } catch (error) {
    const failed = error as { status: number; stdout: string; stderr: string };
    return { code: failed.status, output: failed.stdout + failed.stderr };
  }
}

describe("tandem sim", () => {
  it("runs N fault plans and prints how many ran and how many violated an invariant", () => {
    const { code, output } = run(["sim", "--module", "farm", "--nodes", "3", "--seeds", "20", "--seed", "5"]);
    expect(code).toBe(0);
    expect(output).toMatch(/plans run: 20, violated an invariant: 0/);
  });

  it("prints a JSON summary with --json", () => {
    const { output } = run(["sim", "--seeds", "5", "--seed", "3", "--nodes", "2", "--json"]);
    const summary = JSON.parse(output.trim().split("\n").at(-1)!);
    expect(summary).toMatchObject({ runs: 5, violated: 0, seed: 3, replay: null });
  });

  it("runs a named scenario and prints its timeline", () => {
    const { code, output } = run(["sim", "--scenario", "node-loss"]);
    expect(code).toBe(0);
    expect(output).toContain("kill n3 (power off)");
    expect(output).toContain("farm.peer-lost");
    expect(output).toContain("scenario node-loss passed");
  });

  it("names the known scenarios when asked for an unknown one", () => {
    const { code, output } = run(["sim", "--scenario", "nope"]);
    expect(code).toBe(2);
    expect(output).toContain('no scenario "nope"');
    expect(output).toContain("node-loss");
  });

  it("refuses a module kind it cannot simulate yet, and bad numbers", () => {
    expect(run(["sim", "--module", "mirror"]).code).toBe(2);
    const bad = run(["sim", "--seeds", "many"]);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain("--seeds many");
  });
});
