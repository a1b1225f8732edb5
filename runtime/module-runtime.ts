// Binds the module life cycle (scripts, checkers, errd, failover rules) to the driver
// ports. The simulator and the node service run this same code over their own drivers.

import { unreachable } from "../core/assert.ts";
import { stepLifecycle, type Lifecycle, type LifecycleEffect, type LifecycleInput } from "../core/module/lifecycle.ts";
import type { ClockPort, LogPort, ProbePort, ProcessPort } from "../core/ports.ts";
import type { StepResult } from "../core/types.ts";
import { Runtime } from "./runtime.ts";

export interface ModuleDrivers {
  readonly clock: ClockPort;
  readonly processes: ProcessPort;
  readonly probes: ProbePort;
  readonly log: LogPort;
}

export type ModuleRuntime = Runtime<Lifecycle, LifecycleInput, LifecycleEffect>;

export function createModuleRuntime(
  node: Lifecycle,
  drivers: ModuleDrivers,
  onReady: (ready: boolean) => void,
  onRunning: (running: boolean) => void,
  observe?: (nowMs: number, input: LifecycleInput, result: StepResult<Lifecycle, LifecycleEffect>) => void,
): ModuleRuntime {
  // Timers are named per module so that several modules can share one clock.
  const timer = (name: string) => `${node.config.module}:${name}`;
  const runtime: ModuleRuntime = new Runtime<Lifecycle, LifecycleInput, LifecycleEffect>({
    state: node,
    step: stepLifecycle,
    nowMs: () => drivers.clock.nowMs(),
    execute: (effect) => {
      switch (effect.kind) {
        case "run-script":
          return drivers.processes.run(effect.run, (outcome) => runtime.deliver({ kind: "script-done", id: effect.run.id, outcome }));
        case "kill-run":
          return drivers.processes.kill(effect.id);
        case "probe":
          return drivers.probes.probe(effect.probe, effect.timeoutMs, (result) => runtime.deliver({ kind: "probe-result", resource: effect.resource, epoch: effect.epoch, up: result.up, detail: result.detail }));
        case "count-procs":
          return drivers.processes.count(effect.query, (count) => runtime.deliver({ kind: "proc-count", index: effect.index, epoch: effect.epoch, count }));
        case "timer-arm":
          return drivers.clock.arm(timer(effect.timer), effect.afterMs, () => runtime.deliver({ kind: "timer", timer: effect.timer }));
        case "timer-cancel":
          return drivers.clock.cancel(timer(effect.timer));
        case "ready":
          return onReady(effect.ready);
        case "running":
          return onRunning(effect.running);
        case "log":
          return drivers.log.write(effect.entry);
        default:
          unreachable(effect);
      }
    },
    ...(observe === undefined ? {} : { observe }),
  });
  return runtime;
}
