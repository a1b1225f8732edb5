// Checks the farm invariants on a running FarmWorld, at every client packet and every
// few milliseconds of virtual time, and records each violation with its time.
//
// Safety, checked all the time:
//  S1 while membership is stable, every SYN is accepted by exactly one node;
//  S2 an established connection is never accepted by a node other than the one holding it
//     (unless its SYN itself was accepted twice, which only a partition between nodes that
//     both reach the client can cause: counted, not a violation; see docs/farm.md);
//  F4 in srcip mode, while membership is stable, all SYNs of a client go to one node;
//  F2 a node that stopped running (crash, power off, hang) accepts nothing once its lease
//     has run out, and no running UP node keeps it in its view past the detection bound;
//     a running node out of the farm (STOP, WAIT) accepts nothing.
// Liveness, checked by checkConverged() after the faults stop:
//  F1 every running node is UP with the same view, and every bucket has exactly one owner.
// F3 (one membership change moves only that member's buckets) is asserted inside the core
// on every change; a failed assertion ends the run as a violation ("assert", "F3: ...").
// F1-F4 are the design's farm invariants (shared/DESIGN.md); S1 and S2 are this checker's.

import { BucketSet } from "../../core/bucket-set.ts";
import type { NodeId } from "../../core/types.ts";
import type { PacketRecord } from "./clients.ts";
import type { FarmWorld } from "./farm-world.ts";

export interface Violation {
  readonly atMs: number;
  readonly invariant: string;
  readonly message: string;
}

export interface CheckerStats {
  packets: number;
  stablePackets: number;
  /** SYNs accepted by two nodes while the nodes were partitioned from each other. */
  doubleAcceptsUnderPartition: number;
}

/** Bound on recorded violations: the first ones are what a developer reads. */
export const violationCountMax = 20;
const checkIntervalMs = 10;

export class FarmChecker {
  readonly violations: Violation[] = [];
  readonly stats: CheckerStats = { packets: 0, stablePackets: 0, doubleAcceptsUnderPartition: 0 };
  readonly #world: FarmWorld;
  /** Per client address: its current connection and the nodes that accepted its SYN. */
  readonly #synAcceptors = new Map<number, { connectionId: number; nodes: Set<NodeId> }>();
  readonly #affinity = new Map<string, NodeId>();
  #running = false;
  readonly #reported = new Set<string>();

  constructor(world: FarmWorld) {
    this.#world = world;
  }

  /** Starts the periodic checks; packet checks come through onPacket. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    const tick = () => {
      if (!this.#running) return;
      this.#checkDeadNodes();
      this.#world.schedule(this.#world.nowMs + checkIntervalMs, tick);
    };
    this.#world.schedule(this.#world.nowMs, tick);
  }

  stop(): void {
    this.#running = false;
  }

  /** Records a violation; one that persists (same `key`) is recorded once, when it starts. */
  violate(invariant: string, message: string, key?: string): void {
    if (key !== undefined) {
      if (this.#reported.has(key)) return;
      this.#reported.add(key);
    }
    if (this.violations.length < violationCountMax) this.violations.push({ atMs: this.#world.nowMs, invariant, message });
  }

  onPacket(record: PacketRecord): void {
    this.stats.packets++;
    if (record.stableView !== null) this.stats.stablePackets++;
    if (record.isSyn) this.#checkSyn(record);
    else this.#checkEstablished(record);
  }

  #checkSyn(record: PacketRecord): void {
    let entry = this.#synAcceptors.get(record.clientIp);
    if (entry === undefined || entry.connectionId !== record.connectionId) {
      entry = { connectionId: record.connectionId, nodes: new Set() };
      this.#synAcceptors.set(record.clientIp, entry);
    }
    for (const id of record.accepted) entry.nodes.add(id);
    if (record.stableView !== null && this.#totalWeight(record.stableView) > 0 && record.accepted.length !== 1) {
      this.violate("S1", `SYN of ${ip(record.clientIp)} conn ${record.connectionId} (bucket ${record.bucket}) accepted by [${record.accepted.join(",")}] while membership stable [${record.stableView}]`);
    }
    if (record.accepted.length > 1 && record.stableView === null) this.stats.doubleAcceptsUnderPartition++;
    if (record.stableView !== null && record.accepted.length === 1 && this.#mode() === "srcip") {
      const key = `${record.stableView}|${record.clientIp}`;
      const previous = this.#affinity.get(key);
      if (previous !== undefined && previous !== record.accepted[0]) {
        this.violate("F4", `srcip client ${ip(record.clientIp)} reached ${previous} then ${record.accepted[0]} under the same stable membership [${record.stableView}]`);
      }
      this.#affinity.set(key, record.accepted[0]!);
    }
  }

  #checkEstablished(record: PacketRecord): void {
    const entry = this.#synAcceptors.get(record.clientIp);
    const synAcceptors = entry?.connectionId === record.connectionId ? entry.nodes : new Set<NodeId>();
    const strangers = record.accepted.filter((id) => id !== record.connectedTo);
    if (strangers.length > 0 && synAcceptors.size <= 1) {
      this.violate("S2", `conn ${record.connectionId} of ${ip(record.clientIp)} held by ${record.connectedTo} was also accepted by [${strangers.join(",")}]`);
    }
  }

  #checkDeadNodes(): void {
    const world = this.#world;
    const timings = world.config.timings;
    for (const node of world.nodes) {
      if (node.process === "running") {
        const state = node.farm?.state;
        if (state !== "UP" && node.kernel.acceptsAnything(world.nowMs)) {
          this.violate("F2", `${node.id} is ${state} (out of the farm) but its kernel still accepts VIP traffic`, `F2-left-${node.id}-${node.bootCount}`);
        }
        continue;
      }
      const sinceMs = node.notRunningSinceMs ?? world.nowMs;
      if (world.nowMs - sinceMs > timings.leaseMs + checkIntervalMs && node.kernel.acceptsAnything(world.nowMs)) {
        this.violate("F2", `${node.id} stopped running at ${sinceMs.toFixed(1)} ms but its kernel still accepts VIP traffic`, `F2-kernel-${node.id}-${sinceMs}`);
      }
      const boundMs = timings.detectionTimeoutMs + timings.heartbeatIntervalMs + this.#maxDelayMs() + checkIntervalMs;
      if (world.nowMs - sinceMs > boundMs) {
        for (const peer of world.upNodes()) {
          if (peer.farm!.members.some((member) => member.id === node.id)) {
            this.violate("F2", `${peer.id} still counts ${node.id} as a member ${(world.nowMs - sinceMs).toFixed(1)} ms after it stopped running`, `F2-view-${peer.id}-${node.id}-${sinceMs}`);
          }
        }
      }
    }
  }

  /** F1: every running node UP, one view, every bucket owned exactly once. Returns the problem, if any. */
  convergenceProblem(): string | null {
    const world = this.#world;
    const running = world.nodes.filter((node) => node.process === "running");
    const notUp = running.filter((node) => node.farm?.state !== "UP");
    if (notUp.length > 0) return `not UP: ${notUp.map((node) => `${node.id}=${node.farm?.state}`).join(" ")}`;
    if (!world.isStable()) return `views differ: ${running.map((node) => `${node.id}:[${node.farm!.members.map((m) => m.id).join(",")}]`).join(" ")}`;
    const weight = running.reduce((sum, node) => sum + world.config.nodes.find((each) => each.id === node.id)!.weight, 0);
    let covered = BucketSet.empty(world.config.bucketCount);
    for (const node of running) {
      const owned = node.kernel.effectiveOwned(world.nowMs);
      if (!covered.intersect(owned).isEmpty()) return `buckets ${covered.intersect(owned)} owned twice (again by ${node.id})`;
      covered = covered.union(owned);
    }
    if (weight > 0 && covered.size() !== world.config.bucketCount) return `buckets ${BucketSet.all(world.config.bucketCount).minus(covered)} have no owner`;
    return null;
  }

  #maxDelayMs(): number {
    return Math.max(...this.#world.config.rings.map((ring) => {
      const link = this.#world.network.link(ring);
      return link.latencyMs * 11 + link.jitterMs;
    }));
  }

  #totalWeight(view: string): number {
    const ids = new Set(view.split(","));
    return this.#world.config.nodes.filter((node) => ids.has(node.id)).reduce((sum, node) => sum + node.weight, 0);
  }

  #mode(): string {
    const port = this.#world.clients.settings.dstPort;
    return this.#world.config.rules.find((rule) => rule.port === port)?.mode ?? "srcip+srcport";
  }
}

function ip(address: number): string {
  return [24, 16, 8, 0].map((shift) => (address >>> shift) & 255).join(".");
}
