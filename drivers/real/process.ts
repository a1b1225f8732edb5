// The real process driver: module scripts and custom checkers as child processes, and
// process counting over /proc (SafeKit's <user>, <check> and <errd>).
//
// Every run is the leader of a process group of its own (`detached`), so that a timeout or
// kill() reaches whatever the script forked, not only the script. A run that ends by itself
// leaves its survivors alone: start scripts legitimately leave daemons running.
//
// Output goes straight into a per-script log file, opened in append mode and handed to the
// child as its stdout and stderr. There is no pipe: a chatty script cannot block on a full
// one, and a daemon that inherits the descriptors keeps writing to the log instead of
// holding a pipe open after its script has exited.

import { execFile, spawn } from "node:child_process";
import { mkdir, open, readdir, readFile, stat, type FileHandle } from "node:fs/promises";
import { basename, isAbsolute, join } from "node:path";
import { performance } from "node:perf_hooks";
import { assert } from "../../core/assert.ts";
import type { ProcessPort, ProcessQuery, ScriptOutcome, ScriptRun } from "../../core/ports.ts";
import { describeOutcome } from "../../core/module/lifecycle.ts";

export interface RealProcessOptions {
  /** The module's `bin/`: where relative script names are looked up; the runs' cwd. */
  readonly binDir: string;
  /** Where `<script>.log` files are appended to; created when missing. */
  readonly logDir: string;
  /** Driver events for the service's log: a log file that cannot be written, no systemctl. */
  readonly log?: (line: string) => void;
  /** Between SIGTERM and SIGKILL when a run's process group is killed. */
  readonly killGraceMs?: number;
  /** The systemctl that answers service queries (tests give a stand-in). */
  readonly systemctlPath?: string;
}

export const killGraceMsDefault = 2_000;
/** Bound on runs going at once; a module runs a handful of scripts and checkers. */
export const runsActiveMax = 1_024;
/** Bound on /proc files read at once during a scan. */
export const procReadsConcurrentMax = 64;
/** A `systemctl is-active` that takes longer than this gives no count (null). */
export const serviceQueryTimeoutMs = 5_000;

interface ActiveRun {
  readonly run: ScriptRun;
  readonly done: (outcome: ScriptOutcome) => void;
  readonly name: string;
  startMs: number;
  logFile: FileHandle | null;
  /** The leader's pid, which is also the group's id; null until spawned. */
  pid: number | null;
  killRequested: boolean;
  timedOut: boolean;
  timeoutTimer: NodeJS.Timeout | undefined;
  /** Armed while the group has had SIGTERM and awaits SIGKILL. */
  graceTimer: NodeJS.Timeout | undefined;
  /** How the leader ended, once it has. */
  exit: ScriptOutcome | null;
}

export class RealProcessPort implements ProcessPort {
  readonly #binDir: string;
  readonly #logDir: string;
  readonly #log: (line: string) => void;
  readonly #killGraceMs: number;
  readonly #systemctlPath: string;
  readonly #runs = new Map<number, ActiveRun>();
  #systemctlMissingLogged = false;

  constructor(options: RealProcessOptions) {
    assert(isAbsolute(options.binDir), `binDir ${options.binDir} is not absolute`);
    assert(isAbsolute(options.logDir), `logDir ${options.logDir} is not absolute`);
    this.#binDir = options.binDir;
    this.#logDir = options.logDir;
    this.#log = options.log ?? (() => {});
    this.#killGraceMs = options.killGraceMs ?? killGraceMsDefault;
    this.#systemctlPath = options.systemctlPath ?? "systemctl";
    assert(this.#killGraceMs >= 0, `killGraceMs ${this.#killGraceMs} is negative`);
  }

  run(run: ScriptRun, done: (outcome: ScriptOutcome) => void): void {
    assert(!this.#runs.has(run.id), `run ${run.id} is already going`);
    assert(this.#runs.size < runsActiveMax, `more than ${runsActiveMax} runs at once`);
    assert(run.timeoutMs > 0, `run ${run.id} has timeout ${run.timeoutMs} ms`);
    const active: ActiveRun = {
      run, done, name: basename(run.script), startMs: performance.now(), logFile: null, pid: null,
      killRequested: false, timedOut: false, timeoutTimer: undefined, graceTimer: undefined, exit: null,
    };
    this.#runs.set(run.id, active);
    void this.#start(active);
  }

  kill(id: number): void {
    const active = this.#runs.get(id);
    if (active === undefined) return;
    active.killRequested = true;
    // Not spawned yet: #start sees the request before it spawns.
    if (active.pid !== null) this.#killGroup(active);
  }

  count(query: ProcessQuery, done: (count: number | null) => void): void {
    checkQuery(query);
    const counting = query.service ? this.#serviceActive(query.name!).then((active) => (active === null ? null : active ? 1 : 0)) : matchingPids(query).then((pids) => pids.length);
    counting.then(done, (error: unknown) => {
      // Without /proc nothing can be counted: the caller learns it does not know.
      this.#log(`process count failed: ${describeError(error)}`);
      done(null);
    });
  }

  async #start(active: ActiveRun): Promise<void> {
    const { run } = active;
    const path = isAbsolute(run.script) ? run.script : join(this.#binDir, run.script);
    const statError = await stat(path).then(() => null, (error: NodeJS.ErrnoException) => error);
    if (statError?.code === "ENOENT" || statError?.code === "ENOTDIR") return this.#settle(active, { kind: "missing" });
    active.logFile = await this.#openLog(active.name);
    await this.#append(active, `--- ${new Date().toISOString()} ${[active.name, ...run.args].join(" ")} (run ${run.id})\n`);
    if (statError !== null) return this.#settle(active, { kind: "not-started", reason: describeError(statError) });
    // kill() came while the log was being opened: the script never runs.
    if (active.killRequested) return this.#settle(active, { kind: "signalled", signal: "SIGTERM" });
    active.startMs = performance.now();
    const output = active.logFile?.fd ?? "ignore";
    let child;
    try {
      child = spawn(path, run.args, { cwd: this.#binDir, env: { PATH: process.env.PATH, ...run.env }, detached: true, stdio: ["ignore", output, output] });
    } catch (error) {
      // Arguments the kernel cannot take (a NUL byte in an argument or in the environment).
      return this.#settle(active, { kind: "not-started", reason: describeError(error) });
    }
    // With no pipes and no child.kill(), 'error' only reports a failed spawn, and then no 'exit' follows.
    child.on("error", (error: NodeJS.ErrnoException) => void this.#settle(active, { kind: "not-started", reason: spawnFailure(error) }));
    child.on("exit", (code, signal) => void this.#exited(active, code, signal));
    if (child.pid === undefined) return;
    active.pid = child.pid;
    active.timeoutTimer = setTimeout(() => {
      active.timedOut = true;
      this.#killGroup(active);
    }, run.timeoutMs);
  }

  async #exited(active: ActiveRun, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    assert(signal !== null || code !== null, `run ${active.run.id} exited with neither code nor signal`);
    clearTimeout(active.timeoutTimer);
    active.exit = signal !== null ? { kind: "signalled", signal } : { kind: "exited", code: code! };
    // A killed group is reported once it is gone, so that the caller never acts while part
    // of it still runs; if members outlive SIGTERM, the grace timer's SIGKILL reports it.
    if (active.graceTimer !== undefined && (await groupAlive(active.pid!))) return;
    clearTimeout(active.graceTimer);
    await this.#settle(active, active.exit);
  }

  /** SIGTERM to the whole group now, SIGKILL after the grace period. */
  #killGroup(active: ActiveRun): void {
    assert(active.pid !== null, `run ${active.run.id} killed before it was spawned`);
    if (active.graceTimer !== undefined) return;
    this.#signalGroup(active.pid, "SIGTERM");
    active.graceTimer = setTimeout(() => {
      this.#signalGroup(active.pid!, "SIGKILL");
      if (active.exit !== null) void this.#settle(active, active.exit);
      active.graceTimer = undefined;
    }, this.#killGraceMs);
  }

  #signalGroup(pgid: number, signal: NodeJS.Signals): void {
    try {
      process.kill(-pgid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") this.#log(`cannot send ${signal} to process group ${pgid}: ${describeError(error)}`);
    }
  }

  /** Reports `outcome` (timed-out instead if the timeout struck) and forgets the run. */
  async #settle(active: ActiveRun, outcome: ScriptOutcome): Promise<void> {
    // After a kill, the group check of #exited and the grace timer may both get here.
    if (this.#runs.get(active.run.id) !== active) return;
    this.#runs.delete(active.run.id);
    clearTimeout(active.timeoutTimer);
    clearTimeout(active.graceTimer);
    const final: ScriptOutcome = active.timedOut ? { kind: "timed-out" } : outcome;
    if (final.kind !== "missing") {
      await this.#append(active, `--- ${describeOutcome(final)} after ${Math.round(performance.now() - active.startMs)} ms\n`);
    }
    await active.logFile?.close().catch(() => {});
    active.done(final);
  }

  /** The script's log, or null (logged) when it cannot be opened: the run matters more than its output. */
  async #openLog(name: string): Promise<FileHandle | null> {
    try {
      await mkdir(this.#logDir, { recursive: true });
      return await open(join(this.#logDir, `${name}.log`), "a");
    } catch (error) {
      this.#log(`cannot open the log of ${name}, its output is discarded: ${describeError(error)}`);
      return null;
    }
  }

  async #append(active: ActiveRun, line: string): Promise<void> {
    try {
      await active.logFile?.appendFile(line);
    } catch (error) {
      this.#log(`cannot write the log of ${active.name}: ${describeError(error)}`);
    }
  }

  /** Whether the service is active; null when systemctl is missing or did not answer. */
  async #serviceActive(name: string): Promise<boolean | null> {
    return new Promise((resolve) => {
      // `--` keeps a name starting with `-` from being read as an option.
      execFile(this.#systemctlPath, ["is-active", "--quiet", "--", name], { timeout: serviceQueryTimeoutMs }, (error) => {
        const failure = error as (NodeJS.ErrnoException & { killed?: boolean }) | null;
        if (failure?.code === "ENOENT") {
          if (!this.#systemctlMissingLogged) this.#log("systemctl not found: services cannot be counted");
          this.#systemctlMissingLogged = true;
          return resolve(null);
        }
        if (failure?.killed === true) return resolve(null);
        resolve(failure === null);
      });
    });
  }
}

// ---- /proc scans ----

/** What a scan reads of one process. */
interface ProcEntry {
  readonly pid: number;
  /** The kernel's comm: the executable's name cut to 15 characters. */
  readonly name: string;
  readonly pgid: number;
  /** The arguments after argv[0] joined by spaces; "" unless asked for. */
  readonly args: string;
}

/** Pids of the running processes `query` matches (not a service query). */
export async function matchingPids(query: ProcessQuery): Promise<number[]> {
  checkQuery(query);
  assert(!query.service, "matchingPids is for process queries");
  return scan(query.argRegex !== null, queryMatcher(query));
}

/**
 * Whether a process matches every criterion `query` gives. The regexes are JavaScript
 * regular expressions, as the config validates them, searched for anywhere in the text
 * (like regexec without anchors): POSIX ERE patterns work unchanged except for bracket
 * classes such as `[[:digit:]]`, and back-references.
 */
export function queryMatcher(query: ProcessQuery): (process: { readonly name: string; readonly args: string }) => boolean {
  const nameRegex = query.nameRegex === null ? null : new RegExp(query.nameRegex);
  const argRegex = query.argRegex === null ? null : new RegExp(query.argRegex);
  return (process) =>
    (query.name === null || process.name === query.name) && (nameRegex === null || nameRegex.test(process.name)) && (argRegex === null || argRegex.test(process.args));
}

/** Asserts what every query must give. */
export function checkQuery(query: ProcessQuery): void {
  assert(query.name !== null || query.nameRegex !== null || query.argRegex !== null, "a process query gives at least one criterion");
  assert(!query.service || query.name !== null, "a service query names the service");
}

/** Whether a member of the group still runs; when /proc cannot be read, assume one does and wait for the SIGKILL. */
async function groupAlive(pgid: number): Promise<boolean> {
  return scan(false, (entry) => entry.pgid === pgid).then((pids) => pids.length > 0, () => true);
}

async function scan(withArgs: boolean, keep: (entry: ProcEntry) => boolean): Promise<number[]> {
  const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name)).map(Number);
  const kept: number[] = [];
  for (let index = 0; index < pids.length; index += procReadsConcurrentMax) {
    const entries = await Promise.all(pids.slice(index, index + procReadsConcurrentMax).map((pid) => readEntry(pid, withArgs)));
    for (const entry of entries) if (entry !== null && keep(entry)) kept.push(entry.pid);
  }
  return kept;
}

/** The process `pid`, or null when it is a zombie or has exited since the directory was read. */
async function readEntry(pid: number, withArgs: boolean): Promise<ProcEntry | null> {
  try {
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so cut at the last ')'.
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const close = stat.lastIndexOf(")");
    const [state, , pgrp] = stat.slice(close + 2).split(" ");
    // A zombie has exited and only awaits its parent's wait(): it runs nothing.
    if (state === "Z" || state === "X") return null;
    const args = withArgs ? argsOf(await readFile(`/proc/${pid}/cmdline`, "utf8")) : "";
    return { pid, name: stat.slice(stat.indexOf("(") + 1, close), pgid: Number(pgrp), args };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") return null;
    throw error;
  }
}

function argsOf(cmdline: string): string {
  return cmdline.split("\0").slice(1, cmdline.endsWith("\0") ? -1 : undefined).join(" ");
}

// ---- descriptions ----

function spawnFailure(error: NodeJS.ErrnoException): string {
  // The file exists (it was stat'ed), so ENOENT from execve means its #! interpreter does not.
  if (error.code === "ENOENT") return `its interpreter was not found (${error.message})`;
  if (error.code === "EACCES") return `it is not executable (${error.message})`;
  return describeError(error);
}


function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
