// The node service: runs every configured module of this node over real drivers, keeps
// each module's wanted state (started or stopped) under the state directory, and answers
// the operator's commands. The decisions stay in the core; this is wiring.
//
// What runs here: light and farm modules' life cycles (scripts, checkers, errd, failover
// rules) and, for a farm module, its protocol over the network and its kernel filter,
// healthy while its life cycle is UP and Ready. A mirror module is refused with a message
// until the mirror issue brings it.

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
}

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
}

/** The last log events kept per module for `tandem log`. */
export const logRingSize = 2_000;

interface ModuleHandle {
  readonly loaded: LoadedModule;
  readonly runtime: ModuleRuntime | null;
  readonly farm: FarmParts | null;
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
      if (handle.runtime !== null && this.#shouldStartAtBoot(handle)) this.#deliver(handle, "start");
    }
    return config;
  }

  /** Stops every module (its stop scripts run, with their timeouts) and resolves once all are STOP. */
  async stop(): Promise<void> {
    this.#serviceLog("info", "service.stopping", {});
    const stopping = [...this.#modules.values()].filter((handle) => handle.runtime !== null);
    for (const handle of stopping) this.#deliver(handle, "stop");
    await Promise.all(stopping.map((handle) => this.#until(handle, (state) => state.state === "STOP" && state.running === null)));
    await Promise.all(stopping.map((handle) => handle.farm?.close()));
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
    if (command === "start" || command === "stop") handle.farm?.runtime.deliver({ kind: command });
    handle.runtime!.deliver({ kind: "command", command });
  }

  /** `tandem set -r custom.x -v down`: what a custom checker's program reports. */
  setResource(module: string, resource: string, state: ResourceState): ModuleView {
    const handle = this.#handle(module);
    if (!handle.runtime!.state.resources.has(resource)) {
      const known = [...handle.runtime!.state.resources.keys()];
      throw new Error(`module ${module} has no resource ${resource} being watched now${known.length === 0 ? "" : ` (watched: ${known.join(", ")})`}`);
    }
    handle.runtime!.deliver({ kind: "resource-set", resource, state });
    return this.#view(handle);
  }

  /** Resolves once `module` is in `state` (and Ready for UP), or rejects after `timeoutMs`. */
  async waitFor(module: string, state: string, timeoutMs: number): Promise<ModuleView> {
    const handle = this.#handle(module);
    const reached = (lifecycle: Lifecycle) => lifecycle.state === state && lifecycle.running === null && (state !== "UP" || lifecycle.readiness === "Ready");
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
    const runtime = this.#modules.get(module)?.runtime;
    if (runtime === undefined || runtime === null) return null;
    return runtime.state.state === "UP" && runtime.state.readiness === "Ready";
  }

  // ---- modules ----

  async #createModule(loaded: LoadedModule): Promise<ModuleHandle> {
    const logs: LogEntry[] = [];
    const waiters = new Set<() => void>();
    const notRun = (problem: string): ModuleHandle => {
      this.#serviceLog("error", "module.not-run", { module: loaded.name, reason: problem });
      return { loaded, runtime: null, farm: null, problem, logs, waiters };
    };
    if (loaded.config === null) return notRun("its configuration has errors (tandem config check)");
    if (loaded.config.mode === "mirror") return notRun("mirror modules do not run on the node service yet");
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
    const logDir = join(this.#options.logDir, loaded.name);
    mkdirSync(logDir, { recursive: true });
    const stateDir = join(this.#options.stateDir, "modules", loaded.name);
    mkdirSync(stateDir, { recursive: true });
    const config = lifecycleConfig(loaded.config, this.#options.node, { moduleDir: loaded.dir, binDir: join(loaded.dir, "bin"), stateDir, logDir });
    const log: LogPort = {
      write: (entry) => {
        logs.push(entry);
        if (logs.length > logRingSize) logs.splice(0, logs.length - logRingSize);
        this.#options.log(entry);
      },
    };
    const observe = (_nowMs: number, _input: LifecycleInput, _result: StepResult<Lifecycle, LifecycleEffect>) => {
      for (const waiter of [...waiters]) waiter();
    };
    const drivers = this.#options.drivers;
    const runtime = createModuleRuntime(
      initLifecycle(config),
      { clock: drivers.clock, processes: drivers.processes(loaded, logDir), probes: drivers.probes((name) => this.moduleReady(name)), log },
      (ready) => farm?.setReady(ready),
      observe,
    );
    return { loaded, runtime, farm, problem: null, logs, waiters };
  }

  #shouldStartAtBoot(handle: ModuleHandle): boolean {
    const boot = handle.loaded.config!.service.boot;
    if (boot === "on") return true;
    if (boot === "off") return false;
    // auto and ignore: as the operator left it.
    return this.#loadGoal(handle.loaded.name) === "running";
  }

  #until(handle: ModuleHandle, reached: (state: Lifecycle) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!reached(handle.runtime!.state)) return;
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
    if (mustRun && handle.runtime === null) throw new Error(`module ${module} does not run here: ${handle.problem}`);
    return handle;
  }

  #view(handle: ModuleHandle): ModuleView {
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
