// Driver ports: the interfaces the core's effects are executed through. A pure module:
// types only. Each port has a simulated implementation (drivers/sim) and a real one
// (drivers/real), and one contract test suite that runs against both.

import type { BucketSet } from "./bucket-set.ts";
import type { LogEntry, NodeId, RingId } from "./types.ts";

/** Monotonic time and one-shot named timers. */
export interface ClockPort {
  /** Milliseconds on a monotonic clock; never goes backwards. */
  nowMs(): number;
  /** Arms `timer` to call `onFire` once after `afterMs`; re-arming replaces the previous arm. */
  arm(timer: string, afterMs: number, onFire: () => void): void;
  /** Disarms `timer`; a no-op when it is not armed. */
  cancel(timer: string): void;
}

/** Heartbeat datagrams on each ring: may be lost, duplicated, delayed or reordered. */
export interface DatagramPort<Message> {
  send(ring: RingId, to: NodeId, message: Message): void;
  /** Registers the one receiver of this node's datagrams. `receivedAtMs` is when the
   *  datagram reached the host, on this port's clock (the kernel's receive timestamp on
   *  Linux), so that time spent waiting in the socket does not count as freshness. */
  listen(receive: (ring: RingId, message: Message, receivedAtMs: number) => void): void;
}

/** What the kernel filter of one module must enforce for the VIP's traffic. */
export interface FilterSettings {
  /** New connections (and their packets) in these buckets are accepted. */
  readonly owned: BucketSet;
  /** Only packets of connections this node already tracks are accepted in these buckets. */
  readonly lingering: BucketSet;
  /** Mid-stream packets of connections no node tracks get a TCP reset (subset of owned). */
  readonly reset: BucketSet;
  /** The filter accepts nothing once leaseMs has passed without apply() or renew(). */
  readonly leaseMs: number;
}

/** The kernel filter and VIP of one farm module on one node. */
export interface FilterPort {
  /** Replaces the whole filter atomically and starts a new lease. */
  apply(settings: FilterSettings): void;
  /** Extends the current lease to leaseMs from now. */
  renew(leaseMs: number): void;
  setVip(up: boolean): void;
}

/** The module's application: restarts and the health checker's verdicts. */
export interface ApplicationPort {
  restart(): void;
  /** Registers the one receiver of health changes (true: healthy). */
  watchHealth(report: (healthy: boolean) => void): void;
}

export interface LogPort {
  write(entry: LogEntry): void;
}
