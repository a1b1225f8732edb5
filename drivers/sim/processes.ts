// Simulated module scripts, custom checkers and application processes (SafeKit's <user>,
// <check> and <errd>) on the simulator's event queue and clock.
//
// Scripts are modelled, not executed: a registry says what a run of each script does (how
// long it takes, its exit code or signal, whether it hangs, which application processes it
// starts and stops), possibly per call, so that a model can fail its first starts. A run's
// process group is its script process plus the applications it started; a timeout or kill()
// removes the whole group, while a run that ends by itself leaves its applications running.
// Outcomes and counts are always delivered from events of their own, never inside run() or
// count(), as the real driver's are.
//
// Faults it injects: slow, hanging, failing (exit code), signalled, missing and unstartable
// scripts, timeouts, every script hanging at once (hangScripts/releaseScripts), and
// applications that crash on their own (crashAfterMs) or on demand (crashApp).
// It cannot inject: a group that outlives SIGTERM (a killed group dies at once, with no grace
// period), script output and logs, processes other than those scripts start, a real systemd
// (a service is active while a process of its name runs), slow or failing process scans.

import { assert } from "../../core/assert.ts";
import type { ProcessPort, ProcessQuery, ScriptOutcome, ScriptRun } from "../../core/ports.ts";
import { checkQuery, queryMatcher } from "../real/process.ts";
import type { EventQueue } from "./event-queue.ts";

/** An application process a script leaves running. */
export interface AppModel {
  /** Its name; cut to 15 characters, as the kernel cuts comm. */
  readonly name: string;
  readonly args?: readonly string[];
  /** It dies by itself this long after it started. */
  readonly crashAfterMs?: number;
}

/** What one run of a script does. Its stops and starts happen durationMs into the run. */
export interface ScriptModel {
  readonly durationMs: number;
  /** Default 0. */
  readonly exitCode?: number;
  /** It never ends by itself (its stops and starts still happen): only a timeout or kill() ends it. */
  readonly hang?: boolean;
  /** It dies of this signal (`SIGSEGV`) at durationMs instead of exiting. */
  readonly signal?: string;
  /** There is no such script (as when the registry has no entry). */
  readonly missing?: boolean;
  /** It cannot be started, for this reason. */
  readonly notStarted?: string;
  readonly starts?: readonly AppModel[];
  /** Names of application processes it kills, whichever run started them. */
  readonly stops?: readonly string[];
}

/** A model, or a function choosing one per call; callIndex counts the script's earlier runs from 0. */
export type ScriptBehaviour = ScriptModel | ((run: ScriptRun, callIndex: number) => ScriptModel);

export interface SimProcess {
  readonly pid: number;
  /** The pid of the script run that started it (its process group). */
  readonly pgid: number;
  readonly name: string;
  readonly args: readonly string[];
}

/** One run, recorded when it starts; outcome and endMs stay null while it goes on. */
export interface RunRecord {
  readonly atMs: number;
  readonly id: number;
  readonly script: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  outcome: ScriptOutcome | null;
  endMs: number | null;
}

export interface SimProcessOptions {
  readonly queue: EventQueue;
  readonly clockMs: () => number;
  readonly scripts?: Record<string, ScriptBehaviour>;
}

/** Bound on recorded runs: a simulation that exceeds it runs scripts in a runaway loop. */
export const historyMax = 100_000;
/** Bound on simulated processes. */
export const processCountMax = 10_000;
const commLengthMax = 15;
const firstPid = 1_000;

interface ActiveRun {
  readonly record: RunRecord;
  readonly done: (outcome: ScriptOutcome) => void;
  readonly pid: number;
}

export class SimProcessPort implements ProcessPort {
  /** What each script does, by the name runs give (`start_both`, or a checker's absolute path). */
  readonly scripts: Record<string, ScriptBehaviour>;
  readonly history: RunRecord[] = [];
  readonly #queue: EventQueue;
  readonly #clockMs: () => number;
  readonly #processes = new Map<number, SimProcess>();
  readonly #active = new Map<number, ActiveRun>();
  readonly #callCounts = new Map<string, number>();
  #nextPid = firstPid;
  #scriptsHang = false;

  constructor(options: SimProcessOptions) {
    this.#queue = options.queue;
    this.#clockMs = options.clockMs;
    this.scripts = { ...options.scripts };
  }

  run(run: ScriptRun, done: (outcome: ScriptOutcome) => void): void {
    assert(!this.#active.has(run.id), `run ${run.id} is already going`);
    assert(run.timeoutMs > 0, `run ${run.id} has timeout ${run.timeoutMs} ms`);
    assert(this.history.length < historyMax, `more than ${historyMax} script runs`);
    const nowMs = this.#clockMs();
    const record: RunRecord = { atMs: nowMs, id: run.id, script: run.script, args: [...run.args], env: { ...run.env }, outcome: null, endMs: null };
    this.history.push(record);
    const model = this.#model(run);
    if (model.missing === true || model.notStarted !== undefined) {
      this.#report(record, done, model.missing === true ? { kind: "missing" } : { kind: "not-started", reason: model.notStarted! });
      return;
    }
    const active: ActiveRun = { record, done, pid: this.#spawn(run.script.slice(run.script.lastIndexOf("/") + 1), run.args, null) };
    this.#active.set(run.id, active);
    // Scheduled first, so a run that lasts exactly its timeout times out.
    this.#queue.push(nowMs + run.timeoutMs, () => this.#going(active) && this.#killRun(active, { kind: "timed-out" }));
    if (!this.#scriptsHang) this.#queue.push(nowMs + model.durationMs, () => this.#going(active) && this.#act(active, model));
  }

  kill(id: number): void {
    const active = this.#active.get(id);
    if (active !== undefined) this.#killRun(active, { kind: "signalled", signal: "SIGTERM" });
  }

  count(query: ProcessQuery, done: (count: number) => void): void {
    checkQuery(query);
    const service = query.name?.slice(0, commLengthMax);
    const matches = query.service ? (process: { readonly name: string }) => process.name === service : queryMatcher(query);
    this.#queue.push(this.#clockMs(), () => {
      let count = 0;
      for (const process of this.#processes.values()) if (matches({ name: process.name, args: process.args.join(" ") })) count++;
      done(query.service ? Math.min(count, 1) : count);
    });
  }

  // ---- faults and observation ----

  /** hangScripts: every run started from now on hangs, doing nothing, until its timeout or kill(). */
  hangScripts(): void {
    this.#scriptsHang = true;
  }

  /** releaseScripts: runs started from now on behave as modelled; the runs already hanging stay hung. */
  releaseScripts(): void {
    this.#scriptsHang = false;
  }

  /** crashApp: every process named `name` dies now (kill -9); returns how many did. */
  crashApp(name: string): number {
    const comm = name.slice(0, commLengthMax);
    const pids = [...this.#processes.values()].filter((process) => process.name === comm).map((process) => process.pid);
    for (const pid of pids) this.#processes.delete(pid);
    return pids.length;
  }

  /** The simulated processes, script runs included, in pid order. */
  processes(): SimProcess[] {
    return [...this.#processes.values()];
  }

  // ---- runs ----

  #model(run: ScriptRun): ScriptModel {
    const behaviour = this.scripts[run.script];
    const callIndex = this.#callCounts.get(run.script) ?? 0;
    this.#callCounts.set(run.script, callIndex + 1);
    const model = typeof behaviour === "function" ? behaviour(run, callIndex) : (behaviour ?? { durationMs: 0, missing: true });
    assert(model.durationMs >= 0, `script ${run.script} modelled with duration ${model.durationMs} ms`);
    assert(model.exitCode === undefined || (Number.isInteger(model.exitCode) && model.exitCode >= 0 && model.exitCode <= 255), `script ${run.script} modelled with exit code ${model.exitCode}`);
    return model;
  }

  #going(active: ActiveRun): boolean {
    return this.#active.get(active.record.id) === active;
  }

  /** durationMs into the run: its stops and starts, then its end unless it hangs. */
  #act(active: ActiveRun, model: ScriptModel): void {
    for (const name of model.stops ?? []) this.crashApp(name);
    for (const app of model.starts ?? []) {
      const pid = this.#spawn(app.name, app.args ?? [], active.pid);
      if (app.crashAfterMs !== undefined) this.#queue.push(this.#clockMs() + app.crashAfterMs, () => this.#processes.delete(pid));
    }
    if (model.hang === true) return;
    this.#processes.delete(active.pid);
    this.#active.delete(active.record.id);
    this.#report(active.record, active.done, model.signal !== undefined ? { kind: "signalled", signal: model.signal } : { kind: "exited", code: model.exitCode ?? 0 });
  }

  /** Ends a run that is still going, and its whole process group, now. */
  #killRun(active: ActiveRun, outcome: ScriptOutcome): void {
    for (const process of this.processes()) if (process.pgid === active.pid) this.#processes.delete(process.pid);
    this.#active.delete(active.record.id);
    this.#report(active.record, active.done, outcome);
  }

  /** Records how a run ended, now, and reports it from an event of its own. */
  #report(record: RunRecord, done: (outcome: ScriptOutcome) => void, outcome: ScriptOutcome): void {
    assert(record.outcome === null, `run ${record.id} ends twice`);
    record.outcome = outcome;
    record.endMs = this.#clockMs();
    this.#queue.push(record.endMs, () => done(outcome));
  }

  /** A new process; `pgid` null makes it the leader of a group of its own. */
  #spawn(name: string, args: readonly string[], pgid: number | null): number {
    assert(this.#processes.size < processCountMax, `more than ${processCountMax} simulated processes`);
    const pid = this.#nextPid++;
    this.#processes.set(pid, { pid, pgid: pgid ?? pid, name: name.slice(0, commLengthMax), args: [...args] });
    return pid;
  }
}
