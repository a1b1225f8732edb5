// The node service: runs every configured module of this node over real drivers, keeps
// each module's wanted state (started or stopped) under the state directory, and answers
// the operator's commands. The decisions stay in the core; this is wiring.
//
// What runs here: light and farm modules' life cycles (scripts, checkers, errd, failover
// rules) and, for a farm module, its protocol over the network and its kernel filter,
// healthy while its life cycle is UP and Ready. A mirror module is its own state machine
// (core/mirror/mirror.ts: roles, scripts, replication), built by the `mirror` driver.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { initLifecycle, lifecycleConfig, type Lifecycle, type LifecycleEffect, type LifecycleInput } from "../core/module/lifecycle.ts";
import type { ResourceState } from "../core/config/failover-rules.ts";
import type { ModuleConfig } from "../core/config/module-config.ts";
import type { ClockPort, LogPort, ProbePort, ProcessPort } from "../core/ports.ts";
import type { LogEntry } from "../core/types.ts";
import type { StepResult } from "../core/types.ts";
import { createModuleRuntime, type ModuleRuntime } from "../runtime/module-runtime.ts";
import { loadConfigDir, type LoadedConfig, type LoadedModule } from "./config-load.ts";
import type { FarmParts, FarmView } from "./farm-parts.ts";
import type { MirrorCommand } from "../core/mirror/mirror.ts";
import type { MirrorParts, MirrorView } from "./mirror-parts.ts";

export type ModuleCommand = "start" | "stop" | "restart" | "stopstart";

export interface ServiceDrivers {
  readonly clock: ClockPort;
  /** One process port per module: scripts run from its bin/ and log to its log directory. */
  processes(module: LoadedModule, logDir: string): ProcessPort;
  probes(moduleReady: (module: string) => boolean | null): ProbePort;
  /** A farm module's protocol and filter; absent where farm modules cannot run (the
   *  message says why). */
  farm?: (module: ModuleConfig) => Promise<FarmParts>;
  /** Why farm modules cannot run here, when `farm` is absent. */
  farmUnavailable?: string;
  /** A mirror module over this node's replicator; absent where mirror modules cannot run. */
  mirror?: (module: ModuleConfig, context: MirrorContext) => Promise<MirrorParts>;
  /** Why mirror modules cannot run here, when `mirror` is absent. */
  mirrorUnavailable?: string;
}

/** What the service gives a mirror module it creates. */
export interface MirrorContext {
  readonly stateDir: string;
  readonly scriptEnv: Readonly<Record<string, string>>;
  readonly processes: ProcessPort;
  readonly probes: ProbePort;
  readonly log: (entry: LogEntry) => void;
  readonly observe: () => void;
}

/** An operator's command for a mirror's roles. */
export type MirrorRoleCommand = Extract<MirrorCommand, "prim" | "primforce" | "second" | "swap">;

export interface NodeServiceOptions {
  readonly configDir: string;
  readonly stateDir: string;
  readonly logDir: string;
  /** This node's name in cluster.xml. */
  readonly node: string;
  readonly drivers: ServiceDrivers;
  /** Every log event of every module, and the service's own. */
  readonly log: (entry: LogEntry) => void;
}

export interface ModuleView {
  readonly module: string;
  readonly mode: string;
  readonly node: string;
  readonly state: string;
  readonly readiness: string;
  readonly goal: string;
  readonly resources: Readonly<Record<string, ResourceState>>;
  /** Why the module does not run here, when it does not. */
  readonly problem: string | null;
  /** A farm module's membership and buckets on this node. */
  readonly farm: FarmView | null;
  /** A mirror module's roles, generation and replication on this node. */
  readonly mirror: MirrorView | null;
}

/** The last log events kept per module for `tandem log`. */
export const logRingSize = 2_000;

interface ModuleHandle {
  readonly loaded: LoadedModule;
  readonly runtime: ModuleRuntime | null;
  readonly farm: FarmParts | null;
  readonly mirror: MirrorParts | null;
  readonly problem: string | null;
  readonly logs: LogEntry[];
  readonly waiters: Set<() => void>;
}

export class NodeService {
  readonly #options: NodeServiceOptions;
  readonly #modules = new Map<string, ModuleHandle>();

  constructor(options: NodeServiceOptions) {
    this.#options = options;
  }

  /** Loads the configuration and starts each module that should run. A module whose
   *  file has errors does not run (its view says why); the result lists every problem. */
  async start(): Promise<LoadedConfig> {
    const config = loadConfigDir(this.#options.configDir);
    mkdirSync(join(this.#options.stateDir, "modules"), { recursive: true });
    const cluster = config.cluster;
    if (cluster !== null && !cluster.nodeNames.includes(this.#options.node)) {
      throw new Error(`node ${this.#options.node} is not in cluster.xml (its nodes: ${cluster.nodeNames.join(", ")}); give --node NAME`);
    }
    for (const loaded of config.modules) this.#modules.set(loaded.name, await this.#createModule(loaded));
    this.#serviceLog("info", "service.started", { modules: [...this.#modules.keys()].join(","), errors: config.errors, warnings: config.warnings });
    for (const handle of this.#modules.values()) {
      if (runs(handle) && this.#shouldStartAtBoot(handle)) this.#deliver(handle, "start");
    }
    return config;
  }

  /** Stops every module (its stop scripts run, with their timeouts) and resolves once all are STOP. */
  async stop(): Promise<void> {
    this.#serviceLog("info", "service.stopping", {});
    const stopping = [...this.#modules.values()].filter(runs);
    for (const handle of stopping) this.#deliver(handle, "stop");
    await Promise.all(stopping.map((handle) => this.#until(handle, () => settledIn(handle, this.#view(handle), "STOP"))));
    await Promise.all(stopping.map((handle) => handle.farm?.close()));
    await Promise.all(stopping.map((handle) => handle.mirror?.close()));
    this.#serviceLog("info", "service.stopped", {});
  }

  command(module: string, command: ModuleCommand): ModuleView {
    const handle = this.#handle(module);
    if (command === "start" || command === "stop") this.#saveGoal(module, command === "start" ? "running" : "stopped");
    this.#deliver(handle, command);
    return this.#view(handle);
  }

  /** A farm node joins on start and leaves on stop at once: the others take its buckets
   *  before its stop scripts run. */
  #deliver(handle: ModuleHandle, command: ModuleCommand): void {
    if (handle.mirror !== null) {
      // The mirror core keeps a start that arrives while it stops.
      if (command === "stopstart") {
        handle.mirror.command("stop");
        handle.mirror.command("start");
      } else handle.mirror.command(command);
      return;
    }
    if (command === "start" || command === "stop") handle.farm?.runtime.deliver({ kind: command });
    handle.runtime!.deliver({ kind: "command", command });
  }

  /** `tandem prim|second|swap|primforce -m MODULE`: a mirror's roles. The core answers in
   *  its log when it cannot (why not yet); the view shows where it is. */
  mirrorCommand(module: string, command: MirrorRoleCommand, fullsync = false): ModuleView {
    const handle = this.#handle(module);
    if (handle.mirror === null) throw new Error(`${command} applies to mirror modules (a primary and a secondary); ${module} is a ${handle.loaded.config?.mode ?? "?"} module`);
    // second on a stopped module starts it (as secondary): it runs from then on, as after start.
    if (command === "second" && handle.mirror.view().role === "STOP") this.#saveGoal(module, "running");
    handle.mirror.command(command, fullsync);
    return this.#view(handle);
  }

  /** `tandem set -r custom.x -v down`: what a custom checker's program reports. */
  setResource(module: string, resource: string, state: ResourceState): ModuleView {
    const handle = this.#handle(module);
    if (handle.mirror !== null) {
      if (state !== "up" && state !== "down") throw new Error(`a custom checker's resource is set up or down, not ${state}`);
      handle.mirror.setResource(resource, state);
      return this.#view(handle);
    }
    if (!handle.runtime!.state.resources.has(resource)) {
      const known = [...handle.runtime!.state.resources.keys()];
      throw new Error(`module ${module} has no resource ${resource} being watched now${known.length === 0 ? "" : ` (watched: ${known.join(", ")})`}`);
    }
    handle.runtime!.deliver({ kind: "resource-set", resource, state });
    return this.#view(handle);
  }

  /** Resolves once `module` is in `state` and settled (Ready, or NotReady for STOP), or
   *  rejects after `timeoutMs`. For a mirror, UP means PRIM, ALONE or SECOND and Ready. */
  async waitFor(module: string, state: string, timeoutMs: number): Promise<ModuleView> {
    const handle = this.#handle(module);
    const reached = () => settledIn(handle, this.#view(handle), state);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`module ${module} did not reach ${state} within ${timeoutMs} ms; it is ${this.#view(handle).state}`)), timeoutMs);
    });
    try {
      await Promise.race([this.#until(handle, reached), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.#view(handle);
  }

  views(module?: string): ModuleView[] {
    if (module !== undefined) return [this.#view(this.#handle(module, false))];
    return [...this.#modules.values()].map((handle) => this.#view(handle));
  }

  logs(module: string, count: number): LogEntry[] {
    return this.#handle(module, false).logs.slice(-count);
  }

  /** Whether a module of this node is UP and Ready; null when there is no such module. */
  moduleReady(module: string): boolean | null {
    const handle = this.#modules.get(module);
    if (handle === undefined || !runs(handle)) return null;
    const view = this.#view(handle);
    return (view.state === "UP" || view.state === "PRIM" || view.state === "ALONE") && view.readiness === "Ready";
  }

  // ---- modules ----

  async #createModule(loaded: LoadedModule): Promise<ModuleHandle> {
    const logs: LogEntry[] = [];
    const waiters = new Set<() => void>();
    const notRun = (problem: string): ModuleHandle => {
      this.#serviceLog("error", "module.not-run", { module: loaded.name, reason: problem });
      return { loaded, runtime: null, farm: null, mirror: null, problem, logs, waiters };
    };
    if (loaded.config === null) return notRun("its configuration has errors (tandem config check)");
    if (loaded.config.mode === "mirror") return this.#createMirror(loaded, loaded.config, logs, waiters, notRun);
    let farm: FarmParts | null = null;
    if (loaded.config.mode === "farm") {
      const create = this.#options.drivers.farm;
      if (create === undefined) return notRun(`farm modules cannot run here: ${this.#options.drivers.farmUnavailable ?? "no farm driver"}`);
      try {
        farm = await create(loaded.config);
      } catch (error) {
        return notRun(`its farm could not be set up: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    const { logDir, stateDir } = this.#moduleDirs(loaded.name);
    const config = lifecycleConfig(loaded.config, this.#options.node, { moduleDir: loaded.dir, binDir: join(loaded.dir, "bin"), stateDir, logDir });
    const log: LogPort = { write: (entry) => this.#moduleLog(logs, entry) };
    const observe = (_nowMs: number, _input: LifecycleInput, _result: StepResult<Lifecycle, LifecycleEffect>) => {
      for (const waiter of [...waiters]) waiter();
    };
    const drivers = this.#options.drivers;
    const runtime = createModuleRuntime(
      initLifecycle(config),
      { clock: drivers.clock, processes: drivers.processes(loaded, logDir), probes: drivers.probes((name) => this.moduleReady(name)), log },
      (ready) => farm?.setReady(ready),
      (running) => farm?.setRunning(running),
      observe,
    );
    return { loaded, runtime, farm, mirror: null, problem: null, logs, waiters };
  }

  async #createMirror(loaded: LoadedModule, module: ModuleConfig, logs: LogEntry[], waiters: Set<() => void>, notRun: (problem: string) => ModuleHandle): Promise<ModuleHandle> {
    const create = this.#options.drivers.mirror;
    if (create === undefined) return notRun(`mirror modules cannot run here: ${this.#options.drivers.mirrorUnavailable ?? "no mirror driver"}`);
    const { logDir, stateDir } = this.#moduleDirs(loaded.name);
    const drivers = this.#options.drivers;
    const binDir = join(loaded.dir, "bin");
    const scriptEnv = { SAFEUSERBIN: binDir, SAFEVAR: stateDir, TANDEM_MODULE: loaded.name, TANDEM_NODE: this.#options.node, TANDEM_MODULE_DIR: loaded.dir, TANDEM_MODULE_BIN: binDir, TANDEM_MODULE_STATE: stateDir, TANDEM_MODULE_LOG: logDir };
    try {
      const mirror = await create(module, {
        stateDir,
        scriptEnv,
        processes: drivers.processes(loaded, logDir),
        probes: drivers.probes((name) => this.moduleReady(name)),
        log: (entry) => this.#moduleLog(logs, entry),
        observe: () => {
          for (const waiter of [...waiters]) waiter();
        },
      });
      return { loaded, runtime: null, farm: null, mirror, problem: null, logs, waiters };
    } catch (error) {
      return notRun(`its mirror could not be set up: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  #moduleDirs(module: string): { logDir: string; stateDir: string } {
    const logDir = join(this.#options.logDir, module);
    mkdirSync(logDir, { recursive: true });
    const stateDir = join(this.#options.stateDir, "modules", module);
    mkdirSync(stateDir, { recursive: true });
    return { logDir, stateDir };
  }

  #moduleLog(logs: LogEntry[], entry: LogEntry): void {
    logs.push(entry);
    if (logs.length > logRingSize) logs.splice(0, logs.length - logRingSize);
    this.#options.log(entry);
  }

  #shouldStartAtBoot(handle: ModuleHandle): boolean {
    const boot = handle.loaded.config!.service.boot;
    if (boot === "on") return true;
    if (boot === "off") return false;
    // auto and ignore: as the operator left it.
    return this.#loadGoal(handle.loaded.name) === "running";
  }

  #until(handle: ModuleHandle, reached: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!reached()) return;
        handle.waiters.delete(check);
        resolve();
      };
      handle.waiters.add(check);
      check();
    });
  }

  #handle(module: string, mustRun = true): ModuleHandle {
    const handle = this.#modules.get(module);
    if (handle === undefined) {
      const names = [...this.#modules.keys()];
      throw new Error(`no module ${module} on this node${names.length === 0 ? "" : ` (its modules: ${names.join(", ")})`}`);
    }
    if (mustRun && !runs(handle)) throw new Error(`module ${module} does not run here: ${handle.problem}`);
    return handle;
  }

  #view(handle: ModuleHandle): ModuleView {
    if (handle.mirror !== null) {
      const mirror = handle.mirror.view();
      return {
        module: handle.loaded.name,
        mode: "mirror",
        node: this.#options.node,
        state: mirror.role,
        readiness: mirror.readiness,
        goal: this.#loadGoal(handle.loaded.name),
        resources: mirror.resources,
        problem: null,
        farm: null,
        mirror,
      };
    }
    const state = handle.runtime?.state;
    return {
      module: handle.loaded.name,
      mode: handle.loaded.config?.mode ?? "?",
      node: this.#options.node,
      state: state?.state ?? "STOP",
      readiness: state?.readiness ?? "NotReady",
      goal: state?.goal ?? "stopped",
      resources: Object.fromEntries(state?.resources ?? []),
      problem: handle.problem,
      farm: handle.farm?.view() ?? null,
      mirror: null,
    };
  }

  // ---- persistent state ----

  #goalFile(module: string): string {
    return join(this.#options.stateDir, "modules", `${module}.goal`);
  }

  #saveGoal(module: string, goal: "running" | "stopped"): void {
    // Written whole then renamed: a crash leaves the old goal or the new one, never half.
    const file = this.#goalFile(module);
    writeFileSync(`${file}.tmp`, `${goal}\n`);
    renameSync(`${file}.tmp`, file);
  }

  #loadGoal(module: string): "running" | "stopped" {
    try {
      return readFileSync(this.#goalFile(module), "utf8").trim() === "running" ? "running" : "stopped";
    } catch {
      return "stopped";
    }
  }

  #serviceLog(level: LogEntry["level"], event: string, fields: LogEntry["fields"]): void {
    this.#options.log({ level, event, fields: { node: this.#options.node, ...fields } });
  }
}

function runs(handle: ModuleHandle): boolean {
  return handle.runtime !== null || handle.mirror !== null;
}

const mirrorUpRoles: ReadonlySet<string> = new Set(["PRIM", "ALONE", "SECOND"]);

/** Whether a module is in `state` with nothing under way: a life cycle runs no script (and
 *  is Ready for UP); a mirror is Ready (NotReady for STOP), and UP is any of its running
 *  roles. */
function settledIn(handle: ModuleHandle, view: ModuleView, state: string): boolean {
  if (handle.mirror === null) {
    const lifecycle = handle.runtime!.state;
    return lifecycle.state === state && lifecycle.running === null && (state !== "UP" || lifecycle.readiness === "Ready");
  }
  const role = state === "UP" ? mirrorUpRoles.has(view.state) : view.state === state;
  return role && view.readiness === (state === "STOP" ? "NotReady" : "Ready");
}
