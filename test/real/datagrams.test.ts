// The real heartbeat port (drivers/real/datagrams.ts) against what an attacker or a broken
// network can put on a ring: forged and foreign datagrams, a captured datagram replayed,
// a restarted sender's old incarnation, reordering, garbage and oversized input, datagrams
// meant for another node, ring or channel; each refused, counted and logged at a limited
// rate, and none of them stopping the port. Also what the port reports and refuses on
// the sending side, and how it reads its rings from cluster.xml.

import { createSocket, type Socket } from "node:dgram";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readClusterXml } from "../../core/config/cluster-xml.ts";
import type { LogEntry, RingId } from "../../core/types.ts";
import { RealClockPort } from "../../drivers/real/clock.ts";
import { datagramRingsOf, NetworkBindError, RealDatagramPort, type RealDatagramOptions } from "../../drivers/real/datagrams.ts";
import { encodeEnvelope, replayWindowSize, type EnvelopeFields, type RejectReason } from "../../drivers/real/wire.ts";
import { testMessage, type TestMessage } from "../contracts/datagram-contract.ts";
import { loopbackNet, manualClock, otherKey, testCodec, testKey, waitFor, type LoopbackNet } from "./loopback.ts";

/** Node n1 is host 1 on lan and 11 on private, n2 host 2 and 12; n3 is on lan only (host 3). */
const hostOf = { n1: { lan: 1, private: 11 }, n2: { lan: 2, private: 12 }, n3: { lan: 3 } } as const;
/** Where captured datagrams are sent to: n1 believes n2 lives there. */
const snifferHost = 60;
const injectorHost = 50;

class Bench {
  readonly net: LoopbackNet = loopbackNet();
  readonly logs: LogEntry[] = [];
  readonly inbox: { ring: RingId; message: TestMessage; receivedAtMs: number }[] = [];
  readonly captured: Buffer[] = [];
  receiver!: RealDatagramPort<TestMessage>;
  #injector!: Socket;
  #sniffer!: Socket;
  readonly #open: RealDatagramPort<TestMessage>[] = [];

  async start(options: Partial<RealDatagramOptions<TestMessage>> = {}): Promise<void> {
    this.receiver = await this.port("n2", 1, options);
    this.receiver.listen((ring, message, receivedAtMs) => this.inbox.push({ ring, message, receivedAtMs }));
    this.#injector = await this.#socket(injectorHost);
    this.#sniffer = await this.#socket(snifferHost);
    this.#sniffer.on("message", (bytes) => this.captured.push(bytes));
  }

  /** A port of `self`; n1's datagrams to n2 go to the sniffer, which captures them. */
  async port(self: "n1" | "n2", incarnation: number, options: Partial<RealDatagramOptions<TestMessage>> = {}): Promise<RealDatagramPort<TestMessage>> {
    const addr = (host: number) => this.net.addr(host);
    const rings =
      self === "n2"
        ? [
            { ring: "lan", localAddr: addr(hostOf.n2.lan), peers: new Map([["n1", addr(hostOf.n1.lan)], ["n3", addr(hostOf.n3.lan)]]) },
            { ring: "private", localAddr: addr(hostOf.n2.private), peers: new Map([["n1", addr(hostOf.n1.private)]]) },
          ]
        : [{ ring: "lan", localAddr: addr(hostOf.n1.lan), peers: new Map([["n2", addr(snifferHost)]]) }];
    const port = new RealDatagramPort<TestMessage>({ self, incarnation, key: testKey, port: this.net.port, rings, codec: testCodec, log: (entry) => this.logs.push(entry), ...options });
    await port.open();
    this.#open.push(port);
    return port;
  }

  async #socket(host: number): Promise<Socket> {
    const socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind({ address: this.net.addr(host), port: this.net.port }, resolve));
    return socket;
  }

  /** A datagram from n1 to n2 on lan, signed with the cluster key unless told otherwise. */
  craft(overrides: Partial<EnvelopeFields> = {}, body: unknown = testMessage(1), key = testKey, sizeMax = 32 * 1024): Buffer {
    const fields: EnvelopeFields = { kind: "datagram", incarnation: 1, sequence: 1, sentAtUnixMs: Date.now(), from: "n1", to: "n2", channel: "heartbeat", ring: "lan", ...overrides };
    return encodeEnvelope(fields, body, key, sizeMax)!;
  }

  /** Sends raw bytes to n2 on `ring` and waits until the port has accepted or refused them all. */
  async inject(datagrams: readonly Uint8Array[], ring: "lan" | "private" = "lan"): Promise<void> {
    const before = this.handled();
    for (const bytes of datagrams) this.#injector.send(bytes, this.net.port, this.net.addr(hostOf.n2[ring]));
    expect(await waitFor(() => this.handled() >= before + datagrams.length, 5_000), "the port handled every datagram").toBe(true);
  }

  handled(): number {
    const stats = this.receiver.stats();
    return stats.received + Object.values(stats.rejected).reduce((sum, count) => sum + count, 0);
  }

  rejected(reason: RejectReason): number {
    return this.receiver.stats().rejected[reason];
  }

  async dispose(): Promise<void> {
    await Promise.all(this.#open.map((port) => port.close()));
    this.#injector?.close();
    this.#sniffer?.close();
  }
}

describe("RealDatagramPort against hostile and broken input", () => {
  let bench: Bench;
  beforeEach(async () => {
    bench = new Bench();
    await bench.start();
  });
  afterEach(async () => {
    await bench.dispose();
  });

  it("accepts a well-formed datagram of the cluster, with the ring it came on", async () => {
    await bench.inject([bench.craft({ sequence: 1 }, testMessage(1))]);
    await bench.inject([bench.craft({ sequence: 1, ring: "private" }, testMessage(2))], "private");
    expect(bench.inbox.map(({ ring, message }) => [ring, message.n])).toEqual([["lan", 1], ["private", 2]]);
  });

  it("refuses a forged MAC and a datagram under another key, and delivers nothing", async () => {
    const forged = bench.craft();
    forged[forged.length - 1]! ^= 0xff;
    await bench.inject([forged, bench.craft({}, testMessage(1), otherKey)]);
    expect(bench.rejected("bad-mac")).toBe(1);
    expect(bench.rejected("wrong-cluster")).toBe(1);
    expect(bench.inbox).toEqual([]);
  });

  it("refuses a captured datagram played again", async () => {
    const sender = await bench.port("n1", 7);
    sender.send("lan", "n2", testMessage(1));
    expect(await waitFor(() => bench.captured.length === 1, 5_000)).toBe(true);
    await bench.inject([bench.captured[0]!, bench.captured[0]!]);
    expect(bench.inbox.map((each) => each.message)).toEqual([testMessage(1)]);
    expect(bench.rejected("replayed")).toBe(1);
  });

  it("after the sender restarts with a higher incarnation, refuses what it sent before as stale", async () => {
    const first = await bench.port("n1", 7);
    first.send("lan", "n2", testMessage(1));
    first.send("lan", "n2", testMessage(2));
    expect(await waitFor(() => bench.captured.length === 2, 5_000)).toBe(true);
    await bench.inject([bench.captured[0]!]);
    await first.close();
    const restarted = await bench.port("n1", 8);
    restarted.send("lan", "n2", testMessage(3));
    expect(await waitFor(() => bench.captured.length === 3, 5_000)).toBe(true);
    await bench.inject([bench.captured[2]!, bench.captured[1]!]);
    expect(bench.inbox.map((each) => each.message.n)).toEqual([1, 3]);
    expect(bench.rejected("stale-incarnation")).toBe(1);
  });

  it("accepts reordered but fresh datagrams once each; refuses what fell behind the window", async () => {
    await bench.inject([5, 3, 4].map((sequence) => bench.craft({ sequence }, testMessage(sequence))));
    await bench.inject([bench.craft({ sequence: 3 }, testMessage(3))]);
    expect(bench.inbox.map((each) => each.message.n)).toEqual([5, 3, 4]);
    expect(bench.rejected("replayed")).toBe(1);
    await bench.inject([bench.craft({ sequence: 10 + replayWindowSize }, testMessage(6)), bench.craft({ sequence: 6 }, testMessage(6))]);
    expect(bench.rejected("too-old")).toBe(1);
  });

  it("keeps each ring's sequence numbers apart: the same number on two rings is no replay", async () => {
    await bench.inject([bench.craft({ sequence: 1 }, testMessage(1))]);
    await bench.inject([bench.craft({ sequence: 1, ring: "private" }, testMessage(2))], "private");
    expect(bench.inbox).toHaveLength(2);
  });

  it("refuses oversized, garbage, truncated and other-version datagrams, and keeps working", async () => {
    const nextVersion = bench.craft();
    nextVersion[2] = 9;
    const oversized = Buffer.alloc(40 * 1024, 0x54);
    await bench.inject([oversized, Buffer.from("garbage"), Buffer.alloc(0), bench.craft().subarray(0, 60), nextVersion]);
    expect(bench.receiver.stats().rejected).toMatchObject({ oversized: 1, unparsable: 3, "unsupported-version": 1 });
    await bench.inject([bench.craft()]);
    expect(bench.inbox).toHaveLength(1);
  });

  it("refuses authentic datagrams meant for another node, ring, channel or kind of message", async () => {
    await bench.inject([bench.craft({ to: "n3" }), bench.craft({ ring: "private" }), bench.craft({ channel: "control" }), bench.craft({ kind: "hello" })]);
    expect(bench.rejected("misdirected")).toBe(4);
    expect(bench.inbox).toEqual([]);
  });

  it("refuses an authentic datagram from a node that is not a peer, and one whose payload the codec refuses", async () => {
    await bench.inject([bench.craft({ from: "intruder" }), bench.craft({ from: "n2" }), bench.craft({}, { not: "a test message" })]);
    expect(bench.rejected("unknown-sender")).toBe(2);
    expect(bench.rejected("bad-payload")).toBe(1);
    // The refused payload did not use up its sequence number.
    await bench.inject([bench.craft({}, testMessage(9))]);
    expect(bench.inbox.map((each) => each.message.n)).toEqual([9]);
  });

  it("logs refusals at a limited rate, each line counting what it suppressed", async () => {
    await bench.dispose();
    bench = new Bench();
    const clock = manualClock();
    await bench.start({ clock, rejectLogIntervalMs: 1_000 });
    await bench.inject(Array.from({ length: 50 }, () => Buffer.from("garbage")));
    await bench.inject([bench.craft({}, testMessage(1), otherKey)]);
    const lines = () => bench.logs.filter((entry) => entry.event === "wire.rejected");
    expect(lines().map((line) => [line.fields.reason, line.fields.suppressed])).toEqual([["unparsable", 0], ["wrong-cluster", 0]]);
    expect(lines()[0]!.fields).toMatchObject({ node: "n2", ring: "lan", source: `${bench.net.addr(injectorHost)}:${bench.net.port}` });
    clock.nowMsValue = 1_000;
    await bench.inject([Buffer.from("more garbage")]);
    expect(lines()[2]).toMatchObject({ level: "warn", fields: { reason: "unparsable", suppressed: 49, total: 51 } });
  });

  it("refuses datagrams stamped too far from its wall clock only when a limit is set", async () => {
    await bench.inject([bench.craft({ sequence: 1, sentAtUnixMs: Date.now() - 3_600_000 })]);
    expect(bench.inbox).toHaveLength(1);
    await bench.dispose();
    bench = new Bench();
    await bench.start({ clockSkewMsMax: 60_000 });
    await bench.inject([bench.craft({ sequence: 1, sentAtUnixMs: Date.now() - 3_600_000 }), bench.craft({ sequence: 2 })]);
    expect(bench.rejected("clock-skew")).toBe(1);
    expect(bench.inbox).toHaveLength(1);
  });

  it("stamps receivedAtMs on the clock it was given", async () => {
    await bench.dispose();
    bench = new Bench();
    const clock = manualClock();
    clock.nowMsValue = 12_345;
    await bench.start({ clock });
    await bench.inject([bench.craft()]);
    expect(bench.inbox[0]!.receivedAtMs).toBe(12_345);
  });
});

describe("RealDatagramPort sending", () => {
  let bench: Bench;
  beforeEach(async () => {
    bench = new Bench();
    await bench.start();
  });
  afterEach(async () => {
    await bench.dispose();
  });

  it("counts what it sent and received", async () => {
    const sender = await bench.port("n1", 1);
    for (let n = 0; n < 5; n++) sender.send("lan", "n2", testMessage(n));
    expect(await waitFor(() => sender.stats().sent === 5 && bench.captured.length === 5, 5_000)).toBe(true);
    await bench.inject(bench.captured);
    expect(bench.receiver.stats()).toMatchObject({ received: 5, unheard: 0 });
  });

  it("drops, counts and logs sends it cannot make: no route, not open, too big", async () => {
    const sender = new RealDatagramPort<TestMessage>({ self: "n1", incarnation: 1, key: testKey, port: bench.net.port, rings: [{ ring: "lan", localAddr: bench.net.addr(hostOf.n1.lan), peers: new Map([["n2", bench.net.addr(snifferHost)]]) }], codec: testCodec, log: (entry) => bench.logs.push(entry) });
    sender.send("lan", "n2", testMessage(1));
    await sender.open();
    sender.send("private", "n2", testMessage(2));
    sender.send("lan", "n9", testMessage(3));
    sender.send("lan", "n2", testMessage(4, "x".repeat(40_000)));
    expect(sender.stats().dropped).toEqual({ "not-open": 1, unroutable: 2, oversized: 1, "send-failed": 0 });
    expect(bench.logs.filter((entry) => entry.event === "wire.send-dropped").map((entry) => entry.fields.reason)).toEqual(["not-open", "unroutable", "oversized"]);
    await sender.close();
  });

  it("fails to open with a NetworkBindError naming the ring when an address is not on this host", async () => {
    const port = new RealDatagramPort<TestMessage>({ self: "n1", incarnation: 1, key: testKey, port: bench.net.port, rings: [{ ring: "lan", localAddr: "192.0.2.1", peers: new Map() }], codec: testCodec });
    const error = await port.open().then(() => null, (caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetworkBindError);
    expect(error).toMatchObject({ code: "NETWORK_BIND_FAILED", ring: "lan", addr: "192.0.2.1" });
    expect((error as Error).message).toMatch(/192\.0\.2\.1 is configured on this host/);
  });

  it("fails to open when the port is taken, saying so", async () => {
    const port = new RealDatagramPort<TestMessage>({ self: "n2", incarnation: 1, key: testKey, port: bench.net.port, rings: [{ ring: "lan", localAddr: bench.net.addr(hostOf.n2.lan), peers: new Map() }], codec: testCodec, clock: new RealClockPort() });
    await expect(port.open()).rejects.toThrow(/another process uses that port/);
    await sleep(0);
  });
});

describe("datagramRingsOf", () => {
  it("reads this node's address and its peers' on each lan it is on", () => {
    const xml = `<cluster><lans>
      <lan name="default"><node name="s1" addr="10.0.0.1"/><node name="s2" addr="10.0.0.2"/><node name="s3" addr="10.0.0.3"/></lan>
      <lan name="private"><node name="s1" addr="192.168.1.1"/><node name="s2" addr="192.168.1.2"/></lan>
      <lan name="backup"><node name="s2" addr="172.16.0.2"/><node name="s3" addr="172.16.0.3"/></lan>
    </lans></cluster>`;
    const cluster = readClusterXml("cluster.xml", xml).cluster!;
    expect(datagramRingsOf(cluster, "s1")).toEqual([
      { ring: "default", localAddr: "10.0.0.1", peers: new Map([["s2", "10.0.0.2"], ["s3", "10.0.0.3"]]) },
      { ring: "private", localAddr: "192.168.1.1", peers: new Map([["s2", "192.168.1.2"]]) },
    ]);
  });
});
