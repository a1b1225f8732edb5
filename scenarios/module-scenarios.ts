// Named scenarios of a module's life cycle on one node, in the simulator: an application
// that keeps crashing, a checker that flaps, a witness that cannot be reached. Each builds
// its module from a userconfig.xml as an operator would write it.

import { lifecycleConfig } from "../core/module/lifecycle.ts";
import { formatProblem } from "../core/config/problems.ts";
import { readUserconfig } from "../core/config/userconfig.ts";
import { ModuleWorld } from "../drivers/sim/module-world.ts";
import type { ScriptBehaviour } from "../drivers/sim/processes.ts";
import { ScenarioFailure } from "./cluster.ts";

export interface ModuleScenario {
  readonly name: string;
  readonly summary: string;
  /** Throws ScenarioFailure when the module does not behave as promised. */
  run(print: (line: string) => void): void;
}

const dirs = { moduleDir: "/etc/tandem/modules/app", binDir: "/etc/tandem/modules/app/bin", stateDir: "/var/lib/tandem/app", logDir: "/var/log/tandem/app" };

function world(serviceAttributes: string, body: string, scripts: Record<string, ScriptBehaviour>): ModuleWorld {
  const text = `<safe><service mode="light"${serviceAttributes}><user/>${body}</service></safe>`;
  const result = readUserconfig({ moduleName: "app", file: "userconfig.xml", text, environment: {} });
  if (result.module === null) throw new ScenarioFailure(`the scenario's module does not load: ${result.problems.map(formatProblem).join("; ")}`);
  return new ModuleWorld({ config: lifecycleConfig(result.module, "node1", dirs), scripts });
}

function expect(condition: boolean, message: string): void {
  if (!condition) throw new ScenarioFailure(message);
}

/** The module's log in the order it happened; a script's start shows as `script NAME ARGS`. */
function printTimeline(module: ModuleWorld, print: (line: string) => void): void {
  for (const { atMs, entry } of module.logs) {
    if (entry.level === "debug" || (entry.event.startsWith("script.") && entry.event !== "script.run")) continue;
    const { module: _module, node: _node, script, args, id: _id, ...fields } = entry.fields;
    const text = entry.event === "script.run" ? `script ${script} ${args}` : `${entry.event} ${Object.entries(fields).map(([key, value]) => `${key}=${value}`).join(" ")}`;
    print(`${(atMs / 1000).toFixed(3).padStart(9)} s  ${text}`);
  }
}

const appScripts = (crashAfterMs?: number): Record<string, ScriptBehaviour> => ({
  start_both: { durationMs: 500, starts: [{ name: "appd", ...(crashAfterMs === undefined ? {} : { crashAfterMs }) }] },
  stop_both: { durationMs: 200, stops: ["appd"] },
});

export const crashLoop: ModuleScenario = {
  name: "crash-loop",
  summary: "the application dies 5 s after every start: errd restarts it maxloop (3) times, then the module stops on this node",
  run(print) {
    const module = world(' maxloop="3" loop_interval="24h"', `<errd polltimer="1s"><proc name="appd" atleast="1" action="restart"/></errd>`, appScripts(5_000));
    module.command("start");
    module.runFor(120_000);
    printTimeline(module, print);
    const starts = module.processes.history.filter((run) => run.script === "start_both");
    expect(starts.length === 4, `start_both ran ${starts.length} times, expected 4 (the first start and 3 restarts)`);
    expect(module.module.state === "STOP" && module.module.goal === "stopped", `the module is ${module.module.state}, expected STOP after maxloop`);
    expect(module.events("module.maxloop").length === 1, "no module.maxloop error was logged");
    expect(module.processes.processes().every((process) => process.name !== "appd"), "the application is still running after the module stopped");
    expect(module.readyChanges.at(-1)?.ready === false, "the module still reports itself ready");
  },
};

export const checkerFlapping: ModuleScenario = {
  name: "checker-flapping",
  summary: "the application's port flaps every 2 s for a minute: handle_time (5 s) rides it out; then it stays down and one restart follows within handle_time + period + interval",
  run(print) {
    const module = world("", `<check><tcp ident="app"><to addr="10.0.0.5" port="8080" interval="1s" timeout="500ms"/></tcp></check><failover period="1s" handle_time="5s"/>`, appScripts());
    module.probes.hostUp("10.0.0.5");
    module.probes.listen("10.0.0.5", 8080);
    module.command("start");
    module.runFor(5_000);
    for (let flap = 0; flap < 30; flap++) {
      if (flap % 2 === 0) module.probes.unlisten("10.0.0.5", 8080);
      else module.probes.listen("10.0.0.5", 8080);
      module.runFor(2_000);
    }
    expect(module.events("module.action").length === 0, `a flapping checker triggered ${module.events("module.action").length} actions within handle_time`);
    const downAtMs = module.nowMs;
    module.probes.unlisten("10.0.0.5", 8080);
    module.runFor(10_000);
    printTimeline(module, print);
    const actions = module.events("module.action");
    expect(actions.length === 1 && actions[0]!.entry.fields["action"] === "restart", `expected one restart once the port stayed down, got ${actions.length}`);
    const tookMs = actions[0]!.atMs - downAtMs;
    expect(tookMs >= 5_000 && tookMs <= 5_000 + 1_000 + 1_000, `the restart came ${tookMs} ms after the port went down`);
  },
};

export const witnessUnreachable: ModuleScenario = {
  name: "witness-unreachable",
  summary: "the witness does not answer at start: the module waits without starting the application; it starts once the witness answers and waits again when it is lost",
  run(print) {
    const module = world("", `<check><ping ident="witness"><to addr="10.0.0.1" interval="1s" timeout="500ms"/></ping></check><failover period="1s" handle_time="3s"/>`, appScripts());
    module.command("start");
    module.runFor(30_000);
    expect(module.module.state === "WAIT", `with no witness the module is ${module.module.state}, expected WAIT`);
    expect(!module.processes.history.some((run) => run.script === "start_both"), "start_both ran although the witness never answered");
    module.probes.hostUp("10.0.0.1");
    module.runFor(2_000);
    expect(module.module.state === "UP", `the witness answers again but the module is ${module.module.state}`);
    const lostAtMs = module.nowMs;
    module.probes.hostDown("10.0.0.1");
    module.runFor(10_000);
    printTimeline(module, print);
    expect(module.module.state === "WAIT", `the witness is lost but the module is ${module.module.state}`);
    const stop = module.processes.history.find((run) => run.script === "stop_both" && run.atMs > lostAtMs);
    expect(stop !== undefined && stop.args.join(" ") === "UP WAIT stopwait", "stop_both did not run with UP WAIT stopwait");
    expect(stop!.atMs - lostAtMs >= 3_000, `the module stopped ${stop!.atMs - lostAtMs} ms after the witness was lost, before handle_time`);
  },
};

export const moduleScenarios: readonly ModuleScenario[] = [crashLoop, checkerFlapping, witnessUnreachable];
