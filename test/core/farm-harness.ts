// A tiny synchronous harness for the farm core: it holds the FarmNode state of every node
// of one module, delivers inputs at chosen virtual times, arms the `tick` timer as the
// runtime would, and routes every `send` effect to the destination's `receive` input after
// a fixed delay. It also models each node's kernel filter (owned set plus lease), so a test
// can ask what the kernel would actually accept at a given instant.
//
// Faults it injects: directed message loss per ring (`drop`/`restore`), a hung node
// (`hold`/`release`: its inputs queue up and are delivered late, in order), a crash (the
// node service restarts with a new incarnation), module stop/start and health flips.
// Faults it cannot inject: reordering, duplication, variable latency or clock skew — every
// message takes exactly `delayMs`, and all nodes share one clock.

import { assert } from "../../core/assert.ts";
import { BucketSet } from "../../core/bucket-set.ts";
import { createFarmNode, stepFarm, type FarmEffect, type FarmInput, type FarmNode } from "../../core/farm.ts";
import type { FarmConfig, FarmNodeConfig, FarmTimings } from "../../core/farm-config.ts";
import { defaultFarmTimings } from "../../core/farm-config.ts";
import type { NodeId, RingId } from "../../core/types.ts";

/** A bound on queued events, so a runaway feedback loop fails loudly instead of hanging. */
export const queuedEventCountMax = 100_000;
/** A bound on steps of one `runUntil`, for the same reason. */
export const stepsPerRunMax = 2_000_000;

export interface FarmConfigOptions {
  readonly nodes?: readonly FarmNodeConfig[];
  readonly rings?: readonly RingId[];
  readonly bucketCount?: number;
  readonly hashSeed?: number;
  readonly timings?: Partial<FarmTimings>;
}

/** A farm config for tests: nodes n1..n3 of weight 1 on one ring, 256 buckets, default timings. */
export function farmConfig(options: FarmConfigOptions = {}): FarmConfig {
  return {
    module: "web",
    nodes: options.nodes ?? [
      { id: "n1", weight: 1 },
      { id: "n2", weight: 1 },
      { id: "n3", weight: 1 },
    ],
    rings: options.rings ?? ["r1"],
    bucketCount: options.bucketCount ?? 256,
    hashSeed: options.hashSeed ?? 7,
    rules: [{ port: 80, proto: "tcp", mode: "srcip" }],
    timings: { ...defaultFarmTimings, ...options.timings },
  };
}

/** Nodes `n1..nN` with the given weights (1 when not given). */
export function nodesOf(count: number, weights: readonly number[] = []): FarmNodeConfig[] {
  return Array.from({ length: count }, (_, index) => ({ id: `n${index + 1}`, weight: weights[index] ?? 1 }));
}

/** One step the harness performed: the input a node received and the effects it returned. */
export interface StepRecord {
  readonly atMs: number;
  readonly node: NodeId;
  readonly input: FarmInput;
  readonly effects: readonly FarmEffect[];
  readonly before: FarmNode;
  readonly after: FarmNode;
}

/** What the node's kernel filter holds: the last filter-set and when its lease ends. */
export interface KernelFilter {
  readonly owned: BucketSet;
  readonly lingering: BucketSet;
  readonly reset: BucketSet;
  readonly leaseUntilMs: number;
}

interface QueuedEvent {
  readonly atMs: number;
  readonly order: number;
  readonly node: NodeId;
  readonly input: FarmInput;
  /** For timer events: the arm generation; a re-arm or cancel makes older ones stale. */
  readonly timerGeneration: number | null;
}

export interface HarnessOptions {
  readonly config: FarmConfig;
  /** One-way delay of every message. */
  readonly delayMs?: number;
  /** Called after every delivered input, with the harness already updated. */
  readonly onStep?: (harness: FarmHarness, record: StepRecord) => void;
}

export class FarmHarness {
  readonly config: FarmConfig;
  readonly delayMs: number;
  nowMs = 0;
  readonly nodes = new Map<NodeId, FarmNode>();
  readonly kernel = new Map<NodeId, KernelFilter>();
  readonly records: StepRecord[] = [];
  onStep: ((harness: FarmHarness, record: StepRecord) => void) | undefined;
  #queue: QueuedEvent[] = [];
  #order = 0;
  #timerGeneration = new Map<NodeId, number>();
  #dropped = new Set<string>();
  #held = new Map<NodeId, QueuedEvent[]>();
  #incarnation = new Map<NodeId, number>();

  constructor(options: HarnessOptions) {
    this.config = options.config;
    this.delayMs = options.delayMs ?? 1;
    this.onStep = options.onStep;
    assert(this.delayMs >= 0, "delayMs must not be negative");
    const empty = BucketSet.empty(this.config.bucketCount);
    for (const node of this.config.nodes) {
      this.#incarnation.set(node.id, 1);
      this.nodes.set(node.id, createFarmNode(this.config, node.id, 1));
      this.#timerGeneration.set(node.id, 0);
      this.kernel.set(node.id, { owned: empty, lingering: empty, reset: empty, leaseUntilMs: -Infinity });
    }
  }

  get ids(): NodeId[] {
    return [...this.nodes.keys()];
  }

  node(id: NodeId): FarmNode {
    const node = this.nodes.get(id);
    assert(node !== undefined, `no node ${id}`);
    return node;
  }

  // ---- inputs -------------------------------------------------------------------------

  /** Delivers an input to a node now (queued behind a hold, like any other input). */
  input(id: NodeId, input: FarmInput): void {
    this.#schedule(this.nowMs, id, input, null);
    this.runUntil(this.nowMs);
  }

  start(id: NodeId): void {
    this.input(id, { kind: "start" });
  }

  stop(id: NodeId): void {
    this.input(id, { kind: "stop" });
  }

  health(id: NodeId, healthy: boolean): void {
    this.input(id, { kind: "health", healthy });
  }

  /** The node service dies without a word and comes back stopped, with a new incarnation
   *  (it sends nothing until `start`). Its kernel filter is gone with it. */
  crash(id: NodeId): void {
    const incarnation = (this.#incarnation.get(id) ?? 0) + 1;
    this.#incarnation.set(id, incarnation);
    this.nodes.set(id, createFarmNode(this.config, id, incarnation));
    this.#timerGeneration.set(id, (this.#timerGeneration.get(id) ?? 0) + 1);
    this.#held.delete(id);
    this.#queue = this.#queue.filter((event) => event.node !== id);
    const empty = BucketSet.empty(this.config.bucketCount);
    this.kernel.set(id, { owned: empty, lingering: empty, reset: empty, leaseUntilMs: -Infinity });
  }

  // ---- faults -------------------------------------------------------------------------

  /** partition: messages from → to are lost, on one ring or (ring omitted) on all rings. */
  drop(from: NodeId, to: NodeId, ring?: RingId): void {
    for (const r of ring === undefined ? this.config.rings : [ring]) this.#dropped.add(linkKey(from, to, r));
  }

  /** heal: undoes `drop` for the same link (one ring or all). */
  restore(from: NodeId, to: NodeId, ring?: RingId): void {
    for (const r of ring === undefined ? this.config.rings : [ring]) this.#dropped.delete(linkKey(from, to, r));
  }

  restoreAll(): void {
    this.#dropped.clear();
  }

  isDropped(from: NodeId, to: NodeId, ring: RingId): boolean {
    return this.#dropped.has(linkKey(from, to, ring));
  }

  /** hold: the node hangs; every input due to it waits until `release`. */
  hold(id: NodeId): void {
    if (!this.#held.has(id)) this.#held.set(id, []);
  }

  /** release: the hung node resumes and gets its pending inputs now, oldest first. */
  release(id: NodeId): void {
    const pending = this.#held.get(id);
    if (pending === undefined) return;
    this.#held.delete(id);
    for (const event of pending) this.#push({ ...event, atMs: this.nowMs, order: this.#order++ });
    this.runUntil(this.nowMs);
  }

  releaseAll(): void {
    for (const id of [...this.#held.keys()]) this.release(id);
  }

  // ---- time ---------------------------------------------------------------------------

  advance(ms: number): void {
    this.runUntil(this.nowMs + ms);
  }

  /** Delivers every event due up to and including `untilMs`, then sets the clock there. */
  runUntil(untilMs: number): void {
    assert(untilMs >= this.nowMs, `time runs backwards: ${untilMs} < ${this.nowMs}`);
    let steps = 0;
    while (this.#queue.length > 0 && this.#queue[0]!.atMs <= untilMs) {
      assert(++steps <= stepsPerRunMax, "runUntil: too many steps (a message storm?)");
      const event = this.#queue.shift()!;
      this.nowMs = event.atMs;
      this.#deliver(event);
    }
    this.nowMs = untilMs;
  }

  /** Runs until `predicate` holds (checked after every step) or `deadlineMs` passes. */
  runUntilTrue(predicate: (harness: FarmHarness) => boolean, deadlineMs: number): boolean {
    if (predicate(this)) return true;
    let steps = 0;
    while (this.#queue.length > 0 && this.#queue[0]!.atMs <= deadlineMs) {
      assert(++steps <= stepsPerRunMax, "runUntilTrue: too many steps");
      const event = this.#queue.shift()!;
      this.nowMs = event.atMs;
      this.#deliver(event);
      if (predicate(this)) return true;
    }
    this.nowMs = deadlineMs;
    return predicate(this);
  }

  // ---- views --------------------------------------------------------------------------

  /** Buckets the node's kernel accepts new connections for at `atMs` (lease included). */
  kernelOwned(id: NodeId, atMs = this.nowMs): BucketSet {
    const filter = this.kernel.get(id)!;
    return atMs <= filter.leaseUntilMs ? filter.owned : BucketSet.empty(this.config.bucketCount);
  }

  /** Steps of one node, optionally only those from `sinceMs` on. */
  stepsOf(id: NodeId, sinceMs = -Infinity): StepRecord[] {
    return this.records.filter((record) => record.node === id && record.atMs >= sinceMs);
  }

  /** Log events a node emitted, optionally only those from `sinceMs` on. */
  logsOf(id: NodeId, event: string, sinceMs = -Infinity): { atMs: number; fields: Record<string, unknown> }[] {
    const logs: { atMs: number; fields: Record<string, unknown> }[] = [];
    for (const record of this.stepsOf(id, sinceMs)) {
      for (const effect of record.effects) {
        if (effect.kind === "log" && effect.entry.event === event) logs.push({ atMs: record.atMs, fields: effect.entry.fields });
      }
    }
    return logs;
  }

  // ---- internals ----------------------------------------------------------------------

  #schedule(atMs: number, node: NodeId, input: FarmInput, timerGeneration: number | null): void {
    this.#push({ atMs, order: this.#order++, node, input, timerGeneration });
  }

  #push(event: QueuedEvent): void {
    assert(this.#queue.length < queuedEventCountMax, "event queue full");
    // Binary search for the first event that is later (time, then insertion order).
    let low = 0;
    let high = this.#queue.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const other = this.#queue[middle]!;
      if (other.atMs < event.atMs || (other.atMs === event.atMs && other.order < event.order)) low = middle + 1;
      else high = middle;
    }
    this.#queue.splice(low, 0, event);
  }

  #deliver(event: QueuedEvent): void {
    const held = this.#held.get(event.node);
    if (held !== undefined) {
      assert(held.length < queuedEventCountMax, "held queue full");
      held.push(event);
      return;
    }
    if (event.timerGeneration !== null && event.timerGeneration !== this.#timerGeneration.get(event.node)) return;
    const before = this.node(event.node);
    const { state, effects } = stepFarm(before, this.nowMs, event.input);
    this.nodes.set(event.node, state);
    for (const effect of effects) this.#apply(event.node, effect);
    const record: StepRecord = { atMs: this.nowMs, node: event.node, input: event.input, effects, before, after: state };
    this.records.push(record);
    this.onStep?.(this, record);
  }

  #apply(id: NodeId, effect: FarmEffect): void {
    switch (effect.kind) {
      case "send":
        assert(effect.message.from === id, `${id} sends a heartbeat from ${effect.message.from}`);
        if (this.isDropped(id, effect.to, effect.ring)) return;
        const receivedAtMs = this.nowMs + this.delayMs;
        this.#schedule(receivedAtMs, effect.to, { kind: "receive", ring: effect.ring, message: effect.message, receivedAtMs }, null);
        return;
      case "timer-arm": {
        const generation = this.#timerGeneration.get(id)! + 1;
        this.#timerGeneration.set(id, generation);
        this.#schedule(this.nowMs + effect.afterMs, id, { kind: "timer", timer: effect.timer }, generation);
        return;
      }
      case "timer-cancel":
        this.#timerGeneration.set(id, this.#timerGeneration.get(id)! + 1);
        return;
      case "filter-set":
        this.kernel.set(id, {
          owned: effect.owned,
          lingering: effect.lingering,
          reset: effect.reset,
          leaseUntilMs: this.nowMs + effect.leaseMs,
        });
        return;
      case "filter-renew": {
        const filter = this.kernel.get(id)!;
        // A lapsed lease cannot be renewed: the kernel has already forgotten the buckets.
        if (this.nowMs <= filter.leaseUntilMs) this.kernel.set(id, { ...filter, leaseUntilMs: this.nowMs + effect.leaseMs });
        return;
      }
      case "vip":
      case "app-restart":
      case "log":
        return;
    }
  }
}

function linkKey(from: NodeId, to: NodeId, ring: RingId): string {
  return `${from}>${to}@${ring}`;
}

// ---- checks shared by the tests ------------------------------------------------------

/** The ids in a node's member view, sorted as the core keeps them. */
export function memberIds(node: FarmNode): NodeId[] {
  return node.members.map((member) => member.id);
}

/** One line about a node for failure messages: `n1[UP n1,n2 +joining]`. */
export function describeNode(node: FarmNode): string {
  return `${node.self}[${node.state}${node.joining ? " joining" : ""} ${memberIds(node).join(",")}]`;
}

/** Pairs of nodes whose owned sets (as the core states say) intersect, with the shared buckets. */
export function overlappingOwners(harness: FarmHarness, filter: (node: FarmNode) => boolean = () => true): string[] {
  const nodes = [...harness.nodes.values()].filter(filter);
  const overlaps: string[] = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const shared = nodes[i]!.owned.intersect(nodes[j]!.owned);
      if (!shared.isEmpty()) {
        overlaps.push(
          `${describeNode(nodes[i]!)} and ${describeNode(nodes[j]!)} both own ${shared.toString()} at ${harness.nowMs} ms`,
        );
      }
    }
  }
  return overlaps;
}

/** Two UP nodes with identical member lists that own the same bucket (the core's claim). */
export function overlapsWithinOneView(harness: FarmHarness): string[] {
  const up = [...harness.nodes.values()].filter((node) => node.state === "UP");
  const overlaps: string[] = [];
  for (let i = 0; i < up.length; i++) {
    for (let j = i + 1; j < up.length; j++) {
      const a = up[i]!;
      const b = up[j]!;
      if (memberIds(a).join(",") !== memberIds(b).join(",")) continue;
      const shared = a.owned.intersect(b.owned);
      if (!shared.isEmpty()) overlaps.push(`${a.self} and ${b.self} (members ${memberIds(a).join(",")}) both own ${shared.toString()} at ${harness.nowMs} ms`);
    }
  }
  return overlaps;
}

/** Pairs of nodes whose kernels would both accept new connections for some bucket now. */
export function overlappingKernels(harness: FarmHarness): string[] {
  const ids = harness.ids;
  const overlaps: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      const shared = harness.kernelOwned(ids[i]!).intersect(harness.kernelOwned(ids[j]!));
      if (!shared.isEmpty()) overlaps.push(`kernels of ${ids[i]} and ${ids[j]} both accept ${shared.toString()} at ${harness.nowMs} ms`);
    }
  }
  return overlaps;
}
