// The real StreamPort: one TCP connection per pair of nodes, carrying length-prefixed
// frames in the authenticated envelope of wire.ts.
//
// - One connection per pair: the node whose name sorts lower (JavaScript string order,
//   the same on every node) connects; the other only accepts, and refuses a connection
//   from a peer that should have accepted it. So two nodes never race to open two
//   connections. Should a new authenticated connection from the same peer complete while
//   an old one still looks up (the peer restarted, the old one is half-open), the new one
//   replaces it: the peer is reported down, then up.
// - Handshake: hello (connector's nonce), hello-ack (acceptor's nonce, connector's nonce
//   echoed), hello-confirm (acceptor's nonce echoed), each under the cluster key. Each
//   side learns that the other holds the key now, not in a recording. Every later frame
//   is authenticated under a key derived from both nonces, so a frame recorded on one
//   connection is refused on any other, even by a node that restarted since.
// - Frames carry consecutive sequence numbers per connection and direction: a frame
//   replayed, dropped or reordered inside a connection is refused and ends it.
// - Between an `up` report and the next `down` report of a peer, every message sent to it
//   is delivered once, in order; every loss is followed by a `down` report. So when a send
//   cannot be honoured (the peer is down, the send buffer is full, the message is over the
//   frame limit) the message is dropped, counted, and a connection that was up is reset.
//   Nothing grows without bound: the kernel's buffer plus `sendBufferSizeMax` per peer.
// - Silence: each side pings every `pingIntervalMs`; a connection that heard nothing for
//   `idleTimeoutMs` is reset, which is how a power loss or a partition (no FIN, no RST) is
//   noticed. The connector then retries with capped, jittered exponential backoff, trying
//   the peer's address on each shared ring in turn.
// - Callbacks (receive, watchPeers) run only from socket and timer events, never from
//   inside send, listen or watchPeers.

import { randomBytes } from "node:crypto";
import { createServer, connect, type Server, type Socket } from "node:net";
import { assert } from "../../core/assert.ts";
import type { ClusterConfig } from "../../core/config/module-config.ts";
import type { ClockPort, StreamPort } from "../../core/ports.ts";
import type { LogEntry, NodeId, RingId } from "../../core/types.ts";
import { RealClockPort } from "./clock.ts";
import { NetworkBindError } from "./datagrams.ts";
import {
  authenticate,
  encodeFrame,
  framePrefixSize,
  envelopeSizeMaxLimit,
  envelopeSizeMin,
  FrameReader,
  Freshness,
  isSessionKind,
  type FrameKey,
  parseEnvelope,
  parsePayload,
  RateLimitedLog,
  rejectLog,
  WireKey,
  type Envelope,
  type EnvelopeKind,
  type PayloadCodec,
  type RejectCounts,
  type RejectReason,
} from "./wire.ts";

export const controlChannel = "control";
export const frameSizeMaxDefault = 1024 * 1024;
export const sendBufferSizeMaxDefault = 8 * 1024 * 1024;
export const pingIntervalMsDefault = 1_000;
export const idleTimeoutMsDefault = 5_000;
export const handshakeTimeoutMsDefault = 5_000;
export const reconnectDelayMsMinDefault = 100;
export const reconnectDelayMsMaxDefault = 5_000;
/** Inbound connections still in their handshake; more are closed at once. */
export const handshakesPendingMaxDefault = 16;
/** Frames at least this large are made in buffers the stream reuses (FramePool). */
const pooledFrameSizeMin = 64 * 1024;

/** Buffers for large frames (a resync chunk: about 1 MiB), reused once the socket has
 *  written them. A new buffer per frame was garbage to collect and, on a virtual machine,
 *  fresh memory to fault in at every chunk. Sizes go by classes (powers of two from
 *  pooledFrameSizeMin, the last one `capacity`, the largest frame), so a frame never holds
 *  more than twice its size while it waits in the send buffer; at most `keepMax` buffers of
 *  a class wait unused. */
class FramePool {
  readonly #free = new Map<number, ArrayBuffer[]>();
  readonly #capacity: number;
  readonly #keepMax: number;
  /** Buffers given out again. */
  reused = 0;

  constructor(capacity: number, keepMax: number) {
    this.#capacity = capacity;
    this.#keepMax = keepMax;
  }

  /** A buffer of `size` bytes: the start of a pooled one for a large frame. */
  readonly allocate = (size: number): Buffer => {
    if (size < pooledFrameSizeMin || size > this.#capacity) return Buffer.allocUnsafe(size);
    const held = this.#classOf(size);
    const free = this.#free.get(held)?.pop();
    if (free !== undefined) this.reused++;
    return Buffer.from(free ?? new ArrayBuffer(held), 0, size);
  };

  /** Takes back a buffer `allocate` gave once nothing reads it any more. */
  release(bytes: Buffer): void {
    const whole = bytes.buffer;
    if (!(whole instanceof ArrayBuffer) || bytes.byteOffset !== 0 || whole.byteLength < pooledFrameSizeMin || this.#classOf(whole.byteLength) !== whole.byteLength) return;
    const free = this.#free.get(whole.byteLength) ?? [];
    if (free.length >= this.#keepMax) return;
    free.push(whole);
    this.#free.set(whole.byteLength, free);
  }

  /** The size of the buffers that hold frames of `size` bytes. */
  #classOf(size: number): number {
    const power = 2 ** Math.ceil(Math.log2(size));
    return power >= this.#capacity ? this.#capacity : power;
  }
}
const nonceSize = 32;
/** Frames before the handshake is done are small: an unauthenticated peer cannot make
 *  this node buffer more than this per connection. */
export const handshakeFrameSizeMax = 4096;
const sessionLabel = "tandem stream session v1";

/** One way to reach a peer: its address on a ring, from this node's address there. */
export interface StreamRoute {
  readonly ring: RingId;
  readonly localAddr: string;
  readonly addr: string;
}

export interface StreamPeer {
  readonly id: NodeId;
  /** Tried in order, the next after each failed attempt. */
  readonly routes: readonly StreamRoute[];
}

export interface RealStreamOptions<Message> {
  readonly self: NodeId;
  /** Grows at every start of the node service; see RealDatagramOptions. */
  readonly incarnation: number;
  readonly key: WireKey;
  /** The TCP port of every node. */
  readonly port: number;
  /** This node's addresses to accept connections on, one per ring. */
  readonly listen: readonly { readonly ring: RingId; readonly addr: string }[];
  readonly peers: readonly StreamPeer[];
  readonly codec: PayloadCodec<Message>;
  /** Default "control". */
  readonly channel?: string;
  /** Timers and the log's rate limit; default a RealClockPort. */
  readonly clock?: ClockPort;
  readonly log?: (entry: LogEntry) => void;
  readonly frameSizeMax?: number;
  readonly sendBufferSizeMax?: number;
  readonly pingIntervalMs?: number;
  readonly idleTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  readonly reconnectDelayMsMin?: number;
  readonly reconnectDelayMsMax?: number;
  readonly handshakesPendingMax?: number;
  readonly rejectLogIntervalMs?: number;
  /** Uniform in [0, 1), for the backoff's jitter; default Math.random. */
  readonly random?: () => number;
  readonly wallClockMs?: () => number;
}

export const streamDropReasons = ["down", "unroutable", "oversized", "overflow"] as const;
export type StreamDropReason = (typeof streamDropReasons)[number];

export interface StreamStats {
  readonly sent: number;
  readonly received: number;
  readonly unheard: number;
  /** Connections that completed their handshake. */
  readonly established: number;
  readonly dropped: Readonly<Record<StreamDropReason, number>>;
  readonly rejected: Readonly<RejectCounts>;
  readonly connected: Readonly<Record<NodeId, boolean>>;
  /** Large frames written in a buffer an earlier frame had used (FramePool). */
  readonly reusedFrameBuffers: number;
}

/** Capped exponential backoff with jitter: attempt 0 waits about `minMs`, each further
 *  attempt up to twice as long, never more than `maxMs`; half of the delay is random, so
 *  nodes that lost a peer together do not all knock at once. */
export function reconnectDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  assert(Number.isInteger(attempt) && attempt >= 0, `attempt ${attempt} is not a count`);
  assert(minMs > 0 && minMs <= maxMs, `backoff bounds ${minMs}..${maxMs} invalid`);
  const ceilingMs = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  const delayMs = ceilingMs / 2 + (random() * ceilingMs) / 2;
  assert(delayMs <= maxMs, "a reconnect delay never exceeds its cap");
  return delayMs;
}

/** The listening addresses and the routes to each peer of `self`, from cluster.xml: the
 *  lans both are on, in the file's order. A peer with no lan in common is left out. */
export function streamTopologyOf(cluster: ClusterConfig, self: NodeId): { listen: { ring: RingId; addr: string }[]; peers: StreamPeer[] } {
  const listen: { ring: RingId; addr: string }[] = [];
  const routes = new Map<NodeId, StreamRoute[]>();
  for (const lan of cluster.lans) {
    const own = lan.nodes.find((node) => node.name === self);
    if (own === undefined) continue;
    if (!listen.some((each) => each.addr === own.addr)) listen.push({ ring: lan.name, addr: own.addr });
    for (const node of lan.nodes) {
      if (node.name === self) continue;
      const list = routes.get(node.name) ?? [];
      list.push({ ring: lan.name, localAddr: own.addr, addr: node.addr });
      routes.set(node.name, list);
    }
  }
  return { listen, peers: [...routes].map(([id, list]) => ({ id, routes: list })) };
}

type ConnectionState = "await-hello" | "await-ack" | "await-confirm" | "up" | "closed";

interface Connection {
  readonly id: number;
  readonly role: "connect" | "accept";
  readonly socket: Socket;
  readonly reader: FrameReader;
  readonly localNonce: Buffer;
  state: ConnectionState;
  /** Known from the start when connecting; from the hello when accepting. */
  peer: NodeId | null;
  source: string;
  remoteIncarnation: number;
  remoteNonce: Buffer | null;
  /** The key of the frames after the handshake. */
  /** The session's frame keys, once the handshake is done: what this end sends under, and
   *  what its peer does. */
  session: { readonly send: FrameKey; readonly receive: FrameKey } | null;
  sentSequence: number;
  receivedSequence: number;
  lastHeardMs: number;
}

interface PeerLink {
  readonly id: NodeId;
  readonly routes: readonly StreamRoute[];
  /** This node connects to that peer (its name sorts lower); otherwise it accepts. */
  readonly connector: boolean;
  /** The connection messages travel on; null while the peer is down. */
  up: Connection | null;
  /** The connector's attempt in progress. */
  dialing: Connection | null;
  attempt: number;
  routeIndex: number;
}

export class RealStreamPort<Message> implements StreamPort<Message> {
  readonly #self: NodeId;
  readonly #incarnation: number;
  readonly #key: WireKey;
  readonly #port: number;
  readonly #listenAddrs: readonly { readonly ring: RingId; readonly addr: string }[];
  readonly #links = new Map<NodeId, PeerLink>();
  readonly #codec: PayloadCodec<Message>;
  readonly #channel: string;
  readonly #clock: ClockPort;
  readonly #log: (entry: LogEntry) => void;
  readonly #frameSizeMax: number;
  readonly #sendBufferSizeMax: number;
  readonly #framePool: FramePool;
  readonly #pingIntervalMs: number;
  readonly #idleTimeoutMs: number;
  readonly #handshakeTimeoutMs: number;
  readonly #reconnectDelayMsMin: number;
  readonly #reconnectDelayMsMax: number;
  readonly #handshakesPendingMax: number;
  readonly #random: () => number;
  readonly #wallClockMs: () => number;
  readonly #rejects: RateLimitedLog<RejectReason>;
  readonly #drops: RateLimitedLog<StreamDropReason>;
  readonly #incarnations = new Freshness();
  readonly #servers: Server[] = [];
  readonly #handshaking = new Set<Connection>();
  readonly #connections = new Set<Connection>();
  #receive: ((from: NodeId, message: Message) => void) | null = null;
  #watch: ((peer: NodeId, connected: boolean) => void) | null = null;
  #open = false;
  #nextConnectionId = 1;
  /** Tells this port's timers from those of other ports on the same clock. */
  readonly #instance = nextPortInstance++;
  #sent = 0;
  #received = 0;
  #unheard = 0;
  #establishedCount = 0;

  constructor(options: RealStreamOptions<Message>) {
    assert(Number.isSafeInteger(options.incarnation) && options.incarnation >= 0, `incarnation ${options.incarnation} is not a safe non-negative integer`);
    assert(Number.isInteger(options.port) && options.port > 0 && options.port < 65_536, `TCP port ${options.port} out of range`);
    this.#self = options.self;
    this.#incarnation = options.incarnation;
    this.#key = options.key;
    this.#port = options.port;
    this.#listenAddrs = options.listen;
    for (const peer of options.peers) {
      assert(peer.id !== options.self, "this node is not its own peer");
      assert(!this.#links.has(peer.id), `peer ${peer.id} listed twice`);
      this.#links.set(peer.id, { id: peer.id, routes: peer.routes, connector: options.self < peer.id, up: null, dialing: null, attempt: 0, routeIndex: 0 });
    }
    this.#codec = options.codec;
    this.#channel = options.channel ?? controlChannel;
    this.#clock = options.clock ?? new RealClockPort();
    this.#log = options.log ?? (() => {});
    this.#frameSizeMax = options.frameSizeMax ?? frameSizeMaxDefault;
    this.#sendBufferSizeMax = options.sendBufferSizeMax ?? sendBufferSizeMaxDefault;
    this.#framePool = new FramePool(framePrefixSize + this.#frameSizeMax, Math.ceil(this.#sendBufferSizeMax / this.#frameSizeMax) + 1);
    this.#pingIntervalMs = options.pingIntervalMs ?? pingIntervalMsDefault;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? idleTimeoutMsDefault;
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? handshakeTimeoutMsDefault;
    this.#reconnectDelayMsMin = options.reconnectDelayMsMin ?? reconnectDelayMsMinDefault;
    this.#reconnectDelayMsMax = options.reconnectDelayMsMax ?? reconnectDelayMsMaxDefault;
    this.#handshakesPendingMax = options.handshakesPendingMax ?? handshakesPendingMaxDefault;
    this.#random = options.random ?? Math.random;
    this.#wallClockMs = options.wallClockMs ?? Date.now;
    this.#checkLimits();
    const nowMs = () => this.#clock.nowMs();
    this.#rejects = rejectLog(this.#log, nowMs, options.rejectLogIntervalMs);
    this.#drops = new RateLimitedLog("stream.send-dropped", streamDropReasons, this.#log, nowMs, options.rejectLogIntervalMs);
  }

  #checkLimits(): void {
    assert(this.#frameSizeMax >= envelopeSizeMin + 1024 && this.#frameSizeMax <= envelopeSizeMaxLimit, `frame size limit ${this.#frameSizeMax} out of range`);
    assert(this.#sendBufferSizeMax >= this.#frameSizeMax, "the send buffer holds at least one frame");
    assert(this.#pingIntervalMs > 0, "ping interval is positive");
    assert(this.#idleTimeoutMs > this.#pingIntervalMs, "the idle timeout is longer than the ping interval, or a quiet peer would look dead");
    assert(this.#handshakeTimeoutMs > 0, "handshake timeout is positive");
    assert(this.#handshakesPendingMax >= 1, "at least one handshake may be pending");
  }

  /** Listens on every local address, then starts connecting to the peers it connects to.
   *  Rejects with a NetworkBindError (and closes what it opened) when an address cannot be bound. */
  async open(): Promise<void> {
    assert(!this.#open, "stream port opened twice");
    this.#open = true;
    try {
      for (const each of this.#listenAddrs) this.#servers.push(await this.#serve(each.ring, each.addr));
    } catch (error) {
      await this.close();
      throw error;
    }
    for (const link of this.#links.values()) if (link.connector) this.#dial(link);
  }

  /** Closes every connection and listener. Reports nothing: the service is stopping. */
  async close(): Promise<void> {
    this.#open = false;
    for (const link of this.#links.values()) {
      this.#clock.cancel(this.#timer(link.id, "reconnect"));
      link.up = null;
      link.dialing = null;
    }
    for (const connection of this.#connections) this.#reset(connection);
    const servers = this.#servers.splice(0);
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }

  stats(): StreamStats {
    const connected = Object.fromEntries([...this.#links.values()].map((link) => [link.id, link.up !== null]));
    return { sent: this.#sent, received: this.#received, unheard: this.#unheard, established: this.#establishedCount, dropped: { ...this.#drops.counts }, rejected: { ...this.#rejects.counts }, connected, reusedFrameBuffers: this.#framePool.reused };
  }

  send(to: NodeId, message: Message): void {
    const link = this.#links.get(to);
    if (link === undefined) return this.#drop("unroutable", { to, detail: `${to} is not a peer with a lan in common` });
    const connection = link.up;
    if (connection === null || connection.state !== "up") return this.#drop("down", { to, detail: "the peer is down" });
    const outcome = this.#write(connection, "frame", this.#codec.encode(message));
    if (outcome === "ok") {
      this.#sent++;
      return;
    }
    // The message is lost while the peer looks up: reset, so that a down report follows.
    this.#drop(outcome, { to, detail: outcome === "oversized" ? `the message encodes to more than ${this.#frameSizeMax} bytes` : `over ${this.#sendBufferSizeMax} bytes wait to be sent` });
    this.#reset(connection);
  }

  listen(receive: (from: NodeId, message: Message) => void): void {
    this.#receive = receive;
  }

  watchPeers(report: (peer: NodeId, connected: boolean) => void): void {
    this.#watch = report;
  }

  // ---- Connections ----

  #serve(ring: RingId, addr: string): Promise<Server> {
    return new Promise((resolve, reject) => {
      const server = createServer({ noDelay: true }, (socket) => this.#accepted(socket));
      server.once("error", (error) => reject(new NetworkBindError("tcp", ring, addr, this.#port, error)));
      server.listen({ host: addr, port: this.#port, exclusive: true }, () => {
        server.removeAllListeners("error");
        server.on("error", (error) => this.#log({ level: "warn", event: "stream.listen-error", fields: { node: this.#self, ring, error: error.message } }));
        resolve(server);
      });
    });
  }

  #accepted(socket: Socket): void {
    if (!this.#open || this.#handshaking.size >= this.#handshakesPendingMax) {
      socket.destroy();
      return;
    }
    const connection = this.#track(socket, "accept", null, `${socket.remoteAddress}:${socket.remotePort}`);
    this.#handshaking.add(connection);
  }

  #dial(link: PeerLink): void {
    assert(link.connector && link.dialing === null && link.up === null, `dial ${link.id} while connected or dialing`);
    if (link.routes.length === 0) return;
    const route = link.routes[link.routeIndex % link.routes.length]!;
    const socket = connect({ host: route.addr, port: this.#port, localAddress: route.localAddr, noDelay: true });
    const connection = this.#track(socket, "connect", link.id, `${route.addr}:${this.#port}`);
    link.dialing = connection;
    socket.once("connect", () => {
      if (connection.state !== "await-ack") return;
      this.#write(connection, "hello", { nonce: connection.localNonce.toString("base64") });
    });
  }

  /** Wires a socket's events to the connection state machine and arms its handshake deadline. */
  #track(socket: Socket, role: "connect" | "accept", peer: NodeId | null, source: string): Connection {
    const connection: Connection = {
      id: this.#nextConnectionId++, role, socket, reader: new FrameReader(handshakeFrameSizeMax), localNonce: randomBytes(nonceSize),
      state: role === "connect" ? "await-ack" : "await-hello", peer, source, remoteIncarnation: -1, remoteNonce: null, session: null,
      sentSequence: 0, receivedSequence: 0, lastHeardMs: this.#clock.nowMs(),
    };
    this.#connections.add(connection);
    socket.on("data", (chunk: Buffer) => this.#data(connection, chunk));
    socket.on("error", () => {}); // 'close' follows; the reason does not change what happens.
    socket.on("close", () => this.#closed(connection));
    this.#clock.arm(this.#timer(connection.id, "handshake"), this.#handshakeTimeoutMs, () => {
      if (connection.state !== "up" && connection.state !== "closed") this.#reset(connection);
    });
    return connection;
  }

  #data(connection: Connection, chunk: Buffer): void {
    connection.reader.push(chunk);
    while (connection.state !== "closed") {
      const next = connection.reader.next();
      if (next === null) return;
      if (next === "oversized") return this.#refuse(connection, "oversized", `a frame over the limit of ${connection.state === "up" ? this.#frameSizeMax : handshakeFrameSizeMax} bytes`);
      this.#frame(connection, next);
    }
  }

  /** Ends a connection (its 'close' event does the bookkeeping). */
  #reset(connection: Connection): void {
    if (connection.state === "closed") return;
    connection.state = "closed";
    connection.socket.destroy();
  }

  #closed(connection: Connection): void {
    connection.state = "closed";
    this.#connections.delete(connection);
    this.#handshaking.delete(connection);
    this.#clock.cancel(this.#timer(connection.id, "handshake"));
    this.#clock.cancel(this.#timer(connection.id, "ping"));
    const link = connection.peer === null ? undefined : this.#links.get(connection.peer);
    if (link === undefined || !this.#open) return;
    if (link.dialing === connection) {
      link.dialing = null;
      link.attempt++;
      link.routeIndex++;
    }
    if (link.up === connection) {
      link.up = null;
      this.#log({ level: "info", event: "stream.down", fields: { node: this.#self, peer: link.id } });
      this.#watch?.(link.id, false);
    }
    if (link.connector && link.up === null && link.dialing === null) this.#redial(link);
  }

  #redial(link: PeerLink): void {
    const delayMs = reconnectDelayMs(link.attempt, this.#reconnectDelayMsMin, this.#reconnectDelayMsMax, this.#random);
    this.#clock.arm(this.#timer(link.id, "reconnect"), delayMs, () => {
      if (this.#open && link.up === null && link.dialing === null) this.#dial(link);
    });
  }

  /** The handshake is done: `connection` carries the peer's messages from now on. */
  #established(connection: Connection, link: PeerLink): void {
    connection.state = "up";
    connection.reader.limit(this.#frameSizeMax);
    this.#establishedCount++;
    this.#handshaking.delete(connection);
    this.#clock.cancel(this.#timer(connection.id, "handshake"));
    this.#incarnations.noteIncarnation(link.id, connection.remoteIncarnation);
    link.attempt = 0;
    if (link.dialing === connection) link.dialing = null;
    const replaced = link.up;
    if (replaced !== null) {
      // The peer restarted, or reconnected over a half-open connection: anything in flight
      // on the old one may be lost, so say so before saying up.
      link.up = null;
      this.#reset(replaced);
      this.#watch?.(link.id, false);
    }
    link.up = connection;
    this.#log({ level: "info", event: "stream.up", fields: { node: this.#self, peer: link.id, via: connection.source, incarnation: connection.remoteIncarnation } });
    this.#watch?.(link.id, true);
    this.#ping(connection);
  }

  #ping(connection: Connection): void {
    this.#clock.arm(this.#timer(connection.id, "ping"), this.#pingIntervalMs, () => {
      if (connection.state !== "up") return;
      if (this.#clock.nowMs() - connection.lastHeardMs > this.#idleTimeoutMs) {
        this.#log({ level: "info", event: "stream.silent", fields: { node: this.#self, peer: connection.peer ?? "", silentMs: Math.round(this.#clock.nowMs() - connection.lastHeardMs) } });
        return this.#reset(connection);
      }
      // A ping that does not fit the buffer means the peer stopped reading: reset.
      if (this.#write(connection, "ping", null) !== "ok") return this.#reset(connection);
      this.#ping(connection);
    });
  }

  // ---- Frames ----

  #write(connection: Connection, kind: EnvelopeKind, payload: unknown): "ok" | "oversized" | "overflow" {
    assert(connection.peer !== null, "a connection writes only once its peer is known");
    const key = isSessionKind(kind) ? (connection.session?.send ?? null) : this.#key;
    assert(key !== null, `${kind} written before the session key exists`);
    const sequence = connection.sentSequence + 1;
    const fields = { kind, incarnation: this.#incarnation, sequence, sentAtUnixMs: Math.max(0, Math.round(this.#wallClockMs())), from: this.#self, to: connection.peer, channel: this.#channel, ring: "" };
    const bytes = encodeFrame(fields, payload, key, this.#frameSizeMax, this.#framePool.allocate);
    if (bytes === null) return "oversized";
    if (connection.socket.writableLength + bytes.length > this.#sendBufferSizeMax) {
      this.#framePool.release(bytes);
      return "overflow";
    }
    connection.sentSequence = sequence;
    // Back to the pool once the socket is done with it (written, or failed: the callback
    // comes last either way); a buffer whose callback never comes is left to the collector.
    connection.socket.write(bytes, () => this.#framePool.release(bytes));
    return "ok";
  }

  #frame(connection: Connection, bytes: Buffer): void {
    const parsed = parseEnvelope(bytes, this.#frameSizeMax);
    if (!parsed.ok) return this.#refuse(connection, parsed.reason, parsed.detail);
    const envelope = parsed.envelope;
    const authentication = authenticate(envelope, connection.session?.receive ?? this.#key);
    if (authentication !== null) return this.#refuse(connection, authentication, `claimed from ${envelope.from}`);
    const problem = this.#frameProblem(connection, envelope);
    if (problem !== null) return this.#refuse(connection, problem.reason, problem.detail);
    connection.receivedSequence = envelope.sequence;
    connection.lastHeardMs = this.#clock.nowMs();
    const value = parsePayload(envelope);
    switch (envelope.kind) {
      case "hello":
        return this.#hello(connection, envelope, value);
      case "helloAck":
        return this.#helloAck(connection, envelope, value);
      case "helloConfirm":
        return this.#helloConfirm(connection, value);
      case "frame":
        return this.#message(connection, envelope, value);
      case "ping":
        return;
      case "datagram":
        assert(false, "frameProblem refuses datagrams on streams");
    }
  }

  /** Why an authentic frame does not belong on this connection now, or null. */
  #frameProblem(connection: Connection, envelope: Envelope): { reason: RejectReason; detail: string } | null {
    const expected = expectedKinds[connection.state];
    if (!expected.includes(envelope.kind)) return { reason: "protocol", detail: `a ${envelope.kind} frame while ${connection.state}` };
    const link = this.#links.get(envelope.from);
    if (link === undefined) return { reason: "unknown-sender", detail: `${envelope.from} is not a peer of ${this.#self}` };
    if (connection.peer !== null && envelope.from !== connection.peer) return { reason: "misdirected", detail: `from ${envelope.from} on the connection of ${connection.peer}` };
    if (connection.role === "accept" && link.connector) return { reason: "misdirected", detail: `${envelope.from} should accept this connection, not make it (the lower name connects)` };
    if (envelope.to !== this.#self || envelope.channel !== this.#channel || envelope.ring !== "") return { reason: "misdirected", detail: `for ${envelope.to}, channel ${envelope.channel}` };
    if (envelope.sequence <= connection.receivedSequence) return { reason: "replayed", detail: `sequence ${envelope.sequence} after ${connection.receivedSequence}` };
    if (envelope.sequence !== connection.receivedSequence + 1) return { reason: "protocol", detail: `sequence ${envelope.sequence} after ${connection.receivedSequence}` };
    const newest = this.#incarnations.incarnationOf(envelope.from);
    if (newest !== null && envelope.incarnation < newest) return { reason: "stale-incarnation", detail: `incarnation ${envelope.incarnation}, newest seen ${newest}` };
    if (connection.remoteIncarnation >= 0 && envelope.incarnation !== connection.remoteIncarnation) return { reason: "protocol", detail: `incarnation changed to ${envelope.incarnation} within a connection` };
    return null;
  }

  #hello(connection: Connection, envelope: Envelope, value: unknown): void {
    const nonce = nonceIn(value, "nonce");
    if (nonce === null) return this.#refuse(connection, "bad-payload", "a hello without a nonce");
    connection.peer = envelope.from;
    connection.remoteIncarnation = envelope.incarnation;
    connection.remoteNonce = nonce;
    connection.state = "await-confirm";
    this.#write(connection, "helloAck", { nonce: connection.localNonce.toString("base64"), echo: nonce.toString("base64") });
  }

  #helloAck(connection: Connection, envelope: Envelope, value: unknown): void {
    const nonce = nonceIn(value, "nonce");
    const echo = nonceIn(value, "echo");
    if (nonce === null || echo === null) return this.#refuse(connection, "bad-payload", "a hello-ack without its nonces");
    if (!echo.equals(connection.localNonce)) return this.#refuse(connection, "replayed", "a hello-ack for another connection");
    connection.remoteIncarnation = envelope.incarnation;
    connection.remoteNonce = nonce;
    const keys = this.#sessionKey(this.#self, envelope.from, connection.localNonce, nonce);
    connection.session = { send: keys.connector, receive: keys.acceptor };
    this.#write(connection, "helloConfirm", { echo: nonce.toString("base64") });
    this.#established(connection, this.#links.get(envelope.from)!);
  }

  #helloConfirm(connection: Connection, value: unknown): void {
    const echo = nonceIn(value, "echo");
    if (echo === null) return this.#refuse(connection, "bad-payload", "a hello-confirm without its nonce");
    if (!echo.equals(connection.localNonce)) return this.#refuse(connection, "replayed", "a hello-confirm for another connection");
    const peer = connection.peer!;
    const keys = this.#sessionKey(peer, this.#self, connection.remoteNonce!, connection.localNonce);
    connection.session = { send: keys.acceptor, receive: keys.connector };
    this.#established(connection, this.#links.get(peer)!);
  }

  #sessionKey(connector: NodeId, acceptor: NodeId, connectorNonce: Buffer, acceptorNonce: Buffer): ReturnType<WireKey["frameKeys"]> {
    return this.#key.derive(sessionLabel, [Buffer.from(connector), Buffer.from(acceptor), connectorNonce, acceptorNonce]).frameKeys();
  }

  #message(connection: Connection, envelope: Envelope, value: unknown): void {
    const message = value === undefined ? null : this.#codec.decode(value, envelope.from);
    if (message === null) {
      // The sender is authentic and the stream intact; a message this node cannot read
      // (a newer peer's) would be refused again after a reconnect, so only it is dropped.
      this.#rejects.note("bad-payload", { node: this.#self, channel: this.#channel, from: envelope.from, detail: value === undefined ? "not JSON" : "refused by the codec" });
      return;
    }
    this.#received++;
    if (this.#receive === null) this.#unheard++;
    else this.#receive(envelope.from, message);
  }

  #refuse(connection: Connection, reason: RejectReason, detail: string): void {
    this.#rejects.note(reason, { node: this.#self, channel: this.#channel, source: connection.source, peer: connection.peer ?? "", detail });
    this.#reset(connection);
  }

  /** Timer names are unique to this port instance, so that ports may share a clock: per connection
   *  (handshake, ping) or per peer (reconnect). */
  #timer(owner: number | NodeId, purpose: "handshake" | "ping" | "reconnect"): string {
    return `stream/${this.#self}/${this.#channel}/${this.#instance}/${typeof owner === "number" ? `connection ${owner}` : `peer ${owner}`}/${purpose}`;
  }

  #drop(reason: StreamDropReason, fields: Readonly<Record<string, string>>): void {
    this.#drops.note(reason, { node: this.#self, channel: this.#channel, ...fields });
  }
}

let nextPortInstance = 1;

const expectedKinds: Record<ConnectionState, readonly EnvelopeKind[]> = {
  "await-hello": ["hello"],
  "await-ack": ["helloAck"],
  "await-confirm": ["helloConfirm"],
  up: ["frame", "ping"],
  closed: [],
};

function nonceIn(value: unknown, field: string): Buffer | null {
  if (typeof value !== "object" || value === null) return null;
  const text = (value as Record<string, unknown>)[field];
  if (typeof text !== "string" || text.length > 2 * nonceSize) return null;
  const nonce = Buffer.from(text, "base64");
  return nonce.length === nonceSize ? nonce : null;
}

