// Farm benchmarks, each printed beside a baseline run alongside it:
// - simulator speed (baseline: the wall clock) and fault-plan runs per minute;
// - bucket spread per unit of weight and buckets moved when one of 64 nodes leaves
//   (baseline: plain `hash mod N` assignment);
// - detection time, time until a lost node's clients are answered again, and false
//   failovers at 1 % loss and 20 ms jitter (baseline: SafeKit's default farm timings,
//   pulse 100 ms and 10 lost pulses, run in the same simulator).

import { computeOwners, movedBuckets, type OwnerMap, type WeightedMember } from "../core/ownership.ts";
import { defaultFarmTimings, type FarmConfig, type FarmTimings } from "../core/farm-config.ts";
import { combine32 } from "../core/hash.ts";
import type { NodeId } from "../core/types.ts";
import { FarmWorld } from "../drivers/sim/farm-world.ts";
import { fuzzFarm } from "../drivers/sim/farm-fuzz.ts";
import { Prng } from "../drivers/sim/prng.ts";

/** SafeKit farm defaults: `<farm pulse="100ms" slost_count="10">` gives about 1 s. */
export const safekitTimings: FarmTimings = { heartbeatIntervalMs: 100, detectionTimeoutMs: 1_000, leaseMs: 900, handoverWindowMs: 300_000 };

function config(nodeCount: number, timings: FarmTimings, mode: "srcip" | "srcip+srcport" = "srcip+srcport"): FarmConfig {
  return {
    module: "bench",
    nodes: Array.from({ length: nodeCount }, (_, index) => ({ id: `n${index + 1}`, weight: 1 })),
    rings: ["lan"],
    bucketCount: 256,
    hashSeed: 1,
    rules: [{ port: 80, proto: "tcp", mode }],
    timings,
  };
}

export interface SpeedRow {
  readonly load: string;
  readonly requestsPerSecond: number;
  readonly speedup: number;
}

/** Simulated seconds per wall second for a 3-node farm, at several client loads. */
export function simulatorSpeed(virtualMs = 300_000): SpeedRow[] {
  const loads = [
    { load: "heartbeats only", clients: 0, thinkMs: 20 },
    { load: "10 clients, 10 req/s each", clients: 10, thinkMs: 100 },
    { load: "10 clients, 50 req/s each", clients: 10, thinkMs: 20 },
  ];
  return loads.map(({ load, clients, thinkMs }) => {
    const world = new FarmWorld({ seed: 1, config: config(3, defaultFarmTimings), clients: { count: clients, thinkMs } });
    for (const node of world.nodes) world.powerOn(node.id);
    world.runFor(1_000);
    world.clients.start();
    // Warm the JIT up first, so the figure is the simulator's and not the compiler's.
    world.runFor(virtualMs / 4);
    const answeredBefore = world.clients.clients.reduce((sum, client) => sum + client.successes, 0);
    const startedMs = performance.now();
    world.runFor(virtualMs);
    const wallMs = performance.now() - startedMs;
    const answered = world.clients.clients.reduce((sum, client) => sum + client.successes, 0) - answeredBefore;
    return { load, requestsPerSecond: Math.round(answered / (virtualMs / 1000)), speedup: virtualMs / wallMs };
  });
}

export function planRate(runs: number, nodeCount?: number): { plansPerMinute: number; runs: number } {
  const startedMs = performance.now();
  const summary = fuzzFarm({ runs, seed: 4242, shape: nodeCount === undefined ? {} : { nodeCount } });
  if (summary.failure !== null) throw new Error(`benchmark plans found a violation:\n${summary.failure.report}`);
  return { plansPerMinute: (runs / (performance.now() - startedMs)) * 60_000, runs };
}

export interface SpreadRow {
  readonly scheme: string;
  readonly bucketCount: number;
  /** Largest and smallest share per unit of weight, relative to the fair share. */
  readonly maxRatio: number;
  readonly minRatio: number;
  /** Buckets moved when one node leaves, and how many that node owned. */
  readonly moved: number;
  readonly ownedByLeaver: number;
}

function modNOwners(members: readonly WeightedMember[], bucketCount: number, seed: number): OwnerMap {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : 1));
  return Array.from({ length: bucketCount }, (_, bucketIndex) => sorted[combine32(seed, bucketIndex) % sorted.length]!.id);
}

/** 64 nodes with weights 1–5: spread per unit of weight, and what moves when one leaves. */
export function bucketSpread(bucketCount: number): SpreadRow[] {
  const prng = new Prng(64);
  const members: WeightedMember[] = Array.from({ length: 64 }, (_, index) => ({ id: `n${index + 1}`, weight: prng.int(1, 5) }));
  const totalWeight = members.reduce((sum, member) => sum + member.weight, 0);
  const leaver = members[17]!.id;
  const remaining = members.filter((member) => member.id !== leaver);
  const schemes: [string, (m: readonly WeightedMember[]) => OwnerMap, boolean][] = [
    ["tandem weighted rendezvous", (m) => computeOwners(m, bucketCount, 9), true],
    ["baseline hash mod N (ignores weights)", (m) => modNOwners(m, bucketCount, 9), false],
  ];
  return schemes.map(([scheme, owners, weighted]) => {
    const before = owners(members);
    const after = owners(remaining);
    const counts = new Map<NodeId, number>();
    for (const owner of before) counts.set(owner!, (counts.get(owner!) ?? 0) + 1);
    const ratios = members.map((member) => {
      const fair = weighted ? (bucketCount * member.weight) / totalWeight : bucketCount / members.length;
      return (counts.get(member.id) ?? 0) / fair;
    });
    return {
      scheme,
      bucketCount,
      maxRatio: Math.max(...ratios),
      minRatio: Math.min(...ratios),
      moved: movedBuckets(before, after).length,
      ownedByLeaver: counts.get(leaver) ?? 0,
    };
  });
}

export interface FailoverSample {
  readonly detectionMs: number;
  readonly servedAgainMs: number;
}

/** Powers off one node of three under load; measures detection and client recovery. */
export function failoverSample(seed: number, timings: FarmTimings): FailoverSample {
  let killedAtMs = Infinity;
  let detectedAtMs = Infinity;
  const world = new FarmWorld({
    seed,
    config: config(3, timings),
    link: { latencyMs: 0.1, jitterMs: 0.2, lossRate: 0, duplicateRate: 0, reorderRate: 0 },
    clients: { count: 30, thinkMs: 20, retryMs: 100 },
    onLog: (_, atMs, entry) => {
      if (entry.event === "farm.peer-lost" && atMs >= killedAtMs) detectedAtMs = Math.min(detectedAtMs, atMs);
    },
  });
  const lastNode = new Map<number, NodeId>();
  const recoveredAtMs = new Map<number, number>();
  world.clients.onSuccess = (client, node, atMs) => {
    if (atMs > killedAtMs && lastNode.get(client.ip) === "n3" && !recoveredAtMs.has(client.ip)) recoveredAtMs.set(client.ip, atMs);
    if (atMs <= killedAtMs) lastNode.set(client.ip, node);
  };
  for (const node of world.nodes) world.powerOn(node.id);
  world.runFor(1_000);
  world.clients.start();
  world.runFor(1_000 + new Prng(seed).float() * 100);
  killedAtMs = world.nowMs;
  world.powerOff("n3");
  world.runFor(5_000);
  const victims = [...lastNode.entries()].filter(([, node]) => node === "n3").map(([ip]) => ip);
  const servedAgainMs = Math.max(...victims.map((ip) => (recoveredAtMs.get(ip) ?? Infinity) - killedAtMs));
  return { detectionMs: detectedAtMs - killedAtMs, servedAgainMs };
}

/** Peer-lost events (all false: every node stays up) over `virtualMs` at 1 % loss and 20 ms jitter. */
export function falseFailovers(timings: FarmTimings, virtualMs: number, seed = 3): number {
  let lost = 0;
  const world = new FarmWorld({
    seed,
    config: config(3, timings),
    link: { latencyMs: 0.2, jitterMs: 20, lossRate: 0.01, duplicateRate: 0, reorderRate: 0 },
    onLog: (_, __, entry) => {
      if (entry.event === "farm.peer-lost" || entry.event === "farm.lease-lost") lost++;
    },
  });
  for (const node of world.nodes) world.powerOn(node.id);
  world.runFor(virtualMs);
  return lost;
}

export function percentile(values: readonly number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}
