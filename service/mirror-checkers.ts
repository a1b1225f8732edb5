// What a mirror module watches on a node (SafeKit's <check> and <errd>,
// ../shared/userconfig.md): probes (tcp, ping, intf, ip, module), custom checkers (a
// program that runs while its class is enabled and reports with `tandem set -r custom.X
// -v up|down`) and process counts, each in its class, and the <failover> rules over the
// checkers' resources. The schedule lives here; what follows a failure is the core's:
// `restart` and `stopstart` are its `app-failed` input (counted toward maxloop; restart:
// stop_prim and start_prim here; stopstart: the module stops on this node, a primary
// handing over, and starts again), `stop` and `swap` its commands.
//
// Classes, from the module's role and readiness (the core runs the scripts that start and
// stop what they watch, so a class follows the state those scripts lead to):
//   pre     the module is started (WAIT, PRIM, ALONE, SECOND)
//   both    PRIM, ALONE or SECOND
//   prim    PRIM or ALONE, Ready (start_prim done, stop_prim not begun)
//   second  SECOND
//   sec     SECOND, or ALONE and Ready
// A checker's class is its `when`; a process's its `class` (a user's own class is never
// enabled: warned about at start). A probe runs at once when its class is enabled, then
// every interval; a failure acts at once by its checker's action (a farm's checker acts
// through a rule, after `handle_time`; a mirror's application is one node's, and its peer
// waits for it). A result that comes back after its class was disabled (or enabled again
// since) is dropped.
//
// The <failover> rules (SafeKit's defaults unless extends="no", and the user's) are
// evaluated every `period` over this node's resources while the module is started; a rule
// acts once its condition has held for `handle_time`, the most severe of those due first,
// then must hold a whole `handle_time` again (as on a farm: docs/modules.md). `remote.`
// resources are the peer's, as its last heartbeat told (`resources` hook here, the core
// carries them); while the peer is not heard they are not known (a rule on them never
// holds).
//
// Action wait, as on a farm: a checker whose action is wait is a rule on its resource
// going down; a wait rule due holds the node (the core's `hold`: neither primary nor
// secondary, a primary handing over first) until no wait rule's condition holds, checked
// every `period`; then the node decides again with its peer.

import { dueRules, evaluateRules, trackRuleConditions, type FailoverAction, type ResourceState } from "../core/config/failover-rules.ts";
import type { Checker, ModuleConfig, ProcWatch } from "../core/config/module-config.ts";
import { checkerRule, describeOutcome, failoverSeverity, longRunTimeoutMs, probeOf, resourceName } from "../core/module/lifecycle.ts";
import type { MirrorReadiness, MirrorRole } from "../core/mirror/messages.ts";
import type { ProbePort, ProcessPort, ScriptOutcome } from "../core/ports.ts";
import type { LogEntry } from "../core/types.ts";

export type MirrorClass = "pre" | "both" | "prim" | "second" | "sec";

export interface MirrorCheckerHooks {
  /** The module's role and readiness now. */
  readonly state: () => { readonly role: MirrorRole; readonly readiness: MirrorReadiness };
  readonly appFailed: (why: string, action: "restart" | "stopstart") => void;
  readonly stop: (why: string) => void;
  /** A rule's swap: the primary hands the role to its up-to-date secondary. */
  readonly swap: (why: string) => void;
  /** A wait rule is due (why), or none holds any more (null). */
  readonly hold: (why: string | null) => void;
  /** This node's resources changed (all of them): the peer's `remote.` ones. */
  readonly resources: (resources: readonly (readonly [string, "init" | "up" | "down"])[]) => void;
  /** The peer's resources, as it last told (empty while it is not heard). */
  readonly remote: () => ReadonlyMap<string, ResourceState>;
  readonly log: (entry: LogEntry) => void;
}

export interface MirrorCheckerOptions {
  /** The environment of custom checker programs and errd handlers (the scripts'). */
  readonly env: Readonly<Record<string, string>>;
  /** How long an errd handler may run. */
  readonly handlerTimeoutMs: number;
}

export interface MirrorCheckers {
  /** The role or readiness may have changed: classes are enabled or disabled to match. */
  update(): void;
  /** `tandem set -r custom.X -v up|down`; throws when no such resource is watched now. */
  setResource(resource: string, state: "up" | "down"): void;
  /** The resources watched now and their states. */
  resources(): Record<string, ResourceState>;
  /** Stops every timer and custom program. */
  close(): void;
}

/** The classes enabled in a role and readiness. */
export function mirrorClasses(role: MirrorRole, readiness: MirrorReadiness): ReadonlySet<MirrorClass> {
  const classes = new Set<MirrorClass>();
  if (role === "STOP") return classes;
  classes.add("pre");
  if (role === "WAIT") return classes;
  classes.add("both");
  if (role === "SECOND") classes.add("second").add("sec");
  if ((role === "PRIM" || role === "ALONE") && readiness === "Ready") classes.add("prim");
  if (role === "ALONE" && readiness === "Ready") classes.add("sec");
  return classes;
}

/** Ids of custom programs and handlers: far from the core's script ids on the same port. */
const firstRunId = 1_000_000_000;

interface Watched {
  /** Bumped each time its class is enabled: results of an earlier enabling are dropped. */
  epoch: number;
  enabled: boolean;
  timer: NodeJS.Timeout | undefined;
}

/** Starts watching; `update()` follows the module's state from then on. */
export function startMirrorCheckers(module: ModuleConfig, probes: ProbePort, processes: ProcessPort, options: MirrorCheckerOptions, hooks: MirrorCheckerHooks): MirrorCheckers {
  const checkers = module.checkers.filter((checker) => checker.kind !== "splitbrain"); // the core's witness
  const procs = (module.errd?.procs ?? []).filter((proc) => {
    if (isMirrorClass(proc.className)) return true;
    hooks.log({ level: "warn", event: "mirror.errd_not_run", fields: { process: procName(proc), class: proc.className, why: "a class of one's own is never enabled in tandem" } });
    return false;
  });
  // The other actions of a checker act at once (fail below); wait is a rule, as on a farm.
  const rules = [...module.failover.rules, ...checkers.filter((checker) => checker.action === "wait").flatMap(checkerRule)];
  const pollMs = Math.max(50, module.errd?.pollTimerMs ?? 30_000);
  const resources = new Map<string, ResourceState>();
  const custom = new Map<string, number>(); // resource → its program's run id
  const watched = new Map<Checker, Watched>(checkers.map((checker) => [checker, { epoch: 0, enabled: false, timer: undefined }]));
  const polled = new Map<ProcWatch, { epoch: number; enabled: boolean; polls: number; counting: boolean }>(procs.map((proc) => [proc, { epoch: 0, enabled: false, polls: 0, counting: false }]));
  let pollTimer: NodeJS.Timeout | undefined;
  let ruleSince = new Map<string, number>();
  /** The wait rule that holds the node, or null. */
  let holding: string | null = null;
  let nextRunId = firstRunId;
  let closed = false;

  const enabledNow = () => {
    const { role, readiness } = hooks.state();
    return mirrorClasses(role, readiness);
  };

  const act = (action: Exclude<FailoverAction, "wait">, why: string) => {
    if (action === "restart" || action === "stopstart") hooks.appFailed(why, action);
    else if (action === "stop") hooks.stop(why);
    else hooks.swap(why);
  };

  const fail = (what: string, action: Checker["action"] | ProcWatch["action"], detail: string, fields: LogEntry["fields"]) => {
    const why = `${what} failed: ${detail}`;
    const acted = typeof action === "object" ? `handler ${action.handler}` : action;
    hooks.log({ level: "warn", event: "mirror.watch_failed", fields: { ...fields, action: acted, detail } });
    if (typeof action === "object") {
      const id = nextRunId++;
      processes.run({ id, script: action.handler, args: [fields["process"] as string, String(fields["count"])], env: options.env, timeoutMs: options.handlerTimeoutMs }, (outcome) => {
        hooks.log({ level: ok(outcome) ? "info" : "warn", event: "mirror.errd_handler_done", fields: { handler: action.handler, outcome: describeOutcome(outcome) } });
      });
      return;
    }
    // wait: a rule on the resource (evaluate); noaction: logged above.
    if (action !== "noaction" && action !== "wait") act(action, why);
  };

  const told = () => {
    if (closed) return;
    hooks.resources([...resources].filter((entry): entry is [string, "init" | "up" | "down"] => entry[1] !== "unknown"));
  };

  const setState = (resource: string, state: ResourceState) => {
    if (resources.get(resource) === state) return;
    resources.set(resource, state);
    hooks.log({ level: state === "down" ? "warn" : "info", event: "mirror.resource", fields: { resource, state } });
    told();
  };

  const startCustom = (checker: Extract<Checker, { kind: "custom" }>) => {
    const resource = resourceName(checker);
    if (custom.has(resource) || closed) return;
    const id = nextRunId++;
    custom.set(resource, id);
    const args = checker.arg.trim() === "" ? [] : checker.arg.trim().split(/\s+/);
    const watch = watched.get(checker)!;
    const epoch = watch.epoch;
    processes.run({ id, script: checker.exec, args, env: { ...options.env, TANDEM_RESOURCE: resource }, timeoutMs: longRunTimeoutMs }, (outcome) => {
      if (custom.get(resource) === id) custom.delete(resource);
      if (!watch.enabled || watch.epoch !== epoch || closed) return;
      // It should run as long as its class is enabled: nobody reports the resource now.
      hooks.log({ level: "warn", event: "mirror.checker_program_ended", fields: { resource, outcome: describeOutcome(outcome) } });
      if (resources.get(resource) === "down") return;
      setState(resource, "down");
      fail(`checker ${resource}`, checker.action, `its program ended (${describeOutcome(outcome)})`, { checker: resource });
    });
  };

  const probeOnce = (checker: Checker, watch: Watched, probing: { on: boolean }) => {
    if (checker.kind === "custom") {
      startCustom(checker);
      return;
    }
    const probe = probeOf(checker);
    if (probe === null || probing.on) return;
    probing.on = true;
    const epoch = watch.epoch;
    const resource = resourceName(checker);
    probes.probe(probe, Math.max(1, Math.round(checker.timeoutMs)), (result) => {
      probing.on = false;
      if (!watch.enabled || watch.epoch !== epoch || closed) return;
      // The state may have changed before `update()` was called: ask it again.
      if (!enabledNow().has(checker.when)) return;
      setState(resource, result.up ? "up" : "down");
      if (!result.up) fail(`checker ${resource}`, checker.action, result.detail, { checker: resource });
    });
  };

  const enableChecker = (checker: Checker, watch: Watched) => {
    watch.enabled = true;
    watch.epoch += 1;
    resources.set(resourceName(checker), "init");
    told();
    const probing = { on: false };
    const tick = () => probeOnce(checker, watch, probing);
    // The first probe at once: an application that does not answer should be known now.
    queueMicrotask(() => {
      if (watch.enabled && !closed) tick();
    });
    watch.timer = setInterval(tick, Math.max(50, checker.intervalMs));
    watch.timer.unref();
  };

  const disableChecker = (checker: Checker, watch: Watched) => {
    watch.enabled = false;
    clearInterval(watch.timer);
    watch.timer = undefined;
    const resource = resourceName(checker);
    resources.delete(resource);
    told();
    const run = custom.get(resource);
    if (run !== undefined) {
      custom.delete(resource);
      processes.kill(run);
    }
  };

  const poll = () => {
    for (const [proc, watch] of polled) {
      if (!watch.enabled || watch.counting) continue;
      watch.polls += 1;
      if (watch.polls <= proc.startAfter) continue;
      watch.counting = true;
      const epoch = watch.epoch;
      processes.count({ name: proc.name, nameRegex: proc.nameRegex, argRegex: proc.argRegex, service: proc.service }, (count) => {
        watch.counting = false;
        if (!watch.enabled || watch.epoch !== epoch || closed) return;
        if (!enabledNow().has(proc.className as MirrorClass)) return;
        const what = procName(proc);
        if (count === null) {
          hooks.log({ level: "warn", event: "mirror.errd_count_failed", fields: { process: what } });
          return;
        }
        if (count >= proc.atLeast && (proc.atMost < 0 || count <= proc.atMost)) return;
        const expected = proc.atMost < 0 ? `at least ${proc.atLeast}` : `${proc.atLeast} to ${proc.atMost}`;
        fail(`errd ${what}`, proc.action, `${count} running, expected ${expected}`, { process: what, count });
      });
    }
  };

  // update() runs after every step of the core (each intercepted operation on the core's
  // path): nothing to do unless the role or readiness changed.
  let seen = "";
  const update = () => {
    if (closed) return;
    const { role, readiness } = hooks.state();
    if (`${role} ${readiness}` === seen) return;
    seen = `${role} ${readiness}`;
    const classes = mirrorClasses(role, readiness);
    for (const [checker, watch] of watched) {
      const on = classes.has(checker.when);
      if (on && !watch.enabled) enableChecker(checker, watch);
      else if (!on && watch.enabled) disableChecker(checker, watch);
    }
    for (const [proc, watch] of polled) {
      const on = classes.has(proc.className as MirrorClass);
      if (on && !watch.enabled) {
        watch.enabled = true;
        watch.epoch += 1;
        watch.polls = 0;
      } else if (!on && watch.enabled) {
        watch.enabled = false;
      }
    }
    const polling = [...polled.values()].some((watch) => watch.enabled);
    if (polling && pollTimer === undefined) {
      pollTimer = setInterval(poll, pollMs);
      pollTimer.unref();
    } else if (!polling && pollTimer !== undefined) {
      clearInterval(pollTimer);
      pollTimer = undefined;
    }
  };

  const release = (why: string) => {
    if (holding === null) return;
    hooks.log({ level: "info", event: "mirror.wait_over", fields: { rule: holding, why } });
    holding = null;
    hooks.hold(null);
  };

  const evaluate = () => {
    if (closed) return;
    if (!enabledNow().has("pre")) {
      ruleSince = new Map();
      // Stopped: nothing to wait for until it starts again.
      release("the module stopped");
      return;
    }
    const nowMs = Date.now();
    const conditions = evaluateRules(rules, { local: resources, remote: hooks.remote() });
    ruleSince = trackRuleConditions(ruleSince, conditions, nowMs);
    // Held until no wait rule's condition holds (no handle_time: as a farm's WAIT).
    if (holding !== null && !conditions.some((rule) => rule.action === "wait")) release("no wait rule holds");
    const rule = dueRules(rules, ruleSince, nowMs, module.failover.handleTimeMs)
      .filter((due) => !(due.action === "wait" && holding !== null))
      .sort((a, b) => failoverSeverity[b.action] - failoverSeverity[a.action])[0];
    if (rule === undefined) return;
    // It must hold a whole handle_time again before it acts again.
    ruleSince.delete(rule.label);
    hooks.log({ level: "warn", event: "mirror.failover_rule", fields: { rule: rule.label, action: rule.action } });
    if (rule.action === "wait") {
      holding = rule.label;
      hooks.hold(`rule ${rule.label}`);
      return;
    }
    act(rule.action as Exclude<FailoverAction, "wait">, `rule ${rule.label}`);
  };
  const rulesTimer = rules.length === 0 ? undefined : setInterval(evaluate, Math.max(50, module.failover.periodMs));
  rulesTimer?.unref();

  update();
  return {
    update,
    setResource(resource, state) {
      const checker = [...watched.keys()].find((each) => resourceName(each) === resource);
      if (checker === undefined || checker.kind !== "custom") {
        const customs = [...watched.keys()].filter((each) => each.kind === "custom").map(resourceName);
        throw new Error(`module ${module.name} has no custom checker ${resource}${customs.length === 0 ? "" : ` (its custom checkers: ${customs.join(", ")})`}`);
      }
      if (!watched.get(checker)!.enabled) throw new Error(`module ${module.name}: ${resource} is not watched now (its class, ${checker.when}, is not enabled in this state)`);
      const was = resources.get(resource);
      setState(resource, state);
      if (state === "down" && was !== "down") fail(`checker ${resource}`, checker.action, "set down by its program", { checker: resource });
    },
    resources: () => Object.fromEntries(resources),
    close() {
      closed = true;
      for (const [checker, watch] of watched) if (watch.enabled) disableChecker(checker, watch);
      clearInterval(pollTimer);
      pollTimer = undefined;
      clearInterval(rulesTimer);
    },
  };
}

function isMirrorClass(name: string): name is MirrorClass {
  return name === "pre" || name === "both" || name === "prim" || name === "second" || name === "sec";
}

function procName(proc: ProcWatch): string {
  return proc.name ?? proc.nameRegex ?? proc.argRegex ?? "?";
}

function ok(outcome: ScriptOutcome): boolean {
  return outcome.kind === "exited" && outcome.code === 0;
}
