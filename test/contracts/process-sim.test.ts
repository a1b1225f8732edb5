// The simulated process driver (drivers/sim/processes.ts): the ProcessPort contract over
// script models on a private event queue in virtual time; then what only the simulator
// has: per-call models (failing first starts), applications stopped by scripts or crashing,
// every script hanging at once, unstartable scripts, services, and the run history.

import { describe, expect, it } from "vitest";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { SimProcessPort, type ScriptModel } from "../../drivers/sim/processes.ts";
import { countOf, ended, processPortContract, query, runToEnd, scriptRun, start, type ProcessHarness, type ScriptSpec } from "./process-contract.ts";
import { virtualTime } from "./virtual-time.ts";

interface SimHarness extends ProcessHarness {
  readonly port: SimProcessPort;
}

function makeSimHarness(): SimHarness {
  const queue = new EventQueue();
  const time = virtualTime(queue, 1);
  const port = new SimProcessPort({ queue, clockMs: () => time.nowMs });
  const appName = "webapp";
  const model = (spec: ScriptSpec): ScriptModel => ({
    durationMs: spec.durationMs ?? 1,
    exitCode: spec.exitCode,
    hang: spec.hang,
    signal: spec.signalled === true ? "SIGUSR1" : undefined,
    starts: (spec.apps ?? []).map((args) => ({ name: appName, args })),
  });
  return {
    port,
    appName,
    define: async (script, spec) => {
      port.scripts[script] = model(spec);
    },
    seen: async (script) => {
      const record = port.history.findLast((each) => each.script === script);
      expect(record).toBeDefined();
      return { args: record!.args, env: record!.env };
    },
    nowMs: () => time.nowMs,
    advance: time.advance,
    waitFor: time.waitFor,
    dispose: async () => {},
  };
}

processPortContract("sim", async () => makeSimHarness());

describe("SimProcessPort", () => {
  it("lets a model fail the first starts of a script", async () => {
    const harness = makeSimHarness();
    harness.port.scripts.start_both = (_run, callIndex) => (callIndex < 2 ? { durationMs: 50, exitCode: 1 } : { durationMs: 50 });
    const outcomes = [];
    for (let attempt = 0; attempt < 3; attempt++) outcomes.push(await runToEnd(harness, scriptRun("start_both")));
    expect(outcomes).toEqual([{ kind: "exited", code: 1 }, { kind: "exited", code: 1 }, { kind: "exited", code: 0 }]);
  });

  it("records every run in its history, with a null outcome while it goes on", async () => {
    const harness = makeSimHarness();
    harness.port.scripts.stop_both = { durationMs: 120, exitCode: 2 };
    await harness.advance(1_000);
    const run = scriptRun("stop_both", { args: ["UP", "STOP", "stop", "force"] });
    const outcomes = start(harness, run);
    expect(harness.port.history).toEqual([{ atMs: 1_000, id: run.id, script: "stop_both", args: run.args, env: run.env, outcome: null, endMs: null }]);
    await ended(harness, outcomes);
    expect(harness.port.history[0]).toMatchObject({ outcome: { kind: "exited", code: 2 }, endMs: 1_120 });
  });

  it("counts the script's own process while it runs, under the script's file name", async () => {
    const harness = makeSimHarness();
    harness.port.scripts["/opt/checks/probe_db"] = { durationMs: 100 };
    const outcomes = start(harness, scriptRun("/opt/checks/probe_db", { args: ["--fast"] }));
    expect(await countOf(harness, query({ name: "probe_db", argRegex: "^--fast$" }))).toBe(1);
    await ended(harness, outcomes);
    expect(await countOf(harness, query({ name: "probe_db" }))).toBe(0);
  });

  it("stops applications by name and lets them crash on their own", async () => {
    const harness = makeSimHarness();
    harness.port.scripts.start_both = { durationMs: 10, starts: [{ name: "nginx" }, { name: "php-fpm", crashAfterMs: 5_000 }] };
    harness.port.scripts.stop_both = { durationMs: 10, stops: ["nginx"] };
    await runToEnd(harness, scriptRun("start_both"));
    expect(harness.port.processes().map((process) => process.name)).toEqual(["nginx", "php-fpm"]);
    await runToEnd(harness, scriptRun("stop_both"));
    expect(harness.port.processes().map((process) => process.name)).toEqual(["php-fpm"]);
    await harness.advance(5_000);
    expect(harness.port.processes()).toEqual([]);
  });

  it("crashApp kills every process of that name, cut to 15 characters as comm is", async () => {
    const harness = makeSimHarness();
    harness.port.scripts.start_both = { durationMs: 10, starts: [{ name: "postgres-main-cluster" }, { name: "postgres-main-cluster" }, { name: "nginx" }] };
    await runToEnd(harness, scriptRun("start_both"));
    expect(await countOf(harness, query({ name: "postgres-main-c" }))).toBe(2);
    expect(harness.port.crashApp("postgres-main-cluster")).toBe(2);
    expect(harness.port.processes().map((process) => process.name)).toEqual(["nginx"]);
  });

  it("hangScripts makes new runs hang until their timeout; releaseScripts lets later runs end", async () => {
    const harness = makeSimHarness();
    harness.port.scripts.start_both = { durationMs: 10, starts: [{ name: "nginx" }] };
    harness.port.hangScripts();
    const hung = start(harness, scriptRun("start_both", { timeoutMs: 1_000 }));
    harness.port.releaseScripts();
    expect(await runToEnd(harness, scriptRun("start_both"))).toEqual({ kind: "exited", code: 0 });
    expect(hung).toHaveLength(0);
    expect(await ended(harness, hung)).toEqual({ kind: "timed-out" });
    expect(harness.port.history.map((record) => record.endMs)).toEqual([1_000, 10]);
  });

  it("reports a model that cannot start as not started", async () => {
    const harness = makeSimHarness();
    harness.port.scripts.start_both = { durationMs: 0, notStarted: "bad interpreter" };
    expect(await runToEnd(harness, scriptRun("start_both"))).toEqual({ kind: "not-started", reason: "bad interpreter" });
  });

  it("counts a service as 1 while a process of its name runs", async () => {
    const harness = makeSimHarness();
    harness.port.scripts.start_both = { durationMs: 10, starts: [{ name: "nginx" }, { name: "nginx" }] };
    const nginx = query({ name: "nginx", service: true });
    expect(await countOf(harness, nginx)).toBe(0);
    await runToEnd(harness, scriptRun("start_both"));
    expect(await countOf(harness, nginx)).toBe(1);
  });
});
