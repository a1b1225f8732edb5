// The farm core (core/farm.ts) driven through a small synchronous harness
// (test/core/farm-harness.ts): membership, join handshake, detection, lease, health,
// stop, stale heartbeats, asymmetric links, and a fast-check property over random faults.
//
// Every message takes `delayMs` (1 ms unless a test says otherwise) and all nodes share one
// virtual clock. Timings are the defaults: heartbeat 50 ms, detection 250 ms, lease 200 ms.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BucketSet } from "../../core/bucket-set.ts";
import { createFarmNode, stepFarm, type FarmEffect, type FarmHeartbeat, type FarmNode, type FarmState, type MemberRef } from "../../core/farm.ts";
import { defaultFarmTimings, type FarmConfig } from "../../core/farm-config.ts";
import { bucketsOwnedBy, computeOwners } from "../../core/ownership.ts";
import type { NodeId } from "../../core/types.ts";
import {
  describeNode,
  FarmHarness,
  farmConfig,
  memberIds,
  nodesOf,
  overlappingKernels,
  overlappingOwners,
  overlapsWithinOneView,
} from "./farm-harness.ts";

const timings = defaultFarmTimings;
const bucketCount = 256;

// ---------------------------------------------------------------------------------------
// Helpers

/** A harness with every node started at time 0, run until `untilMs`. */
function startedFarm(config: FarmConfig, untilMs = 1_000, delayMs = 1): FarmHarness {
  const harness = new FarmHarness({ config, delayMs });
  for (const id of harness.ids) harness.start(id);
  harness.runUntil(untilMs);
  return harness;
}

function union(sets: readonly BucketSet[]): BucketSet {
  return sets.reduce((all, set) => all.union(set), BucketSet.empty(bucketCount));
}

/** Asserts the owned sets of `ids` are pairwise disjoint and together cover every bucket. */
function expectPartition(harness: FarmHarness, ids: readonly NodeId[]): void {
  const owned = ids.map((id) => harness.node(id).owned);
  expect(overlappingOwners(harness, (node) => ids.includes(node.self))).toEqual([]);
  expect(union(owned).size()).toBe(bucketCount);
  expect(owned.reduce((sum, set) => sum + set.size(), 0)).toBe(bucketCount);
}

/** The share of `id` in the map the core computes for `members` (weights from config). */
function shareOf(config: FarmConfig, members: readonly NodeId[], id: NodeId): BucketSet {
  const weighted = config.nodes.filter((node) => members.includes(node.id));
  return bucketsOwnedBy(computeOwners(weighted, config.bucketCount, config.hashSeed), id);
}

function kinds(effects: readonly FarmEffect[]): string[] {
  return effects.filter((effect) => effect.kind !== "log").map((effect) => effect.kind);
}

function logEvents(effects: readonly FarmEffect[]): string[] {
  return effects.flatMap((effect) => (effect.kind === "log" ? [effect.entry.event] : []));
}

function sends(effects: readonly FarmEffect[]): Extract<FarmEffect, { kind: "send" }>[] {
  return effects.flatMap((effect) => (effect.kind === "send" ? [effect] : []));
}

function heartbeat(fields: {
  from: NodeId;
  incarnation: number;
  seq: number;
  state?: FarmState;
  joining?: boolean;
  epoch?: number;
  members?: readonly MemberRef[];
  lingering?: BucketSet;
}): FarmHeartbeat {
  return {
    kind: "farm-heartbeat",
    module: "web",
    from: fields.from,
    incarnation: fields.incarnation,
    seq: fields.seq,
    state: fields.state ?? "UP",
    joining: fields.joining ?? false,
    epoch: fields.epoch ?? 1,
    members: fields.members ?? [],
    lingering: fields.lingering ?? BucketSet.empty(bucketCount),
  };
}

function peerOf(node: FarmNode, id: NodeId) {
  const peer = node.peers.find((candidate) => candidate.id === id);
  expect(peer).toBeDefined();
  return peer!;
}

// ---------------------------------------------------------------------------------------
// Start and membership

describe("farm start", () => {
  it("a lone started node settles after the detection timeout and becomes UP owning every bucket", () => {
    const harness = new FarmHarness({ config: farmConfig() });
    harness.start("n1");
    harness.runUntil(timings.detectionTimeoutMs - 1);
    expect(harness.node("n1").state).toBe("WAIT");
    expect(harness.node("n1").joining).toBe(false); // not settled yet: no join announced
    expect(harness.node("n1").owned.isEmpty()).toBe(true);

    const becameUp = harness.runUntilTrue((h) => h.node("n1").state === "UP", timings.detectionTimeoutMs + timings.heartbeatIntervalMs);
    expect(becameUp).toBe(true);
    const node = harness.node("n1");
    expect(node.owned.size()).toBe(bucketCount);
    expect(memberIds(node)).toEqual(["n1"]);

    const step = harness.records.at(-1)!;
    expect(step.before.state).toBe("WAIT");
    expect(step.atMs).toBeGreaterThanOrEqual(timings.detectionTimeoutMs);
    const effectKinds = kinds(step.effects);
    expect(effectKinds).toContain("filter-set");
    expect(effectKinds).toContain("timer-arm");
    expect(step.effects).toContainEqual({ kind: "vip", state: "up" });
    const filterSet = step.effects.find((effect) => effect.kind === "filter-set")!;
    expect(filterSet).toMatchObject({ leaseMs: timings.leaseMs });
    if (filterSet.kind !== "filter-set") throw new Error("unreachable");
    expect(filterSet.owned.size()).toBe(bucketCount);
    expect(filterSet.lingering.isEmpty()).toBe(true);
    // No live peer serves anything, so strangers mid-stream are reset on every bucket.
    expect(filterSet.reset.size()).toBe(bucketCount);
    // The contract: the VIP goes up only after the filter that says what we own.
    expect(effectKinds.indexOf("vip")).toBeGreaterThan(effectKinds.indexOf("filter-set"));
  });

  it("three nodes started together reach UP within three heartbeats and split the buckets by weight", () => {
    const config = farmConfig({ nodes: nodesOf(3, [2, 1, 0]) });
    const harness = new FarmHarness({ config });
    for (const id of harness.ids) harness.start(id);
    const allUp = harness.runUntilTrue((h) => h.ids.every((id) => h.node(id).state === "UP"), 3 * timings.heartbeatIntervalMs);
    expect(allUp).toBe(true);
    harness.advance(timings.heartbeatIntervalMs);

    for (const id of harness.ids) expect(memberIds(harness.node(id))).toEqual(["n1", "n2", "n3"]);
    expectPartition(harness, harness.ids);
    // Weight 0 is a member that owns nothing; weight 2 gets about twice the share of weight 1.
    expect(harness.node("n3").owned.isEmpty()).toBe(true);
    const heavy = harness.node("n1").owned.size();
    const light = harness.node("n2").owned.size();
    expect(heavy).toBeGreaterThan(light);
    expect(heavy).toBeGreaterThan((2 / 3) * bucketCount * 0.8);
    expect(heavy).toBeLessThan((2 / 3) * bucketCount * 1.2);
  });

  it("nodes started together never own the same bucket at the same instant", () => {
    const config = farmConfig({ nodes: nodesOf(4) });
    const overlaps: string[] = [];
    const harness = new FarmHarness({ config, onStep: (h) => overlaps.push(...overlappingOwners(h)) });
    for (const id of harness.ids) harness.start(id);
    harness.runUntil(1_000);
    expect(overlaps).toEqual([]);
    expectPartition(harness, harness.ids);
  });
});

describe("farm join", () => {
  it("a joining node takes its buckets only after the old owners released them to lingering", () => {
    const config = farmConfig();
    const harness = new FarmHarness({ config });
    harness.start("n1");
    harness.start("n2");
    harness.runUntil(1_000);
    expectPartition(harness, ["n1", "n2"]);
    const ownedBefore = new Map(["n1", "n2"].map((id) => [id, harness.node(id).owned]));

    const overlaps: string[] = [];
    const kernelOverlaps: string[] = [];
    harness.onStep = (h) => {
      overlaps.push(...overlappingOwners(h));
      kernelOverlaps.push(...overlappingKernels(h));
    };
    const joinStartIndex = harness.records.length;
    harness.runUntil(1_013); // off the others' tick phase
    harness.start("n3");
    harness.runUntil(2_000);

    expect(overlaps).toEqual([]);
    expect(kernelOverlaps).toEqual([]);
    for (const id of harness.ids) expect(harness.node(id).state).toBe("UP");
    expectPartition(harness, harness.ids);
    const joinerShare = harness.node("n3").owned;
    expect(joinerShare.equals(shareOf(config, ["n1", "n2", "n3"], "n3"))).toBe(true);
    expect(joinerShare.isEmpty()).toBe(false);

    const records = harness.records.slice(joinStartIndex);
    const joinerUpIndex = records.findIndex((record) => record.node === "n3" && !record.after.owned.isEmpty());
    expect(joinerUpIndex).toBeGreaterThanOrEqual(0);
    for (const oldOwner of ["n1", "n2"]) {
      const moved = ownedBefore.get(oldOwner)!.intersect(joinerShare);
      // Only the joiner's buckets move (F3): the old owner lost exactly those.
      expect(ownedBefore.get(oldOwner)!.minus(harness.node(oldOwner).owned).equals(moved)).toBe(true);
      const releaseIndex = records.findIndex((record) => record.node === oldOwner && !record.before.owned.intersect(moved).isEmpty() && !record.before.owned.equals(record.after.owned));
      expect(releaseIndex).toBeGreaterThanOrEqual(0);
      expect(releaseIndex).toBeLessThan(joinerUpIndex);
      const release = records[releaseIndex]!;
      expect(release.after.owned.intersect(moved).isEmpty()).toBe(true);
      expect(release.after.lingering.equals(moved)).toBe(true);
      for (const bucketIndex of moved.toArray()) {
        expect(release.after.lingeringUntilMs[bucketIndex]).toBe(release.atMs + timings.handoverWindowMs);
      }
      // The release is on the wire (filter-set first, then the heartbeat that says so).
      const effectKinds = kinds(release.effects);
      expect(effectKinds.indexOf("filter-set")).toBeGreaterThanOrEqual(0);
      expect(effectKinds.indexOf("filter-set")).toBeLessThan(effectKinds.indexOf("send"));
    }
    // The joiner does not reset the moved buckets: the old owners still serve their flows.
    const lingeringOnPeers = union(["n1", "n2"].map((id) => harness.node(id).lingering));
    expect(lingeringOnPeers.equals(joinerShare)).toBe(true);
    expect(harness.node("n3").reset.intersect(lingeringOnPeers).isEmpty()).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------
// Failure detection

describe("farm detection", () => {
  it("declares a silent peer dead between detectionTimeoutMs and one heartbeat later, and survivors reset its buckets", () => {
    const config = farmConfig();
    const harness = startedFarm(config);
    const deadOwned = harness.node("n3").owned;
    expect(deadOwned.isEmpty()).toBe(false);
    harness.runUntil(1_020);
    harness.crash("n3"); // silent: no STOP heartbeat

    harness.runUntil(2_000);
    for (const survivor of ["n1", "n2"]) {
      const lastHeardMs = Math.max(
        ...harness
          .stepsOf(survivor)
          .filter((record) => record.input.kind === "receive" && record.input.message.from === "n3")
          .map((record) => record.atMs),
      );
      const lost = harness.logsOf(survivor, "farm.peer-lost").filter((entry) => entry.fields.peer === "n3");
      expect(lost).toHaveLength(1);
      const silentMs = lost[0]!.atMs - lastHeardMs;
      expect(silentMs).toBeGreaterThanOrEqual(timings.detectionTimeoutMs);
      expect(silentMs).toBeLessThanOrEqual(timings.detectionTimeoutMs + timings.heartbeatIntervalMs);
      expect(memberIds(harness.node(survivor))).toEqual(["n1", "n2"]);
    }
    expectPartition(harness, ["n1", "n2"]);
    for (const survivor of ["n1", "n2"]) {
      const node = harness.node(survivor);
      const inherited = node.owned.intersect(deadOwned);
      expect(inherited.isEmpty()).toBe(false);
      // No live peer lingers on the dead node's buckets, so mid-stream strangers get a reset.
      expect(inherited.minus(node.reset).isEmpty()).toBe(true);
      expect(node.lingering.intersect(deadOwned).isEmpty()).toBe(true);
    }
  });

  it("silence on one of two rings does not declare the peer dead", () => {
    const config = farmConfig({ rings: ["r1", "r2"] });
    const harness = startedFarm(config);
    const since = harness.nowMs;
    for (const from of harness.ids) for (const to of harness.ids) if (from !== to) harness.drop(from, to, "r2");
    harness.runUntil(since + 10 * timings.detectionTimeoutMs);

    for (const id of harness.ids) {
      expect(harness.logsOf(id, "farm.peer-lost", since)).toEqual([]);
      expect(harness.node(id).state).toBe("UP");
      expect(memberIds(harness.node(id))).toEqual(["n1", "n2", "n3"]);
    }
    expectPartition(harness, harness.ids);
  });
});

// ---------------------------------------------------------------------------------------
// Lease, health, stop

describe("farm lease", () => {
  it("renews the filter lease while UP so that at least half a lease always remains at a tick", () => {
    const harness = startedFarm(farmConfig());
    const ticks = harness.stepsOf("n1", 500).filter((record) => record.input.kind === "timer");
    expect(ticks.length).toBeGreaterThanOrEqual(9);
    let renewedAtMs = ticks[0]!.after.lastRenewMs;
    for (const tick of ticks) {
      expect(tick.before.state).toBe("UP");
      const renewals = tick.effects.filter((effect) => effect.kind === "filter-renew");
      if (renewals.length > 0) {
        expect(renewals).toEqual([{ kind: "filter-renew", leaseMs: timings.leaseMs }]);
        renewedAtMs = tick.atMs;
      }
      // By the next tick, the lease renewed last still has half of it to run.
      expect(tick.atMs + timings.heartbeatIntervalMs - renewedAtMs).toBeLessThanOrEqual(timings.leaseMs / 2);
    }
    // Not at every tick: a renewal is a kernel transaction.
    expect(ticks.filter((tick) => tick.effects.some((effect) => effect.kind === "filter-renew")).length).toBeLessThan(ticks.length);
  });

  it("a node whose ticks stalled past leaseMs logs farm.lease-lost, owns nothing, then rejoins", () => {
    const harness = startedFarm(farmConfig());
    harness.runUntil(1_010); // just after a tick of n1
    harness.hold("n1");
    harness.runUntil(1_230); // a stall of 230 ms: past the lease, before peers detect it
    harness.release("n1");

    const lost = harness.logsOf("n1", "farm.lease-lost");
    expect(lost).toHaveLength(1);
    expect(lost[0]!.atMs).toBe(1_230);
    expect(lost[0]!.fields.stalledMs).toBeGreaterThan(timings.leaseMs);
    const lostStep = harness.stepsOf("n1", 1_230).find((record) => logEvents(record.effects).includes("farm.lease-lost"))!;
    expect(lostStep.after.state).toBe("WAIT");
    expect(lostStep.after.owned.isEmpty()).toBe(true);
    expect(lostStep.effects).toContainEqual({ kind: "vip", state: "down" });
    const filterSet = lostStep.effects.find((effect) => effect.kind === "filter-set");
    expect(filterSet).toBeDefined();
    if (filterSet?.kind === "filter-set") expect(filterSet.owned.isEmpty()).toBe(true);
    expect(kinds(lostStep.effects)).not.toContain("filter-renew");

    const rejoined = harness.runUntilTrue((h) => h.node("n1").state === "UP", 1_230 + 2 * timings.detectionTimeoutMs);
    expect(rejoined).toBe(true);
    harness.advance(timings.heartbeatIntervalMs);
    for (const id of harness.ids) expect(memberIds(harness.node(id))).toEqual(["n1", "n2", "n3"]);
    expectPartition(harness, harness.ids);
  });

  it("a node whose lease lapsed in a hang loses it even when a queued heartbeat is processed before its tick", () => {
    // n1 hangs right after its tick at 1000. n3 stops at 1010, so the first input waiting
    // for n1 is n3's STOP heartbeat (1011), before n1's own tick (1050). n2 declares n1
    // dead at 1300 and owns everything. At 1400 n1 resumes: whatever input comes first,
    // its lease ran out at 1200, so it must not put its old buckets back into the kernel.
    const harness = startedFarm(farmConfig());
    harness.runUntil(1_000.5);
    harness.hold("n1");
    harness.runUntil(1_010);
    harness.stop("n3");
    harness.runUntil(1_400);
    expect(harness.node("n2").owned.size()).toBe(bucketCount);

    const kernelOverlaps: string[] = [];
    harness.onStep = (h) => kernelOverlaps.push(...overlappingKernels(h));
    harness.release("n1");
    harness.runUntil(2_000);
    expect(kernelOverlaps).toEqual([]);
    expect(harness.logsOf("n1", "farm.lease-lost", 1_400)).toHaveLength(1);
  });
});

describe("farm stall while joining", () => {
  it("a joining node that hung past the detection timeout does not go UP on acceptances queued during the hang", () => {
    // n1 leaves and rejoins at 1010 (a health flip), then hangs before the peers' answers
    // arrive. The peers list it at 1011 (those heartbeats wait in n1's queue), declare it
    // dead at 1300 and own everything. At 1410 n1 resumes: the acceptances it finds first
    // were written before the peers gave up on it, so it must not take its buckets on them.
    const harness = startedFarm(farmConfig());
    harness.runUntil(1_010);
    harness.health("n1", false);
    harness.health("n1", true);
    harness.hold("n1");
    harness.runUntil(1_410);
    expect(memberIds(harness.node("n2"))).toEqual(["n2", "n3"]);

    const kernelOverlaps: string[] = [];
    harness.onStep = (h) => kernelOverlaps.push(...overlappingKernels(h));
    harness.release("n1");
    harness.runUntil(2_000);
    expect([...new Set(kernelOverlaps)]).toEqual([]);
  });

  // Fails against core/farm.ts at bc5d425: after a stall the node counts as settled as soon
  // as it has "heard" every peer, and the heartbeats it hears first are the stale ones that
  // queued up during the hang. n2 reads n1's old STOP, so no live non-stopped peer is left to
  // acknowledge it, and it goes UP alone at 848 with every bucket; n1, which has not heard
  // n2 since it restarted, goes UP alone at 849. The fix proposed in the report: after a
  // stall, only a full detection timeout of fresh traffic settles the node.
  it("a node waking from a hang does not go UP on a queued STOP of a peer that has restarted since", () => {
    // n2 hangs at 500. n1 stops and starts again at 549; it never hears n2, so after its
    // detection timeout it joins alone and goes UP at 849 with every bucket. n2 wakes at 848
    // and first reads n1's STOP of 549: n1 is not STOP any more, and n2 must not conclude
    // that nobody else can own a bucket.
    const harness = startedFarm(farmConfig({ nodes: nodesOf(2) }), 500);
    harness.hold("n2");
    harness.advance(49);
    harness.stop("n1");
    harness.start("n1");
    harness.advance(299);

    const kernelOverlaps: string[] = [];
    harness.onStep = (h) => kernelOverlaps.push(...overlappingKernels(h));
    harness.release("n2");
    harness.advance(1_000);
    expect([...new Set(kernelOverlaps)]).toEqual([]);
    expectPartition(harness, harness.ids);
  });
});

describe("farm health", () => {
  it("an unhealthy UP node leaves: WAIT, owns nothing, VIP down, heartbeat sent, app-restart last", () => {
    const harness = startedFarm(farmConfig());
    harness.health("n1", false);
    const step = harness.records.at(-1)!;
    expect(step.node).toBe("n1");
    expect(step.after.state).toBe("WAIT");
    expect(step.after.owned.isEmpty()).toBe(true);
    expect(step.effects).toContainEqual({ kind: "vip", state: "down" });
    const effectKinds = kinds(step.effects);
    expect(effectKinds).toContain("filter-set");
    const heartbeats = sends(step.effects);
    expect(heartbeats.map((send) => send.to).sort()).toEqual(["n2", "n3"]);
    for (const send of heartbeats) {
      expect(send.message.state).toBe("WAIT");
      expect(send.message.members.map((member) => member.id)).not.toContain("n1");
    }
    expect(step.effects.at(-1)).toEqual({ kind: "app-restart" });
    expect(effectKinds.filter((kind) => kind === "app-restart")).toHaveLength(1);
  });

  it("peers stop counting an unhealthy node as soon as its heartbeat arrives", () => {
    const harness = startedFarm(farmConfig());
    harness.health("n1", false);
    harness.advance(harness.delayMs);
    for (const id of ["n2", "n3"]) expect(memberIds(harness.node(id))).toEqual(["n2", "n3"]);
    expectPartition(harness, ["n2", "n3"]);
  });

  it("a node that is healthy again rejoins and gets its share back", () => {
    const config = farmConfig();
    const harness = startedFarm(config);
    const share = harness.node("n1").owned;
    harness.health("n1", false);
    harness.advance(100);
    harness.health("n1", true);
    const rejoined = harness.runUntilTrue((h) => h.node("n1").state === "UP", harness.nowMs + 2 * timings.detectionTimeoutMs);
    expect(rejoined).toBe(true);
    harness.advance(timings.heartbeatIntervalMs);
    expect(harness.node("n1").owned.equals(share)).toBe(true);
    expectPartition(harness, harness.ids);
  });

  it("a health flip shorter than a message delay never makes two nodes own a bucket", () => {
    const harness = startedFarm(farmConfig(), 1_000, 5);
    const overlaps: string[] = [];
    harness.onStep = (h) => overlaps.push(...overlappingOwners(h), ...overlappingKernels(h));
    harness.health("n1", false);
    harness.advance(1);
    harness.health("n1", true);
    harness.advance(1_000);
    expect(overlaps).toEqual([]);
    expectPartition(harness, harness.ids);
  });
});

describe("farm stop", () => {
  it("a stopped node clears its filter, drops the VIP, cancels its timer and says STOP", () => {
    const harness = startedFarm(farmConfig());
    harness.stop("n1");
    const step = harness.records.at(-1)!;
    expect(step.after.state).toBe("STOP");
    expect(step.after.owned.isEmpty()).toBe(true);
    const effectKinds = kinds(step.effects);
    expect(effectKinds).toContain("timer-cancel");
    expect(effectKinds).not.toContain("timer-arm");
    const filterSet = step.effects.find((effect) => effect.kind === "filter-set");
    expect(filterSet).toBeDefined();
    if (filterSet?.kind === "filter-set") {
      expect(filterSet.owned.isEmpty()).toBe(true);
      expect(filterSet.lingering.isEmpty()).toBe(true);
      expect(filterSet.reset.isEmpty()).toBe(true);
    }
    expect(step.effects).toContainEqual({ kind: "vip", state: "down" });
    const heartbeats = sends(step.effects);
    expect(heartbeats.map((send) => send.to).sort()).toEqual(["n2", "n3"]);
    for (const send of heartbeats) expect(send.message.state).toBe("STOP");
  });

  it("a stopped node whose application still runs keeps the VIP draining, and drops it once the application has stopped", () => {
    const harness = startedFarm(farmConfig());
    harness.input("n1", { kind: "application", running: true });
    expect(harness.records.at(-1)!.effects.filter((effect) => effect.kind === "vip"), "no change while UP").toEqual([]);
    harness.stop("n1");
    const stop = harness.records.at(-1)!;
    expect(stop.effects).toContainEqual({ kind: "vip", state: "draining" });
    const effectKinds = kinds(stop.effects);
    expect(effectKinds.indexOf("vip"), "after the filter that accepts nothing").toBeGreaterThan(effectKinds.indexOf("filter-set"));
    expect(harness.node("n1").vip).toBe("draining");
    harness.advance(200);
    harness.input("n1", { kind: "application", running: false });
    expect(harness.records.at(-1)!.effects).toContainEqual({ kind: "vip", state: "down" });
    expect(harness.node("n1").vip).toBe("down");
  });

  it("a node that was never UP does not drain: its VIP stays down while its application starts and stops", () => {
    const harness = new FarmHarness({ config: farmConfig(), delayMs: 1 });
    harness.input("n1", { kind: "application", running: true });
    harness.start("n1");
    harness.health("n1", false);
    harness.advance(100);
    harness.stop("n1");
    harness.input("n1", { kind: "application", running: false });
    expect(harness.records.flatMap((record) => record.effects).filter((effect) => effect.kind === "vip")).toEqual([]);
  });

  it("a node that left on a failed health check drains while its application restarts, and serves again once healthy", () => {
    const harness = startedFarm(farmConfig());
    harness.input("n1", { kind: "application", running: true });
    harness.health("n1", false);
    expect(harness.records.at(-1)!.effects).toContainEqual({ kind: "vip", state: "draining" });
    harness.health("n1", true);
    expect(harness.runUntilTrue((h) => h.node("n1").state === "UP", harness.nowMs + 2 * timings.detectionTimeoutMs)).toBe(true);
    expect(harness.node("n1").vip).toBe("up");
  });

  it("peers drop a stopped node from their members on receipt, not after the detection timeout", () => {
    const harness = startedFarm(farmConfig());
    harness.stop("n1");
    harness.advance(harness.delayMs);
    for (const id of ["n2", "n3"]) {
      expect(memberIds(harness.node(id))).toEqual(["n2", "n3"]);
      expect(harness.logsOf(id, "farm.peer-lost")).toEqual([]);
    }
    expectPartition(harness, ["n2", "n3"]);
    // A stopped node ignores its (cancelled) timer and every heartbeat.
    harness.advance(1_000);
    for (const record of harness.stepsOf("n1", harness.nowMs - 1_000)) {
      expect(record.after.state).toBe("STOP");
      expect(record.effects).toEqual([]);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Stale heartbeats

describe("farm stale heartbeats", () => {
  const config = farmConfig({ rings: ["r1", "r2"] });
  const receive = (node: FarmNode, nowMs: number, ring: string, message: FarmHeartbeat) =>
    stepFarm(node, nowMs, { kind: "receive", ring, message, receivedAtMs: nowMs }).state;

  function startedNode(): FarmNode {
    return stepFarm(createFarmNode(config, "n1", 1), 0, { kind: "start" }).state;
  }

  it("ignores a heartbeat with a lower seq than the last one", () => {
    let node = startedNode();
    node = receive(node, 10, "r1", heartbeat({ from: "n2", incarnation: 3, seq: 5, state: "UP", members: [{ id: "n2", incarnation: 3, epoch: 1 }] }));
    node = receive(node, 20, "r1", heartbeat({ from: "n2", incarnation: 3, seq: 4, state: "WAIT", members: [] }));
    const peer = peerOf(node, "n2");
    expect(peer.seq).toBe(5);
    expect(peer.state).toBe("UP");
    expect(peer.members.map((member) => member.id)).toEqual(["n2"]);
    expect(peer.lastHeardMs).toEqual([10, -Infinity]);
  });

  it("ignores a heartbeat from a lower incarnation", () => {
    let node = startedNode();
    node = receive(node, 10, "r1", heartbeat({ from: "n2", incarnation: 3, seq: 5, state: "UP" }));
    node = receive(node, 20, "r2", heartbeat({ from: "n2", incarnation: 2, seq: 99, state: "STOP" }));
    const peer = peerOf(node, "n2");
    expect(peer.incarnation).toBe(3);
    expect(peer.seq).toBe(5);
    expect(peer.state).toBe("UP");
    expect(peer.lastHeardMs).toEqual([10, -Infinity]);
  });

  it("a higher incarnation resets the peer record, whatever its seq", () => {
    let node = startedNode();
    const lingering = BucketSet.of(bucketCount, [1, 2, 3]);
    node = receive(node, 10, "r1", heartbeat({ from: "n2", incarnation: 3, seq: 50, state: "UP", epoch: 7, lingering, members: [{ id: "n2", incarnation: 3, epoch: 7 }] }));
    node = receive(node, 11, "r2", heartbeat({ from: "n2", incarnation: 3, seq: 50, state: "UP", epoch: 7, lingering }));
    expect(peerOf(node, "n2").lastHeardMs).toEqual([10, 11]);

    node = receive(node, 20, "r1", heartbeat({ from: "n2", incarnation: 4, seq: 1, state: "WAIT", epoch: 0 }));
    const peer = peerOf(node, "n2");
    expect(peer.incarnation).toBe(4);
    expect(peer.seq).toBe(1);
    expect(peer.state).toBe("WAIT");
    expect(peer.epoch).toBe(0);
    expect(peer.members).toEqual([]);
    expect(peer.lingering.isEmpty()).toBe(true);
    // What the old incarnation was heard on is forgotten too.
    expect(peer.lastHeardMs).toEqual([20, -Infinity]);
  });
});

// ---------------------------------------------------------------------------------------
// Asymmetric link

describe("farm asymmetric link", () => {
  // What the core guarantees when n1's messages to n2 are lost but n2's to n1 arrive:
  // - n2 declares n1 dead after the detection timeout and takes over n1's buckets.
  // - n1 hears n2 no longer list it, steps back to WAIT (joining) and owns nothing. Between
  //   the two (one message delay) n1 and n2 both own n1's old buckets with different views:
  //   n1 cannot know yet that n2 stopped hearing it. That is the only overlap.
  // - n1 stays joining for as long as the link is broken: n2 never lists it.
  // - n3 still hears n1 joining and keeps it in its view, so n3's view {n1,n2,n3} and n2's
  //   view {n2,n3} differ: the buckets of n1 that the {n2,n3} map gives to n3 have no owner
  //   (an availability loss, not a safety one). No bucket has two owners once settled, and
  //   never two owners with identical views.
  it("one-way loss: after settling no bucket has two owners; views differ and some buckets have none", () => {
    const config = farmConfig();
    const harness = startedFarm(config);
    const sameViewOverlaps: string[] = [];
    const overlapTimes = new Set<number>();
    harness.onStep = (h) => {
      sameViewOverlaps.push(...overlapsWithinOneView(h));
      if (overlappingOwners(h).length > 0) overlapTimes.add(h.nowMs);
    };
    const since = harness.nowMs;
    harness.drop("n1", "n2");
    harness.runUntil(since + 3_000);

    expect(sameViewOverlaps).toEqual([]);
    // The transient overlap lasts at most one message delay after n2's detection.
    const detectedMs = harness.logsOf("n2", "farm.peer-lost", since).find((entry) => entry.fields.peer === "n1")!.atMs;
    for (const atMs of overlapTimes) {
      expect(atMs).toBeGreaterThanOrEqual(detectedMs);
      expect(atMs).toBeLessThanOrEqual(detectedMs + harness.delayMs);
    }
    expect(overlappingOwners(harness)).toEqual([]);

    const n1 = harness.node("n1");
    expect(n1.state).toBe("WAIT");
    expect(n1.joining).toBe(true);
    expect(n1.owned.isEmpty()).toBe(true);
    expect(harness.node("n2").state).toBe("UP");
    expect(memberIds(harness.node("n2"))).toEqual(["n2", "n3"]);
    expect(harness.node("n3").state).toBe("UP");
    expect(memberIds(harness.node("n3"))).toEqual(["n1", "n2", "n3"]);
    const orphans = BucketSet.all(bucketCount).minus(union(harness.ids.map((id) => harness.node(id).owned)));
    expect(orphans.equals(shareOf(config, ["n2", "n3"], "n3").intersect(shareOf(config, ["n1", "n2", "n3"], "n1")))).toBe(true);

    // Healing the link brings everyone back to one view within a few heartbeats.
    harness.restoreAll();
    harness.advance(2 * timings.detectionTimeoutMs);
    for (const id of harness.ids) expect(memberIds(harness.node(id))).toEqual(["n1", "n2", "n3"]);
    expectPartition(harness, harness.ids);
  });
});

// ---------------------------------------------------------------------------------------
// Property: random faults, then convergence

type Fault =
  | { readonly kind: "advance"; readonly ms: number }
  | { readonly kind: "drop"; readonly from: number; readonly to: number; readonly ring: number | null }
  | { readonly kind: "restore"; readonly from: number; readonly to: number }
  | { readonly kind: "stop"; readonly node: number }
  | { readonly kind: "start"; readonly node: number }
  | { readonly kind: "crash"; readonly node: number }
  | { readonly kind: "health"; readonly node: number; readonly healthy: boolean }
  | { readonly kind: "hang"; readonly node: number }
  | { readonly kind: "resume"; readonly node: number };

interface Plan {
  readonly weights: readonly number[];
  readonly ringCount: number;
  readonly delayMs: number;
  readonly startOffsetsMs: readonly number[];
  readonly faults: readonly Fault[];
}

const id = (index: number) => `n${index + 1}`;

/** A fault as a person would write it: `drop(n1→n2 @r2)`, `advance(120)`. */
function showFault(fault: Fault): string {
  switch (fault.kind) {
    case "advance":
      return `advance(${fault.ms})`;
    case "drop":
      return `drop(${id(fault.from)}→${id(fault.to)}${fault.ring === null ? "" : ` @r${fault.ring + 1}`})`;
    case "restore":
      return `restore(${id(fault.from)}→${id(fault.to)})`;
    case "health":
      return `health(${id(fault.node)}, ${fault.healthy})`;
    default:
      return `${fault.kind}(${id(fault.node)})`;
  }
}

function showPlan(plan: Plan): string {
  return `weights=[${plan.weights.join(",")}] rings=${plan.ringCount} delay=${plan.delayMs}ms starts=[${plan.startOffsetsMs.join(",")}] faults: ${plan.faults.map(showFault).join(" ") || "none"}`;
}

const planArbitrary: fc.Arbitrary<Plan> = fc
  .record({ nodeCount: fc.integer({ min: 2, max: 5 }), ringCount: fc.integer({ min: 1, max: 2 }) })
  .chain(({ nodeCount, ringCount }) => {
    const node = fc.integer({ min: 0, max: nodeCount - 1 });
    const link = fc.tuple(node, node).filter(([from, to]) => from !== to);
    const fault: fc.Arbitrary<Fault> = fc.oneof(
      { weight: 4, arbitrary: fc.integer({ min: 1, max: 400 }).map((ms) => ({ kind: "advance" as const, ms })) },
      {
        weight: 2,
        arbitrary: fc
          .tuple(link, fc.option(fc.integer({ min: 0, max: ringCount - 1 }), { nil: null }))
          .map(([[from, to], ring]) => ({ kind: "drop" as const, from, to, ring })),
      },
      { weight: 1, arbitrary: link.map(([from, to]) => ({ kind: "restore" as const, from, to })) },
      { weight: 1, arbitrary: node.map((index) => ({ kind: "stop" as const, node: index })) },
      { weight: 1, arbitrary: node.map((index) => ({ kind: "start" as const, node: index })) },
      { weight: 1, arbitrary: node.map((index) => ({ kind: "crash" as const, node: index })) },
      { weight: 1, arbitrary: fc.tuple(node, fc.boolean()).map(([index, healthy]) => ({ kind: "health" as const, node: index, healthy })) },
      { weight: 1, arbitrary: node.map((index) => ({ kind: "hang" as const, node: index })) },
      { weight: 1, arbitrary: node.map((index) => ({ kind: "resume" as const, node: index })) },
    );
    return fc.record({
      weights: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: nodeCount, maxLength: nodeCount }),
      ringCount: fc.constant(ringCount),
      delayMs: fc.integer({ min: 1, max: 20 }),
      startOffsetsMs: fc.array(fc.integer({ min: 0, max: 60 }), { minLength: nodeCount, maxLength: nodeCount }),
      faults: fc.array(fault, { maxLength: 30 }),
    });
  });

interface ModelNode {
  started: boolean;
  healthy: boolean;
}

/** Runs a plan; returns the harness, the model of which nodes should be up, and every
 *  violation of the safety claim seen along the way. */
function runPlan(plan: Plan): { harness: FarmHarness; model: ModelNode[]; violations: string[] } {
  const config = farmConfig({
    nodes: nodesOf(plan.weights.length, plan.weights),
    rings: Array.from({ length: plan.ringCount }, (_, index) => `r${index + 1}`),
  });
  const violations: string[] = [];
  const harness = new FarmHarness({
    config,
    delayMs: plan.delayMs,
    onStep: (h) => {
      if (violations.length < 5) violations.push(...overlapsWithinOneView(h));
    },
  });
  const model: ModelNode[] = plan.weights.map(() => ({ started: false, healthy: true }));
  const order = plan.startOffsetsMs.map((offsetMs, index) => ({ offsetMs, index })).sort((a, b) => a.offsetMs - b.offsetMs);
  for (const { offsetMs, index } of order) {
    harness.runUntil(offsetMs);
    harness.start(id(index));
    model[index] = { started: true, healthy: true };
  }
  harness.advance(500);
  for (const fault of plan.faults) applyFault(harness, model, fault);
  // The faults stop: links heal, hung nodes resume; stopped, crashed and unhealthy nodes
  // stay as they are.
  harness.restoreAll();
  harness.releaseAll();
  harness.advance(2_000);
  return { harness, model, violations };
}

function applyFault(harness: FarmHarness, model: ModelNode[], fault: Fault): void {
  switch (fault.kind) {
    case "advance":
      return harness.advance(fault.ms);
    case "drop":
      return harness.drop(id(fault.from), id(fault.to), fault.ring === null ? undefined : `r${fault.ring + 1}`);
    case "restore":
      return harness.restore(id(fault.from), id(fault.to));
    case "stop":
      model[fault.node]!.started = false;
      return harness.stop(id(fault.node));
    case "start":
      // Starting keeps the health last reported: health is its own input.
      model[fault.node]!.started = true;
      return harness.start(id(fault.node));
    case "crash":
      model[fault.node] = { started: false, healthy: true };
      return harness.crash(id(fault.node));
    case "health":
      model[fault.node]!.healthy = fault.healthy;
      return harness.health(id(fault.node), fault.healthy);
    case "hang":
      return harness.hold(id(fault.node));
    case "resume":
      return harness.release(id(fault.node));
  }
}

function convergenceProblems(harness: FarmHarness, model: ModelNode[]): string[] {
  const problems: string[] = [];
  const expected = harness.ids.filter((_, index) => model[index]!.started && model[index]!.healthy);
  for (const nodeId of harness.ids) {
    const node = harness.node(nodeId);
    if (expected.includes(nodeId)) {
      if (node.state !== "UP") problems.push(`${describeNode(node)} should be UP`);
      if (memberIds(node).join(",") !== expected.join(",")) problems.push(`${describeNode(node)} should have members ${expected.join(",")}`);
    } else if (!node.owned.isEmpty()) {
      problems.push(`${describeNode(node)} is not a started healthy node but owns ${node.owned.toString()}`);
    }
  }
  const views = new Set(expected.map((nodeId) => JSON.stringify(harness.node(nodeId).members)));
  if (views.size > 1) problems.push(`member views differ: ${[...views].join(" | ")}`);
  problems.push(...overlappingOwners(harness));
  const anyWeight = harness.config.nodes.some((node) => expected.includes(node.id) && node.weight > 0);
  const covered = union(harness.ids.map((nodeId) => harness.node(nodeId).owned)).size();
  if (covered !== (anyWeight ? bucketCount : 0)) problems.push(`${covered} buckets owned, expected ${anyWeight ? bucketCount : 0}`);
  return problems;
}

describe("farm property", () => {
  it("under random faults, UP nodes with one view never share a bucket, and after 2 s of clean traffic the farm converges", () => {
    fc.assert(
      fc.property(planArbitrary, (plan) => {
        const { harness, model, violations } = runPlan(plan);
        const problems = [...violations, ...convergenceProblems(harness, model)];
        if (problems.length > 0) throw new Error(`${showPlan(plan)}\n${problems.slice(0, 6).join("\n")}`);
      }),
      { numRuns: Number(process.env["FARM_PROPERTY_RUNS"] ?? 150) },
    );
  });
});
