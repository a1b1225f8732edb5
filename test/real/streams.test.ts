// The real control streams (drivers/real/streams.ts) against what the contract cannot
// show: handshakes under another key, forged or from the wrong node; garbage and
// oversized frames; a recorded connection played again, before and after the peer
// restarted; a frame changed in transit; a peer that stops reading (back-pressure);
// silent and excess connections; retries and fallback routes; each refused, counted, and
// leaving the port working.

import { connect, type Socket } from "node:net";
import { setImmediate as yieldToLoop, setTimeout as sleep } from "node:timers/promises";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { readClusterXml } from "../../core/config/cluster-xml.ts";
import type { NodeId } from "../../core/types.ts";
import { RealClockPort } from "../../drivers/real/clock.ts";
import { RealStreamPort, reconnectDelayMs, streamTopologyOf } from "../../drivers/real/streams.ts";
import { encodeEnvelope, frame, type EnvelopeFields, type RejectReason, type WireKey } from "../../drivers/real/wire.ts";
import { testMessage, type TestMessage } from "../contracts/datagram-contract.ts";
import { isConnected } from "../contracts/stream-contract.ts";
import { loopbackNet, otherKey, testCodec, testKey, waitFor } from "./loopback.ts";
import { makeRealStreamHarness, pairKey, testTimings, type PortOverrides, type RealStreamHarness } from "./stream-harness.ts";

const limitMs = 5_000;
let harness: RealStreamHarness | null = null;

afterEach(async () => {
  await harness?.dispose();
  harness = null;
});

async function started(overrides: PortOverrides = {}, nodes: readonly NodeId[] = ["n1", "n2", "n3"]): Promise<RealStreamHarness> {
  harness = await makeRealStreamHarness(nodes, overrides);
  for (const node of nodes) await harness.start(node);
  const allUp = () => nodes.every((node) => nodes.every((peer) => peer === node || isConnected(harness!, node, peer)));
  expect(await waitFor(allUp, limitMs), "every pair is up").toBe(true);
  return harness;
}

/** A handshake or data frame from `from` to `to`, as a node would write it. */
function crafted(fields: Partial<EnvelopeFields>, payload: unknown, key: WireKey = testKey): Buffer {
  const all: EnvelopeFields = { kind: "hello", incarnation: 1, sequence: 1, sentAtUnixMs: Date.now(), from: "n1", to: "n2", channel: "control", ring: "", ...fields };
  return frame(encodeEnvelope(all, payload, key, 4096)!);
}

const nonce = () => Buffer.alloc(32, 7).toString("base64");

/** Connects straight to `node` (no relay), writes `bytes`, and resolves when the node closes it. */
async function sendRaw(h: RealStreamHarness, node: NodeId, bytes: Buffer | null): Promise<{ socket: Socket; closed: Promise<number> }> {
  const startMs = performance.now();
  const socket = connect({ host: h.addrOf(node), port: h.net.port });
  socket.on("error", () => {});
  socket.on("data", () => {});
  const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(performance.now() - startMs)));
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  if (bytes !== null) socket.write(bytes);
  return { socket, closed };
}

function rejected(h: RealStreamHarness, node: NodeId, reason: RejectReason): number {
  return h.realPort(node).stats().rejected[reason];
}

function fromPeer(h: RealStreamHarness, node: NodeId, peer: NodeId): number[] {
  return h.received(node).filter((each) => each.from === peer).map((each) => each.message.n);
}

describe("RealStreamPort handshakes", () => {
  it("refuses a hello under another key, a forged one, garbage and an oversized frame, closing each connection", async () => {
    const h = await started();
    const reportsBefore = h.reports("n2").length;
    const forged = crafted({}, { nonce: nonce() });
    forged[forged.length - 1]! ^= 0x01;
    const oversizedPrefix = Buffer.from([0, 0, 0x20, 0]);
    for (const bytes of [crafted({}, { nonce: nonce() }, otherKey), forged, frame(Buffer.from("GET / HTTP/1.0\r\n\r\n")), oversizedPrefix]) {
      const { closed } = await sendRaw(h, "n2", bytes);
      expect(await closed).toBeLessThan(testTimings.handshakeTimeoutMs);
    }
    expect(h.realPort("n2").stats().rejected).toMatchObject({ "wrong-cluster": 1, "bad-mac": 1, unparsable: 1, oversized: 1 });
    expect(h.reports("n2")).toHaveLength(reportsBefore);
  });

  it("refuses a hello from a node that should accept rather than connect, and from a stranger", async () => {
    const h = await started();
    // n2 connects to n3 (the lower name connects), so n3 must not connect to n2.
    await (await sendRaw(h, "n2", crafted({ from: "n3" }, { nonce: nonce() }))).closed;
    await (await sendRaw(h, "n2", crafted({ from: "intruder" }, { nonce: nonce() }))).closed;
    expect(rejected(h, "n2", "misdirected")).toBe(1);
    expect(rejected(h, "n2", "unknown-sender")).toBe(1);
  });

  it("closes a connection that says nothing after the handshake timeout, and excess ones at once", async () => {
    const h = await started({ handshakesPendingMax: 2 });
    const silent = await Promise.all([sendRaw(h, "n2", null), sendRaw(h, "n2", null)]);
    await sleep(50);
    const excess = await sendRaw(h, "n2", null);
    expect(await excess.closed).toBeLessThan(200);
    for (const each of silent) expect(await each.closed).toBeGreaterThanOrEqual(testTimings.handshakeTimeoutMs - 50);
  });

  it("refuses a recorded connection played again: its confirm echoes a nonce of the past", async () => {
    const h = await started();
    for (let n = 1; n <= 3; n++) h.port("n1").send("n2", testMessage(n));
    expect(await waitFor(() => fromPeer(h, "n2", "n1").length === 3, limitMs)).toBe(true);
    const recording = Buffer.concat(h.proxies.get(pairKey("n1", "n2"))!.recorded[0]!);
    const reportsBefore = h.reports("n2").length;
    await (await sendRaw(h, "n2", recording)).closed;
    expect(rejected(h, "n2", "replayed")).toBe(1);
    expect(fromPeer(h, "n2", "n1")).toEqual([1, 2, 3]);
    expect(h.reports("n2")).toHaveLength(reportsBefore);
  });

  it("once the peer restarted, refuses the hello of its former incarnation as stale", async () => {
    const h = await started();
    const recording = Buffer.concat(h.proxies.get(pairKey("n1", "n2"))!.recorded[0]!);
    await h.stop("n1");
    await h.start("n1");
    // n2 saw the old connection go and the new incarnation come.
    const n2Reports = () => h.reports("n2").filter((report) => report.peer === "n1").map((report) => report.connected);
    expect(await waitFor(() => n2Reports().join() === "true,false,true", limitMs)).toBe(true);
    await (await sendRaw(h, "n2", recording)).closed;
    expect(rejected(h, "n2", "stale-incarnation")).toBe(1);
  });
});

describe("RealStreamPort streams", () => {
  it("refuses a frame changed in transit, resets the stream, and recovers", async () => {
    const h = await started();
    const proxy = h.proxies.get(pairKey("n1", "n2"))!;
    proxy.tamper = (chunk) => {
      proxy.tamper = null;
      const changed = Buffer.from(chunk);
      changed[changed.length - 1]! ^= 0x01;
      return changed;
    };
    h.port("n1").send("n2", testMessage(1));
    expect(await waitFor(() => !isConnected(h, "n2", "n1"), limitMs), "n2 drops the connection").toBe(true);
    expect(rejected(h, "n2", "bad-mac")).toBe(1);
    expect(await waitFor(() => isConnected(h, "n2", "n1") && isConnected(h, "n1", "n2"), limitMs), "reconnected").toBe(true);
    h.port("n1").send("n2", testMessage(2));
    expect(await waitFor(() => fromPeer(h, "n2", "n1").length > 0, limitMs)).toBe(true);
    expect(fromPeer(h, "n2", "n1")).toEqual([2]);
  });

  it("drops a message the peer's codec refuses, counts it, and keeps the stream up", async () => {
    const h = await started();
    h.port("n1").send("n2", { bogus: true } as unknown as TestMessage);
    h.port("n1").send("n2", testMessage(2));
    expect(await waitFor(() => fromPeer(h, "n2", "n1").length > 0, limitMs)).toBe(true);
    expect(fromPeer(h, "n2", "n1")).toEqual([2]);
    expect(rejected(h, "n2", "bad-payload")).toBe(1);
    expect(h.reports("n2").filter((report) => report.peer === "n1")).toEqual([{ peer: "n1", connected: true }]);
  });

  it("when the peer stops reading, drops the message that would overflow the bounded send buffer, and resets", async () => {
    const sendBufferSizeMax = 256 * 1024;
    const h = await started({ frameSizeMax: 64 * 1024, sendBufferSizeMax, idleTimeoutMs: 10_000 });
    h.proxies.get(pairKey("n1", "n2"))!.pause();
    const port = h.realPort("n1");
    for (let n = 0; n < 5_000 && port.stats().dropped.overflow === 0; n++) {
      port.send("n2", testMessage(n, "x".repeat(20_000)));
      await yieldToLoop();
    }
    expect(port.stats().dropped.overflow).toBe(1);
    expect(await waitFor(() => !isConnected(h, "n1", "n2"), limitMs), "n1 reports n2 down").toBe(true);
    port.send("n2", testMessage(-1));
    expect(port.stats().dropped.down).toBeGreaterThanOrEqual(1);
  });

  it("writes large frames back to back in buffers it reuses once written, each arriving whole", async () => {
    const h = await started({ frameSizeMax: 256 * 1024, sendBufferSizeMax: 1024 * 1024 });
    const sent: TestMessage[] = [];
    for (let n = 0; n < 60; n++) {
      // Each frame's bytes its own (a buffer given out again too soon would show another's).
      const message = testMessage(n, String.fromCharCode(97 + (n % 26)).repeat(100_000 + n * 1_000));
      sent.push(message);
      h.port("n1").send("n2", message);
      if (n % 3 === 2) await yieldToLoop();
    }
    expect(await waitFor(() => fromPeer(h, "n2", "n1").length === sent.length, limitMs), "every frame arrives").toBe(true);
    expect(h.received("n2").filter((each) => each.from === "n1").map((each) => each.message)).toEqual(sent);
    expect(h.realPort("n1").stats().reusedFrameBuffers).toBeGreaterThan(30);
    expect(h.realPort("n1").stats().dropped.overflow).toBe(0);
  });

  it("drops a message over the frame limit and resets, so that a down report follows", async () => {
    const h = await started({ frameSizeMax: 64 * 1024, sendBufferSizeMax: 256 * 1024 });
    h.port("n1").send("n2", testMessage(1, "x".repeat(100_000)));
    expect(h.realPort("n1").stats().dropped.oversized).toBe(1);
    expect(await waitFor(() => h.reports("n1").some((report) => report.peer === "n2" && !report.connected), limitMs)).toBe(true);
    expect(await waitFor(() => isConnected(h, "n1", "n2"), limitMs), "and it reconnects").toBe(true);
  });

  it("counts a send to a node that is not a peer as unroutable", async () => {
    const h = await started();
    h.port("n1").send("n9", testMessage(1));
    expect(h.realPort("n1").stats().dropped.unroutable).toBe(1);
  });

  it("keeps statistics for the node service's state", async () => {
    const h = await started();
    h.port("n1").send("n2", testMessage(1));
    expect(await waitFor(() => fromPeer(h, "n2", "n1").length === 1, limitMs)).toBe(true);
    expect(h.realPort("n1").stats()).toMatchObject({ sent: 1, established: 2, connected: { n2: true, n3: true } });
    expect(h.realPort("n2").stats()).toMatchObject({ received: 1, unheard: 0 });
  });
});

describe("RealStreamPort connecting", () => {
  it("retries with backoff until the peer's service starts", async () => {
    harness = await makeRealStreamHarness(["n1", "n2"]);
    const h = harness;
    await h.start("n1");
    await sleep(400);
    expect(isConnected(h, "n1", "n2")).toBe(false);
    await h.start("n2");
    expect(await waitFor(() => isConnected(h, "n1", "n2") && isConnected(h, "n2", "n1"), testTimings.reconnectDelayMsMax + 1_000)).toBe(true);
  });

  it("falls back to the peer's address on the next ring when the first refuses", async () => {
    const net = loopbackNet();
    const clock = new RealClockPort();
    const reports: string[] = [];
    const common = { key: testKey, port: net.port, codec: testCodec, clock, ...testTimings };
    const n1 = new RealStreamPort<TestMessage>({ ...common, self: "n1", incarnation: 1, listen: [{ ring: "lan", addr: net.addr(1) }], peers: [{ id: "n2", routes: [{ ring: "lan", localAddr: net.addr(1), addr: net.addr(200) }, { ring: "private", localAddr: net.addr(1), addr: net.addr(2) }] }] });
    const n2 = new RealStreamPort<TestMessage>({ ...common, self: "n2", incarnation: 1, listen: [{ ring: "private", addr: net.addr(2) }], peers: [{ id: "n1", routes: [] }] });
    n1.watchPeers((peer, connected) => reports.push(`n1: ${peer} ${connected}`));
    await n2.open();
    await n1.open();
    expect(await waitFor(() => reports.includes("n1: n2 true"), limitMs)).toBe(true);
    await n1.close();
    await n2.close();
    clock.cancelAll();
  });

  it("backs off exponentially with jitter, never beyond the cap (property)", () => {
    fc.assert(
      fc.property(fc.nat(100), fc.integer({ min: 1, max: 1_000 }), fc.integer({ min: 1, max: 100_000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, minMs, spanMs, random) => {
        const maxMs = minMs + spanMs;
        const delayMs = reconnectDelayMs(attempt, minMs, maxMs, () => random);
        const ceilingMs = Math.min(maxMs, minMs * 2 ** attempt);
        expect(delayMs).toBeGreaterThanOrEqual(ceilingMs / 2);
        expect(delayMs).toBeLessThanOrEqual(ceilingMs);
      }),
    );
  });

  it("reads its listening addresses and routes to each peer from cluster.xml", () => {
    const xml = `<cluster><lans>
      <lan name="default"><node name="s1" addr="10.0.0.1"/><node name="s2" addr="10.0.0.2"/><node name="s3" addr="10.0.0.3"/></lan>
      <lan name="private"><node name="s1" addr="192.168.1.1"/><node name="s2" addr="192.168.1.2"/></lan>
    </lans></cluster>`;
    const cluster = readClusterXml("cluster.xml", xml).cluster!;
    expect(streamTopologyOf(cluster, "s1")).toEqual({
      listen: [{ ring: "default", addr: "10.0.0.1" }, { ring: "private", addr: "192.168.1.1" }],
      peers: [
        { id: "s2", routes: [{ ring: "default", localAddr: "10.0.0.1", addr: "10.0.0.2" }, { ring: "private", localAddr: "192.168.1.1", addr: "192.168.1.2" }] },
        { id: "s3", routes: [{ ring: "default", localAddr: "10.0.0.1", addr: "10.0.0.3" }] },
      ],
    });
  });
});
