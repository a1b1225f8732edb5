// The StreamPort contract (core/ports.ts), one suite run against the real driver on
// loopback (stream-real.test.ts) and the simulated twin (stream-sim.test.ts): running
// peers are reported up once; messages to a peer arrive once each, in order; a message
// sent while the peer is down is dropped, never delivered later; a stopped or partitioned
// peer is reported down and up again when it returns; what arrives of a stream that a
// partition cut is a gap-free prefix of what was sent (every loss is followed by a down
// report); and no callback runs from inside send().

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StreamPort } from "../../core/ports.ts";
import type { NodeId } from "../../core/types.ts";
import { testMessage, type TestMessage } from "./datagram-contract.ts";

export interface Received {
  readonly from: NodeId;
  readonly message: TestMessage;
}

export interface PeerReport {
  readonly peer: NodeId;
  readonly connected: boolean;
}

/** Three or more nodes, initially stopped, on one clock. */
export interface StreamHarness {
  readonly nodes: readonly NodeId[];
  /** Starts the node's service: a new port (a new incarnation when it ran before), whose
   *  receive and watchPeers callbacks the harness registers before it opens. */
  start(node: NodeId): Promise<void>;
  /** Stops the node's service; its port is closed. */
  stop(node: NodeId): Promise<void>;
  /** Cuts the two nodes apart, both ways, silently (no FIN, no RST). */
  partition(a: NodeId, b: NodeId): Promise<void>;
  heal(a: NodeId, b: NodeId): Promise<void>;
  /** The running port of the node. */
  port(node: NodeId): StreamPort<TestMessage>;
  /** Everything the node's ports delivered, across restarts, in order. */
  received(node: NodeId): readonly Received[];
  /** Every watchPeers report of the node's ports, across restarts, in order. */
  reports(node: NodeId): readonly PeerReport[];
  waitFor(condition: () => boolean, limitMs: number): Promise<boolean>;
  advance(ms: number): Promise<void>;
  dispose(): Promise<void>;
}

const limitMs = 10_000;
const settleMs = 100;

/** Whether `node`'s latest report about `peer` says connected. */
export function isConnected(harness: StreamHarness, node: NodeId, peer: NodeId): boolean {
  return harness.reports(node).findLast((report) => report.peer === peer)?.connected ?? false;
}

function fromPeer(harness: StreamHarness, node: NodeId, peer: NodeId): number[] {
  return harness.received(node).filter((each) => each.from === peer).map((each) => each.message.n);
}

export function streamPortContract(name: string, makeHarness: () => Promise<StreamHarness>): void {
  describe(`StreamPort contract: ${name}`, () => {
    let harness: StreamHarness;
    let a: NodeId;
    let b: NodeId;
    let c: NodeId;
    beforeEach(async () => {
      harness = await makeHarness();
      expect(harness.nodes.length).toBeGreaterThanOrEqual(3);
      [a, b, c] = harness.nodes as [NodeId, NodeId, NodeId];
    });
    afterEach(async () => {
      await harness.dispose();
    });

    const startAll = async (): Promise<void> => {
      for (const node of harness.nodes) await harness.start(node);
      const allUp = () => harness.nodes.every((node) => harness.nodes.every((peer) => peer === node || isConnected(harness, node, peer)));
      expect(await harness.waitFor(allUp, limitMs), "every pair reports up").toBe(true);
    };
    const connectedBoth = (x: NodeId, y: NodeId) => isConnected(harness, x, y) && isConnected(harness, y, x);
    const downBoth = (x: NodeId, y: NodeId) => !isConnected(harness, x, y) && !isConnected(harness, y, x);

    it("reports each running peer up, once", async () => {
      await startAll();
      await harness.advance(settleMs);
      for (const node of harness.nodes) {
        const peers = harness.nodes.filter((peer) => peer !== node);
        expect([...harness.reports(node)].sort((x, y) => x.peer.localeCompare(y.peer))).toEqual(peers.map((peer) => ({ peer, connected: true })));
      }
    });

    it("delivers the messages to a peer once each, in order, both ways", async () => {
      await startAll();
      const count = 500;
      for (let n = 1; n <= count; n++) {
        harness.port(a).send(b, testMessage(n));
        harness.port(b).send(a, testMessage(n));
      }
      expect(await harness.waitFor(() => harness.received(a).length >= count && harness.received(b).length >= count, limitMs)).toBe(true);
      await harness.advance(settleMs);
      const expected = Array.from({ length: count }, (_, index) => index + 1);
      expect(fromPeer(harness, b, a)).toEqual(expected);
      expect(fromPeer(harness, a, b)).toEqual(expected);
      expect(harness.received(c)).toEqual([]);
    });

    it("delivers between every pair, with the sender named", async () => {
      await startAll();
      for (const from of harness.nodes) for (const to of harness.nodes) if (from !== to) harness.port(from).send(to, testMessage(0, `${from}>${to}`));
      const expected = harness.nodes.length * (harness.nodes.length - 1);
      expect(await harness.waitFor(() => harness.nodes.reduce((sum, node) => sum + harness.received(node).length, 0) >= expected, limitMs)).toBe(true);
      for (const node of harness.nodes) {
        const seen = harness.received(node).map((each) => `${each.from}:${each.message.text}`).sort();
        expect(seen).toEqual(harness.nodes.filter((from) => from !== node).map((from) => `${from}:${from}>${node}`).sort());
      }
    });

    it("never calls receive or watchPeers from inside send()", async () => {
      await startAll();
      const received = harness.received(b).length;
      const reports = harness.reports(a).length;
      for (let n = 0; n < 10; n++) harness.port(a).send(b, testMessage(n));
      harness.port(a).send(c, testMessage(99));
      expect(harness.received(b)).toHaveLength(received);
      expect(harness.reports(a)).toHaveLength(reports);
      expect(await harness.waitFor(() => harness.received(b).length === received + 10, limitMs)).toBe(true);
    });

    it("reports a stopped peer down, and up again once it restarts", async () => {
      await startAll();
      await harness.stop(b);
      expect(await harness.waitFor(() => !isConnected(harness, a, b) && !isConnected(harness, c, b), limitMs), "peers see b down").toBe(true);
      await harness.start(b);
      expect(await harness.waitFor(() => connectedBoth(a, b) && connectedBoth(c, b), limitMs), "b is back").toBe(true);
      expect(harness.reports(a).filter((report) => report.peer === c)).toEqual([{ peer: c, connected: true }]);
    });

    it("drops a message sent while the peer is down; later ones arrive once it is back", async () => {
      await startAll();
      await harness.stop(b);
      expect(await harness.waitFor(() => !isConnected(harness, a, b), limitMs)).toBe(true);
      harness.port(a).send(b, testMessage(1));
      await harness.start(b);
      expect(await harness.waitFor(() => connectedBoth(a, b), limitMs)).toBe(true);
      harness.port(a).send(b, testMessage(2));
      expect(await harness.waitFor(() => fromPeer(harness, b, a).length > 0, limitMs)).toBe(true);
      await harness.advance(settleMs);
      expect(fromPeer(harness, b, a)).toEqual([2]);
    });

    it("reports both sides of a partition down, and up again once healed; other pairs stay up", async () => {
      await startAll();
      await harness.partition(a, b);
      expect(await harness.waitFor(() => downBoth(a, b), limitMs), "both sides see the other down").toBe(true);
      harness.port(a).send(b, testMessage(1));
      await harness.heal(a, b);
      expect(await harness.waitFor(() => connectedBoth(a, b), limitMs), "reconnected").toBe(true);
      harness.port(a).send(b, testMessage(2));
      expect(await harness.waitFor(() => fromPeer(harness, b, a).length > 0, limitMs)).toBe(true);
      await harness.advance(settleMs);
      expect(fromPeer(harness, b, a)).toEqual([2]);
      for (const node of [a, b]) expect(harness.reports(node).filter((report) => report.peer === c)).toEqual([{ peer: c, connected: true }]);
    });

    it("delivers a gap-free prefix of a stream that a partition cuts, then resumes", async () => {
      await startAll();
      let sent = 0;
      while (isConnected(harness, a, b) && sent < 2_000) {
        harness.port(a).send(b, testMessage(++sent));
        if (sent === 20) await harness.partition(a, b);
        await harness.advance(5);
      }
      expect(isConnected(harness, a, b), "the sender noticed the partition").toBe(false);
      const cut = fromPeer(harness, b, a);
      expect(cut.length).toBeGreaterThanOrEqual(10);
      expect(cut).toEqual(Array.from({ length: cut.length }, (_, index) => index + 1));
      await harness.heal(a, b);
      expect(await harness.waitFor(() => connectedBoth(a, b), limitMs)).toBe(true);
      harness.port(a).send(b, testMessage(10_000));
      expect(await harness.waitFor(() => fromPeer(harness, b, a).includes(10_000), limitMs)).toBe(true);
      expect(fromPeer(harness, b, a)).toEqual([...cut, 10_000]);
    });
  });
}
