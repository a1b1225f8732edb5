// The real DatagramPort: heartbeats as UDP datagrams, one socket per ring bound to this
// node's address on that ring, every datagram in the authenticated envelope of wire.ts.
//
// Receive time. The port contract asks for the time a datagram reached the host (the
// kernel's SO_TIMESTAMPNS on Linux), so that time spent queued in the socket does not
// count as freshness. Node's dgram module does not expose recvmsg ancillary data, so the
// kernel timestamp cannot be read from JavaScript; `receivedAtMs` is read from the port's
// monotonic clock as the first thing the 'message' handler does. It equals the arrival
// time while the event loop keeps up (well under a millisecond on an idle service), and is
// later by however long the loop was blocked when it was not: a heartbeat that waited in
// the socket buffer during a stall looks as fresh as the moment the service read it. The
// core does not rely on this time alone: a node whose ticks stalled past the lease
// rejoins from scratch and settles only on a full detection timeout of fresh traffic
// (docs/farm.md, "Stalls"), which is exactly the case where queued heartbeats mislead.
// Reading the kernel's stamp needs recvmsg in native code (native/, with the nftables
// addon), which would then replace the socket read here.
//
// Loss, duplication and reordering are the network's; the envelope turns duplicates and
// replays into rejections (counted), and reordered datagrams within the replay window
// are delivered in the order they arrive.

import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import { assert } from "../../core/assert.ts";
import type { ClusterConfig } from "../../core/config/module-config.ts";
import type { ClockPort, DatagramPort } from "../../core/ports.ts";
import type { LogEntry, NodeId, RingId } from "../../core/types.ts";
import { RealClockPort } from "./clock.ts";
import {
  authenticate,
  encodeEnvelope,
  Freshness,
  parseEnvelope,
  parsePayload,
  RateLimitedLog,
  rejectLog,
  WireKey,
  type Envelope,
  type PayloadCodec,
  type RejectCounts,
  type RejectReason,
} from "./wire.ts";

/** The largest UDP payload over IPv4. */
export const udpPayloadSizeMax = 65_507;
/** Heartbeats are a few hundred bytes; a farm heartbeat listing many members and lingering
 *  buckets stays well under this. */
export const datagramSizeMaxDefault = 32 * 1024;
export const heartbeatChannel = "heartbeat";

/** One ring as this node sees it. */
export interface DatagramRing {
  readonly ring: RingId;
  /** This node's address on the ring: its socket is bound to it. */
  readonly localAddr: string;
  /** Every peer on the ring, with its address there. */
  readonly peers: ReadonlyMap<NodeId, string>;
}

export interface RealDatagramOptions<Message> {
  readonly self: NodeId;
  /** Grows at every start of the node service (a persisted counter): receivers reject
   *  whatever carries an older one, so it must never go back. */
  readonly incarnation: number;
  readonly key: WireKey;
  /** The UDP port of every node (bound on each local ring address, sent to on each peer's). */
  readonly port: number;
  readonly rings: readonly DatagramRing[];
  readonly codec: PayloadCodec<Message>;
  /** Tells this port's datagrams from another port's under the same key; default "heartbeat". */
  readonly channel?: string;
  /** `receivedAtMs` and the log's rate limit read it; default: a RealClockPort. */
  readonly clock?: ClockPort;
  readonly log?: (entry: LogEntry) => void;
  readonly datagramSizeMax?: number;
  readonly rejectLogIntervalMs?: number;
  /** Reject datagrams stamped further than this from this node's wall clock; default null
   *  (off): with it, a node whose clock is off would see every peer die. */
  readonly clockSkewMsMax?: number | null;
  /** The wall clock (Unix ms) stamped on sends; default Date.now. */
  readonly wallClockMs?: () => number;
}

/** Why a datagram was not sent (counted, and logged at most once per reason per interval). */
export const sendDropReasons = ["not-open", "unroutable", "oversized", "send-failed"] as const;
export type SendDropReason = (typeof sendDropReasons)[number];

export interface DatagramStats {
  readonly sent: number;
  readonly received: number;
  /** Accepted, but no receiver was registered yet. */
  readonly unheard: number;
  readonly dropped: Readonly<Record<SendDropReason, number>>;
  readonly rejected: Readonly<RejectCounts>;
}

export class NetworkBindError extends Error {
  override readonly name = "NetworkBindError";
  readonly code = "NETWORK_BIND_FAILED";
  readonly ring: string;
  readonly addr: string;
  readonly port: number;

  constructor(protocol: "udp" | "tcp", ring: string, addr: string, port: number, cause: Error) {
    const hint = (cause as NodeJS.ErrnoException).code === "EADDRINUSE" ? "another process uses that port: stop it or configure another port" : `check that ${addr} is configured on this host (cluster.xml names this node's address on each lan)`;
    super(`cannot bind ${protocol} ${addr}:${port} for ring ${ring}: ${cause.message}; ${hint}`, { cause });
    this.ring = ring;
    this.addr = addr;
    this.port = port;
  }
}

/** The rings of `self` from cluster.xml: its address on each lan it is on, and its peers' there. */
export function datagramRingsOf(cluster: ClusterConfig, self: NodeId): DatagramRing[] {
  const rings: DatagramRing[] = [];
  for (const lan of cluster.lans) {
    const own = lan.nodes.find((node) => node.name === self);
    if (own === undefined) continue;
    const peers = new Map(lan.nodes.filter((node) => node.name !== self).map((node) => [node.name, node.addr] as const));
    rings.push({ ring: lan.name, localAddr: own.addr, peers });
  }
  return rings;
}

export class RealDatagramPort<Message> implements DatagramPort<Message> {
  readonly #self: NodeId;
  readonly #incarnation: number;
  readonly #key: WireKey;
  readonly #port: number;
  readonly #rings: ReadonlyMap<RingId, DatagramRing>;
  readonly #peers: ReadonlySet<NodeId>;
  readonly #codec: PayloadCodec<Message>;
  readonly #channel: string;
  readonly #clock: ClockPort;
  readonly #sizeMax: number;
  readonly #clockSkewMsMax: number | null;
  readonly #wallClockMs: () => number;
  readonly #rejects: RateLimitedLog<RejectReason>;
  readonly #sendDrops: RateLimitedLog<SendDropReason>;
  readonly #freshness = new Freshness();
  /** Next sequence number per ring and recipient: each receiver sees a dense sequence per ring. */
  readonly #sequences = new Map<string, number>();
  readonly #sockets = new Map<RingId, Socket>();
  readonly #log: (entry: LogEntry) => void;
  #receive: ((ring: RingId, message: Message, receivedAtMs: number) => void) | null = null;
  #sent = 0;
  #received = 0;
  #unheard = 0;

  constructor(options: RealDatagramOptions<Message>) {
    assert(Number.isSafeInteger(options.incarnation) && options.incarnation >= 0, `incarnation ${options.incarnation} is not a safe non-negative integer`);
    assert(Number.isInteger(options.port) && options.port > 0 && options.port < 65_536, `UDP port ${options.port} out of range`);
    assert(new Set(options.rings.map((ring) => ring.ring)).size === options.rings.length, "a ring is listed twice");
    this.#self = options.self;
    this.#incarnation = options.incarnation;
    this.#key = options.key;
    this.#port = options.port;
    this.#rings = new Map(options.rings.map((ring) => [ring.ring, ring]));
    this.#peers = new Set(options.rings.flatMap((ring) => [...ring.peers.keys()]));
    assert(!this.#peers.has(this.#self), "this node is not its own peer");
    this.#codec = options.codec;
    this.#channel = options.channel ?? heartbeatChannel;
    this.#clock = options.clock ?? new RealClockPort();
    this.#sizeMax = options.datagramSizeMax ?? datagramSizeMaxDefault;
    assert(this.#sizeMax >= 256 && this.#sizeMax <= udpPayloadSizeMax, `datagram size limit ${this.#sizeMax} out of [256, ${udpPayloadSizeMax}]`);
    this.#clockSkewMsMax = options.clockSkewMsMax ?? null;
    this.#wallClockMs = options.wallClockMs ?? Date.now;
    this.#log = options.log ?? (() => {});
    const nowMs = () => this.#clock.nowMs();
    this.#rejects = rejectLog(this.#log, nowMs, options.rejectLogIntervalMs);
    this.#sendDrops = new RateLimitedLog("wire.send-dropped", sendDropReasons, this.#log, nowMs, options.rejectLogIntervalMs);
  }

  /** Binds one socket per ring. Rejects with a NetworkBindError naming the ring when one
   *  cannot be bound (and closes those that were). */
  async open(): Promise<void> {
    assert(this.#sockets.size === 0, "datagram port opened twice");
    try {
      for (const ring of this.#rings.values()) this.#sockets.set(ring.ring, await this.#bind(ring));
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  async close(): Promise<void> {
    const sockets = [...this.#sockets.values()];
    this.#sockets.clear();
    await Promise.all(sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
  }

  /** The port each socket is bound to, by ring (the configured one, or the kernel's choice for 0). */
  boundPorts(): Map<RingId, number> {
    return new Map([...this.#sockets].map(([ring, socket]) => [ring, socket.address().port]));
  }

  stats(): DatagramStats {
    return { sent: this.#sent, received: this.#received, unheard: this.#unheard, dropped: { ...this.#sendDrops.counts }, rejected: { ...this.#rejects.counts } };
  }

  send(ring: RingId, to: NodeId, message: Message): void {
    const socket = this.#sockets.get(ring);
    const addr = this.#rings.get(ring)?.peers.get(to);
    if (addr === undefined) return this.#dropSend("unroutable", { ring, to, detail: `${to} has no address on ring ${ring} in cluster.xml` });
    if (socket === undefined) return this.#dropSend("not-open", { ring, to, detail: "the port is not open" });
    const lane = `${ring}\u0000${to}`;
    const sequence = (this.#sequences.get(lane) ?? 0) + 1;
    this.#sequences.set(lane, sequence);
    const fields = { kind: "datagram", incarnation: this.#incarnation, sequence, sentAtUnixMs: Math.max(0, Math.round(this.#wallClockMs())), from: this.#self, to, channel: this.#channel, ring } as const;
    const bytes = encodeEnvelope(fields, this.#codec.encode(message), this.#key, this.#sizeMax);
    if (bytes === null) return this.#dropSend("oversized", { ring, to, detail: `the message encodes to more than ${this.#sizeMax} bytes` });
    socket.send(bytes, this.#port, addr, (error) => {
      if (error === null || error === undefined) this.#sent++;
      else this.#dropSend("send-failed", { ring, to, detail: error.message });
    });
  }

  listen(receive: (ring: RingId, message: Message, receivedAtMs: number) => void): void {
    this.#receive = receive;
  }

  #dropSend(reason: SendDropReason, fields: Readonly<Record<string, string>>): void {
    this.#sendDrops.note(reason, { node: this.#self, channel: this.#channel, ...fields });
  }

  #bind(ring: DatagramRing): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = createSocket({ type: protocolOf(ring.localAddr), reuseAddr: false });
      const failed = (error: Error) => {
        socket.close();
        reject(new NetworkBindError("udp", ring.ring, ring.localAddr, this.#port, error));
      };
      socket.once("error", failed);
      socket.on("message", (bytes, remote) => this.#arrived(ring.ring, bytes, remote));
      socket.bind({ address: ring.localAddr, port: this.#port, exclusive: true }, () => {
        socket.off("error", failed);
        // After the bind, errors are reported, never thrown: a lost heartbeat is tolerated.
        socket.on("error", (error) => this.#log({ level: "warn", event: "wire.socket-error", fields: { node: this.#self, ring: ring.ring, error: error.message } }));
        resolve(socket);
      });
    });
  }

  #arrived(ring: RingId, bytes: Buffer, remote: RemoteInfo): void {
    // First, before any work: the closest this port can come to the arrival time.
    const receivedAtMs = this.#clock.nowMs();
    const message = this.#open(ring, bytes, `${remote.address}:${remote.port}`);
    if (message === null) return;
    this.#received++;
    if (this.#receive === null) this.#unheard++;
    else this.#receive(ring, message, receivedAtMs);
  }

  /** The message a datagram carries, or null when it is rejected (counted and logged). */
  #open(ring: RingId, bytes: Buffer, source: string): Message | null {
    const parsed = parseEnvelope(bytes, this.#sizeMax);
    if (!parsed.ok) return this.#reject(parsed.reason, { ring, source, detail: parsed.detail });
    const envelope = parsed.envelope;
    const authentication = authenticate(envelope, this.#key);
    if (authentication !== null) return this.#reject(authentication, { ring, source, claimed: envelope.from });
    const misdirection = this.#misdirection(envelope, ring);
    if (misdirection !== null) return this.#reject(misdirection.reason, { ring, source, from: envelope.from, detail: misdirection.detail });
    const freshness = this.#freshness.check(envelope.from, ring, envelope.incarnation, envelope.sequence);
    if (freshness !== null) return this.#reject(freshness, { ring, source, from: envelope.from, incarnation: envelope.incarnation, sequence: envelope.sequence });
    const skewMs = Math.abs(this.#wallClockMs() - envelope.sentAtUnixMs);
    if (this.#clockSkewMsMax !== null && skewMs > this.#clockSkewMsMax) return this.#reject("clock-skew", { ring, source, from: envelope.from, skewMs: Math.round(skewMs) });
    const value = parsePayload(envelope);
    const message = value === undefined ? null : this.#codec.decode(value, envelope.from);
    if (message === null) return this.#reject("bad-payload", { ring, source, from: envelope.from, detail: value === undefined ? "not JSON" : "refused by the codec" });
    this.#freshness.accept(envelope.from, ring, envelope.incarnation, envelope.sequence);
    return message;
  }

  /** Why an authentic envelope is not for this socket, or null. */
  #misdirection(envelope: Envelope, ring: RingId): { reason: RejectReason; detail: string } | null {
    if (!this.#peers.has(envelope.from)) return { reason: "unknown-sender", detail: `${envelope.from} is not a peer in cluster.xml` };
    if (envelope.kind !== "datagram") return { reason: "misdirected", detail: `a ${envelope.kind} message on a datagram socket` };
    if (envelope.to !== this.#self) return { reason: "misdirected", detail: `for ${envelope.to}` };
    if (envelope.channel !== this.#channel) return { reason: "misdirected", detail: `for channel ${envelope.channel}` };
    if (envelope.ring !== ring) return { reason: "misdirected", detail: `sent on ring ${envelope.ring}` };
    return null;
  }

  #reject(reason: RejectReason, fields: Readonly<Record<string, string | number>>): null {
    this.#rejects.note(reason, { node: this.#self, channel: this.#channel, ...fields });
    return null;
  }
}

function protocolOf(addr: string): "udp4" | "udp6" {
  return isIPv6(addr) ? "udp6" : "udp4";
}
