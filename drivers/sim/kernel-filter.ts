// A model of one node's kernel for one farm module's VIP: the nftables filter (owned,
// lingering and reset buckets under a lease) and connection tracking.
// Injects: nothing by itself; the world flushes it on a process crash (the real table is
// owned by the service's netlink socket, so the kernel removes it when the process dies)
// and wipes it, conntrack included, on power loss.
// Cannot model: conntrack's loose pickup of mid-stream flows (the real driver disables
// it), table size limits, or the time a real transaction takes.

import { BucketSet } from "../../core/bucket-set.ts";
import type { FilterSettings, VipState } from "../../core/ports.ts";

export type PacketVerdict = "accept" | "reset" | "drop";

/** Test-only faults planted in the model to prove the checker catches them.
 *  "filter-keeps-buckets": a driver that removes nothing when its node leaves the farm
 *  (an emptying filter, a VIP removal and a process crash are ignored, the lease never
 *  runs out), so a node that left keeps answering for its old buckets. */
export type PlantedBug = "none" | "filter-keeps-buckets";

export class SimKernelFilter {
  owned: BucketSet;
  lingering: BucketSet;
  reset: BucketSet;
  leaseExpiresMs = -Infinity;
  /** "up": accepted by the filter's rules; "draining": only this node's own answers leave
   *  from the VIP (nothing comes in); "down": neither. */
  vip: VipState = "down";
  /** Flows this kernel accepted the SYN of, by flow key: "syn" until this node answered it. */
  readonly conntrack = new Map<string, "syn" | "established">();
  readonly #bug: PlantedBug;

  constructor(bucketCount: number, bug: PlantedBug) {
    this.owned = this.lingering = this.reset = BucketSet.empty(bucketCount);
    this.#bug = bug;
  }

  apply(settings: FilterSettings, nowMs: number): void {
    if (this.#bug === "filter-keeps-buckets" && settings.owned.isEmpty() && !this.owned.isEmpty()) {
      this.leaseExpiresMs = Infinity;
      return;
    }
    this.owned = settings.owned;
    this.lingering = settings.lingering;
    this.reset = settings.reset;
    this.leaseExpiresMs = nowMs + settings.leaseMs;
  }

  setVip(state: VipState): void {
    if (this.#bug === "filter-keeps-buckets" && state !== "up") return;
    this.vip = state;
  }

  get vipUp(): boolean {
    return this.vip === "up";
  }

  /** Whether an answer this node's application writes from the VIP can be routed: the
   *  address is still local (up or draining). */
  canAnswer(): boolean {
    return this.vip !== "down";
  }

  renew(leaseMs: number, nowMs: number): void {
    if (this.leaseExpiresMs === Infinity) return;
    this.leaseExpiresMs = nowMs + leaseMs;
  }

  /** The service's process died: its table goes with it; conntrack stays. */
  flushRules(): void {
    if (this.#bug === "filter-keeps-buckets") return;
    const empty = BucketSet.empty(this.owned.bucketCount);
    this.owned = this.lingering = this.reset = empty;
    this.leaseExpiresMs = -Infinity;
  }

  /** Power loss: nothing survives. */
  wipe(): void {
    this.flushRules();
    this.conntrack.clear();
    this.vip = "down";
  }

  leaseValid(nowMs: number): boolean {
    return nowMs < this.leaseExpiresMs;
  }

  /** True when some packet to the VIP could be accepted by this kernel now. */
  acceptsAnything(nowMs: number): boolean {
    return this.vipUp && this.leaseValid(nowMs) && !(this.owned.isEmpty() && this.lingering.isEmpty());
  }

  /** Owned buckets in force now (empty once the lease lapsed or the VIP is down). */
  effectiveOwned(nowMs: number): BucketSet {
    return this.vipUp && this.leaseValid(nowMs) ? this.owned : BucketSet.empty(this.owned.bucketCount);
  }

  /** This node answered the flow's SYN: the flow is established here. */
  establish(flowKey: string): void {
    if (this.conntrack.has(flowKey)) this.conntrack.set(flowKey, "established");
  }

  decide(bucket: number, flowKey: string, isSyn: boolean, nowMs: number): PacketVerdict {
    if (!this.vipUp || !this.leaseValid(nowMs)) return "drop";
    // A SYN (first or retransmitted) is only ever taken by the bucket's owner. A lingering
    // bucket keeps only flows whose handshake this node answered (ct state established).
    const tracked = this.conntrack.get(flowKey);
    if (isSyn) {
      if (!this.owned.has(bucket)) return "drop";
      if (tracked === undefined) this.conntrack.set(flowKey, "syn");
      return "accept";
    }
    if (tracked !== undefined && this.owned.has(bucket)) return "accept";
    if (tracked === "established" && this.lingering.has(bucket)) return "accept";
    if (tracked === undefined && this.reset.has(bucket)) return "reset";
    return "drop";
  }
}
