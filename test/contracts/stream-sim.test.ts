// The simulated streams (drivers/sim/streams.ts): the StreamPort contract in virtual time,
// then what only the simulator fixes exactly: when each side learns of a stop or a
// partition, what is lost in flight, and that a run is the same every time.

import { describe, expect, it } from "vitest";
import type { StreamPort } from "../../core/ports.ts";
import type { NodeId } from "../../core/types.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { SimStreams, type SimStreamSettings } from "../../drivers/sim/streams.ts";
import { testMessage, type TestMessage } from "./datagram-contract.ts";
import { virtualTime } from "./virtual-time.ts";
import { streamPortContract, type PeerReport, type Received, type StreamHarness } from "./stream-contract.ts";

const nodes: readonly NodeId[] = ["n1", "n2", "n3"];
const settings: SimStreamSettings = { latencyMs: 0.5, connectMs: 50, detectMs: 300 };

interface SimHarness extends StreamHarness {
  readonly streams: SimStreams<TestMessage>;
  nowMs(): number;
  /** Every report with its virtual time, as "t=… node: peer up|down". */
  readonly timeline: string[];
}

function makeSimHarness(): SimHarness {
  const queue = new EventQueue();
  const time = virtualTime(queue, 1);
  const streams = new SimStreams<TestMessage>(queue, () => time.nowMs, nodes, settings);
  const ports = new Map<NodeId, StreamPort<TestMessage>>();
  const received = new Map<NodeId, Received[]>(nodes.map((node) => [node, []]));
  const reports = new Map<NodeId, PeerReport[]>(nodes.map((node) => [node, []]));
  const timeline: string[] = [];
  return {
    nodes,
    streams,
    timeline,
    nowMs: () => time.nowMs,
    start: async (node) => {
      const port = streams.start(node);
      port.listen((from, message) => received.get(node)!.push({ from, message }));
      port.watchPeers((peer, connected) => {
        reports.get(node)!.push({ peer, connected });
        timeline.push(`t=${time.nowMs} ${node}: ${peer} ${connected ? "up" : "down"}`);
      });
      ports.set(node, port);
    },
    stop: async (node) => streams.stop(node),
    partition: async (a, b) => streams.partition(a, b),
    heal: async (a, b) => streams.heal(a, b),
    port: (node) => ports.get(node)!,
    received: (node) => received.get(node)!,
    reports: (node) => reports.get(node)!,
    advance: time.advance,
    waitFor: time.waitFor,
    dispose: async () => {},
  };
}

streamPortContract("sim", async () => makeSimHarness());

describe("SimStreams", () => {
  const started = async (): Promise<SimHarness> => {
    const harness = makeSimHarness();
    for (const node of nodes) await harness.start(node);
    await harness.advance(100);
    return harness;
  };

  it("connects running nodes after connectMs, and reports both sides at once", async () => {
    const harness = makeSimHarness();
    await harness.start("n1");
    await harness.advance(1_000);
    await harness.start("n2");
    await harness.advance(1_000);
    expect(harness.timeline).toEqual(["t=1050 n1: n2 up", "t=1050 n2: n1 up"]);
  });

  it("tells the peers of a stopped node after one latency, and loses what was in flight", async () => {
    const harness = await started();
    harness.port("n1").send("n2", testMessage(1));
    await harness.stop("n2");
    await harness.advance(10);
    expect(harness.timeline.slice(-2)).toEqual(["t=100.5 n1: n2 down", "t=100.5 n3: n2 down"]);
    expect(harness.received("n2")).toEqual([]);
    expect(harness.streams.stats.lostInFlight).toBe(1);
  });

  it("tells both sides of a partition after detectMs; what is sent meanwhile is lost", async () => {
    const harness = await started();
    await harness.partition("n1", "n2");
    await harness.advance(100);
    harness.port("n1").send("n2", testMessage(1));
    await harness.advance(1_000);
    expect(harness.timeline.slice(-2)).toEqual(["t=400 n1: n2 down", "t=400 n2: n1 down"]);
    expect(harness.received("n2")).toEqual([]);
  });

  it("reconnects a pair healed before detection only after both saw the old connection end", async () => {
    const harness = await started();
    await harness.partition("n1", "n2");
    await harness.advance(100);
    await harness.heal("n1", "n2");
    await harness.advance(1_000);
    expect(harness.timeline.slice(-4)).toEqual(["t=400 n1: n2 down", "t=400 n2: n1 down", "t=450 n1: n2 up", "t=450 n2: n1 up"]);
  });

  it("keeps per-direction order when the latency lets later messages catch up", async () => {
    const harness = await started();
    for (let n = 1; n <= 100; n++) harness.port("n3").send("n1", testMessage(n));
    await harness.advance(10);
    expect(harness.received("n1").map((each) => each.message.n)).toEqual(Array.from({ length: 100 }, (_, index) => index + 1));
  });

  it("runs the same way every time", async () => {
    const run = async (): Promise<string[]> => {
      const harness = await started();
      await harness.partition("n1", "n3");
      await harness.stop("n2");
      await harness.advance(500);
      await harness.start("n2");
      await harness.heal("n1", "n3");
      await harness.advance(1_000);
      return harness.timeline;
    };
    expect(await run()).toEqual(await run());
  });
});
