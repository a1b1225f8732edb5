// Binds a mirror module's core (core/mirror/mirror.ts) to the driver ports. The simulator
// runs this code now; the node service will run it over the real drivers.

import { assert, unreachable } from "../core/assert.ts";
import type { DiskResult } from "../core/mirror/disk-ops.ts";
import type { MirrorBeat, MirrorMessage, MirrorReadiness, MirrorRole } from "../core/mirror/messages.ts";
import type { LanePort } from "../core/mirror/lane.ts";
import type { Gen, MirrorMeta } from "../core/mirror/meta.ts";
import { stepMirror, type Mirror, type MirrorEffect, type MirrorInput } from "../core/mirror/mirror.ts";
import type { ClockPort, DatagramPort, DiskPort, LogPort, ProbePort, ProcessPort, StreamPort } from "../core/ports.ts";
import type { StepResult } from "../core/types.ts";
import { Runtime } from "./runtime.ts";

export interface MirrorDrivers {
  readonly clock: ClockPort;
  readonly datagrams: DatagramPort<MirrorBeat>;
  readonly stream: StreamPort<MirrorMessage>;
  readonly disk: DiskPort<MirrorMeta>;
  readonly processes: ProcessPort;
  readonly probes: ProbePort;
  readonly log: LogPort;
  /** Required when the module's config says it has a lane. */
  readonly lane?: LanePort;
}

/** What the module tells the node around it: answers to the application, the VIP, its role. */
export interface MirrorHooks {
  complete(id: number, result: DiskResult): void;
  vip(up: boolean): void;
  accepting(on: boolean): void;
  role(role: MirrorRole, readiness: MirrorReadiness, gen: Gen | null): void;
}

export type MirrorRuntime = Runtime<Mirror, MirrorInput, MirrorEffect>;

export function createMirrorRuntime(
  mirror: Mirror,
  drivers: MirrorDrivers,
  hooks: MirrorHooks,
  observe?: (nowMs: number, input: MirrorInput, result: StepResult<Mirror, MirrorEffect>) => void,
): MirrorRuntime {
  const { config } = mirror;
  const lane = drivers.lane;
  assert(!config.lane || lane !== undefined, `module ${config.module}: its config has a lane, its drivers none`);
  const laneOf = (): LanePort => lane!;
  const timer = (name: string) => `${config.module}:${name}`;
  const runtime: MirrorRuntime = new Runtime<Mirror, MirrorInput, MirrorEffect>({
    state: mirror,
    step: stepMirror,
    nowMs: () => drivers.clock.nowMs(),
    execute: (effect) => {
      switch (effect.kind) {
        case "load-meta":
          return drivers.disk.loadMeta((meta) => runtime.deliver({ kind: "meta-loaded", meta }));
        case "persist-meta":
          return drivers.disk.persistMeta(effect.meta, (result) => runtime.deliver({ kind: "meta-persisted", version: effect.version, result }));
        case "apply":
          return drivers.disk.apply(effect.op, (result) => runtime.deliver({ kind: "disk-done", tag: effect.tag, result }));
        case "read":
          return drivers.disk.read(effect.path, effect.blocks, config.blockSize, (result) => runtime.deliver({ kind: "read-done", tag: effect.tag, result }));
        case "install":
          return drivers.disk.install(effect.path, effect.snapshot, config.blockSize, (result) => runtime.deliver({ kind: "disk-done", tag: effect.tag, result }));
        case "preserve":
          return drivers.disk.preserve(effect.paths, effect.label, (result) => runtime.deliver({ kind: "preserved", tag: effect.tag, result }));
        case "send":
          return drivers.stream.send(config.peer, effect.message);
        case "beat":
          return drivers.datagrams.send(effect.ring, config.peer, effect.message);
        case "complete":
          return hooks.complete(effect.id, effect.result);
        case "run-script":
          return drivers.processes.run(effect.run, (outcome) => runtime.deliver({ kind: "script-done", id: effect.run.id, outcome }));
        case "probe":
          return drivers.probes.probe(effect.probe, effect.timeoutMs, (result) => runtime.deliver({ kind: "probe-result", epoch: effect.epoch, up: result.up, detail: result.detail }));
        case "timer-arm":
          return drivers.clock.arm(timer(effect.timer), effect.afterMs, () => runtime.deliver({ kind: "timer", timer: effect.timer }));
        case "timer-cancel":
          return drivers.clock.cancel(timer(effect.timer));
        case "vip":
          return hooks.vip(effect.up);
        case "accepting":
          return hooks.accepting(effect.on);
        case "role":
          return hooks.role(effect.role, effect.readiness, effect.gen);
        case "log":
          return drivers.log.write(effect.entry);
        case "lane":
          if (effect.action === "on") return laneOf().on(effect.session, effect.epoch);
          return effect.action === "off" ? laneOf().off() : laneOf().harvest();
        case "lane-arm":
          return laneOf().arm(effect.path, effect.extents);
        case "lane-follow":
          return laneOf().follow(effect.lane);
        default:
          unreachable(effect);
      }
    },
    ...(observe === undefined ? {} : { observe }),
  });
  lane?.listen((report) => runtime.deliver({ kind: "lane-report", report }));
  drivers.datagrams.listen((ring, message, receivedAtMs) => runtime.deliver({ kind: "beat", ring, message, receivedAtMs }));
  drivers.stream.listen((from, message) => {
    if (from === config.peer) runtime.deliver({ kind: "message", message });
  });
  drivers.stream.watchPeers((peer, connected) => {
    if (peer === config.peer) runtime.deliver({ kind: "stream", connected });
  });
  return runtime;
}
