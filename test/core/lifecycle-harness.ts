// Drives the module life cycle directly, with scripted answers for scripts, probes and
// process counts, and timers on a virtual clock. For unit tests of the core; the simulator
// runs it over its own drivers.

import { initLifecycle, lifecycleConfig, stepLifecycle, type Lifecycle, type LifecycleConfig, type LifecycleEffect, type LifecycleInput } from "../../core/module/lifecycle.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";
import type { Probe, ScriptOutcome, ScriptRun } from "../../core/ports.ts";
import type { LogEntry } from "../../core/types.ts";

export const dirs = { moduleDir: "/etc/tandem/modules/web", binDir: "/etc/tandem/modules/web/bin", stateDir: "/var/lib/tandem/web", logDir: "/var/log/tandem/web" };

/** A lifecycle config from a userconfig.xml <service> body (farm mode unless given). */
export function configOf(body: string, serviceAttributes = "", mode = "farm"): LifecycleConfig {
  const text = `<safe><service mode="${mode}"${serviceAttributes}>${mode === "farm" ? '<farm><lan name="default"/></farm>' : ""}${body}</service></safe>`;
  const result = readUserconfig({ moduleName: "web", file: "userconfig.xml", text, environment: {} });
  if (result.module === null) throw new Error(result.problems.map(formatProblem).join("\n"));
  return lifecycleConfig(result.module, "node1", dirs);
}

export interface Answers {
  /** A script's outcome, or "pending" to leave it running until `finish`. */
  script?: (run: ScriptRun, call: number) => ScriptOutcome | "pending";
  probe?: (resource: string, probe: Probe, nowMs: number) => boolean | "pending";
  count?: (index: number, nowMs: number) => number | null;
}

export class Harness {
  node: Lifecycle;
  nowMs = 0;
  readonly runs: { atMs: number; run: ScriptRun }[] = [];
  readonly logs: LogEntry[] = [];
  readonly readyChanges: { atMs: number; ready: boolean }[] = [];
  /** Scripts started and ready changes, in the order the core asked for them. */
  readonly trail: string[] = [];
  readonly pending = new Map<number, ScriptRun>();
  readonly #timers = new Map<string, number>();
  readonly #queue: LifecycleInput[] = [];
  readonly #calls = new Map<string, number>();
  answers: Answers;

  constructor(config: LifecycleConfig, answers: Answers = {}) {
    this.node = initLifecycle(config);
    this.answers = answers;
  }

  deliver(input: LifecycleInput): this {
    this.#queue.push(input);
    while (this.#queue.length > 0) {
      const result = stepLifecycle(this.node, this.nowMs, this.#queue.shift()!);
      this.node = result.state;
      for (const effect of result.effects) this.#execute(effect);
    }
    return this;
  }

  /** Finishes a script left pending. */
  finish(id: number, outcome: ScriptOutcome): this {
    this.pending.delete(id);
    return this.deliver({ kind: "script-done", id, outcome });
  }

  /** Moves the clock forward by `ms`, firing due timers in time order. */
  advance(ms: number): this {
    const endMs = this.nowMs + ms;
    for (;;) {
      const next = [...this.#timers].sort((a, b) => a[1] - b[1])[0];
      if (next === undefined || next[1] > endMs) break;
      this.#timers.delete(next[0]);
      this.nowMs = next[1];
      this.deliver({ kind: "timer", timer: next[0] });
    }
    this.nowMs = endMs;
    return this;
  }

  scripts(): string[] {
    return this.runs.map(({ run }) => [run.script, ...run.args].join(" "));
  }

  events(name: string): LogEntry[] {
    return this.logs.filter((entry) => entry.event === name);
  }

  #execute(effect: LifecycleEffect): void {
    switch (effect.kind) {
      case "run-script": {
        this.runs.push({ atMs: this.nowMs, run: effect.run });
        this.trail.push(effect.run.script);
        const call = (this.#calls.get(effect.run.script) ?? 0) + 1;
        this.#calls.set(effect.run.script, call);
        const outcome = this.answers.script?.(effect.run, call) ?? { kind: "exited", code: 0 };
        if (outcome === "pending") this.pending.set(effect.run.id, effect.run);
        else this.#queue.push({ kind: "script-done", id: effect.run.id, outcome });
        return;
      }
      case "kill-run":
        if (this.pending.delete(effect.id)) this.#queue.push({ kind: "script-done", id: effect.id, outcome: { kind: "signalled", signal: "SIGTERM" } });
        return;
      case "probe": {
        const up = this.answers.probe?.(effect.resource, effect.probe, this.nowMs) ?? true;
        if (up !== "pending") this.#queue.push({ kind: "probe-result", resource: effect.resource, epoch: effect.epoch, up, detail: up ? "" : "down" });
        return;
      }
      case "count-procs":
        this.#queue.push({ kind: "proc-count", index: effect.index, epoch: effect.epoch, count: this.answers.count === undefined ? 1 : this.answers.count(effect.index, this.nowMs) });
        return;
      case "timer-arm":
        this.#timers.set(effect.timer, this.nowMs + effect.afterMs);
        return;
      case "timer-cancel":
        this.#timers.delete(effect.timer);
        return;
      case "ready":
        this.readyChanges.push({ atMs: this.nowMs, ready: effect.ready });
        this.trail.push(effect.ready ? "ready" : "not ready");
        return;
      case "running":
        this.trail.push(effect.running ? "running" : "stopped");
        return;
      case "log":
        this.logs.push(effect.entry);
        return;
    }
  }
}
