// A harness of real stream ports on loopback, for the StreamPort contract and the
// real-only stream tests: every node on its own address, every connection through a
// relay (tcp-proxy.ts) that can swallow traffic silently (a partition), record it, corrupt
// it or stop reading it.

import { setTimeout as sleep } from "node:timers/promises";
import type { NodeId } from "../../core/types.ts";
import { RealClockPort } from "../../drivers/real/clock.ts";
import { RealStreamPort, type RealStreamOptions, type StreamPeer } from "../../drivers/real/streams.ts";
import type { TestMessage } from "../contracts/datagram-contract.ts";
import type { PeerReport, Received, StreamHarness } from "../contracts/stream-contract.ts";
import { loopbackNet, testCodec, testKey, testNodes, waitFor, type LoopbackNet } from "./loopback.ts";
import { TcpProxy } from "./tcp-proxy.ts";

/** Timings short enough for tests; the defaults are in streams.ts. */
export const testTimings = { pingIntervalMs: 50, idleTimeoutMs: 300, handshakeTimeoutMs: 1_000, reconnectDelayMsMin: 20, reconnectDelayMsMax: 200 } as const;

export interface RealStreamHarness extends StreamHarness {
  readonly net: LoopbackNet;
  readonly proxies: ReadonlyMap<string, TcpProxy>;
  readonly clock: RealClockPort;
  realPort(node: NodeId): RealStreamPort<TestMessage>;
  addrOf(node: NodeId): string;
}

export function pairKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

/** Options of every port besides what the harness sets itself. */
export type PortOverrides = Partial<Omit<RealStreamOptions<TestMessage>, "self" | "incarnation" | "port" | "listen" | "peers">>;

export async function makeRealStreamHarness(nodes: readonly NodeId[] = testNodes, overrides: PortOverrides = {}): Promise<RealStreamHarness> {
  const net = loopbackNet();
  const clock = new RealClockPort();
  const addrOf = (node: NodeId) => net.addr(nodes.indexOf(node) + 1);
  // One relay per pair, listening on its own address, leading to the accepting node (the higher name).
  const proxies = new Map<string, TcpProxy>();
  let relayHost = 100;
  for (const low of nodes) {
    for (const high of nodes) {
      if (!(low < high)) continue;
      const proxy = new TcpProxy(net.addr(relayHost++), net.port, { addr: addrOf(high), port: net.port });
      await proxy.start();
      proxies.set(pairKey(low, high), proxy);
    }
  }
  // The connector (lower name) reaches the acceptor through the pair's relay.
  const peersOf = (self: NodeId): StreamPeer[] =>
    nodes.filter((peer) => peer !== self).map((peer) => ({ id: peer, routes: [{ ring: "lan", localAddr: addrOf(self), addr: self < peer ? proxies.get(pairKey(self, peer))!.addr : addrOf(peer) }] }));

  const ports = new Map<NodeId, RealStreamPort<TestMessage>>();
  const incarnations = new Map<NodeId, number>();
  const received = new Map<NodeId, Received[]>(nodes.map((node) => [node, []]));
  const reports = new Map<NodeId, PeerReport[]>(nodes.map((node) => [node, []]));
  const start = async (node: NodeId): Promise<void> => {
    const incarnation = (incarnations.get(node) ?? 0) + 1;
    incarnations.set(node, incarnation);
    const port = new RealStreamPort<TestMessage>({ self: node, incarnation, key: testKey, port: net.port, listen: [{ ring: "lan", addr: addrOf(node) }], peers: peersOf(node), codec: testCodec, clock, ...testTimings, ...overrides });
    port.listen((from, message) => received.get(node)!.push({ from, message }));
    port.watchPeers((peer, connected) => reports.get(node)!.push({ peer, connected }));
    ports.set(node, port);
    await port.open();
  };
  return {
    nodes,
    net,
    proxies,
    clock,
    addrOf,
    start,
    stop: async (node) => {
      await ports.get(node)!.close();
      ports.delete(node);
    },
    partition: async (a, b) => proxies.get(pairKey(a, b))!.partition(),
    heal: async (a, b) => proxies.get(pairKey(a, b))!.heal(),
    port: (node) => ports.get(node)!,
    realPort: (node) => ports.get(node)!,
    received: (node) => received.get(node)!,
    reports: (node) => reports.get(node)!,
    waitFor,
    advance: (ms) => sleep(ms),
    dispose: async () => {
      await Promise.all([...ports.values()].map((port) => port.close()));
      await Promise.all([...proxies.values()].map((proxy) => proxy.close()));
      clock.cancelAll();
    },
  };
}

