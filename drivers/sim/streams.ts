// The simulated twin of StreamPort (drivers/real/streams.ts): one connection per pair of
// running nodes that can reach each other, over the simulator's event queue.
// Injects: per-message latency (in order, no loss while a connection lives), node stops
// and restarts (the peer learns after one latency, as from a FIN or RST), two-way
// partitions (a connection dies silently; each side learns after `detectMs`, the real
// port's idle timeout), and reconnection after `connectMs` (handshake and backoff).
// Messages in flight on a connection that ends are lost, and each side reports the peer
// down afterwards, as the real port guarantees (a kill may in reality still deliver what
// was sent just before it: the simulation takes the harsher case).
// Cannot inject: loss or reordering within a live connection (TCP and the real port's
// sequence checks turn those into a reset), one-way partitions (a TCP connection needs
// both directions, so any cut is both ways here), back-pressure resets, or corruption.

import { assert } from "../../core/assert.ts";
import type { StreamPort } from "../../core/ports.ts";
import type { NodeId } from "../../core/types.ts";
import type { EventQueue } from "./event-queue.ts";

export interface SimStreamSettings {
  /** One-way delay of every message. */
  readonly latencyMs: number;
  /** From the moment two nodes could connect until both report each other up. */
  readonly connectMs: number;
  /** From a partition until each side reports the other down. */
  readonly detectMs: number;
}

/** A LAN with the real port's defaults: 5 s idle timeout, about one backoff step to reconnect. */
export const lanStreams: SimStreamSettings = Object.freeze({ latencyMs: 0.2, connectMs: 100, detectMs: 5_000 });

export interface SimStreamStats {
  sent: number;
  delivered: number;
  /** Sent while the sender saw the peer down. */
  droppedDown: number;
  /** In flight when their connection ended. */
  lostInFlight: number;
  connections: number;
}

interface Connection {
  readonly id: number;
  alive: boolean;
  /** When the last message on it arrives, per direction ("from>to"): later ones queue behind. */
  readonly lastArrivalMs: Map<string, number>;
}

interface SimNodePort<Message> {
  readonly node: NodeId;
  running: boolean;
  receive: ((from: NodeId, message: Message) => void) | null;
  watch: ((peer: NodeId, connected: boolean) => void) | null;
  /** The connection this port believes each peer is on; absent: down. */
  readonly view: Map<NodeId, Connection>;
}

export class SimStreams<Message> {
  readonly stats: SimStreamStats = { sent: 0, delivered: 0, droppedDown: 0, lostInFlight: 0, connections: 0 };
  readonly #queue: EventQueue;
  readonly #clockMs: () => number;
  readonly #nodes: readonly NodeId[];
  readonly #settings: SimStreamSettings;
  readonly #ports = new Map<NodeId, SimNodePort<Message>>();
  readonly #connections = new Map<string, Connection>();
  readonly #cuts = new Set<string>();
  readonly #attempts = new Set<string>();
  #nextConnectionId = 1;

  /** `clockMs` must be the clock of `queue`. Every node starts stopped. */
  constructor(queue: EventQueue, clockMs: () => number, nodes: readonly NodeId[], settings: SimStreamSettings = lanStreams) {
    assert(new Set(nodes).size === nodes.length, "a node is listed twice");
    assert(settings.latencyMs >= 0 && settings.connectMs > 0 && settings.detectMs > 0, "stream settings must be non-negative, with positive connect and detect times");
    this.#queue = queue;
    this.#clockMs = clockMs;
    this.#nodes = nodes;
    this.#settings = settings;
  }

  /** Starts `node`'s service: a new port, which connects to every running peer it can reach. */
  start(node: NodeId): StreamPort<Message> {
    assert(this.#nodes.includes(node), `unknown node ${node}`);
    assert(!(this.#ports.get(node)?.running ?? false), `${node} is already running`);
    const port: SimNodePort<Message> = { node, running: true, receive: null, watch: null, view: new Map() };
    this.#ports.set(node, port);
    for (const peer of this.#nodes) if (peer !== node) this.#maybeConnect(node, peer);
    return {
      send: (to, message) => this.#send(port, to, message),
      listen: (receive) => {
        port.receive = receive;
      },
      watchPeers: (report) => {
        port.watch = report;
      },
    };
  }

  /** Stops `node`'s service: its connections end, and its peers learn it after one latency. */
  stop(node: NodeId): void {
    const port = this.#ports.get(node);
    assert(port?.running === true, `${node} is not running`);
    port.running = false;
    for (const peer of this.#nodes) {
      if (peer === node) continue;
      const connection = this.#connections.get(pairKey(node, peer));
      if (connection === undefined) continue;
      this.#end(connection, pairKey(node, peer));
      this.#queue.push(this.#clockMs() + this.#settings.latencyMs, () => this.#down(peer, node, connection));
    }
  }

  /** Cuts `a` and `b` apart both ways; each learns after `detectMs`. */
  partition(a: NodeId, b: NodeId): void {
    assert(a !== b, "a node is not partitioned from itself");
    const key = pairKey(a, b);
    this.#cuts.add(key);
    const connection = this.#connections.get(key);
    if (connection === undefined) return;
    this.#end(connection, key);
    this.#queue.push(this.#clockMs() + this.#settings.detectMs, () => {
      this.#down(a, b, connection);
      this.#down(b, a, connection);
    });
  }

  /** Undoes partition(a, b); they reconnect after `connectMs` once both saw the old connection end. */
  heal(a: NodeId, b: NodeId): void {
    this.#cuts.delete(pairKey(a, b));
    this.#maybeConnect(a, b);
  }

  isCut(a: NodeId, b: NodeId): boolean {
    return this.#cuts.has(pairKey(a, b));
  }

  #send(port: SimNodePort<Message>, to: NodeId, message: Message): void {
    if (!port.running) return;
    this.stats.sent++;
    const connection = port.view.get(to);
    if (connection === undefined) {
      this.stats.droppedDown++;
      return;
    }
    const direction = `${port.node}>${to}`;
    const atMs = Math.max(this.#clockMs() + this.#settings.latencyMs, connection.lastArrivalMs.get(direction) ?? 0);
    connection.lastArrivalMs.set(direction, atMs);
    this.#queue.push(atMs, () => {
      const target = this.#ports.get(to);
      if (!connection.alive || target?.running !== true || target.view.get(port.node) !== connection) {
        this.stats.lostInFlight++;
        return;
      }
      this.stats.delivered++;
      target.receive?.(port.node, message);
    });
  }

  #end(connection: Connection, key: string): void {
    connection.alive = false;
    this.#connections.delete(key);
  }

  /** `node` learns that its connection to `peer` ended; then the pair may reconnect. */
  #down(node: NodeId, peer: NodeId, connection: Connection): void {
    const port = this.#ports.get(node);
    if (port?.running === true && port.view.get(peer) === connection) {
      port.view.delete(peer);
      port.watch?.(peer, false);
    }
    this.#maybeConnect(node, peer);
  }

  /** Schedules a connection attempt when both run, can reach each other, and neither still
   *  believes in an older connection. */
  #maybeConnect(a: NodeId, b: NodeId): void {
    const key = pairKey(a, b);
    if (!this.#canConnect(a, b) || this.#attempts.has(key)) return;
    this.#attempts.add(key);
    this.#queue.push(this.#clockMs() + this.#settings.connectMs, () => {
      this.#attempts.delete(key);
      if (this.#canConnect(a, b)) this.#connect(a, b);
    });
  }

  #canConnect(a: NodeId, b: NodeId): boolean {
    const portA = this.#ports.get(a);
    const portB = this.#ports.get(b);
    if (portA?.running !== true || portB?.running !== true) return false;
    if (this.#cuts.has(pairKey(a, b)) || this.#connections.has(pairKey(a, b))) return false;
    return !portA.view.has(b) && !portB.view.has(a);
  }

  #connect(a: NodeId, b: NodeId): void {
    const connection: Connection = { id: this.#nextConnectionId++, alive: true, lastArrivalMs: new Map() };
    this.#connections.set(pairKey(a, b), connection);
    this.stats.connections++;
    // Reported to the lower name first, whichever side made the attempt: a stable order.
    const [low, high] = a < b ? [a, b] : [b, a];
    for (const [node, peer] of [[low, high], [high, low]] as const) {
      const port = this.#ports.get(node)!;
      port.view.set(peer, connection);
      port.watch?.(peer, true);
    }
  }
}

function pairKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
