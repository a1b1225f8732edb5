// Which of two mirror nodes becomes primary when they meet, and what the resync sends.
// Both nodes evaluate the same functions on the same two summaries, so they agree
// without a third message: decide(a, b) names a exactly when decide(b, a) names b.
// A pure module.

import type { DefaultPrim } from "../config/module-config.ts";
import type { HelloSummary } from "./messages.ts";
import { commonGen, dirtyCovers, dirtyWeight, emptyDirty, genCounter, relation, RunBlocks, type DirtyMap, type MirrorMeta } from "./meta.ts";

/** How a split brain is resolved when both sides wrote: keep the side that is primary now
 *  (when only one is), the side with more changes, or neither until an operator says. */
export type SplitBrainPolicy = "primary" | "changes" | "operator";

export interface Side {
  readonly node: string;
  readonly summary: HelloSummary;
}

export type Verdict =
  | { readonly primary: string; readonly why: string; readonly splitBrain: boolean }
  | { readonly primary: null; readonly why: string; readonly splitBrain: boolean };

export function metaOf(summary: HelloSummary): MirrorMeta {
  return {
    gen: summary.gen,
    history: summary.history,
    consistent: summary.consistent,
    lastRole: summary.lastRole,
    dirtyBase: summary.dirtyBase,
    dirty: new Map(summary.dirty),
    hot: emptyDirty,
    bootId: null,
    cacheLost: summary.cacheLost,
    layout: summary.layout,
  };
}

const isPrimary = (side: Side): boolean => side.summary.role === "ALONE" || side.summary.role === "PRIM";
const eligible = (side: Side): boolean => side.summary.consistent && side.summary.gen !== null && !side.summary.yielding && side.summary.held !== true;

/** Orders two sides by what a split brain keeps: more changes since their common
 *  generation, then the newer generation counter, then the smaller node name. */
function byChanges(a: Side, b: Side): Side {
  const weightA = dirtyWeight(new Map(a.summary.dirty));
  const weightB = dirtyWeight(new Map(b.summary.dirty));
  if (weightA !== weightB) return weightA > weightB ? a : b;
  const genA = a.summary.gen === null ? 0 : genCounter(a.summary.gen);
  const genB = b.summary.gen === null ? 0 : genCounter(b.summary.gen);
  if (genA !== genB) return genA > genB ? a : b;
  return a.node < b.node ? a : b;
}

/** Whether a split brain may keep this side: a primary, or a node whose data is whole. */
const keepable = (side: Side): boolean => isPrimary(side) || (side.summary.consistent && side.summary.gen !== null);

function diverged(a: Side, b: Side, policy: SplitBrainPolicy, why: string): Verdict {
  if (a.summary.yielding !== b.summary.yielding) {
    const keep = a.summary.yielding ? b : a;
    if (!keepable(keep)) return { primary: null, why: `${why}; ${keep.node} is not up to date: waiting; primforce overrides`, splitBrain: true };
    return { primary: keep.node, why: `${why}; ${a.summary.yielding ? a.node : b.node} yields (operator's second)`, splitBrain: true };
  }
  if (policy === "operator") return { primary: null, why: `${why}: waiting for an operator (run second on the node whose changes to set aside, or prim on the one to keep)`, splitBrain: true };
  if (policy === "primary" && isPrimary(a) !== isPrimary(b)) {
    const keep = isPrimary(a) ? a : b;
    return { primary: keep.node, why: `${why}: keeping ${keep.node}, the primary now`, splitBrain: true };
  }
  const candidates = [a, b].filter(keepable);
  if (candidates.length === 0) return { primary: null, why: `${why}: neither node is up to date: waiting; primforce overrides`, splitBrain: true };
  const keep = candidates.length === 1 ? candidates[0]! : byChanges(a, b);
  return { primary: keep.node, why: `${why}: keeping ${keep.node}, ${candidates.length === 1 ? "the one up to date" : "which has more changes"}`, splitBrain: true };
}

/** Who is primary once `a` and `b` have exchanged summaries, or null for nobody yet. */
export function decide(a: Side, b: Side, defaultPrim: DefaultPrim, policy: SplitBrainPolicy): Verdict {
  const metaA = metaOf(a.summary);
  const metaB = metaOf(b.summary);
  const rel = relation(metaA, metaB);
  const split = rel === "diverged" || rel === "unrelated";
  if (isPrimary(a) && isPrimary(b)) {
    // One primary's generation descends from the other's: the older one was left behind
    // (it stalled, or was handing the role over, while its peer took over). It completed
    // nothing the newer lacks (alone, it would have started a generation of its own), so
    // the newer is kept, as for any two nodes of which one is ahead; counting changes
    // kept the older once (a stall plan: test/sim/mirror-stall.test.ts).
    if (rel === "ahead" || rel === "behind") {
      const newer = rel === "ahead" ? a : b;
      return { primary: newer.node, why: `both ${a.node} and ${b.node} are primary: ${newer.node} has the newer data`, splitBrain: false };
    }
    return diverged(a, b, policy, `both ${a.node} and ${b.node} are primary (split brain)`);
  }
  if (isPrimary(a) || isPrimary(b)) {
    const primary = isPrimary(a) ? a : b;
    return { primary: primary.node, why: `${primary.node} is primary`, splitBrain: split };
  }
  if (a.summary.gen === null && b.summary.gen === null) return { primary: null, why: "a new mirror: run prim on the node whose data is right", splitBrain: false };
  if (split) return diverged(a, b, policy, `the data of ${a.node} and ${b.node} diverged`);
  if (a.summary.yielding !== b.summary.yielding) {
    const keep = a.summary.yielding ? b : a;
    return keep.summary.consistent && keep.summary.gen !== null ? { primary: keep.node, why: `the other node yields`, splitBrain: false } : { primary: null, why: `${keep.node} is not up to date`, splitBrain: false };
  }
  if (rel === "ahead" || rel === "behind") {
    const newer = rel === "ahead" ? a : b;
    if (newer.summary.held === true) return { primary: null, why: `${newer.node} has the newer data but waits for a resource (action wait)`, splitBrain: false };
    return eligible(newer) ? { primary: newer.node, why: `${newer.node} has the newer data`, splitBrain: false } : { primary: null, why: `${newer.node} has the newer data but is not up to date (an interrupted resync): waiting; primforce overrides`, splitBrain: false };
  }
  // The same generation. A node that kept running, or kept its page cache, may hold
  // acknowledged writes the other lost in a restart: if it waits for a resource, so does
  // the choice (electing the other would lose them).
  const whole = [a, b].filter((side) => side.summary.consistent && side.summary.gen !== null && !side.summary.yielding);
  const better = bestKept(whole);
  if (better !== null && better.side.summary.held === true) return { primary: null, why: `${better.side.node} ${better.why} but waits for a resource (action wait)`, splitBrain: false };
  const candidates = [a, b].filter(eligible);
  if (candidates.length === 0) return { primary: null, why: "neither node is up to date: waiting; primforce overrides", splitBrain: false };
  if (candidates.length === 1) return { primary: candidates[0]!.node, why: `${candidates[0]!.node} is the one up to date`, splitBrain: false };
  const kept = bestKept(candidates);
  if (kept !== null) return { primary: kept.side.node, why: `${kept.side.node} ${kept.why}`, splitBrain: false };
  if (defaultPrim.kind === "node" && (defaultPrim.node === a.node || defaultPrim.node === b.node)) return { primary: defaultPrim.node, why: `defaultprim=${defaultPrim.node}`, splitBrain: false };
  const wasPrimary = candidates.filter((side) => side.summary.lastRole === "ALONE" || side.summary.lastRole === "PRIM");
  if (wasPrimary.length === 1) return { primary: wasPrimary[0]!.node, why: `${wasPrimary[0]!.node} was primary last`, splitBrain: false };
  const first = a.node < b.node ? a : b;
  return { primary: first.node, why: `same data: ${first.node} by name`, splitBrain: false };
}

/** Of two sides of the same generation, the one whose tree may hold more: the only one
 *  that kept running, else the only one that kept its page cache; null when neither. */
function bestKept(sides: readonly Side[]): { readonly side: Side; readonly why: string } | null {
  if (sides.length !== 2) return null;
  const continuous = sides.filter((side) => side.summary.continuous);
  if (continuous.length === 1) return { side: continuous[0]!, why: "kept running (the other restarted and may have lost what was not yet on disk)" };
  const cacheKept = sides.filter((side) => !side.summary.cacheLost);
  if (cacheKept.length === 1) return { side: cacheKept[0]!, why: "kept its page cache (the other's host rebooted: what was not yet on disk may be gone)" };
  return null;
}

export interface ResyncPlan {
  readonly full: boolean;
  readonly dirty: DirtyMap;
  /** The secondary's own changes that the resync will overwrite, to keep aside first. */
  readonly preserve: readonly string[] | null;
  readonly why: string;
}

/** What the primary sends the secondary: the union of both dirty maps when each covers
 *  their common generation, everything otherwise. */
export function planResync(source: MirrorMeta, target: HelloSummary, sourceFullsync = false): ResyncPlan {
  const targetMeta = metaOf(target);
  const common = commonGen(source, targetMeta);
  const targetCovers = common !== null && dirtyCovers(targetMeta, common);
  const targetChanged = target.gen !== null && target.gen !== common;
  const preserve = targetChanged ? (targetCovers ? [...targetMeta.dirty.keys()].sort() : [""]) : null;
  const whole: DirtyMap = new Map([["", { all: true, blocks: new Set<number>() }]]);
  if (target.fullsync || sourceFullsync) return { full: true, dirty: whole, preserve, why: "a full resync was asked for" };
  if (common === null) return { full: true, dirty: whole, preserve, why: target.gen === null ? "the secondary has no data of this mirror yet" : "no common generation" };
  if (!dirtyCovers(source, common)) return { full: true, dirty: whole, preserve, why: `the primary's dirty map does not reach back to ${common}` };
  if (!targetCovers) return { full: true, dirty: whole, preserve, why: `the secondary's dirty map does not reach back to ${common}` };
  const dirty = new Map(source.dirty);
  for (const [path, entry] of targetMeta.dirty) {
    const mine = dirty.get(path);
    if (mine === undefined) dirty.set(path, entry);
    else if (!mine.all) dirty.set(path, entry.all ? entry : { all: false, blocks: RunBlocks.union(mine.blocks, entry.blocks) });
  }
  return { full: false, dirty, preserve, why: `incremental since ${common}` };
}
