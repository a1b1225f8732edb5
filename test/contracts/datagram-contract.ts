// The DatagramPort contract (core/ports.ts), one suite run against the real driver on
// loopback (datagram-real.test.ts) and the simulated rings (datagram-sim.test.ts): a
// datagram reaches the node it was sent to and no other, tagged with the ring it was sent
// on; `receivedAtMs` lies between the send and the delivery on the port's clock; on a
// fault-free network every datagram arrives exactly once, between every pair, on every
// ring; content survives the trip; and the receiver is never called from inside send().

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DatagramPort } from "../../core/ports.ts";
import type { NodeId, RingId } from "../../core/types.ts";

/** What the suite sends: small, JSON-shaped, with text that exercises UTF-8. */
export interface TestMessage {
  readonly text: string;
  readonly n: number;
  readonly tags: readonly string[];
}

export function isTestMessage(value: unknown): value is TestMessage {
  if (typeof value !== "object" || value === null) return false;
  const { text, n, tags } = value as Record<string, unknown>;
  return typeof text === "string" && typeof n === "number" && Array.isArray(tags) && tags.every((tag) => typeof tag === "string") && Object.keys(value).length === 3;
}

export function testMessage(n: number, text = `message ${n}`): TestMessage {
  return { text, n, tags: [] };
}

/** Three nodes on two rings, fault-free, on one clock. */
export interface DatagramHarness {
  readonly nodes: readonly NodeId[];
  readonly rings: readonly RingId[];
  port(node: NodeId): DatagramPort<TestMessage>;
  /** The ports' clock (the one `receivedAtMs` is on). */
  nowMs(): number;
  /** Lets time pass until `condition` holds; false when `limitMs` passed first. */
  waitFor(condition: () => boolean, limitMs: number): Promise<boolean>;
  /** Lets `ms` of the harness's time pass. */
  advance(ms: number): Promise<void>;
  dispose(): Promise<void>;
}

export interface Delivery {
  readonly to: NodeId;
  readonly ring: RingId;
  readonly message: TestMessage;
  readonly receivedAtMs: number;
  /** The clock when the receiver was called. */
  readonly deliveredAtMs: number;
}

const deliveryLimitMs = 5_000;
/** Time waited after the expected deliveries to see that nothing more arrives. */
const settleMs = 100;

/** Registers a receiver on every node; the returned list fills with what they receive. */
export function listenAll(harness: DatagramHarness): Delivery[] {
  const deliveries: Delivery[] = [];
  for (const to of harness.nodes) {
    harness.port(to).listen((ring, message, receivedAtMs) => deliveries.push({ to, ring, message, receivedAtMs, deliveredAtMs: harness.nowMs() }));
  }
  return deliveries;
}

export function datagramPortContract(name: string, makeHarness: () => Promise<DatagramHarness>): void {
  describe(`DatagramPort contract: ${name}`, () => {
    let harness: DatagramHarness;
    let deliveries: Delivery[];
    let a: NodeId;
    let b: NodeId;
    let c: NodeId;
    let ring: RingId;
    beforeEach(async () => {
      harness = await makeHarness();
      expect(harness.nodes.length).toBeGreaterThanOrEqual(3);
      expect(harness.rings.length).toBeGreaterThanOrEqual(2);
      [a, b, c] = harness.nodes as [NodeId, NodeId, NodeId];
      ring = harness.rings[0]!;
      deliveries = listenAll(harness);
    });
    afterEach(async () => {
      await harness.dispose();
    });

    const arrive = async (count: number): Promise<void> => {
      expect(await harness.waitFor(() => deliveries.length >= count, deliveryLimitMs), `${count} deliveries`).toBe(true);
      await harness.advance(settleMs);
    };

    it("delivers a datagram to the node it names, and to no other, with its ring", async () => {
      harness.port(a).send(ring, b, testMessage(1));
      await arrive(1);
      expect(deliveries.map(({ to, ring, message }) => ({ to, ring, message }))).toEqual([{ to: b, ring, message: testMessage(1) }]);
    });

    it("stamps receivedAtMs between the send and the delivery, on the port's clock", async () => {
      const sentAtMs = harness.nowMs();
      harness.port(a).send(ring, b, testMessage(1));
      await arrive(1);
      const [delivery] = deliveries;
      expect(delivery!.receivedAtMs).toBeGreaterThanOrEqual(sentAtMs);
      expect(delivery!.receivedAtMs).toBeLessThanOrEqual(delivery!.deliveredAtMs);
    });

    it("carries each ring's datagrams on that ring", async () => {
      for (const [index, each] of harness.rings.entries()) harness.port(a).send(each, b, testMessage(index));
      await arrive(harness.rings.length);
      expect(deliveries.map((delivery) => [delivery.ring, delivery.message.n]).sort()).toEqual(harness.rings.map((each, index) => [each, index]).sort());
    });

    it("delivers between every pair of nodes, both ways, on every ring", async () => {
      const expected: string[] = [];
      for (const from of harness.nodes) {
        for (const to of harness.nodes) {
          if (from === to) continue;
          for (const each of harness.rings) {
            harness.port(from).send(each, to, testMessage(0, `${from}>${to}`));
            expected.push(`${each}:${from}>${to}`);
          }
        }
      }
      await arrive(expected.length);
      const seen = deliveries.map((delivery) => `${delivery.ring}:${delivery.message.text}`);
      expect(seen.sort()).toEqual(expected.sort());
      for (const delivery of deliveries) expect(delivery.message.text.endsWith(`>${delivery.to}`)).toBe(true);
    });

    it("delivers a burst on a fault-free network completely, each datagram once", async () => {
      const count = 200;
      for (let n = 0; n < count; n++) harness.port(a).send(ring, c, testMessage(n));
      await arrive(count);
      expect(deliveries.map((delivery) => delivery.message.n).sort((x, y) => x - y)).toEqual(Array.from({ length: count }, (_, n) => n));
    });

    it("keeps the content: nested values, Unicode, empty and long strings", async () => {
      const messages: TestMessage[] = [
        { text: "", n: 0, tags: [] },
        { text: "héllo wörld ✓ 𝄞 \u0000 \n \"quoted\" \\", n: -1.5, tags: ["a", "", "ünï"] },
        { text: "x".repeat(4_000), n: Number.MAX_SAFE_INTEGER, tags: Array.from({ length: 50 }, (_, index) => `tag${index}`) },
      ];
      for (const message of messages) harness.port(b).send(ring, a, message);
      await arrive(messages.length);
      expect(deliveries.map((delivery) => delivery.message).sort((x, y) => x.n - y.n)).toEqual([...messages].sort((x, y) => x.n - y.n));
    });

    it("never calls the receiver from inside send()", async () => {
      for (const each of harness.rings) harness.port(a).send(each, b, testMessage(1));
      expect(deliveries).toHaveLength(0);
      await arrive(harness.rings.length);
    });

    it("a second listen() replaces the receiver: the one receiver gets each datagram", async () => {
      const target = harness.nodes[harness.nodes.length - 1]!;
      const replacement: TestMessage[] = [];
      harness.port(target).listen((_ring, message) => replacement.push(message));
      harness.port(a).send(ring, target, testMessage(7));
      expect(await harness.waitFor(() => replacement.length > 0, deliveryLimitMs)).toBe(true);
      await harness.advance(settleMs);
      expect(replacement).toEqual([testMessage(7)]);
      expect(deliveries).toHaveLength(0);
    });
  });
}
