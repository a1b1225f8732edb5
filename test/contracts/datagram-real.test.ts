// The real heartbeat port (drivers/real/datagrams.ts) on loopback: three nodes, each with
// its own address on two rings, one UDP port for all, the DatagramPort contract; the
// real-only behaviour (forged, replayed, stale and garbage datagrams) is in
// test/real/datagrams.test.ts.

import { setTimeout as sleep } from "node:timers/promises";
import { RealClockPort } from "../../drivers/real/clock.ts";
import { RealDatagramPort, type DatagramRing } from "../../drivers/real/datagrams.ts";
import { loopbackNet, testCodec, testKey, testNodes, waitFor } from "../real/loopback.ts";
import { datagramPortContract, type DatagramHarness, type TestMessage } from "./datagram-contract.ts";

const rings = ["lan", "private"] as const;

async function makeRealHarness(): Promise<DatagramHarness> {
  const net = loopbackNet();
  const clock = new RealClockPort();
  /** Node i (from 1) is host i on ring lan and host 10 + i on ring private. */
  const addrOf = (node: number, ringIndex: number) => net.addr(ringIndex * 10 + node + 1);
  const ports = new Map<string, RealDatagramPort<TestMessage>>();
  for (const [index, self] of testNodes.entries()) {
    const nodeRings: DatagramRing[] = rings.map((ring, ringIndex) => ({
      ring,
      localAddr: addrOf(index, ringIndex),
      peers: new Map(testNodes.flatMap((peer, peerIndex) => (peer === self ? [] : [[peer, addrOf(peerIndex, ringIndex)] as const]))),
    }));
    const port = new RealDatagramPort<TestMessage>({ self, incarnation: 1, key: testKey, port: net.port, rings: nodeRings, codec: testCodec, clock });
    await port.open();
    ports.set(self, port);
  }
  return {
    nodes: testNodes,
    rings,
    port: (node) => ports.get(node)!,
    nowMs: () => clock.nowMs(),
    advance: (ms) => sleep(ms),
    waitFor,
    dispose: async () => {
      await Promise.all([...ports.values()].map((port) => port.close()));
    },
  };
}

datagramPortContract("real", makeRealHarness);
