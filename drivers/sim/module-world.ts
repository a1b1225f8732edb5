// The simulated world of one module on one node: its life cycle over the simulated
// process and probe drivers, one event queue, virtual time. For scenarios about scripts,
// checkers, errd and failover rules (crash loops, flapping checkers, lost witnesses).

import { initLifecycle, type Lifecycle, type LifecycleConfig } from "../../core/module/lifecycle.ts";
import type { ClockPort } from "../../core/ports.ts";
import type { LogEntry } from "../../core/types.ts";
import { createModuleRuntime, type ModuleRuntime } from "../../runtime/module-runtime.ts";
import { EventQueue } from "./event-queue.ts";
import { SimProbePort } from "./probes.ts";
import { SimProcessPort, type ScriptBehaviour } from "./processes.ts";

export interface ModuleWorldOptions {
  readonly config: LifecycleConfig;
  readonly scripts: Record<string, ScriptBehaviour>;
  /** How long a probe takes to answer (default 5 ms). */
  readonly probeLatencyMs?: number;
}

export class ModuleWorld {
  readonly queue = new EventQueue();
  readonly processes: SimProcessPort;
  readonly probes: SimProbePort;
  readonly logs: { atMs: number; entry: LogEntry }[] = [];
  readonly readyChanges: { atMs: number; ready: boolean }[] = [];
  /** Log entries and ready changes in the one order the core produced them. */
  readonly trail: { atMs: number; entry?: LogEntry; ready?: boolean }[] = [];
  readonly runtime: ModuleRuntime;
  #nowMs = 0;
  readonly #timerGeneration = new Map<string, number>();

  constructor(options: ModuleWorldOptions) {
    const clockMs = () => this.#nowMs;
    this.processes = new SimProcessPort({ queue: this.queue, clockMs, scripts: options.scripts });
    this.probes = new SimProbePort(this.queue, clockMs, options.probeLatencyMs ?? 5);
    this.runtime = createModuleRuntime(
      initLifecycle(options.config),
      {
        clock: this.#clock(),
        processes: this.processes,
        probes: this.probes,
        log: {
          write: (entry) => {
            this.logs.push({ atMs: this.#nowMs, entry });
            this.trail.push({ atMs: this.#nowMs, entry });
          },
        },
      },
      (ready) => {
        this.readyChanges.push({ atMs: this.#nowMs, ready });
        this.trail.push({ atMs: this.#nowMs, ready });
      },
      // The application's running state matters to a farm's VIP, which this world has not.
      () => {},
    );
  }

  get nowMs(): number {
    return this.#nowMs;
  }

  get module(): Lifecycle {
    return this.runtime.state;
  }

  command(command: "start" | "stop" | "restart" | "stopstart"): void {
    this.runtime.deliver({ kind: "command", command });
  }

  /** Runs every event up to `nowMs + ms`, then sets the clock there. */
  runFor(ms: number): void {
    const endMs = this.#nowMs + ms;
    for (;;) {
      const next = this.queue.peekTimeMs();
      if (next === undefined || next > endMs) break;
      const event = this.queue.pop()!;
      this.#nowMs = event.atMs;
      event.run();
    }
    this.#nowMs = endMs;
  }

  /** The scripts run so far as `name args…`, with the time they started. */
  scriptLines(): string[] {
    return this.processes.history.map((run) => `${run.atMs} ${[run.script, ...run.args].join(" ")}`);
  }

  events(name: string): { atMs: number; entry: LogEntry }[] {
    return this.logs.filter((log) => log.entry.event === name);
  }

  #clock(): ClockPort {
    return {
      nowMs: () => this.#nowMs,
      arm: (timer, afterMs, onFire) => {
        const generation = (this.#timerGeneration.get(timer) ?? 0) + 1;
        this.#timerGeneration.set(timer, generation);
        this.queue.push(this.#nowMs + afterMs, () => this.#timerGeneration.get(timer) === generation && onFire());
      },
      cancel: (timer) => this.#timerGeneration.set(timer, (this.#timerGeneration.get(timer) ?? 0) + 1),
    };
  }
}
