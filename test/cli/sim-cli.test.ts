// The `tandem sim` command line: summaries, scenarios and errors a user can act on.

import { describe, expect, it } from "vitest";
import { runCli } from "./run-cli.ts";

describe("tandem sim", () => {
  it("runs N fault plans and prints how many ran and how many violated an invariant", () => {
    const { code, output } = runCli(["sim", "--module", "farm", "--nodes", "3", "--seeds", "20", "--seed", "5"]);
    expect(code).toBe(0);
    expect(output).toMatch(/plans run: 20, violated an invariant: 0/);
  });

  it("prints a JSON summary with --json", () => {
    const { output } = runCli(["sim", "--seeds", "5", "--seed", "3", "--nodes", "2", "--json"]);
    const summary = JSON.parse(output.trim().split("\n").at(-1)!);
    expect(summary).toMatchObject({ runs: 5, violated: 0, seed: 3, replay: null });
  });

  it("runs a named scenario and prints its timeline", () => {
    const { code, output } = runCli(["sim", "--scenario", "node-loss"]);
    expect(code).toBe(0);
    expect(output).toContain("kill n3 (power off)");
    expect(output).toContain("farm.peer-lost");
    expect(output).toContain("scenario node-loss passed");
  });

  it("runs a module scenario: the crash loop ends in STOP after maxloop", () => {
    const { code, output } = runCli(["sim", "--scenario", "crash-loop"]);
    expect(code).toBe(0);
    expect(output).toContain("script start_both WAIT UP start");
    expect(output).toContain("module.maxloop");
    expect(output).toContain("scenario crash-loop passed");
  });

  it("names the known scenarios when asked for an unknown one", () => {
    const { code, output } = runCli(["sim", "--scenario", "nope"]);
    expect(code).toBe(2);
    expect(output).toContain('no scenario "nope"');
    expect(output).toContain("node-loss");
    expect(output).toContain("witness-unreachable");
  });

  it("refuses a module kind it does not know, and bad numbers", () => {
    const unknown = runCli(["sim", "--module", "cluster"]);
    expect(unknown.code).toBe(2);
    expect(unknown.output).toContain("expected farm, mirror or light");
    const bad = runCli(["sim", "--seeds", "many"]);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain("--seeds many");
  });
});
