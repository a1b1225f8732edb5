// DatagramPorts over the simulated rings, one per node, without a whole FarmWorld: the
// wrapping farm-world.ts gives its nodes (#networkDriver), for contract tests and for
// scenarios that need heartbeats between a few nodes only.
// Injects what SimNetwork injects (latency, jitter, loss, duplication, reordering, one-way
// partitions per ring); `receivedAtMs` is the virtual time of delivery, so it cannot model
// a datagram waiting in a socket while its receiver is busy (FarmWorld's hung nodes do).
// Messages are passed by reference, not encoded: it cannot inject corruption or replays
// (the real port refuses those, which the core sees as loss).

import type { DatagramPort } from "../../core/ports.ts";
import type { NodeId, RingId } from "../../core/types.ts";
import type { SimNetwork } from "./network.ts";

export class SimDatagrams<Message> {
  readonly #network: SimNetwork;
  readonly #clockMs: () => number;
  readonly #receivers = new Map<NodeId, (ring: RingId, message: Message, receivedAtMs: number) => void>();

  /** `clockMs` must be the clock of the queue the network schedules on. */
  constructor(network: SimNetwork, clockMs: () => number) {
    this.#network = network;
    this.#clockMs = clockMs;
  }

  /** The port of `node`; datagrams to a node that has not listened yet are lost. */
  port(node: NodeId): DatagramPort<Message> {
    return {
      send: (ring, to, message) => {
        this.#network.transmit(ring, node, to, () => this.#receivers.get(to)?.(ring, message, this.#clockMs()));
      },
      listen: (receive) => {
        this.#receivers.set(node, receive);
      },
    };
  }
}
