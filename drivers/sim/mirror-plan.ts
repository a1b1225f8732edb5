// Fault plans for a two-node mirror module under client load, and the one-command replay
// of a failing one: `npm run sim -- --module mirror --replay TOKEN`.
//
// A plan starts both nodes, makes n1 primary of a new mirror (the operator's first
// `prim`), starts the clients, injects its faults in virtual time, then ends every fault
// and checks the invariants M1-M5 (drivers/sim/mirror-checker.ts). With the split-brain
// checker on, partitions isolate one node from both its peer and the witness: a ping
// witness cannot arbitrate a partition in which both nodes still reach it (docs/mirror.md).

import fc from "fast-check";
import { checkFinal, convergeBoundMs, settle } from "./mirror-checker.ts";
import { MirrorWorld, type MirrorPlantedBug, type Violation } from "./mirror-world.ts";

export type MirrorVerb =
  | "powerOff"
  | "powerOn"
  | "crash"
  | "restart"
  | "partition"
  | "heal"
  | "cutWitness"
  | "healWitness"
  | "crashApp"
  /** A checker whose action is stopstart sees the application fail. */
  | "crashAppStopstart"
  | "swap"
  | "stop"
  | "start"
  | "diskFull"
  | "diskRoomy"
  | "diskError"
  /** The node's next fsync of a file with data not durable fails and loses that data. */
  | "diskLoseWriteback"
  | "diskSlow"
  | "diskFast"
  /** A resource the module waits for goes down (a checker or rule with action wait). */
  | "hold"
  | "release"
  /** The service stalls (its event loop does not run) and runs again. */
  | "pause"
  | "resume";

export interface MirrorFault {
  readonly atMs: number;
  readonly verb: MirrorVerb;
  readonly node: "n1" | "n2";
}

export interface MirrorPlan {
  readonly kind: "mirror";
  readonly seed: number;
  readonly witness: boolean;
  readonly ack: "applied" | "received";
  readonly tornWrites: boolean;
  readonly failover: boolean;
  /** The primary's in-sync writes take the lane (absent in older tokens: off). */
  readonly lane?: boolean;
  /** The bound of each node's summary's dirty map, in bytes (absent: the service's, 8 MiB):
   *  small, every summary with marks names coarser ones (meta.ts, coarsenToFit). Not
   *  generated: test/sim/mirror-summary.test.ts sets it on generated plans. */
  readonly summaryBytes?: number;
  readonly bug: MirrorPlantedBug;
  readonly faults: readonly MirrorFault[];
}

export interface MirrorPlanResult {
  readonly violations: readonly Violation[];
  readonly world: MirrorWorld;
}

const firstPrimMs = 1_000;
const clientsFromMs = 1_500;
export const faultWindowMs = 20_000;

export function runMirrorPlan(plan: MirrorPlan, options: { readonly trace?: boolean } = {}): MirrorPlanResult {
  const world = new MirrorWorld({
    seed: plan.seed,
    witness: plan.witness,
    ack: plan.ack,
    failover: plan.failover,
    disk: { tornWrites: plan.tornWrites },
    trace: options.trace === true ? "full" : "off",
    plantedBug: plan.bug,
    lane: plan.lane ?? false,
    ...(plan.summaryBytes === undefined ? {} : { summaryDirtyBytesMax: plan.summaryBytes }),
  });
  world.powerOn("n1");
  world.powerOn("n2");
  world.runUntil(firstPrimMs);
  world.command("n1", "prim");
  world.runUntil(clientsFromMs);
  world.clients.start();
  const isolated = new Set<string>();
  for (const fault of plan.faults) {
    world.runUntil(Math.max(world.nowMs, clientsFromMs + fault.atMs));
    apply(world, plan, fault, isolated);
  }
  world.runUntil(Math.max(world.nowMs, clientsFromMs + faultWindowMs));
  for (const node of world.nodes) {
    world.diskFull(node.id, null);
    world.hold(node.id, false);
  }
  // failover="off" leaves a lost primary's secondary waiting for an operator: the operator comes.
  if (!plan.failover) operatorPrim(world);
  settle(world, convergeBoundMs);
  checkFinal(world);
  return { violations: world.violations, world };
}

function operatorPrim(world: MirrorWorld): void {
  // The operator first brings every node back, so that they decide between themselves;
  // only a mirror still without a primary gets a prim (on a node whose data is whole).
  world.healAll();
  for (const node of world.nodes) {
    if (!node.powered) world.powerOn(node.id);
    else if (!node.running) world.restart(node.id);
  }
  world.runFor(2_000);
  const primary = world.nodes.find((node) => node.role === "PRIM" || node.role === "ALONE");
  if (primary !== undefined) return;
  const waiting = world.nodes.find((node) => node.role === "WAIT" && node.runtime?.state.meta.consistent === true);
  if (waiting !== undefined) world.command(waiting.id, "prim");
}

/** `isolated`: with the witness on, the nodes a partition cut from the witness too; they
 *  reach it again only when the partition heals (a ping witness cannot arbitrate a
 *  partition that leaves both nodes reaching it: docs/mirror.md). */
function apply(world: MirrorWorld, plan: MirrorPlan, fault: MirrorFault, isolated: Set<string>): void {
  const { node } = fault;
  switch (fault.verb) {
    case "powerOff":
      return world.powerOff(node);
    case "powerOn":
      return world.powerOn(node);
    case "crash":
      return world.crash(node);
    case "restart":
      return world.restart(node);
    case "partition":
      if (plan.witness) {
        world.isolate(node);
        isolated.add(node);
      } else world.partition();
      return;
    case "heal":
      for (const each of isolated) world.healWitness(each);
      isolated.clear();
      return world.heal();
    case "cutWitness":
      return world.cutWitness(node);
    case "healWitness":
      if (!isolated.has(node)) world.healWitness(node);
      return;
    case "crashApp":
      return world.crashApp(node);
    case "crashAppStopstart":
      return world.crashApp(node, "stopstart");
    case "swap": {
      const primary = world.nodes.find((each) => each.role === "PRIM");
      if (primary !== undefined) world.command(primary.id, "swap");
      return;
    }
    case "stop":
      return world.command(node, "stop");
    case "start":
      return world.command(node, "start");
    case "diskFull":
      return world.diskFull(node, world.node(node).disk.usedBytes + 30_000);
    case "diskRoomy":
      return world.diskFull(node, null);
    case "diskError":
      return world.diskFailNext(node, "EIO");
    case "diskLoseWriteback":
      return world.diskLoseWriteback(node);
    case "diskSlow":
      return world.diskSlow(node, 50);
    case "diskFast":
      return world.diskSlow(node, 1);
    case "hold":
      return world.hold(node, true);
    case "release":
      return world.hold(node, false);
    case "pause":
      return world.pause(node);
    case "resume":
      return world.resume(node);
  }
}

// ---- generation, encoding ----

const repairOf = { powerOff: "powerOn", crash: "restart", partition: "heal", cutWitness: "healWitness", stop: "start", diskFull: "diskRoomy", diskSlow: "diskFast", hold: "release", pause: "resume" } as const;

export interface MirrorPlanShape {
  readonly bug?: MirrorPlantedBug;
  /** Stall nodes too (pause/resume episodes): `--stalls`. Off by default, so that the
   *  seeds of the plans without stalls keep the plans they gave; CI runs both
   *  (docs/simulation.md). */
  readonly stalls?: boolean;
}

/** How close together a burst's faults begin: within about one peer-loss detection and
 *  a witness check, where a stop, a partition and a power loss meet mid-decision. */
const burstMs = 800;

export function mirrorPlanArbitrary(shape: MirrorPlanShape = {}): fc.Arbitrary<MirrorPlan> {
  const node = fc.constantFrom<"n1" | "n2">("n1", "n2");
  const groups = (atMs: fc.Arbitrary<number>) => {
    const episode = fc
      .record({ atMs, node, verb: fc.constantFrom(...(Object.keys(repairOf) as (keyof typeof repairOf)[]).filter((verb) => verb !== "pause" || shape.stalls === true)), durationMs: fc.oneof(fc.integer({ min: 1, max: 1_500 }), fc.integer({ min: 1, max: 8_000 })) })
      .map(({ atMs, node, verb, durationMs }): MirrorFault[] => [
        { atMs, verb, node },
        { atMs: atMs + durationMs, verb: repairOf[verb], node },
      ]);
    const single = fc.record({ atMs, node, verb: fc.constantFrom<MirrorVerb>("crashApp", "swap", "diskError", "diskLoseWriteback", "powerOff", "crash", "crashAppStopstart") }).map((fault) => [fault]);
    return fc.array(fc.oneof({ weight: 4, arbitrary: episode }, { weight: 1, arbitrary: single }), { maxLength: 6 }).map((each) => each.flat().sort((a, b) => a.atMs - b.atMs));
  };
  // Spread over the window, or (one plan in four) begun in a burst: uniform times rarely
  // put two faults within the few hundred ms of a decision (a sweep of stops around peer
  // faults found two bugs there that 1000 spread plans a run had not).
  const spread = groups(fc.integer({ min: 0, max: faultWindowMs - 2_000 }));
  const burst = fc.integer({ min: 0, max: faultWindowMs - 2_000 - burstMs }).chain((anchor) => groups(fc.integer({ min: anchor, max: anchor + burstMs })));
  return fc.record({
    kind: fc.constant("mirror" as const),
    seed: fc.integer({ min: 0, max: 0xffff_ffff }),
    witness: fc.boolean(),
    ack: fc.constantFrom<"applied" | "received">("applied", "applied", "received"),
    tornWrites: fc.boolean(),
    failover: fc.constantFrom(true, true, true, false),
    lane: shape.bug?.startsWith("lane-") === true ? fc.constant(true) : fc.boolean(),
    bug: fc.constant(shape.bug ?? "none"),
    faults: fc.oneof({ weight: 3, arbitrary: spread }, { weight: 1, arbitrary: burst }),
  });
}

export function describeMirrorPlan(plan: MirrorPlan): string {
  const settings = `seed=${plan.seed} witness=${plan.witness} ack=${plan.ack} torn=${plan.tornWrites} failover=${plan.failover} lane=${plan.lane ?? false}${plan.summaryBytes === undefined ? "" : ` summary=${plan.summaryBytes}B`}${plan.bug === "none" ? "" : ` bug=${plan.bug}`}`;
  return [settings, ...(plan.faults.length === 0 ? ["faults: none"] : plan.faults.map((fault) => `  +${fault.atMs} ms ${fault.verb} ${fault.node}`))].join("\n");
}

export function encodeMirrorPlan(plan: MirrorPlan): string {
  return Buffer.from(JSON.stringify(plan)).toString("base64url");
}

export function decodeMirrorPlan(token: string): MirrorPlan {
  let plan: MirrorPlan;
  try {
    plan = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as MirrorPlan;
  } catch {
    throw new Error(`replay token is not a plan: it does not decode to JSON (${token.slice(0, 20)}…); copy the whole token from the failure report`);
  }
  if (plan.kind !== "mirror" || !Array.isArray(plan.faults) || typeof plan.seed !== "number") throw new Error("replay token is not a mirror plan: it lacks kind, seed or faults");
  return plan;
}

export function mirrorReplayCommand(plan: MirrorPlan): string {
  return `npm run sim -- --module mirror --replay ${encodeMirrorPlan(plan)}`;
}

export interface MirrorFuzzSummary {
  readonly runs: number;
  readonly virtualMs: number;
  readonly failure: { readonly report: string; readonly command: string; readonly plan: MirrorPlan } | null;
}

/** Runs `runs` generated plans; fast-check shrinks a failing one. */
/** The first violations of `plan`, or the exception it ends with (an assertion of the core
 *  or of the world), for a report that still names the plan. */
function violationLines(plan: MirrorPlan): string[] {
  try {
    return runMirrorPlan(plan).violations.slice(0, 5).map((violation) => `  [${violation.kind}] t=${violation.atMs.toFixed(1)} ms: ${violation.detail}`);
  } catch (error) {
    return [`  [crash] ${error instanceof Error ? error.message : String(error)}`];
  }
}

export function fuzzMirror(options: {
  readonly runs: number;
  readonly seed: number;
  readonly shape?: MirrorPlanShape;
  readonly onProgress?: (done: number, runs: number) => void;
  /** false: report the first failing plan as generated (deterministic and quick; shrinking
   *  a mirror plan can take minutes). */
  readonly shrink?: boolean;
}): MirrorFuzzSummary {
  let done = 0;
  let virtualMs = 0;
  const property = fc.property(mirrorPlanArbitrary(options.shape), (plan) => {
    if (++done % 10 === 0) options.onProgress?.(done, options.runs);
    const result = runMirrorPlan(plan);
    virtualMs += result.world.nowMs;
    return result.violations.length === 0;
  });
  const details = fc.check(property, { numRuns: options.runs, seed: options.seed, endOnFailure: options.shrink === false });
  if (!details.failed || details.counterexample === null) return { runs: details.numRuns, virtualMs, failure: null };
  const plan = details.counterexample[0];
  const command = mirrorReplayCommand(plan);
  const report = [
    `VIOLATION in a mirror fault plan (found after ${details.numRuns} plans, shrunk ${details.numShrinks} times)`,
    ...violationLines(plan),
    "plan:",
    describeMirrorPlan(plan).replace(/^/gm, "  "),
    "replay with:",
    `  ${command}`,
  ].join("\n");
  return { runs: details.numRuns, virtualMs, failure: { report, command, plan } };
}
