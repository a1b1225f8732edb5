// The simulated ProbePort (drivers/sim/probes.ts) against the ProbePort contract, over a
// world that mirrors a plain Linux host; then the faults only the simulator can inject.

import { describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import type { Probe } from "../../core/ports.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { SimProbePort } from "../../drivers/sim/probes.ts";
import { probeContract, runProbe, type ProbeHarness } from "./probe-contract.ts";

const latencyMs = 1;

/** A simulated host: lo holds 127.0.0.1, which answers pings and listens on one port. */
function simHarness(): ProbeHarness & { readonly world: SimProbePort } {
  const queue = new EventQueue();
  let nowMs = 0;
  const world = new SimProbePort(queue, () => nowMs, latencyMs);
  world.addAddress("lo", "127.0.0.1");
  world.addAddress("eth0", "192.0.2.2");
  world.hostUp("127.0.0.1");
  world.listen("127.0.0.1", 8080);
  world.moduleUp("web");
  return {
    world,
    port: world,
    listening: { addr: "127.0.0.1", port: 8080 },
    refused: { addr: "127.0.0.1", port: 8081 },
    blackhole: { addr: "198.18.255.254", port: 80 },
    readyModule: "web",
    stoppedModule: "db",
    nowMs: () => nowMs,
    // Runs the queue's events in time order: virtual time, no waiting.
    waitUntil: async (condition, deadlineMs) => {
      for (let next = queue.peekTimeMs(); !condition() && next !== undefined && next <= deadlineMs; next = queue.peekTimeMs()) {
        const event = queue.pop()!;
        nowMs = event.atMs;
        event.run();
      }
      if (!condition()) nowMs = Math.max(nowMs, deadlineMs);
    },
    close: async () => {},
  };
}

probeContract("simulated", async () => simHarness());

describe("SimProbePort faults", () => {
  async function answer(harness: ReturnType<typeof simHarness>, probe: Probe, timeoutMs = 500) {
    const outcome = await runProbe(harness.port, harness, probe, timeoutMs);
    expect(outcome.results).toHaveLength(1);
    return { ...outcome.results[0]!, elapsedMs: outcome.elapsedMs };
  }

  it("answers after the modelled latency", async () => {
    expect(await answer(simHarness(), { kind: "tcp", addr: "127.0.0.1", port: 8080 })).toEqual({ up: true, detail: "", elapsedMs: latencyMs });
  });

  it("hostDown: pings and connections time out; hostUp: they answer again", async () => {
    const harness = simHarness();
    harness.world.hostDown("127.0.0.1");
    expect(await answer(harness, { kind: "ping", addr: "127.0.0.1" })).toEqual({ up: false, detail: "timed out after 500 ms", elapsedMs: 500 });
    expect(await answer(harness, { kind: "tcp", addr: "127.0.0.1", port: 8080 })).toEqual({ up: false, detail: "timed out after 500 ms", elapsedMs: 500 });
    harness.world.hostUp("127.0.0.1");
    expect((await answer(harness, { kind: "ping", addr: "127.0.0.1" })).up).toBe(true);
  });

  it("unlisten: connections are refused; listen: accepted again", async () => {
    const harness = simHarness();
    harness.world.unlisten("127.0.0.1", 8080);
    expect((await answer(harness, { kind: "tcp", addr: "127.0.0.1", port: 8080 })).detail).toBe("ECONNREFUSED");
    harness.world.listen("127.0.0.1", 8080);
    expect((await answer(harness, { kind: "tcp", addr: "127.0.0.1", port: 8080 })).up).toBe(true);
  });

  it("linkDown: the interface checker is down while the address stays configured; linkUp: up", async () => {
    const harness = simHarness();
    harness.world.linkDown("eth0");
    expect((await answer(harness, { kind: "intf", localAddr: "192.0.2.2" })).detail).toBe("interface eth0 is down");
    expect((await answer(harness, { kind: "ip", addr: "192.0.2.2" })).up).toBe(true);
    harness.world.linkUp("eth0");
    expect((await answer(harness, { kind: "intf", localAddr: "192.0.2.2" })).up).toBe(true);
  });

  it("removeAddress: the ip checker is down; addAddress: up", async () => {
    const harness = simHarness();
    harness.world.removeAddress("eth0", "192.0.2.2");
    expect((await answer(harness, { kind: "ip", addr: "192.0.2.2" })).detail).toBe("192.0.2.2 is not configured on this host");
    harness.world.addAddress("eth0", "192.0.2.2");
    expect((await answer(harness, { kind: "ip", addr: "192.0.2.2" })).up).toBe(true);
  });

  it("slow: an answer later than the timeout is a timeout, at the timeout", async () => {
    const harness = simHarness();
    harness.world.slow(800);
    expect(await answer(harness, { kind: "ip", addr: "127.0.0.1" })).toEqual({ up: false, detail: "timed out after 500 ms", elapsedMs: 500 });
    expect(await answer(harness, { kind: "ip", addr: "127.0.0.1" }, 800)).toEqual({ up: true, detail: "", elapsedMs: 800 });
  });

  it("refuses a timeout that is not a positive whole number of milliseconds", () => {
    const { world } = simHarness();
    expect(() => world.probe({ kind: "ping", addr: "127.0.0.1" }, 0, () => {})).toThrow(AssertionError);
    expect(() => world.probe({ kind: "ping", addr: "127.0.0.1" }, 1.5, () => {})).toThrow(AssertionError);
  });
});
