// Fault plans for farm modules: what the simulator runs, what fast-check generates and
// shrinks, and what a replay token encodes. A plan is plain data, printed one fault a
// line (`t=1200 crash(n2)`), so a failure reads as a story.

import fc from "fast-check";
import { defaultFarmTimings, type BalanceMode, type FarmConfig } from "../../core/farm-config.ts";
import type { NodeId, RingId } from "../../core/types.ts";
import { FarmChecker, type CheckerStats, type Violation } from "./farm-checker.ts";
import { FarmWorld } from "./farm-world.ts";
import type { PlantedBug } from "./kernel-filter.ts";
import type { LinkSettings } from "./network.ts";

export type NodeVerb = "crash" | "restart" | "powerOff" | "powerOn" | "hang" | "release" | "stop" | "start" | "breakApp" | "repairApp";
export type LinkVerb = "partition" | "heal";

export type FarmFault =
  | { readonly atMs: number; readonly verb: NodeVerb; readonly node: NodeId }
  /** One-way cut (or its repair) from `from` to `to` on one ring, or on all with "*". */
  | { readonly atMs: number; readonly verb: LinkVerb; readonly ring: RingId | "*"; readonly from: NodeId; readonly to: NodeId }
  /** Changes loss and jitter of one ring from then on. */
  | { readonly atMs: number; readonly verb: "degrade"; readonly ring: RingId; readonly lossRate: number; readonly jitterMs: number };

export interface FarmPlan {
  readonly seed: number;
  readonly nodes: readonly { readonly id: NodeId; readonly weight: number }[];
  readonly rings: readonly RingId[];
  readonly mode: BalanceMode;
  readonly link: LinkSettings;
  readonly clients: number;
  /** Fault times are relative to the end of the boot phase. */
  readonly faults: readonly FarmFault[];
  readonly safetyMs: number;
  readonly bug: PlantedBug;
}

export interface PlanResult {
  readonly violations: readonly Violation[];
  readonly stats: CheckerStats & { events: number; virtualMs: number; convergedAfterMs: number | null };
  readonly trace: readonly string[];
}

export const bootMs = 1_000;
export const convergeBoundMs = 2_000;
export const stableCheckMs = 1_000;

export function farmConfigOf(plan: FarmPlan): FarmConfig {
  return {
    module: "farm",
    nodes: plan.nodes,
    rings: plan.rings,
    bucketCount: 256,
    hashSeed: plan.seed,
    rules: [{ port: 80, proto: "tcp", mode: plan.mode }],
    timings: defaultFarmTimings,
  };
}

/** Runs a plan: boot, safety phase with faults, then faults off and the cluster must converge. */
export function runPlan(plan: FarmPlan, options: { trace?: boolean } = {}): PlanResult {
  let checker: FarmChecker | null = null;
  const world = new FarmWorld({
    seed: plan.seed,
    config: farmConfigOf(plan),
    link: plan.link,
    clients: { count: plan.clients },
    trace: options.trace === true ? "full" : "off",
    plantedBug: plan.bug,
    onPacket: (record) => checker?.onPacket(record),
  });
  checker = new FarmChecker(world);
  let convergedAfterMs: number | null = null;
  try {
    for (const node of world.nodes) world.powerOn(node.id);
    world.runUntil(bootMs);
    checker.start();
    world.clients.start();
    for (const fault of plan.faults) world.schedule(bootMs + fault.atMs, () => applyFault(world, fault));
    world.runUntil(bootMs + plan.safetyMs);
    const faultsOffMs = world.nowMs;
    world.note("world faults off");
    endFaults(world, plan);
    const converged = world.runUntilCondition(() => checker!.convergenceProblem() === null, faultsOffMs + convergeBoundMs);
    if (!converged) checker.violate("F1", `no convergence ${convergeBoundMs} ms after the faults stopped: ${checker.convergenceProblem()}`);
    else {
      convergedAfterMs = world.nowMs - faultsOffMs;
      world.runFor(stableCheckMs);
      const problem = checker.convergenceProblem();
      if (problem !== null) checker.violate("F1", `converged, then lost it without any fault: ${problem}`);
    }
  } catch (error) {
    // An assertion inside the core or the simulator is a violation like any other.
    checker.violate("assert", error instanceof Error ? `${error.message}\n${error.stack?.split("\n").slice(1, 4).join("\n")}` : String(error));
  }
  checker.stop();
  return { violations: checker.violations, stats: { ...checker.stats, events: world.eventCount, virtualMs: world.nowMs, convergedAfterMs }, trace: world.trace };
}

function applyFault(world: FarmWorld, fault: FarmFault): void {
  world.note(`fault ${describeFault(fault)}`);
  switch (fault.verb) {
    case "partition":
      return world.network.partition(fault.ring, fault.from, fault.to);
    case "heal":
      return world.network.heal(fault.ring, fault.from, fault.to);
    case "degrade":
      return world.network.setLink(fault.ring, { lossRate: fault.lossRate, jitterMs: fault.jitterMs });
    case "crash":
    case "restart":
    case "powerOff":
    case "powerOn":
    case "hang":
    case "release":
      return world[fault.verb](fault.node);
    case "stop":
      return world.stopModule(fault.node);
    case "start":
      return world.startModule(fault.node);
    case "breakApp":
      return world.breakApp(fault.node);
    case "repairApp":
      return world.repairApp(fault.node);
  }
}

/** Liveness phase: every fault repaired, links clean (latency and jitter kept). */
function endFaults(world: FarmWorld, plan: FarmPlan): void {
  world.network.healAll();
  world.network.setLink("*", { ...plan.link, lossRate: 0, duplicateRate: 0, reorderRate: 0 });
  for (const node of world.nodes) {
    world.powerOn(node.id);
    world.restart(node.id);
    world.release(node.id);
    if (!node.moduleWanted) world.startModule(node.id);
    if (node.appBroken) world.repairApp(node.id);
  }
}

export function describeFault(fault: FarmFault): string {
  const at = `t=${fault.atMs}`;
  switch (fault.verb) {
    case "partition":
    case "heal":
      return `${at} ${fault.verb}(${fault.ring}: ${fault.from}->${fault.to})`;
    case "degrade":
      return `${at} degrade(${fault.ring}: loss=${fault.lossRate} jitter=${fault.jitterMs}ms)`;
    default:
      return `${at} ${fault.verb}(${fault.node})`;
  }
}

export function describePlan(plan: FarmPlan): string {
  const link = plan.link;
  return [
    `seed=${plan.seed} nodes=${plan.nodes.map((node) => `${node.id}:${node.weight}`).join(",")} rings=${plan.rings.join(",")} mode=${plan.mode} clients=${plan.clients}${plan.bug === "none" ? "" : ` bug=${plan.bug}`}`,
    `link: latency=${link.latencyMs}ms jitter=${link.jitterMs}ms loss=${link.lossRate} dup=${link.duplicateRate} reorder=${link.reorderRate}; safety phase ${plan.safetyMs} ms`,
    ...(plan.faults.length === 0 ? ["faults: none"] : ["faults (ms after boot):", ...plan.faults.map((fault) => `  ${describeFault(fault)}`)]),
  ].join("\n");
}

export function encodePlan(plan: FarmPlan): string {
  return Buffer.from(JSON.stringify(plan)).toString("base64url");
}

export function decodePlan(token: string): FarmPlan {
  const text = Buffer.from(token, "base64url").toString("utf8");
  let plan: FarmPlan;
  try {
    plan = JSON.parse(text) as FarmPlan;
  } catch {
    throw new Error(`replay token is not a plan: it does not decode to JSON (${token.slice(0, 20)}…); copy the whole token from the failure report`);
  }
  if (!Array.isArray(plan.nodes) || !Array.isArray(plan.faults) || typeof plan.seed !== "number") {
    throw new Error("replay token is not a farm plan: it lacks seed, nodes or faults");
  }
  return plan;
}

export interface PlanShape {
  /** Fixed node count, or a range drawn per plan. */
  readonly nodeCount?: number;
  readonly nodeCountMax?: number;
  readonly bug?: PlantedBug;
}

/** fast-check arbitrary of farm plans: 2 to 16 nodes, random weights, swarm link settings. */
export function farmPlanArbitrary(shape: PlanShape = {}): fc.Arbitrary<FarmPlan> {
  const nodeCount = shape.nodeCount === undefined ? fc.integer({ min: 2, max: shape.nodeCountMax ?? 16 }) : fc.constant(shape.nodeCount);
  return fc.tuple(nodeCount, fc.integer({ min: 1, max: 3 })).chain(([count, ringCount]) => {
    const ids = Array.from({ length: count }, (_, index) => `n${index + 1}`);
    const rings = ["lan", "private", "backup"].slice(0, ringCount);
    return fc.record({
      seed: fc.integer({ min: 0, max: 0xffff_ffff }),
      nodes: fc.tuple(...ids.map((id) => fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1, max: 5 }) }, { weight: 1, arbitrary: fc.constant(0) }).map((weight) => ({ id, weight })))),
      rings: fc.constant(rings),
      mode: fc.constantFrom<BalanceMode>("srcip", "srcip+srcport"),
      link: linkArbitrary(),
      clients: fc.integer({ min: 1, max: 12 }),
      faults: fc.array(faultArbitrary(ids, rings), { maxLength: 8 }).map((episodes) => episodes.flat().sort((a, b) => a.atMs - b.atMs)),
      safetyMs: fc.constant(3_000),
      bug: fc.constant(shape.bug ?? "none"),
    });
  });
}

/** Swarm testing: each plan draws its own network, from a quiet LAN to a lossy, jittery one. */
function linkArbitrary(): fc.Arbitrary<LinkSettings> {
  return fc.record({
    latencyMs: fc.oneof(fc.constant(0.1), fc.double({ min: 0.05, max: 2, noNaN: true })),
    jitterMs: fc.oneof(fc.constant(0.2), fc.double({ min: 0, max: 20, noNaN: true })),
    lossRate: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.05, noNaN: true })),
    duplicateRate: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.05, noNaN: true })),
    reorderRate: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.05, noNaN: true })),
  });
}

/** The verb that repairs each fault verb, for fault episodes. */
const repairOf = { crash: "restart", powerOff: "powerOn", hang: "release", stop: "start", breakApp: "repairApp" } as const;
type EpisodeVerb = keyof typeof repairOf;

/**
 * Faults come mostly as episodes, a fault and its repair after a drawn duration, because
 * the interesting races sit at the boundaries of the timings (a hang just longer than the
 * lease, a partition just shorter than detection) which independent faults rarely hit;
 * single unpaired faults are drawn too.
 */
function faultArbitrary(ids: readonly NodeId[], rings: readonly RingId[]): fc.Arbitrary<FarmFault[]> {
  const atMs = fc.integer({ min: 0, max: 2_900 });
  const durationMs = fc.oneof(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 2_000 }));
  const node = fc.constantFrom(...ids);
  const ring = fc.constantFrom<RingId | "*">("*", ...rings);
  const nodeVerb = fc.constantFrom<NodeVerb>("crash", "restart", "powerOff", "powerOn", "hang", "release", "stop", "start", "breakApp", "repairApp");
  const episodeVerb = fc.constantFrom<EpisodeVerb>("crash", "powerOff", "hang", "stop", "breakApp");
  const link = fc.record({ atMs, ring, from: node, to: node }).filter((fault) => fault.from !== fault.to);
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({ atMs, verb: episodeVerb, node, durationMs }).map(({ atMs, verb, node, durationMs }): FarmFault[] => [
        { atMs, verb, node },
        { atMs: atMs + durationMs, verb: repairOf[verb], node },
      ]),
    },
    {
      weight: 4,
      arbitrary: fc.tuple(link, durationMs, fc.boolean()).map(([cut, durationMs, bothWays]): FarmFault[] => {
        const ways = bothWays ? [[cut.from, cut.to], [cut.to, cut.from]] : [[cut.from, cut.to]];
        return ways.flatMap(([from, to]): FarmFault[] => [
          { atMs: cut.atMs, verb: "partition", ring: cut.ring, from: from!, to: to! },
          { atMs: cut.atMs + durationMs, verb: "heal", ring: cut.ring, from: from!, to: to! },
        ]);
      }),
    },
    { weight: 2, arbitrary: fc.record({ atMs, verb: nodeVerb, node }).map((fault): FarmFault[] => [fault]) },
    { weight: 1, arbitrary: link.map((cut): FarmFault[] => [{ ...cut, verb: "partition" }]) },
    {
      weight: 1,
      arbitrary: fc
        .record({ atMs, verb: fc.constant("degrade" as const), ring: fc.constant(rings[0]!), lossRate: fc.double({ min: 0, max: 0.3, noNaN: true }), jitterMs: fc.double({ min: 0, max: 50, noNaN: true }) })
        .map((fault): FarmFault[] => [fault]),
    },
  );
}
