// The farm module of one node: membership, failure detection and bucket ownership.
// `stepFarm` is a pure function that does not execute actions: it returns the next state
// and the effects (sends, timers, filter and VIP changes, logs) that the runtime executes.
//
// Protocol, in short (docs/farm.md has the full argument):
// - Every node heartbeats every peer on every ring each tick. A peer is alive while some
//   ring has heard it within detectionTimeoutMs; it is dead only when all rings are silent.
// - A started node waits (WAIT) until it has heard every peer or a detection timeout has
//   passed ("settled"), then announces `joining` with a fresh join epoch. Peers count a
//   joining node as a member, so they release its buckets before they list it; it takes
//   them (UP) once every live peer that is not stopped lists it with that same epoch. The
//   epoch makes a list written before the node's latest WAIT worthless, and waiting for
//   every live peer (not only UP ones) stops two nodes that start together from both
//   going UP alone. So a join never makes two nodes own a bucket, at worst none for a
//   moment. An UP node steps back to joining when an UP peer, heard for at least two
//   heartbeat intervals (time enough to have heard us back), does not list it: that is a
//   one-way link, and stepping back keeps both from owning the same buckets. The grace
//   keeps the first heartbeats after a healed partition from knocking every node down.
// - Owned buckets = weighted rendezvous map over the members. A bucket that moves to a live
//   peer "lingers" for handoverWindowMs: its established connections stay here, the new
//   owner takes only new ones. A bucket no live peer lingers on is "reset": strangers
//   mid-stream get a TCP reset (their old node is gone) so clients reconnect at once.
// - Leaving (stop, failed health), a node empties its filter at once but keeps the VIP's
//   address ("draining") until its application has stopped, so the answers to requests
//   it accepted before still go out; ARP for the VIP goes quiet at once.
// - The kernel forgets the buckets unless the lease is renewed every tick; a node whose
//   ticks stalled past leaseMs (< detectionTimeoutMs) has lost them and rejoins, so a hung
//   node and its successor never own a bucket together.

import { assert, unreachable } from "./assert.ts";
import { BucketSet } from "./bucket-set.ts";
import { computeOwners, bucketsOwnedBy, compareIds, movedBuckets, type OwnerMap } from "./ownership.ts";
import type { FarmConfig } from "./farm-config.ts";
import type { VipState } from "./ports.ts";
import type { LogEntry, LogLevel, NodeId, RingId, StepResult } from "./types.ts";

export type FarmState = "STOP" | "WAIT" | "UP";

export interface FarmHeartbeat {
  readonly kind: "farm-heartbeat";
  readonly module: string;
  readonly from: NodeId;
  readonly incarnation: number;
  readonly seq: number;
  readonly state: FarmState;
  readonly joining: boolean;
  /** The sender's current join epoch (0 before its first join). */
  readonly epoch: number;
  /** The sender's member view, sorted by id. */
  readonly members: readonly MemberRef[];
  /** Buckets whose established connections the sender still serves. */
  readonly lingering: BucketSet;
}

/** A member as seen by a node: which incarnation, and which of its joins. */
export interface MemberRef {
  readonly id: NodeId;
  readonly incarnation: number;
  readonly epoch: number;
}

export type FarmInput =
  | { readonly kind: "start" }
  | { readonly kind: "stop" }
  | { readonly kind: "timer"; readonly timer: "tick" }
  /** A heartbeat; `receivedAtMs` is when it reached this host (at most nowMs), so that a
   *  pause of this node's service does not make queued heartbeats look fresh. */
  | { readonly kind: "receive"; readonly ring: RingId; readonly message: FarmHeartbeat; readonly receivedAtMs: number }
  | { readonly kind: "health"; readonly healthy: boolean }
  /** Whether the application may be running here (from its start scripts until its stop
   *  scripts are done): while it runs, a node that left keeps the VIP's address. */
  | { readonly kind: "application"; readonly running: boolean };

export type FarmEffect =
  /** Send a heartbeat datagram; may run at any time, loss is tolerated. */
  | { readonly kind: "send"; readonly ring: RingId; readonly to: NodeId; readonly message: FarmHeartbeat }
  /** (Re)arm the named timer; it fires once as a `timer` input. */
  | { readonly kind: "timer-arm"; readonly timer: "tick"; readonly afterMs: number }
  /** Cancel the named timer; an already queued firing is ignored by the core. */
  | { readonly kind: "timer-cancel"; readonly timer: "tick" }
  /** Replace the kernel filter atomically; must run before the sends of the same batch,
   *  since those tell peers what this node now owns. Starts a lease of leaseMs. */
  | {
      readonly kind: "filter-set";
      readonly owned: BucketSet;
      readonly lingering: BucketSet;
      readonly reset: BucketSet;
      readonly leaseMs: number;
    }
  /** Extend the kernel filter's lease to leaseMs from now. A filter-set in the same batch
   *  starts a lease of its own, so the two may run in either order. */
  | { readonly kind: "filter-renew"; readonly leaseMs: number }
  /** Raise, drain or drop the virtual IP (VipState); runs after the filter-set of the same batch. */
  | { readonly kind: "vip"; readonly state: VipState }
  /** Restart the application; runs only after this node has left the membership (the
   *  filter-set and sends before it in the batch). */
  | { readonly kind: "app-restart" }
  /** Write a log event; may run at any time. */
  | { readonly kind: "log"; readonly entry: LogEntry };

export interface FarmPeer {
  readonly id: NodeId;
  readonly weight: number;
  /** -1 until the first heartbeat. */
  readonly incarnation: number;
  readonly seq: number;
  /** Per ring, in config order; -Infinity when never heard. */
  readonly lastHeardMs: readonly number[];
  readonly alive: boolean;
  /** When this peer was last seen coming alive. */
  readonly aliveSinceMs: number;
  readonly state: FarmState;
  readonly joining: boolean;
  readonly epoch: number;
  readonly members: readonly MemberRef[];
  readonly lingering: BucketSet;
}

export interface FarmNode {
  readonly config: FarmConfig;
  readonly self: NodeId;
  readonly weight: number;
  readonly incarnation: number;
  readonly state: FarmState;
  readonly healthy: boolean;
  readonly joining: boolean;
  /** The seq of the heartbeat that announced the current join (0 before the first). */
  readonly joinEpoch: number;
  readonly settled: boolean;
  /** After a stall the heartbeats waiting in the queue are stale, so hearing every peer
   *  proves nothing: only a full detection timeout of fresh traffic settles the node. */
  readonly settleByTimeout: boolean;
  readonly startedMs: number;
  /** When the last tick ran: a gap longer than the lease means this node stalled. */
  readonly lastTickMs: number;
  readonly lastRenewMs: number;
  readonly seq: number;
  /** Every configured node but self, in config order. */
  readonly peers: readonly FarmPeer[];
  /** This node's view of the membership, sorted by id. */
  readonly members: readonly MemberRef[];
  readonly owners: OwnerMap | null;
  readonly owned: BucketSet;
  /** Per bucket, when its lingering ends (0: not lingering). */
  readonly lingeringUntilMs: readonly number[];
  readonly lingering: BucketSet;
  readonly reset: BucketSet;
  /** "up" while UP; after leaving, "draining" until the application stopped, then "down". */
  readonly vip: VipState;
  /** What the application last reported (the `application` input); false until then. */
  readonly appRunning: boolean;
}

/** A stopped farm node. `incarnation` must grow across restarts of the node service. */
export function createFarmNode(config: FarmConfig, self: NodeId, incarnation: number): FarmNode {
  const own = config.nodes.find((node) => node.id === self);
  assert(own !== undefined, `node ${self} is not in module ${config.module}`);
  assert(Number.isInteger(incarnation) && incarnation >= 0, `incarnation ${incarnation} invalid`);
  const empty = BucketSet.empty(config.bucketCount);
  return {
    config,
    self,
    weight: own.weight,
    incarnation,
    state: "STOP",
    healthy: true,
    joining: false,
    joinEpoch: 0,
    settled: false,
    settleByTimeout: false,
    startedMs: 0,
    lastTickMs: 0,
    lastRenewMs: 0,
    seq: 0,
    peers: freshPeers(config, self),
    members: [],
    owners: null,
    owned: empty,
    lingeringUntilMs: new Array<number>(config.bucketCount).fill(0),
    lingering: empty,
    reset: empty,
    vip: "down",
    appRunning: false,
  };
}

function freshPeers(config: FarmConfig, self: NodeId): FarmPeer[] {
  const empty = BucketSet.empty(config.bucketCount);
  return config.nodes
    .filter((node) => node.id !== self)
    .map((node) => ({
      id: node.id,
      weight: node.weight,
      incarnation: -1,
      seq: -1,
      lastHeardMs: config.rings.map(() => -Infinity),
      alive: false,
      aliveSinceMs: -Infinity,
      state: "STOP" as const,
      joining: false,
      epoch: 0,
      members: [],
      lingering: empty,
    }));
}

export function stepFarm(node: FarmNode, nowMs: number, input: FarmInput): StepResult<FarmNode, FarmEffect> {
  assert(Number.isFinite(nowMs), "nowMs must be finite");
  const effects: FarmEffect[] = [];
  // Checked before any input: after a stall, a queued heartbeat may be processed before
  // the overdue tick, and must not renew a lease the kernel has already dropped.
  const current = checkStall(node, nowMs, effects);
  const leaseLost = current !== node;
  let restartApplication = false;
  let heartbeatDue = leaseLost;
  let next: FarmNode;
  switch (input.kind) {
    case "start":
      next = onStart(current, nowMs, effects);
      heartbeatDue = next !== current;
      break;
    case "stop":
      next = onStop(current, nowMs, effects);
      break;
    case "timer":
      if (current.state === "STOP") return { state: current, effects };
      next = onTick(current, nowMs, effects);
      heartbeatDue = true;
      break;
    case "receive":
      next = onReceive(current, nowMs, input, effects);
      // Steady state: a heartbeat that only proves the peer still lives changes no role,
      // view or ownership, so the derivation below would find nothing to do.
      if (!leaseLost && next !== current && current.settled && onlyLivenessChanged(current, next, input.message.from)) return { state: next, effects };
      break;
    case "health":
      restartApplication = current.healthy && !input.healthy && current.state !== "STOP";
      next = { ...current, healthy: input.healthy };
      if (current.healthy !== input.healthy) log(effects, input.healthy ? "info" : "warn", "farm.health", next, { healthy: input.healthy });
      break;
    case "application":
      next = current.appRunning === input.running ? current : { ...current, appRunning: input.running };
      break;
    default:
      unreachable(input);
  }
  // Effects are derived against the node as it was before this step, lease loss included.
  next = reconcile(node, next, nowMs, effects, heartbeatDue);
  if (restartApplication) effects.push({ kind: "app-restart" });
  checkInvariants(next);
  return { state: next, effects };
}

/** A node whose ticks stalled past the lease (a hang, an overloaded host) may have been
 *  declared dead meanwhile. UP, it has lost its buckets in the kernel and the peers may own
 *  them; joining, the acknowledgements it is about to read may predate that verdict. Either
 *  way it rejoins from scratch, with a new join epoch, rather than trust what it knew. */
function checkStall(node: FarmNode, nowMs: number, effects: FarmEffect[]): FarmNode {
  const leaseMs = node.config.timings.leaseMs;
  if (node.state === "UP" && nowMs - node.lastRenewMs > leaseMs) {
    log(effects, "warn", "farm.lease-lost", node, { stalledMs: Math.round(nowMs - node.lastRenewMs) });
  } else if (node.state === "WAIT" && node.joining && nowMs - node.lastTickMs > leaseMs) {
    log(effects, "warn", "farm.join-stalled", node, { stalledMs: Math.round(nowMs - node.lastTickMs) });
  } else {
    return node;
  }
  return { ...node, state: "WAIT", joining: false, settled: false, settleByTimeout: true, startedMs: nowMs };
}

function onStart(node: FarmNode, nowMs: number, effects: FarmEffect[]): FarmNode {
  if (node.state !== "STOP") {
    log(effects, "info", "farm.start-ignored", node, { reason: `already ${node.state}` });
    return node;
  }
  effects.push({ kind: "timer-arm", timer: "tick", afterMs: node.config.timings.heartbeatIntervalMs });
  log(effects, "info", "farm.start", node, {});
  // Health is its own input (the module's life cycle, the application's checker): a node
  // started before its application is ready must not join on a health it never reported.
  return { ...node, state: "WAIT", settled: false, settleByTimeout: false, startedMs: nowMs, lastTickMs: nowMs, peers: freshPeers(node.config, node.self) };
}

function onStop(node: FarmNode, nowMs: number, effects: FarmEffect[]): FarmNode {
  if (node.state === "STOP") return node;
  effects.push({ kind: "timer-cancel", timer: "tick" });
  log(effects, "info", "farm.stop", node, {});
  // Reconcile sees STOP, clears the filter, drains the VIP and tells the peers we left.
  return { ...node, state: "STOP", joining: false, settled: false, startedMs: nowMs };
}

function onTick(node: FarmNode, nowMs: number, effects: FarmEffect[]): FarmNode {
  const timings = node.config.timings;
  effects.push({ kind: "timer-arm", timer: "tick", afterMs: timings.heartbeatIntervalMs });
  const lapsed = (peer: FarmPeer) => peer.alive && !peer.lastHeardMs.some((heardMs) => nowMs - heardMs <= timings.detectionTimeoutMs);
  const peers = !node.peers.some(lapsed)
    ? node.peers
    : node.peers.map((peer) => {
        if (!lapsed(peer)) return peer;
        log(effects, "warn", "farm.peer-lost", node, { peer: peer.id, silentMs: Math.round(nowMs - Math.max(...peer.lastHeardMs)) });
        return { ...peer, alive: false };
      });
  const lingeringUntilMs = node.lingeringUntilMs.some((untilMs) => untilMs !== 0 && untilMs <= nowMs)
    ? node.lingeringUntilMs.map((untilMs) => (untilMs <= nowMs ? 0 : untilMs))
    : node.lingeringUntilMs;
  // Renewed when half the lease would have passed by the next tick, not at every tick: a
  // renewal is a kernel transaction (about 0.4 ms), and half a lease still leaves room for
  // a late tick before the lease runs out.
  const renew = node.state === "UP" && nowMs + timings.heartbeatIntervalMs - node.lastRenewMs > timings.leaseMs / 2;
  if (renew) effects.push({ kind: "filter-renew", leaseMs: timings.leaseMs });
  return { ...node, peers, lingeringUntilMs, lastTickMs: nowMs, lastRenewMs: renew ? nowMs : node.lastRenewMs };
}

function onlyLivenessChanged(before: FarmNode, after: FarmNode, peerId: NodeId): boolean {
  const old = before.peers.find((peer) => peer.id === peerId)!;
  const now = after.peers.find((peer) => peer.id === peerId)!;
  return (
    old.alive &&
    now.alive &&
    old.incarnation === now.incarnation &&
    old.state === now.state &&
    old.joining === now.joining &&
    old.epoch === now.epoch &&
    sameRefs(old.members, now.members) &&
    old.lingering.equals(now.lingering)
  );
}

function onReceive(node: FarmNode, nowMs: number, input: Extract<FarmInput, { kind: "receive" }>, effects: FarmEffect[]): FarmNode {
  const { ring, message, receivedAtMs } = input;
  assert(receivedAtMs <= nowMs, `heartbeat received at ${receivedAtMs}, after now (${nowMs})`);
  const ringIndex = node.config.rings.indexOf(ring);
  const peerIndex = node.peers.findIndex((peer) => peer.id === message.from);
  if (node.state === "STOP" || message.module !== node.config.module || ringIndex < 0 || peerIndex < 0) {
    return node;
  }
  let peer = node.peers[peerIndex]!;
  if (message.incarnation < peer.incarnation) return node;
  if (message.incarnation > peer.incarnation) {
    // A restarted peer: forget everything the previous incarnation said.
    peer = { ...freshPeers(node.config, node.self)[peerIndex]!, incarnation: message.incarnation };
  }
  if (message.seq < peer.seq) return node;
  const lastHeardMs = peer.lastHeardMs.slice();
  lastHeardMs[ringIndex] = Math.max(lastHeardMs[ringIndex]!, receivedAtMs);
  // A heartbeat that waited in our queue past the detection timeout proves nothing.
  const alive = lastHeardMs.some((heardMs) => nowMs - heardMs <= node.config.timings.detectionTimeoutMs);
  let updated: FarmPeer = { ...peer, lastHeardMs, alive, aliveSinceMs: peer.alive || !alive ? peer.aliveSinceMs : nowMs };
  if (message.seq > peer.seq) {
    const { state, joining, epoch, members, lingering, seq } = message;
    assert(lingering.bucketCount === node.config.bucketCount, "heartbeat lingering set has the wrong size");
    updated = { ...updated, state, joining, epoch, members, lingering, seq };
  }
  if (!peer.alive && alive) log(effects, "info", "farm.peer-seen", node, { peer: peer.id, ring });
  const peers = node.peers.slice();
  peers[peerIndex] = updated;
  return { ...node, peers };
}

/** Derives membership, role and ownership from the updated inputs, and emits what changed. */
function reconcile(before: FarmNode, node: FarmNode, nowMs: number, effects: FarmEffect[], heartbeatDue: boolean): FarmNode {
  let next = advanceRole(node, nowMs, effects);
  const view = viewOf(next);
  const members = sameRefs(view, before.members) ? before.members : view;
  const ids = members.map((member) => member.id);
  const idsBefore = before.members.map((member) => member.id);
  const membersChanged = !sameIds(ids, idsBefore);
  const owners = next.state !== "UP" ? null : membersChanged || before.owners === null ? ownersOf(next, ids) : before.owners;
  if (owners !== null && before.owners !== null && membersChanged) checkMinimalMove(idsBefore, ids, before.owners, owners);
  const owned = owners === null ? BucketSet.empty(next.config.bucketCount) : owners === before.owners ? before.owned : bucketsOwnedBy(owners, next.self);
  const lingeringUntilMs = lingerUntil(next, before.owned, owned, owners, nowMs);
  // Compared with the deadlines the last lingering set was built from: a tick that expired
  // some (a new array in `node`) must shrink the set too, even when ownership stays put.
  const lingering = lingeringUntilMs === before.lingeringUntilMs ? before.lingering : BucketSet.of(next.config.bucketCount, lingeringIndices(lingeringUntilMs));
  const reset = resetOf(owned, next.peers);
  // Leaving, the node keeps the VIP's address while its application may still answer
  // requests it accepted before: without the address the kernel cannot route those answers
  // (the source is no longer local), and a client whose request was acknowledged waits
  // for its own timeout. The empty filter accepts nothing meanwhile, and ARP goes quiet.
  const vip: VipState = next.state === "UP" ? "up" : next.vip !== "down" && next.appRunning ? "draining" : "down";
  next = { ...next, members, owners, owned, lingeringUntilMs, lingering, reset, vip };
  // Becoming UP always installs the filter: it starts the lease, even with no bucket owned.
  const becameUp = next.state === "UP" && before.state !== "UP";
  const filterChanged = becameUp || !owned.equals(before.owned) || !lingering.equals(before.lingering) || !reset.equals(before.reset);
  if (filterChanged) {
    effects.push({ kind: "filter-set", owned, lingering, reset, leaseMs: next.config.timings.leaseMs });
    next = { ...next, lastRenewMs: nowMs };
    log(effects, "info", "farm.filter", next, { owned: owned.size(), lingering: lingering.size(), reset: reset.size(), members: ids.join(" ") });
  }
  if (next.vip !== before.vip) {
    effects.push({ kind: "vip", state: next.vip });
    log(effects, "info", "farm.vip", next, { vip: next.vip });
  }
  const announce = next.state !== before.state || next.joining !== before.joining || !sameRefs(members, before.members) || !lingering.equals(before.lingering);
  if (heartbeatDue || announce) next = broadcast(next, effects);
  return next;
}

/** Moves between WAIT and UP, and sets `joining`, from health, settling and the peers' views. */
function advanceRole(node: FarmNode, nowMs: number, effects: FarmEffect[]): FarmNode {
  if (node.state === "STOP") return { ...node, joining: false };
  const heardEveryPeer = !node.settleByTimeout && node.peers.every((peer) => Math.max(...peer.lastHeardMs) >= node.startedMs);
  const settled = node.settled || nowMs - node.startedMs >= node.config.timings.detectionTimeoutMs || heardEveryPeer;
  const ready = node.healthy && settled;
  let next: FarmNode = { ...node, settled };
  if (node.state === "UP") {
    const graceMs = 2 * node.config.timings.heartbeatIntervalMs;
    const rejectedBy = node.peers
      .filter((peer) => peer.alive && peer.state === "UP" && nowMs - peer.aliveSinceMs >= graceMs && !listsSelf(node, peer))
      .map((peer) => peer.id);
    if (!ready) next = { ...next, state: "WAIT", joining: false };
    else if (rejectedBy.length > 0) {
      log(effects, "warn", "farm.rejected", node, { by: rejectedBy.join(" ") });
      next = { ...next, state: "WAIT", joining: true, joinEpoch: node.seq + 1 };
    }
  } else if (node.state === "WAIT" && !ready) {
    next = { ...next, joining: false };
  } else if (node.state === "WAIT" && !node.joining) {
    // The next heartbeat (seq + 1) announces this join; peers acknowledge that epoch.
    next = { ...next, joining: true, joinEpoch: node.seq + 1 };
  } else if (node.state === "WAIT" && node.peers.every((peer) => !peer.alive || peer.state === "STOP" || listsSelf(node, peer))) {
    next = { ...next, state: "UP", joining: false };
  }
  if (next.state !== node.state) log(effects, "info", "farm.state", next, { from: node.state, to: next.state });
  return next;
}

/** Whether `peer`'s latest heartbeat lists this node's current incarnation and join. */
function listsSelf(node: FarmNode, peer: FarmPeer): boolean {
  return peer.members.some((member) => member.id === node.self && member.incarnation === node.incarnation && member.epoch === node.joinEpoch);
}

function viewOf(node: FarmNode): MemberRef[] {
  const members: MemberRef[] = node.peers
    .filter((peer) => peer.alive && (peer.state === "UP" || peer.joining))
    .map((peer) => ({ id: peer.id, incarnation: peer.incarnation, epoch: peer.epoch }));
  if (node.state === "UP" || node.joining) members.push({ id: node.self, incarnation: node.incarnation, epoch: node.joinEpoch });
  return members.sort((a, b) => compareIds(a.id, b.id));
}

function ownersOf(node: FarmNode, members: readonly NodeId[]): OwnerMap {
  const weightOf = new Map(node.config.nodes.map((config) => [config.id, config.weight]));
  return computeOwners(members.map((id) => ({ id, weight: weightOf.get(id)! })), node.config.bucketCount, node.config.hashSeed);
}

/** Owned buckets whose strangers no live peer may still serve: those get TCP resets. */
function resetOf(owned: BucketSet, peers: readonly FarmPeer[]): BucketSet {
  let reset = owned;
  for (const peer of peers) if (peer.alive && !peer.lingering.isEmpty()) reset = reset.minus(peer.lingering);
  return reset;
}

function lingerUntil(node: FarmNode, ownedBefore: BucketSet, owned: BucketSet, owners: OwnerMap | null, nowMs: number): readonly number[] {
  if (owners === null) return node.lingering.isEmpty() && node.lingeringUntilMs.every((untilMs) => untilMs === 0) ? node.lingeringUntilMs : node.lingeringUntilMs.map(() => 0);
  // Lingering buckets are never owned, so unchanged ownership regains none and loses none.
  if (owned === ownedBefore) return node.lingeringUntilMs;
  const lost = ownedBefore.minus(owned).toArray();
  const regained = owned.intersect(BucketSet.of(owned.bucketCount, lingeringIndices(node.lingeringUntilMs))).toArray();
  if (lost.length === 0 && regained.length === 0) return node.lingeringUntilMs;
  const untilMs = node.lingeringUntilMs.slice();
  const livePeers = new Set(node.peers.filter((peer) => peer.alive).map((peer) => peer.id));
  for (const bucketIndex of lost) {
    if (livePeers.has(owners[bucketIndex] ?? "")) untilMs[bucketIndex] = nowMs + node.config.timings.handoverWindowMs;
  }
  for (const bucketIndex of regained) untilMs[bucketIndex] = 0;
  return untilMs;
}

function lingeringIndices(untilMs: readonly number[]): number[] {
  const indices: number[] = [];
  untilMs.forEach((until, bucketIndex) => until !== 0 && indices.push(bucketIndex));
  return indices;
}

function broadcast(node: FarmNode, effects: FarmEffect[]): FarmNode {
  const seq = node.seq + 1;
  const message: FarmHeartbeat = {
    kind: "farm-heartbeat",
    module: node.config.module,
    from: node.self,
    incarnation: node.incarnation,
    seq,
    state: node.state,
    joining: node.joining,
    epoch: node.joinEpoch,
    members: node.members,
    lingering: node.lingering,
  };
  for (const peer of node.peers) {
    for (const ring of node.config.rings) effects.push({ kind: "send", ring, to: peer.id, message });
  }
  return { ...node, seq };
}

/** F3, asserted in the core: a change of one member moves only that member's buckets. */
function checkMinimalMove(before: readonly NodeId[], after: readonly NodeId[], ownersBefore: OwnerMap, ownersAfter: OwnerMap): void {
  const changed = [...before.filter((id) => !after.includes(id)), ...after.filter((id) => !before.includes(id))];
  if (changed.length !== 1) return;
  for (const bucketIndex of movedBuckets(ownersBefore, ownersAfter)) {
    const involved = ownersBefore[bucketIndex] === changed[0] || ownersAfter[bucketIndex] === changed[0];
    assert(involved, `F3: bucket ${bucketIndex} moved from ${ownersBefore[bucketIndex]} to ${ownersAfter[bucketIndex]} although only ${changed[0]} changed`);
  }
}

function checkInvariants(node: FarmNode): void {
  assert(node.state === "UP" || node.owned.isEmpty(), `${node.self} owns buckets while ${node.state}`);
  assert(node.state === "UP" || node.lingering.isEmpty(), `${node.self} lingers while ${node.state}`);
  assert(node.owned.intersect(node.lingering).isEmpty(), `${node.self} both owns and lingers on a bucket`);
  assert(node.reset.minus(node.owned).isEmpty(), `${node.self} resets buckets it does not own`);
  assert(!(node.state === "UP" && node.joining), `${node.self} is UP and joining`);
  assert((node.vip === "up") === (node.state === "UP"), `${node.self} VIP ${node.vip} while ${node.state}`);
  assert(node.vip !== "draining" || node.appRunning, `${node.self} drains the VIP with no application running`);
}

function sameIds(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((id, index) => id === b[index]);
}

function sameRefs(a: readonly MemberRef[], b: readonly MemberRef[]): boolean {
  return a.length === b.length && a.every((ref, index) => ref.id === b[index]!.id && ref.incarnation === b[index]!.incarnation && ref.epoch === b[index]!.epoch);
}

function log(effects: FarmEffect[], level: LogLevel, event: string, node: FarmNode, fields: LogEntry["fields"]): void {
  effects.push({ kind: "log", entry: { level, event, fields: { module: node.config.module, node: node.self, ...fields } } });
}
