// The ProcessPort contract (core/ports.ts), one suite run against the simulated driver
// (process-sim.test.ts) and the real one (process-real.test.ts): outcomes of scripts that
// exit, die of a signal, are missing, hang past their timeout or are killed; arguments and
// environment passed exactly; process groups killed on timeout and kill() but left alone
// when a script ends by itself; process counts by name, name regex and argument regex;
// every callback called exactly once, and never from inside the call that asked for it.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ProcessPort, ProcessQuery, ScriptOutcome, ScriptRun } from "../../core/ports.ts";

/** What a test script does, in terms both drivers' harnesses can implement. */
export interface ScriptSpec {
  /** Default 0. */
  readonly exitCode?: number;
  /** How long it runs before it exits; default: as briefly as it can. */
  readonly durationMs?: number;
  /** It never exits by itself. */
  readonly hang?: boolean;
  /** It kills itself with SIGUSR1 instead of exiting. */
  readonly signalled?: boolean;
  /** One background process named after the harness's appName per entry, with these
   *  arguments (numbers: the real harness's application is a copy of sleep, which sums them). */
  readonly apps?: readonly (readonly string[])[];
}

export interface ProcessHarness {
  readonly port: ProcessPort;
  /** The name of the processes test scripts start: unique to this harness, at most 15 characters. */
  readonly appName: string;
  define(script: string, spec: ScriptSpec): Promise<void>;
  /** The arguments and environment the last run of `script` received; PATH is left out. */
  seen(script: string): Promise<{ readonly args: readonly string[]; readonly env: Readonly<Record<string, string>> }>;
  /** The harness's clock: real or simulated milliseconds. */
  nowMs(): number;
  /** Lets `ms` of the harness's time pass. */
  advance(ms: number): Promise<void>;
  /** Lets time pass until `condition` holds; false when `limitMs` passed first. */
  waitFor(condition: () => boolean, limitMs: number): Promise<boolean>;
  /** Ends what the harness started and removes what it wrote. */
  dispose(): Promise<void>;
}

/** Time waited after a callback to see that it is not called again; longer than the real harness's kill grace. */
const settleMs = 250;
const outcomeLimitMs = 5_000;
let nextRunId = 1;

export function scriptRun(script: string, fields: Partial<ScriptRun> = {}): ScriptRun {
  return { id: nextRunId++, script, args: ["UP", "STOP", "stop"], env: { SAFEMODULE: "web" }, timeoutMs: 5_000, ...fields };
}

/** Starts `run`; the returned list fills with its outcomes. */
export function start(harness: ProcessHarness, run: ScriptRun): ScriptOutcome[] {
  const outcomes: ScriptOutcome[] = [];
  harness.port.run(run, (outcome) => outcomes.push(outcome));
  expect(outcomes, "done is never called from inside run()").toHaveLength(0);
  return outcomes;
}

/** Waits for the one outcome of a started run and checks that no second one follows. */
export async function ended(harness: ProcessHarness, outcomes: ScriptOutcome[]): Promise<ScriptOutcome> {
  expect(await harness.waitFor(() => outcomes.length > 0, outcomeLimitMs), "the run ends").toBe(true);
  await harness.advance(settleMs);
  expect(outcomes, "done is called exactly once").toHaveLength(1);
  return outcomes[0]!;
}

export async function runToEnd(harness: ProcessHarness, run: ScriptRun): Promise<ScriptOutcome> {
  return ended(harness, start(harness, run));
}

export function query(fields: Partial<ProcessQuery>): ProcessQuery {
  return { name: null, nameRegex: null, argRegex: null, service: false, ...fields };
}

export async function countOf(harness: ProcessHarness, processQuery: ProcessQuery): Promise<number | null> {
  const counts: (number | null)[] = [];
  harness.port.count(processQuery, (count) => counts.push(count));
  expect(counts, "done is never called from inside count()").toHaveLength(0);
  expect(await harness.waitFor(() => counts.length > 0, outcomeLimitMs), "the count ends").toBe(true);
  return counts[0]!;
}

/** Counts until the count is `expected` (a forked process takes a moment to exec), or gives up after a second. */
export async function countEventually(harness: ProcessHarness, processQuery: ProcessQuery, expected: number): Promise<number | null> {
  const deadlineMs = harness.nowMs() + 1_000;
  for (;;) {
    const count = await countOf(harness, processQuery);
    if (count === expected || harness.nowMs() >= deadlineMs) return count;
    await harness.advance(10);
  }
}

export function processPortContract(name: string, makeHarness: () => Promise<ProcessHarness>): void {
  describe(`ProcessPort contract: ${name}`, () => {
    let harness: ProcessHarness;
    let app: ProcessQuery;
    beforeEach(async () => {
      harness = await makeHarness();
      app = query({ name: harness.appName });
    });
    afterEach(async () => {
      await harness.dispose();
    });

    it("reports exit code 0 of a script that succeeds", async () => {
      await harness.define("start_both", {});
      expect(await runToEnd(harness, scriptRun("start_both"))).toEqual({ kind: "exited", code: 0 });
    });

    it("reports the non-zero exit code of a script that fails", async () => {
      await harness.define("start_both", { exitCode: 3, durationMs: 20 });
      expect(await runToEnd(harness, scriptRun("start_both"))).toEqual({ kind: "exited", code: 3 });
    });

    it("reports a script that dies of a signal as signalled", async () => {
      await harness.define("stop_both", { signalled: true });
      expect(await runToEnd(harness, scriptRun("stop_both"))).toEqual({ kind: "signalled", signal: "SIGUSR1" });
    });

    it("passes the arguments and the environment exactly", async () => {
      await harness.define("stop_both", {});
      const args = ["UP", "STOP", "stop", "force", "two words", "", "*", "$HOME", "'\"\\"];
      const env = { SAFEMODULE: "web", SAFEVAR: "a b=c", EMPTY: "", LINES: "one\ntwo", QUOTES: "'\"$HOME" };
      expect(await runToEnd(harness, scriptRun("stop_both", { args, env }))).toEqual({ kind: "exited", code: 0 });
      expect(await harness.seen("stop_both")).toEqual({ args, env });
    });

    it("reports a script that does not exist as missing", async () => {
      expect(await runToEnd(harness, scriptRun("prestart"))).toEqual({ kind: "missing" });
    });

    it("times out a hanging script and kills its whole process group, application included", async () => {
      await harness.define("start_both", { hang: true, apps: [["30", "1"]] });
      const startMs = harness.nowMs();
      const outcomes = start(harness, scriptRun("start_both", { timeoutMs: 300 }));
      expect(await countEventually(harness, app, 1)).toBe(1);
      expect(await harness.waitFor(() => outcomes.length > 0, outcomeLimitMs)).toBe(true);
      expect(harness.nowMs() - startMs).toBeGreaterThanOrEqual(300);
      expect(await ended(harness, outcomes)).toEqual({ kind: "timed-out" });
      expect(await countOf(harness, app)).toBe(0);
    });

    it("kill() ends a running script with its process group", async () => {
      await harness.define("check_app", { hang: true, apps: [["30", "1"]] });
      const run = scriptRun("check_app");
      const outcomes = start(harness, run);
      expect(await countEventually(harness, app, 1)).toBe(1);
      harness.port.kill(run.id);
      expect(await ended(harness, outcomes)).toEqual({ kind: "signalled", signal: "SIGTERM" });
      expect(await countOf(harness, app)).toBe(0);
    });

    it("kill() right after run() reports the run as signalled", async () => {
      await harness.define("check_app", { hang: true });
      const run = scriptRun("check_app");
      const outcomes = start(harness, run);
      harness.port.kill(run.id);
      expect(await ended(harness, outcomes)).toEqual({ kind: "signalled", signal: "SIGTERM" });
    });

    it("kill() of a finished or unknown run does nothing", async () => {
      await harness.define("start_both", {});
      const run = scriptRun("start_both");
      const outcomes = start(harness, run);
      await ended(harness, outcomes);
      harness.port.kill(run.id);
      harness.port.kill(nextRunId++);
      await harness.advance(settleMs);
      expect(outcomes).toEqual([{ kind: "exited", code: 0 }]);
    });

    it("leaves running the applications of a script that ended by itself", async () => {
      await harness.define("start_both", { apps: [["30", "1"]] });
      expect(await runToEnd(harness, scriptRun("start_both"))).toEqual({ kind: "exited", code: 0 });
      expect(await countEventually(harness, app, 1)).toBe(1);
    });

    it("runs scripts concurrently, each reporting its own outcome", async () => {
      await harness.define("stop_both", { durationMs: 400, exitCode: 1 });
      await harness.define("check_app", { exitCode: 2 });
      const slow = start(harness, scriptRun("stop_both"));
      const fast = start(harness, scriptRun("check_app"));
      expect(await harness.waitFor(() => fast.length > 0, outcomeLimitMs)).toBe(true);
      expect(slow).toHaveLength(0);
      expect(await ended(harness, fast)).toEqual({ kind: "exited", code: 2 });
      expect(await ended(harness, slow)).toEqual({ kind: "exited", code: 1 });
    });

    it("counts processes by exact name, name regex and argument regex, all criteria holding", async () => {
      await harness.define("start_both", { apps: [["30", "1"], ["30", "2"]] });
      await runToEnd(harness, scriptRun("start_both"));
      expect(await countEventually(harness, app, 2)).toBe(2);
      expect(await countOf(harness, query({ name: `${harness.appName}x` }))).toBe(0);
      expect(await countOf(harness, query({ nameRegex: `^${harness.appName}$` }))).toBe(2);
      expect(await countOf(harness, query({ nameRegex: `^${harness.appName}x` }))).toBe(0);
      expect(await countOf(harness, query({ name: harness.appName, argRegex: "^30 2$" }))).toBe(1);
      expect(await countOf(harness, query({ nameRegex: harness.appName, argRegex: "30 [12]" }))).toBe(2);
      expect(await countOf(harness, query({ name: harness.appName, argRegex: "^30 3$" }))).toBe(0);
    });

    it("calls count's done exactly once", async () => {
      const counts: (number | null)[] = [];
      harness.port.count(app, (count) => counts.push(count));
      expect(await harness.waitFor(() => counts.length > 0, outcomeLimitMs)).toBe(true);
      await harness.advance(settleMs);
      expect(counts).toEqual([0]);
    });
  });
}
