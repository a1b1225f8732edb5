// Binds the farm core to the driver ports: which port executes which farm effect.

import { unreachable } from "../core/assert.ts";
import { stepFarm, type FarmEffect, type FarmHeartbeat, type FarmInput, type FarmNode } from "../core/farm.ts";
import type { ApplicationPort, ClockPort, DatagramPort, FilterPort, LogPort } from "../core/ports.ts";
import type { StepResult } from "../core/types.ts";
import { Runtime } from "./runtime.ts";

export interface FarmDrivers {
  readonly clock: ClockPort;
  readonly network: DatagramPort<FarmHeartbeat>;
  readonly filter: FilterPort;
  readonly application: ApplicationPort;
  readonly log: LogPort;
}

export type FarmRuntime = Runtime<FarmNode, FarmInput, FarmEffect>;

export function createFarmRuntime(
  node: FarmNode,
  drivers: FarmDrivers,
  observe?: (nowMs: number, input: FarmInput, result: StepResult<FarmNode, FarmEffect>) => void,
): FarmRuntime {
  const runtime: FarmRuntime = new Runtime<FarmNode, FarmInput, FarmEffect>({
    state: node,
    step: stepFarm,
    nowMs: () => drivers.clock.nowMs(),
    execute: (effect) => executeFarmEffect(effect, drivers, runtime),
    ...(observe === undefined ? {} : { observe }),
  });
  drivers.network.listen((ring, message, receivedAtMs) => runtime.deliver({ kind: "receive", ring, message, receivedAtMs }));
  drivers.application.watchHealth((healthy) => runtime.deliver({ kind: "health", healthy }));
  drivers.application.watchRunning((running) => runtime.deliver({ kind: "application", running }));
  return runtime;
}

function executeFarmEffect(effect: FarmEffect, drivers: FarmDrivers, runtime: FarmRuntime): void {
  switch (effect.kind) {
    case "send":
      return drivers.network.send(effect.ring, effect.to, effect.message);
    case "timer-arm":
      return drivers.clock.arm(effect.timer, effect.afterMs, () => runtime.deliver({ kind: "timer", timer: effect.timer }));
    case "timer-cancel":
      return drivers.clock.cancel(effect.timer);
    case "filter-set":
      return drivers.filter.apply(effect);
    case "filter-renew":
      return drivers.filter.renew(effect.leaseMs);
    case "vip":
      return drivers.filter.setVip(effect.state);
    case "app-restart":
      return drivers.application.restart();
    case "log":
      return drivers.log.write(effect.entry);
    default:
      unreachable(effect);
  }
}
