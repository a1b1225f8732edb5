// The simulated heartbeat rings as farm nodes see them (drivers/sim/datagrams.ts, the
// wrapping of FarmWorld's #networkDriver): the DatagramPort contract in virtual time over
// a fault-free network, then what only the simulator does: faults of the rings reach the
// ports.

import { describe, expect, it } from "vitest";
import type { NodeId } from "../../core/types.ts";
import { SimDatagrams } from "../../drivers/sim/datagrams.ts";
import { EventQueue } from "../../drivers/sim/event-queue.ts";
import { lanLink, SimNetwork } from "../../drivers/sim/network.ts";
import { Prng } from "../../drivers/sim/prng.ts";
import { datagramPortContract, listenAll, testMessage, type DatagramHarness, type TestMessage } from "./datagram-contract.ts";
import { virtualTime } from "./virtual-time.ts";

const nodes: readonly NodeId[] = ["n1", "n2", "n3"];
const rings = ["lan", "private"] as const;

interface SimHarness extends DatagramHarness {
  readonly network: SimNetwork;
}

function makeSimHarness(seed = 1): SimHarness {
  const queue = new EventQueue();
  const time = virtualTime(queue, 0.1);
  const network = new SimNetwork(queue, new Prng(seed).fork("network"), rings, lanLink, () => time.nowMs);
  const datagrams = new SimDatagrams<TestMessage>(network, () => time.nowMs);
  const ports = new Map(nodes.map((node) => [node, datagrams.port(node)]));
  return {
    nodes,
    rings,
    network,
    port: (node) => ports.get(node)!,
    nowMs: () => time.nowMs,
    advance: time.advance,
    waitFor: time.waitFor,
    dispose: async () => {},
  };
}

datagramPortContract("sim", async () => makeSimHarness());

describe("SimDatagrams", () => {
  it("stamps receivedAtMs with the virtual time of delivery, one latency after the send", async () => {
    const harness = makeSimHarness();
    harness.network.setLink("*", { latencyMs: 3, jitterMs: 0 });
    const deliveries = listenAll(harness);
    await harness.advance(10);
    harness.port("n1").send("lan", "n2", testMessage(1));
    await harness.advance(10);
    expect(deliveries.map((delivery) => delivery.receivedAtMs)).toEqual([13]);
  });

  it("loses what a partitioned ring drops, one direction only", async () => {
    const harness = makeSimHarness();
    const deliveries = listenAll(harness);
    harness.network.partition("lan", "n1", "n2");
    harness.port("n1").send("lan", "n2", testMessage(1));
    harness.port("n1").send("private", "n2", testMessage(2));
    harness.port("n2").send("lan", "n1", testMessage(3));
    await harness.advance(10);
    expect(deliveries.map((delivery) => delivery.message.n).sort()).toEqual([2, 3]);
  });

  it("delivers duplicates when the ring duplicates", async () => {
    const harness = makeSimHarness();
    harness.network.setLink("lan", { duplicateRate: 1 });
    const deliveries = listenAll(harness);
    harness.port("n1").send("lan", "n3", testMessage(1));
    await harness.advance(10);
    expect(deliveries).toHaveLength(2);
  });
});
