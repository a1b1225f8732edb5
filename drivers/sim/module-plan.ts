// Fault plans for one module's life cycle (scripts, checkers, errd, failover rules) and the
// invariants every run must keep. A failing plan is a JSON value carried by a replay token:
// `npm run sim -- --module light --replay TOKEN`.
//
// Invariants (checked over the whole run):
//   M1 one script at a time: a module's scripts never overlap.
//   M2 ready means started: the module reports ready only after a start_both that
//      succeeded, and reports not ready before any stop_both runs.
//   M3 maxloop: within any loop_interval after an operator's start, at most maxloop
//      automatic actions.
//   M4 liveness: once every fault is repaired and the operator starts the module, it is
//      UP and Ready within the bound, and stays so.

import fc from "fast-check";
import { lifecycleConfig } from "../../core/module/lifecycle.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";
import { ModuleWorld } from "./module-world.ts";
import type { ScriptModel } from "./processes.ts";

export type ModuleVerb =
  | "crashApp"
  | "hangScripts"
  | "releaseScripts"
  | "failStarts"
  | "passStarts"
  | "portDown"
  | "portUp"
  | "witnessDown"
  | "witnessUp"
  | "start"
  | "stop"
  | "restart"
  | "stopstart";

export interface ModuleFault {
  readonly atMs: number;
  readonly verb: ModuleVerb;
}

export interface ModulePlan {
  readonly kind: "module";
  readonly maxLoop: number;
  readonly handleTimeMs: number;
  readonly faults: readonly ModuleFault[];
}

export interface ModuleViolation {
  readonly invariant: "M1" | "M2" | "M3" | "M4";
  readonly atMs: number;
  readonly message: string;
}

export interface ModulePlanResult {
  readonly violations: readonly ModuleViolation[];
  readonly world: ModuleWorld;
}

/** Once repaired and started, a module is UP and Ready within this (hung scripts time out first). */
export const moduleLivenessBoundMs = 20_000;
const settleMs = 15_000;
const loopIntervalMs = 3_600_000;
const witness = "10.0.0.1";
const service = { addr: "10.0.0.5", port: 8080 };

export function moduleText(plan: ModulePlan): string {
  return `<safe><service mode="light" maxloop="${plan.maxLoop}" loop_interval="1h">
  <user nicestoptimeout="3s" forcestoptimeout="2s"/>
  <errd polltimer="1s"><proc name="appd" atleast="1" action="restart"/></errd>
  <check>
    <tcp ident="app"><to addr="${service.addr}" port="${service.port}" interval="1s" timeout="500ms"/></tcp>
    <ping ident="witness"><to addr="${witness}" interval="1s" timeout="500ms"/></ping>
  </check>
  <failover period="1s" handle_time="${plan.handleTimeMs}ms"/>
</service></safe>`;
}

export function runModulePlan(plan: ModulePlan): ModulePlanResult {
  const result = readUserconfig({ moduleName: "app", file: "plan.xml", text: moduleText(plan), environment: {} });
  if (result.module === null) throw new Error(`a module plan's module does not load: ${result.problems.map(formatProblem).join("; ")}`);
  let failStarts = false;
  const world = new ModuleWorld({
    config: lifecycleConfig(result.module, "node1", { moduleDir: "/m", binDir: "/m/bin", stateDir: "/s", logDir: "/l" }),
    scripts: {
      prestart: { durationMs: 50 },
      start_both: (): ScriptModel => (failStarts ? { durationMs: 300, exitCode: 1 } : { durationMs: 300, starts: [{ name: "appd" }] }),
      stop_both: { durationMs: 200, stops: ["appd"] },
      poststop: { durationMs: 50 },
    },
  });
  world.probes.hostUp(witness);
  world.probes.hostUp(service.addr);
  world.probes.listen(service.addr, service.port);
  world.command("start");
  const apply = (verb: ModuleVerb): void => {
    switch (verb) {
      case "crashApp":
        world.processes.crashApp("appd");
        return;
      case "hangScripts":
        return world.processes.hangScripts();
      case "releaseScripts":
        return world.processes.releaseScripts();
      case "failStarts":
        failStarts = true;
        return;
      case "passStarts":
        failStarts = false;
        return;
      case "portDown":
        return world.probes.unlisten(service.addr, service.port);
      case "portUp":
        return world.probes.listen(service.addr, service.port);
      case "witnessDown":
        return world.probes.hostDown(witness);
      case "witnessUp":
        return world.probes.hostUp(witness);
      default:
        return world.command(verb);
    }
  };
  for (const fault of plan.faults) {
    world.runFor(Math.max(0, fault.atMs - world.nowMs));
    apply(fault.verb);
  }
  // Repair everything and let the last faults play out (an errd poll, a handle_time, a
  // hung script's timeouts); then the operator starts the module (a no-op if it runs).
  for (const verb of ["releaseScripts", "passStarts", "portUp", "witnessUp"] as const) apply(verb);
  world.runFor(settleMs);
  apply("start");
  const repairedAtMs = world.nowMs;
  world.runFor(moduleLivenessBoundMs);
  const violations = [...checkScripts(world), ...checkReady(world), ...checkLoops(world, plan.maxLoop)];
  const live = (): boolean => world.module.state === "UP" && world.module.readiness === "Ready";
  if (!live()) violations.push({ invariant: "M4", atMs: world.nowMs, message: `repaired and started at ${repairedAtMs} ms, the module is ${world.module.state} ${world.module.readiness} ${moduleLivenessBoundMs} ms later` });
  else {
    world.runFor(10_000);
    if (!live()) violations.push({ invariant: "M4", atMs: world.nowMs, message: `with nothing failing the module left UP Ready: it is ${world.module.state} ${world.module.readiness}` });
  }
  return { violations, world };
}

function checkScripts(world: ModuleWorld): ModuleViolation[] {
  const runs = world.processes.history;
  for (let index = 1; index < runs.length; index++) {
    const previous = runs[index - 1]!;
    const run = runs[index]!;
    if (previous.endMs === null || previous.endMs > run.atMs) {
      return [{ invariant: "M1", atMs: run.atMs, message: `${run.script} started while ${previous.script} (run ${previous.id}) was still running` }];
    }
  }
  return [];
}

function checkReady(world: ModuleWorld): ModuleViolation[] {
  const violations: ModuleViolation[] = [];
  let ready = false;
  let lastAppScript: { script: string; id: number } | null = null;
  for (const { atMs, entry, ready: change } of world.trail) {
    if (change !== undefined) {
      ready = change;
      if (!ready || lastAppScript === null) {
        if (ready) violations.push({ invariant: "M2", atMs, message: "ready before start_both ever ran" });
        continue;
      }
      const run = world.processes.history.find((each) => each.id === lastAppScript!.id);
      const succeeded = run?.outcome?.kind === "missing" || (run?.outcome?.kind === "exited" && run.outcome.code === 0);
      if (lastAppScript.script !== "start_both" || !succeeded) violations.push({ invariant: "M2", atMs, message: `ready after ${lastAppScript.script} (run ${lastAppScript.id}, ${JSON.stringify(run?.outcome)})` });
      continue;
    }
    if (entry?.event !== "script.run") continue;
    const script = String(entry.fields["script"]);
    if (script !== "start_both" && script !== "stop_both") continue;
    if (script === "stop_both" && ready) violations.push({ invariant: "M2", atMs, message: "stop_both ran while the module still reported ready" });
    lastAppScript = { script, id: Number(entry.fields["id"]) };
  }
  return violations.slice(0, 5);
}

function checkLoops(world: ModuleWorld, maxLoop: number): ModuleViolation[] {
  let countedSince = 0;
  const actions: number[] = [];
  for (const { atMs, entry } of world.trail) {
    // An operator's start of a module meant to be stopped clears the count.
    if (entry?.event === "module.command" && entry.fields["command"] === "start" && entry.fields["goal"] === "stopped") countedSince = atMs;
    if (entry?.event !== "module.action" || entry.fields["action"] === "stop") continue;
    actions.push(atMs);
    const inWindow = actions.filter((each) => each >= countedSince && atMs - each < loopIntervalMs).length;
    if (inWindow > maxLoop) return [{ invariant: "M3", atMs, message: `${inWindow} automatic actions within loop_interval, maxloop is ${maxLoop}` }];
  }
  return [];
}

// ---- generation, encoding ----

const repairOf = { hangScripts: "releaseScripts", failStarts: "passStarts", portDown: "portUp", witnessDown: "witnessUp", stop: "start" } as const;

export function modulePlanArbitrary(): fc.Arbitrary<ModulePlan> {
  const atMs = fc.integer({ min: 0, max: 60_000 });
  const episode = fc
    .record({ atMs, verb: fc.constantFrom(...(Object.keys(repairOf) as (keyof typeof repairOf)[])), durationMs: fc.oneof(fc.integer({ min: 1, max: 2_000 }), fc.integer({ min: 1, max: 20_000 })) })
    .map(({ atMs, verb, durationMs }): ModuleFault[] => [
      { atMs, verb },
      { atMs: atMs + durationMs, verb: repairOf[verb] },
    ]);
  const single = fc.record({ atMs, verb: fc.constantFrom<ModuleVerb>("crashApp", "restart", "stopstart", "start", "stop", "crashApp") }).map((fault) => [fault]);
  return fc.record({
    kind: fc.constant("module" as const),
    maxLoop: fc.integer({ min: 0, max: 4 }),
    handleTimeMs: fc.constantFrom(0, 1_000, 3_000, 5_000),
    faults: fc.array(fc.oneof({ weight: 3, arbitrary: episode }, { weight: 2, arbitrary: single }), { maxLength: 8 }).map((groups) => groups.flat().sort((a, b) => a.atMs - b.atMs)),
  });
}

export function describeModulePlan(plan: ModulePlan): string {
  return [`maxloop=${plan.maxLoop} handle_time=${plan.handleTimeMs}ms`, ...(plan.faults.length === 0 ? ["faults: none"] : plan.faults.map((fault) => `  ${fault.atMs} ms ${fault.verb}`))].join("\n");
}

export function encodeModulePlan(plan: ModulePlan): string {
  return Buffer.from(JSON.stringify(plan)).toString("base64url");
}

export function decodeModulePlan(token: string): ModulePlan {
  let plan: ModulePlan;
  try {
    plan = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as ModulePlan;
  } catch {
    throw new Error(`replay token is not a plan: it does not decode to JSON (${token.slice(0, 20)}…); copy the whole token from the failure report`);
  }
  if (plan.kind !== "module" || !Array.isArray(plan.faults) || typeof plan.maxLoop !== "number") throw new Error("replay token is not a module plan: it lacks kind, maxLoop or faults");
  return plan;
}

export interface ModuleFuzzSummary {
  readonly runs: number;
  /** A readable report of the shrunk failing plan with its replay command, or null. */
  readonly failure: { readonly report: string; readonly command: string } | null;
}

export function moduleReplayCommand(plan: ModulePlan): string {
  return `npm run sim -- --module light --replay ${encodeModulePlan(plan)}`;
}

/** Runs `runs` generated module plans; fast-check shrinks a failing one. */
export function fuzzModule(options: { readonly runs: number; readonly seed: number; readonly onProgress?: (done: number, runs: number) => void }): ModuleFuzzSummary {
  let done = 0;
  const property = fc.property(modulePlanArbitrary(), (plan) => {
    if (++done % 100 === 0) options.onProgress?.(done, options.runs);
    return runModulePlan(plan).violations.length === 0;
  });
  const details = fc.check(property, { numRuns: options.runs, seed: options.seed });
  if (!details.failed || details.counterexample === null) return { runs: details.numRuns, failure: null };
  const plan = details.counterexample[0];
  const command = moduleReplayCommand(plan);
  const report = [
    `VIOLATION in a module fault plan (found after ${details.numRuns} plans, shrunk ${details.numShrinks} times)`,
    ...runModulePlan(plan).violations.map((violation) => `  [${violation.invariant}] t=${violation.atMs} ms: ${violation.message}`),
    "plan:",
    describeModulePlan(plan).replace(/^/gm, "  "),
    "replay with:",
    `  ${command}`,
  ].join("\n");
  return { runs: details.numRuns, failure: { report, command } };
}
