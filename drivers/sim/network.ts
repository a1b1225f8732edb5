// Simulated heartbeat networks ("rings").
// Injects, per ring and per directed link: latency, jitter, loss, duplication, reordering
// (extra delay on some datagrams) and one-way or two-way partitions.
// Cannot inject: corruption (the real driver authenticates and drops corrupt datagrams,
// which the core sees as loss), bandwidth limits or queueing delay under load.

import { assert } from "../../core/assert.ts";
import type { NodeId, RingId } from "../../core/types.ts";
import type { EventQueue } from "./event-queue.ts";
import type { Prng } from "./prng.ts";

export interface LinkSettings {
  /** One-way base delay. */
  readonly latencyMs: number;
  /** Extra delay drawn uniformly in [0, jitterMs]. */
  readonly jitterMs: number;
  /** Probability that a datagram is lost. */
  readonly lossRate: number;
  /** Probability that a datagram is delivered twice. */
  readonly duplicateRate: number;
  /** Probability that a datagram is held back by up to 10 latencies, overtaken by later ones. */
  readonly reorderRate: number;
}

/** A quiet LAN: 0.1–0.3 ms one way, nothing lost. */
export const lanLink: LinkSettings = Object.freeze({ latencyMs: 0.1, jitterMs: 0.2, lossRate: 0, duplicateRate: 0, reorderRate: 0 });

export interface NetworkStats {
  sent: number;
  delivered: number;
  lost: number;
  cut: number;
  duplicated: number;
}

export class SimNetwork {
  readonly stats: NetworkStats = { sent: 0, delivered: 0, lost: 0, cut: 0, duplicated: 0 };
  readonly #queue: EventQueue;
  readonly #prng: Prng;
  readonly #rings: readonly RingId[];
  readonly #links = new Map<RingId, LinkSettings>();
  readonly #cuts = new Set<string>();
  #clockMs: () => number;

  constructor(queue: EventQueue, prng: Prng, rings: readonly RingId[], link: LinkSettings, clockMs: () => number) {
    this.#queue = queue;
    this.#prng = prng;
    this.#rings = rings;
    this.#clockMs = clockMs;
    checkLink(link);
    for (const ring of rings) this.#links.set(ring, link);
  }

  /** Changes the link settings of one ring, or of all rings with "*". */
  setLink(ring: RingId | "*", settings: Partial<LinkSettings>): void {
    for (const each of this.#ringsOf(ring)) {
      const link = { ...this.#links.get(each)!, ...settings };
      checkLink(link);
      this.#links.set(each, link);
    }
  }

  link(ring: RingId): LinkSettings {
    const settings = this.#links.get(ring);
    assert(settings !== undefined, `unknown ring ${ring}`);
    return settings;
  }

  /** Drops every datagram from `from` to `to` on `ring` ("*": all rings) until heal. One direction only. */
  partition(ring: RingId | "*", from: NodeId, to: NodeId): void {
    for (const each of this.#ringsOf(ring)) this.#cuts.add(cutKey(each, from, to));
  }

  /** Undoes partition() for that direction. */
  heal(ring: RingId | "*", from: NodeId, to: NodeId): void {
    for (const each of this.#ringsOf(ring)) this.#cuts.delete(cutKey(each, from, to));
  }

  /** Undoes every partition. */
  healAll(): void {
    this.#cuts.clear();
  }

  isCut(ring: RingId, from: NodeId, to: NodeId): boolean {
    this.#ringsOf(ring);
    return this.#cuts.has(cutKey(ring, from, to));
  }

  /** Schedules `deliver` zero, one or two times, as the ring's link settings dictate. */
  transmit(ring: RingId, from: NodeId, to: NodeId, deliver: () => void): void {
    const link = this.link(ring);
    this.stats.sent++;
    if (this.#cuts.has(cutKey(ring, from, to))) {
      this.stats.cut++;
      return;
    }
    if (this.#prng.chance(link.lossRate)) {
      this.stats.lost++;
      return;
    }
    const copies = this.#prng.chance(link.duplicateRate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let copy = 0; copy < copies; copy++) {
      let delayMs = link.latencyMs + this.#prng.float() * link.jitterMs;
      if (this.#prng.chance(link.reorderRate)) delayMs += this.#prng.float() * 10 * Math.max(link.latencyMs, 1);
      this.#queue.push(this.#clockMs() + delayMs, () => {
        this.stats.delivered++;
        deliver();
      });
    }
  }

  #ringsOf(ring: RingId | "*"): readonly RingId[] {
    assert(ring === "*" || this.#rings.includes(ring), `unknown ring ${ring}`);
    return ring === "*" ? this.#rings : [ring];
  }
}

function checkLink(link: LinkSettings): void {
  assert(Number.isFinite(link.latencyMs) && link.latencyMs >= 0, `latencyMs ${link.latencyMs} must be a finite number >= 0`);
  assert(Number.isFinite(link.jitterMs) && link.jitterMs >= 0, `jitterMs ${link.jitterMs} must be a finite number >= 0`);
  for (const rate of [link.lossRate, link.duplicateRate, link.reorderRate]) assert(rate >= 0 && rate <= 1, `rate ${rate} must be in [0, 1]`);
}

function cutKey(ring: RingId, from: NodeId, to: NodeId): string {
  return `${ring}|${from}|${to}`;
}
