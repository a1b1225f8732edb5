// Simulated clients of a farm VIP: each opens TCP-like connections from its own address
// and a new source port per connection, sends requests, and records which nodes accepted,
// reset or answered every packet. Every node's kernel sees every client packet (a switch
// floods frames to the virtual MAC), as with SafeKit's vmac_invisible.
// Injects: nothing itself. Models: retransmission after retryMs (no exponential backoff),
// reconnection on reset, close after a number of requests (conntrack entries removed), and
// the application's time to answer: a request a node accepted is acknowledged at once and
// answered serviceMs later, from the VIP. An application that failed or stopped meanwhile
// has its connection closed (the client reconnects); an answer that cannot leave because
// the node is off or the VIP's address is no longer local is lost: the client, whose
// request was acknowledged, retransmits nothing and gives up after answerTimeoutMs.
// Cannot model: TCP windows, partial answers, client-side network faults.

import { assert } from "../../core/assert.ts";
import { bucketOfPacket } from "../../core/farm-packet.ts";
import type { NodeId } from "../../core/types.ts";
import type { FarmWorld } from "./farm-world.ts";
import type { Prng } from "./prng.ts";

export interface ClientSettings {
  readonly count: number;
  /** Defaults to the port of the module's first rule. */
  readonly dstPort: number;
  readonly requestsPerConnection: number;
  /** Pause between two requests, and before the next connection. */
  readonly thinkMs: number;
  /** A packet left unanswered is sent again after this. */
  readonly retryMs: number;
  /** How long a node's application takes to answer a request it accepted. */
  readonly serviceMs: number;
  /** An acknowledged request not answered by then: the client gives its connection up. */
  readonly answerTimeoutMs: number;
  /** One-way delay between a client and the nodes. */
  readonly latencyMs: number;
}

export interface PacketRecord {
  readonly atMs: number;
  readonly clientIp: number;
  readonly connectionId: number;
  readonly isSyn: boolean;
  readonly bucket: number;
  /** Nodes whose kernel accepted the packet. */
  readonly accepted: readonly NodeId[];
  /** Nodes whose kernel answered with a TCP reset. */
  readonly reset: readonly NodeId[];
  /** Accepting nodes whose application answered. */
  readonly responders: readonly NodeId[];
  /** The node the connection was established with, for packets after the SYN. */
  readonly connectedTo: NodeId | null;
  /** Sorted ids of the UP nodes when membership is stable, else null. */
  readonly stableView: string | null;
}

interface Connection {
  readonly id: number;
  readonly srcPort: number;
  /** The flow's bucket and conntrack key, fixed for the connection's life. */
  readonly bucket: number;
  readonly flowKey: string;
  established: boolean;
  node: NodeId | null;
  requestsLeft: number;
  /** When the request the node acknowledged and has not answered yet was sent; null: none. */
  awaitingSinceMs: number | null;
}

export class SimClient {
  readonly ip: number;
  nextPort = 32_768;
  connection: Connection | null = null;
  successes = 0;
  lastSuccessMs = -Infinity;
  resets = 0;
  connections = 0;
  /** Acknowledged requests never answered (given up after answerTimeoutMs). */
  answerTimeouts = 0;

  constructor(ip: number) {
    this.ip = ip;
  }
}

/** 198.18.0.0/15, the range reserved for network benchmarks. */
const clientIpBase = (198 << 24) | (18 << 16);

export class ClientFleet {
  readonly settings: ClientSettings;
  readonly clients: SimClient[];
  /** Called at every answered request. */
  onSuccess: ((client: SimClient, node: NodeId, atMs: number) => void) | null = null;
  active = false;
  #connectionCount = 0;
  readonly #world: FarmWorld;
  readonly #prng: Prng;
  readonly #onPacket: ((record: PacketRecord) => void) | undefined;

  constructor(world: FarmWorld, prng: Prng, settings: Partial<ClientSettings>, onPacket?: (record: PacketRecord) => void) {
    this.#world = world;
    this.#prng = prng;
    this.#onPacket = onPacket;
    const firstRule = world.config.rules[0];
    this.settings = { count: 0, dstPort: firstRule?.port ?? 80, requestsPerConnection: 5, thinkMs: 20, retryMs: 100, latencyMs: 0.2, serviceMs: 1, answerTimeoutMs: 1_000, ...settings };
    this.clients = [];
    this.setClientCount(this.settings.count);
  }

  /** Replaces the clients (only while the load is stopped). */
  setClientCount(count: number): void {
    assert(!this.active, "cannot change the client count while the load runs");
    assert(Number.isInteger(count) && count >= 0 && count <= 65_536, `client count ${count} out of range`);
    this.clients.length = 0;
    for (let index = 0; index < count; index++) this.clients.push(new SimClient((clientIpBase + index + 1) >>> 0));
  }

  /** Starts every client, staggered over one think time. */
  start(): void {
    if (this.active) return;
    this.active = true;
    for (const client of this.clients) {
      this.#world.schedule(this.#world.nowMs + this.#prng.float() * this.settings.thinkMs, () => this.#open(client));
    }
  }

  /** Stops the load; answers still in flight are ignored. */
  stop(): void {
    this.active = false;
    for (const client of this.clients) client.connection = null;
  }

  #open(client: SimClient): void {
    if (!this.active) return;
    const srcPort = client.nextPort;
    client.nextPort = client.nextPort >= 60_999 ? 32_768 : client.nextPort + 1;
    const bucket = bucketOfPacket(this.#world.config, { srcIp: client.ip, srcPort, dstPort: this.settings.dstPort, proto: "tcp" });
    assert(bucket !== null, `no farm rule for port ${this.settings.dstPort}`);
    const flowKey = `${client.ip}:${srcPort}`;
    const connection: Connection = { id: ++this.#connectionCount, srcPort, bucket, flowKey, established: false, node: null, requestsLeft: this.settings.requestsPerConnection, awaitingSinceMs: null };
    client.connection = connection;
    client.connections++;
    this.#send(client, connection);
  }

  #send(client: SimClient, connection: Connection): void {
    const world = this.#world;
    const isSyn = !connection.established;
    const { bucket, flowKey } = connection;
    world.schedule(world.nowMs + this.settings.latencyMs, () => {
      const accepted: NodeId[] = [];
      const reset: NodeId[] = [];
      for (const node of world.nodes) {
        if (!node.powered) continue;
        const verdict = node.kernel.decide(bucket, flowKey, isSyn, world.nowMs);
        if (verdict === "accept") accepted.push(node.id);
        else if (verdict === "reset") reset.push(node.id);
      }
      const responders = accepted.filter((id) => world.serving(world.node(id)));
      if (isSyn) for (const id of responders) world.node(id).kernel.establish(flowKey);
      const stableView = this.#onPacket === undefined || !world.isStable() ? null : world.upNodes().map((node) => node.id).sort().join(",");
      this.#onPacket?.({ atMs: world.nowMs, clientIp: client.ip, connectionId: connection.id, isSyn, bucket, accepted, reset, responders, connectedTo: connection.node, stableView });
      // One event per packet: the client learns the answer now and adds the return trip
      // to whatever it does next.
      this.#answer(client, connection, responders, reset);
    });
  }

  #answer(client: SimClient, connection: Connection, responders: readonly NodeId[], reset: readonly NodeId[]): void {
    if (!this.active || client.connection !== connection) return;
    const world = this.#world;
    const returnMs = this.settings.latencyMs;
    if (responders.length > 1 && !connection.established) {
      // Two nodes answered the SYN (a partitioned farm): the client completes the
      // handshake with one, and the other, still half-open, answers that ACK with a reset
      // the client accepts (its sequence number is in the window). Seen in the lab.
      this.#close(client, connection);
      client.resets++;
      world.schedule(world.nowMs + returnMs, () => this.#open(client));
    } else if (responders.length > 0 && !connection.established) {
      connection.established = true;
      connection.node = responders[0]!;
      world.schedule(world.nowMs + returnMs + this.settings.thinkMs, () => this.#sendIfCurrent(client, connection));
    } else if (connection.node !== null && responders.includes(connection.node)) {
      // Acknowledged: the application answers serviceMs later, if it still can.
      const node = connection.node;
      const sentMs = world.nowMs;
      connection.awaitingSinceMs = sentMs;
      world.schedule(world.nowMs + this.settings.serviceMs, () => this.#reply(client, connection, node, sentMs));
      world.schedule(sentMs + this.settings.answerTimeoutMs, () => this.#giveUp(client, connection, sentMs));
    } else if (reset.length > 0 || responders.length > 0) {
      // A reset, or an answer from a node that does not hold the connection (which a real
      // client's TCP stack would also reset): reconnect at once.
      client.resets++;
      client.connection = null;
      world.schedule(world.nowMs + returnMs, () => this.#open(client));
    } else {
      world.schedule(world.nowMs + returnMs + this.settings.retryMs, () => this.#sendIfCurrent(client, connection));
    }
  }

  /** The node's application answers; the answer leaves only from a VIP address still local. */
  #reply(client: SimClient, connection: Connection, nodeId: NodeId, sentMs: number): void {
    const world = this.#world;
    if (!this.active || client.connection !== connection || connection.awaitingSinceMs !== sentMs) return;
    const node = world.node(nodeId);
    if (node.process === "hung" && node.powered) {
      // A frozen application answers when released, unless the client gave up first.
      if (world.nowMs + this.settings.retryMs < sentMs + this.settings.answerTimeoutMs) world.schedule(world.nowMs + this.settings.retryMs, () => this.#reply(client, connection, nodeId, sentMs));
      return;
    }
    if (!node.powered || !node.kernel.canAnswer()) {
      // Nothing can leave from the VIP: the client, whose request was acknowledged, waits.
      world.note(`client ${client.ip} connection ${connection.id}: ${nodeId} ${node.powered ? "has dropped the VIP's address" : "is off"}, the answer is lost`);
      return;
    }
    if (!world.serving(node)) {
      // The application failed or stopped: its kernel closes the connection, which the
      // client sees (the VIP's address is still local), and it reconnects at once.
      world.schedule(world.nowMs + this.settings.latencyMs, () => {
        if (!this.active || client.connection !== connection || connection.awaitingSinceMs !== sentMs) return;
        this.#close(client, connection);
        client.resets++;
        this.#open(client);
      });
      return;
    }
    world.schedule(world.nowMs + this.settings.latencyMs, () => {
      if (!this.active || client.connection !== connection || connection.awaitingSinceMs !== sentMs) return;
      connection.awaitingSinceMs = null;
      client.successes++;
      client.lastSuccessMs = world.nowMs;
      this.onSuccess?.(client, nodeId, world.nowMs);
      connection.requestsLeft--;
      if (connection.requestsLeft > 0) {
        world.schedule(world.nowMs + this.settings.thinkMs, () => this.#sendIfCurrent(client, connection));
      } else {
        this.#close(client, connection);
        world.schedule(world.nowMs + this.settings.thinkMs, () => this.#open(client));
      }
    });
  }

  /** No answer within answerTimeoutMs of the request: the client drops the connection. */
  #giveUp(client: SimClient, connection: Connection, sentMs: number): void {
    if (!this.active || client.connection !== connection || connection.awaitingSinceMs !== sentMs) return;
    client.answerTimeouts++;
    this.#close(client, connection);
    this.#world.schedule(this.#world.nowMs, () => this.#open(client));
  }

  /** The connection ends: the client forgets it, and so does every kernel's conntrack. */
  #close(client: SimClient, connection: Connection): void {
    client.connection = null;
    for (const node of this.#world.nodes) node.kernel.conntrack.delete(connection.flowKey);
  }

  #sendIfCurrent(client: SimClient, connection: Connection): void {
    if (this.active && client.connection === connection) this.#send(client, connection);
  }
}
