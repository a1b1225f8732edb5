// The ProbePort contract (core/ports.ts), one suite run against the real driver
// (probe-real.test.ts) and the simulated one (probe-sim.test.ts): what each of SafeKit's
// <tcp>, <ping>, <intf> and <ip> checkers finds, that an unanswered probe ends at its
// timeout, and that `done` is called exactly once and never before probe() returns (the
// runtime must not be re-entered while it executes effects).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Probe, ProbePort, ProbeResult } from "../../core/ports.ts";

export interface Endpoint {
  readonly addr: string;
  readonly port: number;
}

/** The clock a driver runs on, and a way to let it advance. */
export interface ProbeClock {
  nowMs(): number;
  /** Lets time pass until `condition` holds or the clock reaches `deadlineMs`. */
  waitUntil(condition: () => boolean, deadlineMs: number): Promise<void>;
}

/** One driver and the world it probes, on the driver's own clock. */
export interface ProbeHarness extends ProbeClock {
  readonly port: ProbePort;
  /** A TCP endpoint that accepts connections. */
  readonly listening: Endpoint;
  /** A TCP endpoint where nothing listens. */
  readonly refused: Endpoint;
  /** A TCP endpoint that never answers a connection attempt. */
  readonly blackhole: Endpoint;
  /** A module of this node that is running and Ready, and one that is stopped. */
  readonly readyModule: string;
  readonly stoppedModule: string;
  close(): Promise<void>;
}

export interface ProbeOutcome {
  /** Every result `done` received, in order. */
  readonly results: readonly ProbeResult[];
  /** From the call to the first result; null when there was none. */
  readonly elapsedMs: number | null;
  /** Whether a result arrived before probe() returned. */
  readonly synchronous: boolean;
}

/** Scheduling slack the contract allows beyond a probe's timeout. */
export const slackMs = 1_000;
/** How long after the first result a second call would be noticed. */
const settleMs = 100;
const quickTimeoutMs = 2_000;
const blackholeTimeoutMs = 300;
const absentAddr = "198.18.0.77";

export async function runProbe(port: ProbePort, clock: ProbeClock, probe: Probe, timeoutMs: number): Promise<ProbeOutcome> {
  const results: ProbeResult[] = [];
  const startMs = clock.nowMs();
  let firstAtMs: number | null = null;
  let returned = false;
  let synchronous = false;
  port.probe(probe, timeoutMs, (result) => {
    synchronous ||= !returned;
    firstAtMs ??= clock.nowMs();
    results.push(result);
  });
  returned = true;
  await clock.waitUntil(() => results.length > 0, startMs + timeoutMs + slackMs);
  await clock.waitUntil(() => false, clock.nowMs() + settleMs);
  return { results, elapsedMs: firstAtMs === null ? null : firstAtMs - startMs, synchronous };
}

/** Runs the probe and checks that it answered once, asynchronously, in time; returns the answer. */
async function answerOf(harness: ProbeHarness, probe: Probe, timeoutMs: number): Promise<{ result: ProbeResult; elapsedMs: number }> {
  const outcome = await runProbe(harness.port, harness, probe, timeoutMs);
  expect(outcome.synchronous, "done was called before probe() returned").toBe(false);
  expect(outcome.results, "done must be called exactly once").toHaveLength(1);
  expect(outcome.elapsedMs).toBeLessThanOrEqual(timeoutMs + slackMs);
  return { result: outcome.results[0]!, elapsedMs: outcome.elapsedMs! };
}

export function probeContract(name: string, createHarness: () => Promise<ProbeHarness>): void {
  describe(`ProbePort contract: ${name}`, () => {
    let harness: ProbeHarness;
    beforeAll(async () => {
      harness = await createHarness();
    });
    afterAll(async () => {
      await harness.close();
    });

    it("tcp: a listening endpoint is up", async () => {
      const { result } = await answerOf(harness, { kind: "tcp", ...harness.listening }, quickTimeoutMs);
      expect(result).toEqual({ up: true, detail: "" });
    });

    it("tcp: a refused connection is down before the timeout, with the error code", async () => {
      const { result, elapsedMs } = await answerOf(harness, { kind: "tcp", ...harness.refused }, quickTimeoutMs);
      expect(result).toEqual({ up: false, detail: "ECONNREFUSED" });
      expect(elapsedMs).toBeLessThan(quickTimeoutMs);
    });

    it("tcp: an endpoint that never answers is down at the timeout", async () => {
      const { result, elapsedMs } = await answerOf(harness, { kind: "tcp", ...harness.blackhole }, blackholeTimeoutMs);
      expect(result).toEqual({ up: false, detail: `timed out after ${blackholeTimeoutMs} ms` });
      // Node's timers may fire up to a millisecond early against performance.now().
      expect(elapsedMs).toBeGreaterThanOrEqual(blackholeTimeoutMs - 1);
    });

    it("ip: 127.0.0.1 is configured on this host", async () => {
      const { result } = await answerOf(harness, { kind: "ip", addr: "127.0.0.1" }, quickTimeoutMs);
      expect(result).toEqual({ up: true, detail: "" });
    });

    it("ip: an address no interface holds is down", async () => {
      const { result } = await answerOf(harness, { kind: "ip", addr: absentAddr }, quickTimeoutMs);
      expect(result).toEqual({ up: false, detail: `${absentAddr} is not configured on this host` });
    });

    it("intf: the interface holding 127.0.0.1 (lo) is up", async () => {
      const { result } = await answerOf(harness, { kind: "intf", localAddr: "127.0.0.1" }, quickTimeoutMs);
      expect(result).toEqual({ up: true, detail: "" });
    });

    it("intf: an address no interface holds is down", async () => {
      const { result } = await answerOf(harness, { kind: "intf", localAddr: absentAddr }, quickTimeoutMs);
      expect(result).toEqual({ up: false, detail: `no interface holds ${absentAddr}` });
    });

    it("module: a module of this node running and Ready is up; a stopped one and an unknown one are down", async () => {
      expect((await answerOf(harness, { kind: "module", module: harness.readyModule, addr: null, port: null }, quickTimeoutMs)).result).toEqual({ up: true, detail: "" });
      expect((await answerOf(harness, { kind: "module", module: harness.stoppedModule, addr: null, port: null }, quickTimeoutMs)).result.up).toBe(false);
      expect((await answerOf(harness, { kind: "module", module: "no-such-module", addr: null, port: null }, quickTimeoutMs)).result.up).toBe(false);
    });

    it("ping: 127.0.0.1 answers", async () => {
      // On a host without iputils-ping the detail says to install it: the test fails, never skips.
      const { result } = await answerOf(harness, { kind: "ping", addr: "127.0.0.1" }, quickTimeoutMs);
      expect(result).toEqual({ up: true, detail: "" });
    });
  });
}
