// The local life cycle of one farm or light module on one node: SafeKit's scripts,
// checkers, process monitoring and failover rules, as a pure state machine.
//
//   STOP ──start──▶ WAIT ──(no wait rule holds)──▶ UP
//     ▲              ▲  │                            │
//     └─────stop─────┴──┴────────── wait rule ◀──────┘
//
// A state change runs the `transition` script, then the change's own scripts, one at a
// time, each with SafeKit's three arguments (current state, next state, action). Stop
// scripts that outlive `nicestoptimeout` are run again with a fourth argument `force`.
// Checkers and <errd> classes are enabled after the script that starts what they watch
// and disabled before the script that stops it. Every `period` the failover rules (the
// defaults, the user's, and one per checker from its `action`) are evaluated; an action
// runs once its condition has held for `handle_time`. Automatic actions count toward
// `maxloop` within `loop_interval`; the one past it stops the module on this node.
//
// A mirror's roles (PRIM, SECOND, ALONE) build on this in the mirror module; here the
// farm core learns only whether the module is UP and Ready (the `ready` effect).
//
// A pure module: time enters as nowMs; probes, scripts and process counts are effects
// whose results come back as inputs.

import { assert, unreachable } from "../assert.ts";
import { dueRules, evaluateRules, trackRuleConditions, type FailoverAction, type FailoverRule, type ResourceState } from "../config/failover-rules.ts";
import type { Checker, ModuleConfig, ProcWatch } from "../config/module-config.ts";
import type { Probe, ProcessQuery, ScriptOutcome, ScriptRun } from "../ports.ts";
import type { LogEntry, LogLevel } from "../types.ts";

export type LocalState = "STOP" | "WAIT" | "UP";
export type Readiness = "NotReady" | "Transient" | "Ready";
/** SafeKit's third script argument: why the state changes. */
export type ScriptAction = "start" | "stop" | "stopstart" | "stopwait";
/** What <errd> and the failover rules may ask for, plus the operator's commands. */
export type LifecycleAction = "restart" | "stopstart" | "stop" | "wait";
/** Checker and <errd> classes: enabled after their start script, disabled before their stop script. */
type ClassName = "pre" | "both";

/** The longest timer the real clock can arm (2^31 - 1 ms); a longer one would fire at once. */
export const longRunTimeoutMs = 2_147_483_647;

export interface LifecycleConfig {
  readonly module: string;
  readonly node: string;
  readonly mode: "farm" | "light";
  readonly maxLoop: number;
  /** 0: automatic actions are never counted, so the module never stops by itself. */
  readonly loopIntervalMs: number;
  /** False when the module has no <user> element: no scripts at all, as in SafeKit. */
  readonly scripts: boolean;
  readonly niceStopTimeoutMs: number;
  readonly forceStopTimeoutMs: number;
  /** SAFEMODULE, the directories and the <var> values; every script gets exactly this. */
  readonly env: Readonly<Record<string, string>>;
  readonly checkers: readonly Checker[];
  readonly errdPollMs: number;
  readonly procs: readonly ProcWatch[];
  readonly rules: readonly FailoverRule[];
  readonly periodMs: number;
  readonly handleTimeMs: number;
}

/** Where a node keeps a module: tandem's names, exported to scripts beside SafeKit's. */
export interface ModuleDirs {
  readonly moduleDir: string;
  readonly binDir: string;
  readonly stateDir: string;
  readonly logDir: string;
}

export function lifecycleConfig(module: ModuleConfig, node: string, dirs: ModuleDirs): LifecycleConfig {
  assert(module.mode !== "mirror", "lifecycleConfig: a mirror's roles belong to the mirror module");
  const env: Record<string, string> = {
    SAFEMODULE: module.name,
    SAFEUSERBIN: dirs.binDir,
    SAFEVAR: dirs.stateDir,
    TANDEM_MODULE: module.name,
    TANDEM_NODE: node,
    TANDEM_MODULE_DIR: dirs.moduleDir,
    TANDEM_MODULE_BIN: dirs.binDir,
    TANDEM_MODULE_STATE: dirs.stateDir,
    TANDEM_MODULE_LOG: dirs.logDir,
  };
  for (const variable of module.user?.vars ?? []) env[variable.name] = variable.value;
  return {
    module: module.name,
    node,
    mode: module.mode,
    maxLoop: module.service.maxLoop,
    loopIntervalMs: module.service.loopIntervalMs,
    scripts: module.user !== null,
    niceStopTimeoutMs: module.user?.niceStopTimeoutMs ?? 300_000,
    forceStopTimeoutMs: module.user?.forceStopTimeoutMs ?? 300_000,
    env,
    checkers: module.checkers,
    errdPollMs: module.errd?.pollTimerMs ?? 30_000,
    procs: module.errd?.procs ?? [],
    rules: [...module.failover.rules, ...module.checkers.flatMap(checkerRule)],
    periodMs: module.failover.periodMs,
    handleTimeMs: module.failover.handleTimeMs,
  };
}

/** SafeKit turns a checker's `action` into a rule on its resource going down. */
export function checkerRule(checker: Checker): FailoverRule[] {
  if (checker.action === "noaction") return [];
  const resource = resourceName(checker);
  return [{ label: `checker:${resource}`, expr: { kind: "compare", scope: "local", resource, operator: "==", state: "down" }, action: checker.action, line: 0, column: 0 }];
}

export function resourceName(checker: Checker): string {
  return `${checker.kind}.${checker.ident}`;
}

// ---- State ----

/** One state change being carried out: its scripts still to run, in order. */
interface Change {
  readonly from: LocalState;
  readonly to: LocalState;
  readonly action: ScriptAction;
  readonly disable: readonly ClassName[];
  readonly scripts: readonly string[];
  readonly enable: readonly ClassName[];
}

interface RunningScript {
  readonly id: number;
  readonly script: string;
  readonly force: boolean;
  /** A start script's failure aborts the change; a stop script's is logged and passed. */
  readonly starting: boolean;
  /** A stop script that times out runs again with `force`. */
  readonly stopping: boolean;
}

export interface Lifecycle {
  readonly config: LifecycleConfig;
  readonly state: LocalState;
  readonly readiness: Readiness;
  /** What the operator asked for last: the module comes back by itself only when "running". */
  readonly goal: "running" | "stopped";
  /** The changes still to carry out; the first is under way when `running` is set. */
  readonly plan: readonly Change[];
  /** How far into plan[0]: 0 not entered yet, then 1 + the index of the next script
   *  (entering runs the `transition` script). 0 whenever no script runs. */
  readonly step: number;
  readonly running: RunningScript | null;
  readonly nextRunId: number;
  readonly enabled: ReadonlySet<ClassName>;
  /** Local resources by name (CLASS.IDENT). */
  readonly resources: ReadonlyMap<string, ResourceState>;
  /** Bumped when a class is enabled; a probe or count carries the epoch it was asked in,
   *  so that the answer to a question asked before a class was re-enabled is dropped. */
  readonly checkerEpoch: number;
  /** Probes outstanding: resource → the epoch they were asked in. */
  readonly probing: ReadonlyMap<string, number>;
  /** Custom checker programs running, by resource name → run id. */
  readonly customRuns: ReadonlyMap<string, number>;
  readonly ruleSince: ReadonlyMap<string, number>;
  /** errd polls done since each watched process's class was enabled, by proc index. */
  readonly procPolls: ReadonlyMap<number, number>;
  /** Counts outstanding: proc index → the epoch they were asked in. */
  readonly counting: ReadonlyMap<number, number>;
  /** When each counted automatic action ran, oldest first. */
  readonly loops: readonly number[];
  readonly lastReady: boolean;
}

export type LifecycleInput =
  | { readonly kind: "command"; readonly command: "start" | "stop" | "restart" | "stopstart" }
  | { readonly kind: "timer"; readonly timer: string }
  | { readonly kind: "script-done"; readonly id: number; readonly outcome: ScriptOutcome }
  | { readonly kind: "probe-result"; readonly resource: string; readonly epoch: number; readonly up: boolean; readonly detail: string }
  /** null: the host could not be asked; that poll is skipped, not read as "no process". */
  | { readonly kind: "proc-count"; readonly index: number; readonly epoch: number; readonly count: number | null }
  /** A resource set from outside: a custom checker (`tandem set -r custom.x -v down`) or another module's state. */
  | { readonly kind: "resource-set"; readonly resource: string; readonly state: ResourceState };

export type LifecycleEffect =
  | { readonly kind: "run-script"; readonly run: ScriptRun }
  | { readonly kind: "kill-run"; readonly id: number }
  /** Answer with probe-result carrying the same resource and epoch. */
  | { readonly kind: "probe"; readonly resource: string; readonly epoch: number; readonly probe: Probe; readonly timeoutMs: number }
  | { readonly kind: "count-procs"; readonly index: number; readonly epoch: number; readonly query: ProcessQuery }
  | { readonly kind: "timer-arm"; readonly timer: string; readonly afterMs: number }
  | { readonly kind: "timer-cancel"; readonly timer: string }
  /** The module is (or no longer is) UP and Ready: a farm node joins or leaves on it. */
  | { readonly kind: "ready"; readonly ready: boolean }
  /** The application may be running (from the first script of a start until a stop's
   *  last script is done): a farm node that left keeps the VIP's address meanwhile. */
  | { readonly kind: "running"; readonly running: boolean }
  | { readonly kind: "log"; readonly entry: LogEntry };

const failoverTimer = "failover";
const errdTimer = "errd";
const checkTimerPrefix = "check:";

export function initLifecycle(config: LifecycleConfig): Lifecycle {
  assert(config.maxLoop >= 0 && config.periodMs > 0 && config.errdPollMs > 0, "initLifecycle: positive periods");
  return {
    config,
    state: "STOP",
    readiness: "NotReady",
    goal: "stopped",
    plan: [],
    step: 0,
    running: null,
    nextRunId: 1,
    enabled: new Set(),
    resources: new Map(),
    checkerEpoch: 0,
    probing: new Map(),
    customRuns: new Map(),
    ruleSince: new Map(),
    procPolls: new Map(),
    counting: new Map(),
    loops: [],
    lastReady: false,
  };
}

// ---- Step ----

export function stepLifecycle(before: Lifecycle, nowMs: number, input: LifecycleInput): { state: Lifecycle; effects: LifecycleEffect[] } {
  const effects: LifecycleEffect[] = [];
  let node = before;
  switch (input.kind) {
    case "command":
      node = onCommand(node, input.command, effects);
      break;
    case "timer":
      node = onTimer(node, nowMs, input.timer, effects);
      break;
    case "script-done":
      node = onScriptDone(node, nowMs, input.id, input.outcome, effects);
      break;
    case "probe-result":
      if (node.probing.get(input.resource) !== input.epoch) break;
      node = { ...node, probing: withoutKey(node.probing, input.resource) };
      if (input.up !== (node.resources.get(input.resource) === "up")) log(effects, input.up ? "info" : "warn", "checker.changed", node, { resource: input.resource, state: input.up ? "up" : "down", detail: input.detail });
      node = setResource(node, input.resource, input.up ? "up" : "down");
      break;
    case "proc-count":
      if (node.counting.get(input.index) !== input.epoch) break;
      node = onProcCount({ ...node, counting: withoutKey(node.counting, input.index) }, nowMs, input.index, input.count, effects);
      break;
    case "resource-set":
      if (!node.resources.has(input.resource)) {
        log(effects, "warn", "resource.unknown", node, { resource: input.resource });
        break;
      }
      log(effects, "info", "resource.set", node, { resource: input.resource, state: input.state });
      node = setResource(node, input.resource, input.state);
      break;
    default:
      unreachable(input);
  }
  node = advance(node, effects);
  checkInvariants(node);
  return { state: node, effects };
}

function onCommand(node: Lifecycle, command: "start" | "stop" | "restart" | "stopstart", effects: LifecycleEffect[]): Lifecycle {
  log(effects, "info", "module.command", node, { command, state: node.state, goal: node.goal });
  // A start while a stop is under way starts again once stopped (see advance).
  if (command === "start") return node.goal === "running" ? node : { ...node, goal: "running", loops: [] };
  if (command === "stop") return { ...node, goal: "stopped", plan: replaceRest(node, stopChanges(afterPlan(node), "stop")) };
  // Operator restarts do not count toward maxloop: they are not a loop the module got into.
  if (node.state === "STOP" && node.plan.length === 0) {
    log(effects, "warn", "module.command-refused", node, { command, reason: "the module is stopped; use start" });
    return node;
  }
  return { ...node, goal: "running", plan: replaceRest(node, actionChanges(afterPlan(node), command)) };
}

function onTimer(node: Lifecycle, nowMs: number, timer: string, effects: LifecycleEffect[]): Lifecycle {
  if (timer === failoverTimer) {
    if (node.state === "STOP") return node;
    effects.push({ kind: "timer-arm", timer: failoverTimer, afterMs: node.config.periodMs });
    return evaluateFailover(node, nowMs, effects);
  }
  if (timer === errdTimer) {
    if (node.procPolls.size === 0) return node;
    effects.push({ kind: "timer-arm", timer: errdTimer, afterMs: node.config.errdPollMs });
    // A count still outstanding is not asked again: a slow /proc scan must not pile up.
    const watched = [...node.procPolls.keys()].filter((index) => !node.counting.has(index));
    const procPolls = new Map(node.procPolls);
    const counting = new Map(node.counting);
    for (const index of watched) {
      const polls = (procPolls.get(index) ?? 0) + 1;
      procPolls.set(index, polls);
      const proc = node.config.procs[index]!;
      if (polls <= proc.startAfter) continue;
      counting.set(index, node.checkerEpoch);
      effects.push({ kind: "count-procs", index, epoch: node.checkerEpoch, query: { name: proc.name, nameRegex: proc.nameRegex, argRegex: proc.argRegex, service: proc.service } });
    }
    return { ...node, procPolls, counting };
  }
  if (timer.startsWith(checkTimerPrefix)) {
    const resource = timer.slice(checkTimerPrefix.length);
    const checker = node.config.checkers.find((each) => resourceName(each) === resource);
    if (checker === undefined || !node.enabled.has(checkerClass(checker))) return node;
    effects.push({ kind: "timer-arm", timer, afterMs: checker.intervalMs });
    if (checker.kind === "custom") return startCustom(node, checker, effects);
    const probe = probeOf(checker);
    if (probe === null || node.probing.has(resource)) return node;
    effects.push({ kind: "probe", resource, epoch: node.checkerEpoch, probe, timeoutMs: checker.timeoutMs });
    return { ...node, probing: new Map(node.probing).set(resource, node.checkerEpoch) };
  }
  return node;
}

function onScriptDone(node: Lifecycle, nowMs: number, id: number, outcome: ScriptOutcome, effects: LifecycleEffect[]): Lifecycle {
  const custom = [...node.customRuns].find(([, runId]) => runId === id);
  if (custom !== undefined) {
    // A custom checker's program should run as long as its class is enabled; if it ends,
    // nobody sets its resource any more, so it is down until restarted on the next interval.
    log(effects, "warn", "checker.program-ended", node, { resource: custom[0], outcome: describeOutcome(outcome) });
    const customRuns = new Map(node.customRuns);
    customRuns.delete(custom[0]);
    return setResource({ ...node, customRuns }, custom[0], "down");
  }
  const running = node.running;
  if (running === null || running.id !== id) return node;
  const change = node.plan[0]!;
  const failed = !(outcome.kind === "exited" && outcome.code === 0) && outcome.kind !== "missing";
  log(effects, failed ? "warn" : "info", "script.done", node, { script: running.script, outcome: describeOutcome(outcome), force: running.force });
  node = { ...node, running: null };
  if (outcome.kind === "timed-out" && running.stopping && !running.force) {
    // SafeKit's nice stop failed: the same stop script again, told to force.
    return runScript(node, change, running.script, true, effects);
  }
  if (failed && running.starting) {
    // The application may be half started: stop what ran, and try again as a counted
    // automatic action, so that a start that always fails ends in STOP, not a loop.
    log(effects, "error", "script.start-failed", node, { script: running.script, outcome: describeOutcome(outcome) });
    const stopped: Lifecycle = { ...node, plan: [], step: 0 };
    return automaticAction(stopped, nowMs, "stopstart", `${running.script} failed (${describeOutcome(outcome)})`, effects, running.script === "start_both");
  }
  if (failed && running.force) log(effects, "error", "script.force-failed", node, { script: running.script, outcome: describeOutcome(outcome) });
  return { ...node, step: node.step + 1 };
}

function onProcCount(node: Lifecycle, nowMs: number, index: number, count: number | null, effects: LifecycleEffect[]): Lifecycle {
  const proc = node.config.procs[index]!;
  if (!node.procPolls.has(index)) return node;
  if (count === null) {
    log(effects, "warn", "errd.count-failed", node, { process: proc.name ?? proc.nameRegex ?? "?" });
    return node;
  }
  if (count >= proc.atLeast && (proc.atMost < 0 || count <= proc.atMost)) return node;
  const what = proc.name ?? proc.nameRegex ?? "?";
  const reason = `${what}: ${count} running, expected ${proc.atMost < 0 ? `at least ${proc.atLeast}` : `${proc.atLeast} to ${proc.atMost}`}`;
  const action = proc.action;
  if (action === "noaction") {
    log(effects, "warn", "errd.noaction", node, { process: what, count });
    return node;
  }
  if (typeof action === "object") {
    log(effects, "warn", "errd.handler", node, { process: what, count, handler: action.handler });
    if (!node.config.scripts) return node;
    const id = node.nextRunId;
    effects.push({ kind: "run-script", run: { id, script: action.handler, args: [what, String(count)], env: node.config.env, timeoutMs: node.config.niceStopTimeoutMs } });
    return { ...node, nextRunId: id + 1 };
  }
  if (node.running !== null || node.plan.length > 0) return node;
  return automaticAction(node, nowMs, action, reason, effects, node.state === "UP");
}

// ---- Failover rules ----

/** Of several due rules the most severe acts. */
export const failoverSeverity: Readonly<Record<FailoverAction, number>> = { stop: 4, stopstart: 3, swap: 2, wait: 1, restart: 0 };

function evaluateFailover(node: Lifecycle, nowMs: number, effects: LifecycleEffect[]): Lifecycle {
  const holding = evaluateRules(node.config.rules, { local: node.resources, remote: new Map() });
  node = { ...node, ruleSince: trackRuleConditions(node.ruleSince, holding, nowMs) };
  if (node.running !== null || node.plan.length > 0) return node;
  const due = dueRules(node.config.rules, node.ruleSince, nowMs, node.config.handleTimeMs)
    .filter((rule) => !(rule.action === "wait" && node.state === "WAIT"))
    .sort((a, b) => failoverSeverity[b.action] - failoverSeverity[a.action]);
  const rule = due[0];
  if (rule === undefined) return node;
  if (rule.action === "swap") {
    log(effects, "warn", "failover.swap-ignored", node, { rule: rule.label, reason: `swap needs a mirror; this module is a ${node.config.mode}` });
    return node;
  }
  // The rule must hold for a whole handle_time again before it acts again.
  const ruleSince = new Map(node.ruleSince);
  ruleSince.delete(rule.label);
  log(effects, "warn", "failover.rule", node, { rule: rule.label, action: rule.action });
  return automaticAction({ ...node, ruleSince }, nowMs, rule.action, `rule ${rule.label}`, effects, node.state === "UP");
}

/** Whether every probed checker of the pre class has answered once: a module must not
 *  start next to a dead gateway only to stop again on the first probe. */
function preChecked(node: Lifecycle): boolean {
  return node.config.checkers.every((checker) => checkerClass(checker) !== "pre" || probeOf(checker) === null || node.resources.get(resourceName(checker)) !== "init");
}

/** Whether a wait rule holds now: the module stays in WAIT while one does. */
function waitHolds(node: Lifecycle): boolean {
  const waits = node.config.rules.filter((rule) => rule.action === "wait");
  return evaluateRules(waits, { local: node.resources, remote: new Map() }).length > 0;
}

/** `appStarted`: start_both ran (perhaps only in part), so stopping must run stop_both. */
function automaticAction(node: Lifecycle, nowMs: number, action: LifecycleAction, reason: string, effects: LifecycleEffect[], appStarted: boolean): Lifecycle {
  const windowMs = node.config.loopIntervalMs;
  const loops = windowMs === 0 ? [] : node.loops.filter((atMs) => nowMs - atMs < windowMs);
  if (action !== "stop" && windowMs > 0 && loops.length >= node.config.maxLoop) {
    log(effects, "error", "module.maxloop", node, { reason, maxloop: node.config.maxLoop, loopIntervalMs: windowMs, action: "stop" });
    return { ...node, goal: "stopped", loops, plan: stopChanges(node.state, "stop", appStarted) };
  }
  log(effects, "warn", "module.action", node, { action, reason, loop: loops.length + 1 });
  const counted = action === "stop" ? loops : [...loops, nowMs];
  if (action === "stop") return { ...node, goal: "stopped", loops: counted, plan: stopChanges(node.state, "stop", appStarted) };
  return { ...node, loops: counted, plan: actionChanges(node.state, action, appStarted) };
}

// ---- Plans ----

function startChange(action: ScriptAction): Change {
  return { from: "STOP", to: "WAIT", action, disable: [], scripts: ["prestart"], enable: ["pre"] };
}

function upChange(action: ScriptAction): Change {
  return { from: "WAIT", to: "UP", action, disable: [], scripts: ["start_both"], enable: ["both"] };
}

function stopChanges(from: LocalState, action: ScriptAction, appStarted = from === "UP"): Change[] {
  if (from === "STOP") return [];
  return [{ from, to: "STOP", action, disable: ["both", "pre"], scripts: appStarted ? ["stop_both", "poststop"] : ["poststop"], enable: [] }];
}

function actionChanges(from: LocalState, action: LifecycleAction, appStarted = from === "UP"): Change[] {
  switch (action) {
    case "stop":
      return stopChanges(from, "stop", appStarted);
    case "stopstart":
      return [...stopChanges(from, "stopstart", appStarted), startChange("stopstart")];
    case "restart":
      // The application only: the module stays where it is (UP), Transient meanwhile.
      if (from !== "UP") return from === "STOP" ? [startChange("start")] : [];
      return [{ from: "UP", to: "UP", action: "stopstart", disable: ["both"], scripts: ["stop_both", "start_both"], enable: ["both"] }];
    case "wait":
      return from === "UP" ? [{ from: "UP", to: "WAIT", action: "stopwait", disable: ["both"], scripts: ["stop_both"], enable: [] }] : [];
  }
}

/** The state the module will be in once the change under way is done. */
function afterPlan(node: Lifecycle): LocalState {
  return node.running === null ? node.state : node.plan[0]!.to;
}

/** Keeps the change under way (its script is running) and replaces what follows it. */
function replaceRest(node: Lifecycle, next: readonly Change[]): Change[] {
  return node.running === null ? [...next] : [node.plan[0]!, ...next];
}

/** Carries out the plan as far as it can go without waiting for a script. */
function advance(node: Lifecycle, effects: LifecycleEffect[]): Lifecycle {
  for (let guard = 0; guard < 64; guard++) {
    if (node.running !== null) return node;
    const change = node.plan[0];
    if (change === undefined) {
      if (node.state === "STOP" && node.goal === "running") {
        node = { ...node, plan: [startChange("start")] };
        continue;
      }
      if (node.state === "WAIT" && node.goal === "running" && preChecked(node) && !waitHolds(node)) {
        node = { ...node, plan: [upChange("start")] };
        continue;
      }
      return withReadiness(node, node.state === "UP" ? "Ready" : "NotReady", effects);
    }
    if (node.step === 0) {
      // Entering a change: what its scripts will stop stops being watched first.
      node = disable(withReadiness(node, "Transient", effects), change.disable, effects);
      log(effects, "info", "module.transition", node, { from: change.from, to: change.to, action: change.action });
      // The step moves to 1 when the transition script is done (or at once without scripts).
      node = node.config.scripts ? runScript(node, change, "transition", false, effects) : { ...node, step: 1 };
      continue;
    }
    const script = change.scripts[node.step - 1];
    if (script !== undefined) {
      node = node.config.scripts ? runScript(node, change, script, false, effects) : { ...node, step: node.step + 1 };
      continue;
    }
    // Every script of the change ran: enter its state, then watch what it started.
    node = { ...node, state: change.to, plan: node.plan.slice(1), step: 0 };
    if (change.to === "STOP") {
      effects.push({ kind: "timer-cancel", timer: failoverTimer });
      node = { ...node, ruleSince: new Map() };
    }
    if (change.from === "STOP" && change.to !== "STOP") effects.push({ kind: "timer-arm", timer: failoverTimer, afterMs: node.config.periodMs });
    node = enable(node, change.enable, effects);
  }
  assert(false, "advance: a plan never needs 64 changes without a script");
  return node;
}

function runScript(node: Lifecycle, change: Change, script: string, force: boolean, effects: LifecycleEffect[]): Lifecycle {
  const id = node.nextRunId;
  const starting = script === "prestart" || script.startsWith("start_");
  const stopping = script.startsWith("stop_");
  const args = [change.from, change.to, change.action, ...(force ? ["force"] : [])];
  const timeoutMs = force ? node.config.forceStopTimeoutMs : node.config.niceStopTimeoutMs;
  log(effects, "info", "script.run", node, { script, args: args.join(" "), id });
  effects.push({ kind: "run-script", run: { id, script, args, env: node.config.env, timeoutMs } });
  return { ...node, nextRunId: id + 1, running: { id, script, force, starting, stopping } };
}

/** Readiness only changes here, so `ready` is reported in order with the scripts: a farm
 *  node leaves the farm before stop_both stops its application. */
function withReadiness(node: Lifecycle, readiness: Readiness, effects: LifecycleEffect[]): Lifecycle {
  if (readiness === node.readiness) return node;
  log(effects, "info", "module.state", node, { state: node.state, readiness });
  const ready = node.state === "UP" && readiness === "Ready";
  const running = readiness !== "NotReady";
  if (running !== (node.readiness !== "NotReady")) effects.push({ kind: "running", running });
  if (ready !== node.lastReady) effects.push({ kind: "ready", ready });
  return { ...node, readiness, lastReady: ready };
}

// ---- Checkers and <errd> classes ----

/** Farm and light nodes are UP, never PRIM or SECOND: what a mirror watches on its
 *  primary is watched on every UP node here. */
function checkerClass(checker: Checker): ClassName {
  return checker.when === "pre" ? "pre" : "both";
}

/** The mirror classes (prim, second, sec; warned about when read) and a user's own class
 *  (enabled by a command in SafeKit) are never enabled on a farm or light node. */
function procClass(proc: ProcWatch): ClassName | null {
  return proc.className === "pre" || proc.className === "both" ? proc.className : null;
}

function enable(node: Lifecycle, classes: readonly ClassName[], effects: LifecycleEffect[]): Lifecycle {
  if (classes.length === 0) return node;
  const enabled = new Set(node.enabled);
  const resources = new Map(node.resources);
  const procPolls = new Map(node.procPolls);
  for (const name of classes) enabled.add(name);
  for (const checker of node.config.checkers) {
    if (!classes.includes(checkerClass(checker))) continue;
    resources.set(resourceName(checker), "init");
    // The first probe runs at once: a module that starts next to a dead dependency
    // should learn it now, not one interval later.
    effects.push({ kind: "timer-arm", timer: checkTimerPrefix + resourceName(checker), afterMs: 0 });
  }
  node.config.procs.forEach((proc, index) => {
    if (isIn(classes, procClass(proc))) procPolls.set(index, 0);
  });
  if (node.config.procs.some((proc) => isIn(classes, procClass(proc)))) effects.push({ kind: "timer-arm", timer: errdTimer, afterMs: node.config.errdPollMs });
  log(effects, "debug", "classes.enabled", node, { classes: classes.join(",") });
  return { ...node, enabled, resources, procPolls, checkerEpoch: node.checkerEpoch + 1 };
}

function disable(node: Lifecycle, classes: readonly ClassName[], effects: LifecycleEffect[]): Lifecycle {
  const dropping = classes.filter((name) => node.enabled.has(name));
  if (dropping.length === 0) return node;
  const enabled = new Set(node.enabled);
  const resources = new Map(node.resources);
  const customRuns = new Map(node.customRuns);
  const probing = new Map(node.probing);
  for (const name of dropping) enabled.delete(name);
  for (const checker of node.config.checkers) {
    if (!dropping.includes(checkerClass(checker))) continue;
    const resource = resourceName(checker);
    resources.delete(resource);
    probing.delete(resource);
    effects.push({ kind: "timer-cancel", timer: checkTimerPrefix + resource });
    const run = customRuns.get(resource);
    if (run !== undefined) {
      effects.push({ kind: "kill-run", id: run });
      customRuns.delete(resource);
    }
  }
  const procPolls = new Map([...node.procPolls].filter(([index]) => isIn([...enabled], procClass(node.config.procs[index]!))));
  const counting = new Map([...node.counting].filter(([index]) => procPolls.has(index)));
  if (procPolls.size === 0) effects.push({ kind: "timer-cancel", timer: errdTimer });
  log(effects, "debug", "classes.disabled", node, { classes: dropping.join(",") });
  return { ...node, enabled, resources, customRuns, probing, procPolls, counting };
}

function startCustom(node: Lifecycle, checker: Extract<Checker, { kind: "custom" }>, effects: LifecycleEffect[]): Lifecycle {
  const resource = resourceName(checker);
  if (node.customRuns.has(resource)) return node;
  const id = node.nextRunId;
  const args = checker.arg.trim() === "" ? [] : checker.arg.trim().split(/\s+/);
  effects.push({ kind: "run-script", run: { id, script: checker.exec, args, env: { ...node.config.env, TANDEM_RESOURCE: resource }, timeoutMs: longRunTimeoutMs } });
  return { ...node, nextRunId: id + 1, customRuns: new Map(node.customRuns).set(resource, id) };
}

/** What a checker probes (null: a custom checker, which its program reports, or a split-brain checker without a witness). */
export function probeOf(checker: Checker): Probe | null {
  switch (checker.kind) {
    case "tcp":
      return { kind: "tcp", addr: checker.addr, port: checker.port };
    case "ping":
      return { kind: "ping", addr: checker.addr };
    case "intf":
      return { kind: "intf", localAddr: checker.localAddr };
    case "ip":
      return { kind: "ip", addr: checker.addr };
    case "splitbrain":
      // The witness: reachable when any of the addresses answers (the first one is probed
      // here; the mirror module, which acts on it, probes them all).
      return checker.witnesses[0] === undefined ? null : { kind: "ping", addr: checker.witnesses[0] };
    case "module":
      return { kind: "module", module: checker.module, addr: checker.addr, port: checker.port };
    case "custom":
      // Set from outside, by the custom program.
      return null;
  }
}

function setResource(node: Lifecycle, resource: string, state: ResourceState): Lifecycle {
  if (node.resources.get(resource) === state) return node;
  return { ...node, resources: new Map(node.resources).set(resource, state) };
}

// ---- Helpers ----

function isIn(classes: readonly ClassName[], name: ClassName | null): boolean {
  return name !== null && classes.includes(name);
}

function withoutKey<K, V>(map: ReadonlyMap<K, V>, key: K): ReadonlyMap<K, V> {
  if (!map.has(key)) return map;
  const copy = new Map(map);
  copy.delete(key);
  return copy;
}

/** A script's outcome in words, for logs (the service's and the script's own log). */
export function describeOutcome(outcome: ScriptOutcome): string {
  switch (outcome.kind) {
    case "exited":
      return `exit ${outcome.code}`;
    case "signalled":
      return `killed by ${outcome.signal}`;
    case "timed-out":
      return "timed out, process group killed";
    case "missing":
      return "missing (nothing to run)";
    case "not-started":
      return `not started: ${outcome.reason}`;
  }
}

function log(effects: LifecycleEffect[], level: LogLevel, event: string, node: Lifecycle, fields: LogEntry["fields"]): void {
  effects.push({ kind: "log", entry: { level, event, fields: { module: node.config.module, node: node.config.node, ...fields } } });
}

function checkInvariants(node: Lifecycle): void {
  assert(node.running === null || node.plan.length > 0, "lifecycle: a script runs only as part of a change");
  assert(node.state !== "STOP" || node.plan.length > 0 || node.enabled.size === 0, "lifecycle: nothing is watched on a stopped module");
  assert(node.readiness !== "Ready" || node.state === "UP", "lifecycle: only UP is Ready");
  assert(node.lastReady === (node.state === "UP" && node.readiness === "Ready"), "lifecycle: ready reported as it is");
  assert(node.loops.length <= node.config.maxLoop, "lifecycle: loops counted up to maxloop");
  assert(node.running !== null || node.step === 0, "lifecycle: between inputs a change is either under way or not begun");
}
