// Who becomes primary when the two nodes of a mirror meet, and what the resync sends
// (core/mirror/decide.ts).
//
// decide: (a) both nodes evaluate it on the same two summaries, so decide(a, b) and
// decide(b, a) name the same primary (or both nobody) and agree on the split brain;
// (b) it never names a node that is not up to date unless that node is already primary,
// nor a node with no data when the other has some; (c) a primary facing a non-primary
// stays primary; (d) a split brain between two primaries goes by the policy; (e) at the
// same generation a node that kept running beats one that restarted, then defaultprim,
// then the last primary, then the name.
//
// planResync: full when the secondary has no data, when there is no common generation,
// when either dirty map does not reach back to it, or when the secondary asks; otherwise
// exactly the union of both maps; `preserve` names the secondary's own changes.
//
// Summaries are generated the way two nodes make them: a shared prefix of generations,
// then each node's own generations, with flags a node can have in its role.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { blocks, dirtyEntriesArbitrary, fileDirtyArbitrary, lineagePairArbitrary, pathArbitrary, plain, plainUnion, wholePath, type LineagePair, type Plain } from "./mirror-arbitraries.ts";
import type { DefaultPrim } from "../../core/config/module-config.ts";
import { decide, metaOf, planResync, type Side, type SplitBrainPolicy, type Verdict } from "../../core/mirror/decide.ts";
import type { HelloSummary, MirrorRole } from "../../core/mirror/messages.ts";
import { dirtyWeight, emptyDirty, type DirtyMap, type FileDirty, type Gen, type LastRole, type MirrorMeta } from "../../core/mirror/meta.ts";

// ---------------------------------------------------------------------------------------
// Helpers and arbitraries

/** A summary with data at the end of `gens`; everything else as a waiting, up-to-date node. */
function summaryOf(gens: readonly Gen[], fields: Partial<HelloSummary> = {}): HelloSummary {
  return {
    incarnation: 1,
    role: "WAIT",
    gen: gens.at(-1) ?? null,
    history: gens.slice(0, -1),
    consistent: true,
    lastRole: gens.length === 0 ? null : "SECOND",
    dirtyBase: gens.at(-1) ?? null,
    dirty: [],
    yielding: false,
    fullsync: false,
    continuous: false,
    cacheLost: false,
    attachable: true,
    seenSession: null,
    layout: [],
    ...fields,
  };
}

const side = (node: string, summary: HelloSummary): Side => ({ node, summary });
const alone: DefaultPrim = { kind: "alone" };

function expectedCommon({ shared, a, b }: LineagePair): Gen | null {
  return a.length > 0 && b.length > 0 ? (shared.at(-1) ?? null) : null;
}

/** Where the dirty map counts from: nowhere, a generation outside the lineage, or an index into it. */
type BaseChoice = "none" | "foreign" | number;
const baseChoiceArbitrary: fc.Arbitrary<BaseChoice> = fc.oneof(fc.constant<BaseChoice>("none"), fc.constant<BaseChoice>("foreign"), fc.nat(8), fc.nat(8));

function baseOf(gens: readonly Gen[], choice: BaseChoice): { base: Gen | null; index: number | null } {
  if (choice === "none" || gens.length === 0) return { base: null, index: null };
  if (choice === "foreign") return { base: "99@n9", index: null };
  const index = choice % gens.length;
  return { base: gens[index]!, index };
}

const flagsArbitrary = fc.record({
  role: fc.oneof({ arbitrary: fc.constantFrom<MirrorRole>("WAIT", "SECOND"), weight: 3 }, { arbitrary: fc.constantFrom<MirrorRole>("ALONE", "PRIM"), weight: 1 }),
  consistent: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 }),
  lastRole: fc.constantFrom<LastRole>(null, "ALONE", "PRIM", "SECOND"),
  yielding: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, { arbitrary: fc.constant(true), weight: 1 }),
  fullsync: fc.boolean(),
  continuous: fc.boolean(),
  attachable: fc.boolean(),
  held: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, { arbitrary: fc.constant(true), weight: 1 }),
  incarnation: fc.nat(5),
  base: baseChoiceArbitrary,
  dirty: dirtyEntriesArbitrary,
});
type Flags = typeof flagsArbitrary extends fc.Arbitrary<infer T> ? T : never;

const isPrimaryRole = (role: MirrorRole): boolean => role === "ALONE" || role === "PRIM";

/** A summary a node could send: a primary has data, is up to date, does not yield, kept running. */
function summaryFrom(gens: readonly Gen[], flags: Flags): HelloSummary {
  const hasData = gens.length > 0;
  const role: MirrorRole = hasData ? flags.role : isPrimaryRole(flags.role) ? "WAIT" : flags.role;
  const primary = isPrimaryRole(role);
  const lastRole: LastRole = primary ? (flags.lastRole === "ALONE" || flags.lastRole === "PRIM" ? flags.lastRole : (role as "ALONE" | "PRIM")) : hasData ? flags.lastRole : flags.lastRole === "SECOND" ? "SECOND" : null;
  return summaryOf(gens, {
    incarnation: flags.incarnation,
    role,
    consistent: primary ? true : flags.consistent,
    lastRole,
    dirtyBase: baseOf(gens, flags.base).base,
    dirty: flags.dirty,
    yielding: primary ? false : flags.yielding,
    fullsync: flags.fullsync,
    continuous: primary ? true : flags.continuous,
    cacheLost: false,
    attachable: flags.attachable,
    held: primary ? false : flags.held,
    seenSession: null,
  });
}

interface Meeting {
  readonly pair: LineagePair;
  readonly a: Side;
  readonly b: Side;
}

const meetingArbitrary: fc.Arbitrary<Meeting> = fc
  .record({ pair: lineagePairArbitrary, flagsA: flagsArbitrary, flagsB: flagsArbitrary })
  .map(({ pair, flagsA, flagsB }) => ({ pair, a: side("n1", summaryFrom(pair.a, flagsA)), b: side("n2", summaryFrom(pair.b, flagsB)) }));

const defaultPrimArbitrary = fc.constantFrom<DefaultPrim>({ kind: "alone" }, { kind: "lastprim" }, { kind: "node", node: "n1" }, { kind: "node", node: "n2" }, { kind: "node", node: "n3" });
const policyArbitrary = fc.constantFrom<SplitBrainPolicy>("primary", "changes", "operator");

const isPrimary = (s: Side): boolean => isPrimaryRole(s.summary.role);
const named = (verdict: Verdict, a: Side, b: Side): Side | null => (verdict.primary === a.node ? a : verdict.primary === b.node ? b : null);
const weightOf = (s: Side): number => dirtyWeight(new Map(s.summary.dirty));

function describeMeeting({ a, b }: Meeting): string {
  const one = (s: Side): string => `${s.node}:${s.summary.role} gen=${s.summary.gen} hist=[${s.summary.history.join(",")}] consistent=${s.summary.consistent} yielding=${s.summary.yielding} continuous=${s.summary.continuous} lastRole=${s.summary.lastRole} weight=${weightOf(s)}`;
  return `${one(a)} | ${one(b)}`;
}

// ---------------------------------------------------------------------------------------
// decide: properties

describe("decide: properties over arbitrary meetings", () => {
  it("is antisymmetric: decide(a, b) and decide(b, a) name the same primary and agree on the split brain", () => {
    fc.assert(
      fc.property(meetingArbitrary, defaultPrimArbitrary, policyArbitrary, (meeting, defaultPrim, policy) => {
        const { a, b } = meeting;
        const ab = decide(a, b, defaultPrim, policy);
        const ba = decide(b, a, defaultPrim, policy);
        expect(ab.primary, describeMeeting(meeting)).toBe(ba.primary);
        expect(ab.splitBrain, describeMeeting(meeting)).toBe(ba.splitBrain);
        expect([a.node, b.node, null]).toContain(ab.primary);
        expect(ab.why.length).toBeGreaterThan(0);
      }),
      { numRuns: 2_000 },
    );
  });

  it("never names a node that is not up to date, unless it is already primary", () => {
    fc.assert(
      fc.property(meetingArbitrary, defaultPrimArbitrary, policyArbitrary, (meeting, defaultPrim, policy) => {
        const { a, b } = meeting;
        const chosen = named(decide(a, b, defaultPrim, policy), a, b);
        if (chosen !== null && !isPrimary(chosen)) expect(chosen.summary.consistent, describeMeeting(meeting)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it("never names a node with no data when the other has data", () => {
    fc.assert(
      fc.property(meetingArbitrary, defaultPrimArbitrary, policyArbitrary, (meeting, defaultPrim, policy) => {
        const { a, b } = meeting;
        const chosen = named(decide(a, b, defaultPrim, policy), a, b);
        if (chosen === null) return;
        const other = chosen === a ? b : a;
        if (other.summary.gen !== null) expect(chosen.summary.gen, describeMeeting(meeting)).not.toBeNull();
      }),
      { numRuns: 1_000 },
    );
  });

  it("names nobody when neither node has data and neither is primary", () => {
    fc.assert(
      fc.property(flagsArbitrary, flagsArbitrary, defaultPrimArbitrary, policyArbitrary, (flagsA, flagsB, defaultPrim, policy) => {
        const a = side("n1", summaryFrom([], flagsA));
        const b = side("n2", summaryFrom([], flagsB));
        expect(decide(a, b, defaultPrim, policy).primary).toBeNull();
      }),
    );
  });

  it("a primary facing a node that is not primary stays primary", () => {
    fc.assert(
      fc.property(meetingArbitrary, defaultPrimArbitrary, policyArbitrary, (meeting, defaultPrim, policy) => {
        const { a, b } = meeting;
        fc.pre(isPrimary(a) !== isPrimary(b));
        const primary = isPrimary(a) ? a : b;
        expect(decide(a, b, defaultPrim, policy).primary, describeMeeting(meeting)).toBe(primary.node);
      }),
      { numRuns: 1_000 },
    );
  });

  /** Two primaries whose data diverged, neither yielding. */
  const twoPrimariesArbitrary = fc
    .record({
      pair: lineagePairArbitrary.filter(({ shared, a, b }) => a.length > shared.length && b.length > shared.length),
      flagsA: flagsArbitrary,
      flagsB: flagsArbitrary,
      roleA: fc.constantFrom<MirrorRole>("ALONE", "PRIM"),
      roleB: fc.constantFrom<MirrorRole>("ALONE", "PRIM"),
    })
    .map(({ pair, flagsA, flagsB, roleA, roleB }) => ({
      pair,
      a: side("n1", summaryFrom(pair.a, { ...flagsA, role: roleA })),
      b: side("n2", summaryFrom(pair.b, { ...flagsB, role: roleB })),
    }));

  it("two primaries with diverged data: policy operator names nobody, and it is a split brain", () => {
    fc.assert(
      fc.property(twoPrimariesArbitrary, defaultPrimArbitrary, (meeting, defaultPrim) => {
        const verdict = decide(meeting.a, meeting.b, defaultPrim, "operator");
        expect(verdict.primary).toBeNull();
        expect(verdict.splitBrain).toBe(true);
      }),
    );
  });

  it("two primaries with diverged data: policy changes names the one with the larger dirty weight", () => {
    fc.assert(
      fc.property(twoPrimariesArbitrary, defaultPrimArbitrary, (meeting, defaultPrim) => {
        const { a, b } = meeting;
        fc.pre(weightOf(a) !== weightOf(b));
        const heavier = weightOf(a) > weightOf(b) ? a : b;
        const verdict = decide(a, b, defaultPrim, "changes");
        expect(verdict.primary, describeMeeting(meeting)).toBe(heavier.node);
        expect(verdict.splitBrain).toBe(true);
      }),
    );
  });

  /** Two nodes at the same generation, neither primary, both up to date, not yielding, not held. */
  const sameGenerationArbitrary = fc
    .record({ pair: lineagePairArbitrary.filter(({ shared, a, b }) => shared.length > 0 && a.length === shared.length && b.length === shared.length), flagsA: flagsArbitrary, flagsB: flagsArbitrary, roleA: fc.constantFrom<MirrorRole>("WAIT", "SECOND"), roleB: fc.constantFrom<MirrorRole>("WAIT", "SECOND") })
    .map(({ pair, flagsA, flagsB, roleA, roleB }) => ({
      pair,
      a: side("n1", summaryFrom(pair.a, { ...flagsA, role: roleA, consistent: true, yielding: false, held: false })),
      b: side("n2", summaryFrom(pair.b, { ...flagsB, role: roleB, consistent: true, yielding: false, held: false })),
    }));

  it("at the same generation a node that kept running beats one that restarted, whatever defaultprim and lastRole say", () => {
    fc.assert(
      fc.property(sameGenerationArbitrary, defaultPrimArbitrary, policyArbitrary, (meeting, defaultPrim, policy) => {
        const { a, b } = meeting;
        fc.pre(a.summary.continuous !== b.summary.continuous);
        const kept = a.summary.continuous ? a : b;
        const verdict = decide(a, b, defaultPrim, policy);
        expect(verdict.primary, describeMeeting(meeting)).toBe(kept.node);
        expect(verdict.splitBrain).toBe(false);
      }),
    );
  });

  it("at the same generation a node that kept running is never passed over because it is held: then nobody is named", () => {
    fc.assert(
      fc.property(sameGenerationArbitrary, fc.boolean(), fc.boolean(), defaultPrimArbitrary, policyArbitrary, (meeting, heldA, heldB, defaultPrim, policy) => {
        const a = side("n1", { ...meeting.a.summary, held: heldA });
        const b = side("n2", { ...meeting.b.summary, held: heldB });
        fc.pre(a.summary.continuous !== b.summary.continuous);
        const kept = a.summary.continuous ? a : b;
        const verdict = decide(a, b, defaultPrim, policy);
        expect(verdict.primary, describeMeeting({ pair: meeting.pair, a, b })).toBe(kept.summary.held === true ? null : kept.node);
      }),
    );
  });

  it("at the same generation and otherwise equal, defaultprim names its node", () => {
    fc.assert(
      fc.property(sameGenerationArbitrary, fc.constantFrom("n1", "n2"), policyArbitrary, (meeting, node, policy) => {
        const { a, b } = meeting;
        fc.pre(a.summary.continuous === b.summary.continuous);
        expect(decide(a, b, { kind: "node", node }, policy).primary, describeMeeting(meeting)).toBe(node);
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------
// decide: cases

describe("decide: cases", () => {
  const history = ["1@n1", "2@n2"];

  it("a new mirror (no data on either side) waits for an operator", () => {
    const verdict = decide(side("n1", summaryOf([])), side("n2", summaryOf([])), { kind: "node", node: "n1" }, "changes");
    expect(verdict).toMatchObject({ primary: null, splitBrain: false });
  });

  it("the node with data beats a new node", () => {
    expect(decide(side("n1", summaryOf([])), side("n2", summaryOf(history)), alone, "changes").primary).toBe("n2");
  });

  it("the node with the newer generation is named", () => {
    const ahead = summaryOf([...history, "3@n1"]);
    expect(decide(side("n1", ahead), side("n2", summaryOf(history)), { kind: "node", node: "n2" }, "changes")).toMatchObject({ primary: "n1", splitBrain: false });
  });

  it("a newer node that is not up to date (an interrupted resync) makes both wait", () => {
    const ahead = summaryOf([...history, "3@n1"], { consistent: false });
    expect(decide(side("n1", ahead), side("n2", summaryOf(history)), alone, "changes").primary).toBeNull();
  });

  it("at the same generation, an outdated node loses to the up-to-date one", () => {
    const outdated = summaryOf(history, { consistent: false, continuous: true });
    expect(decide(side("n1", outdated), side("n2", summaryOf(history)), { kind: "node", node: "n1" }, "changes").primary).toBe("n2");
  });

  it("at the same generation, neither up to date: nobody", () => {
    const outdated = summaryOf(history, { consistent: false });
    expect(decide(side("n1", outdated), side("n2", outdated), alone, "changes").primary).toBeNull();
  });

  it("a node that yields (operator's second) leaves it to the other when the other is up to date", () => {
    const yielding = summaryOf([...history, "3@n1"], { yielding: true });
    expect(decide(side("n1", yielding), side("n2", summaryOf(history)), alone, "changes").primary).toBe("n2");
  });

  it("a node held by a resource (action wait) with the newer data: nobody, the other waits for it", () => {
    const held = summaryOf([...history, "3@n1"], { held: true });
    const verdict = decide(side("n1", held), side("n2", summaryOf(history)), alone, "changes");
    expect(verdict.primary).toBeNull();
    expect(verdict.why).toMatch(/n1 has the newer data but waits for a resource/);
  });

  it("a node held by a resource at the same generation leaves the role to the other; held both: nobody", () => {
    expect(decide(side("n1", summaryOf(history, { held: true, lastRole: "PRIM" })), side("n2", summaryOf(history)), alone, "changes").primary).toBe("n2");
    expect(decide(side("n1", summaryOf(history, { held: true })), side("n2", summaryOf(history, { held: true })), alone, "changes").primary).toBeNull();
  });

  it("a held node that kept running, facing one that restarted at the same generation: nobody (the restarted one may have lost acknowledged writes)", () => {
    const held = summaryOf(history, { held: true, continuous: true });
    const restarted = summaryOf(history, { lastRole: "PRIM", cacheLost: true });
    const verdict = decide(side("n1", restarted), side("n2", held), { kind: "node", node: "n1" }, "changes");
    expect(verdict.primary).toBeNull();
    expect(verdict.why).toMatch(/n2 kept running .* but waits for a resource/);
    const rebooted = decide(side("n1", restarted), side("n2", summaryOf(history, { held: true })), alone, "changes");
    expect(rebooted.primary).toBeNull();
    expect(rebooted.why).toMatch(/n2 kept its page cache .* but waits for a resource/);
    expect(decide(side("n1", restarted), side("n2", summaryOf(history, { continuous: true })), alone, "changes").primary).toBe("n2");
  });

  it("a node that yields to one that is not up to date: nobody", () => {
    const yielding = summaryOf(history, { yielding: true });
    expect(decide(side("n1", yielding), side("n2", summaryOf(history, { consistent: false })), alone, "changes").primary).toBeNull();
  });

  it("same generation, both restarted, no defaultprim node: the last primary is named", () => {
    const wasPrimary = summaryOf(history, { lastRole: "PRIM" });
    expect(decide(side("n2", wasPrimary), side("n1", summaryOf(history)), { kind: "lastprim" }, "changes").primary).toBe("n2");
  });

  it("same generation, nothing else to choose by: the smaller node name", () => {
    expect(decide(side("n2", summaryOf(history)), side("n1", summaryOf(history)), alone, "changes").primary).toBe("n1");
  });

  it("two primaries with diverged data, policy primary: the one with more changes (both are primary)", () => {
    const a = summaryOf([...history, "3@n1"], { role: "ALONE", lastRole: "ALONE", continuous: true, dirty: [["a", blocks(1)]] });
    const b = summaryOf([...history, "3@n2"], { role: "ALONE", lastRole: "ALONE", continuous: true, dirty: [["a", blocks(1, 2)], ["b", blocks(0)]] });
    expect(decide(side("n1", a), side("n2", b), alone, "primary")).toMatchObject({ primary: "n2", splitBrain: true });
  });

  it("diverged data, neither primary, policy primary: the one with more changes", () => {
    const a = summaryOf([...history, "3@n1"], { dirty: [["a", wholePath()]] });
    const b = summaryOf([...history, "3@n2"], { dirty: [["a", blocks(1, 2)], ["b", blocks(0)]] });
    expect(decide(side("n1", a), side("n2", b), alone, "primary")).toMatchObject({ primary: "n1", splitBrain: true });
  });

  it("a primary facing a diverged node stays primary and reports the split brain", () => {
    const a = summaryOf([...history, "3@n1"], { role: "PRIM", lastRole: "PRIM", continuous: true });
    const b = summaryOf([...history, "3@n2"], { dirty: [["x", wholePath()]] });
    expect(decide(side("n1", a), side("n2", b), alone, "operator")).toMatchObject({ primary: "n1", splitBrain: true });
  });

  // The split-brain loser n2 was attached to n1 and its resync had begun (attach sets
  // consistent = false; the generation and dirty map stay until sync-end), when n1 went
  // down. Both restart and meet: n2's tree is part n1's data, part its own, and its
  // changes were set aside by `preserve`. It must not become primary on its own.
  it("diverged data: a node whose resync was interrupted is not named, even with more changes", () => {
    const n1 = summaryOf([...history, "3@n1"], { lastRole: "ALONE", dirty: [["a", blocks(1)]] });
    const n2 = summaryOf([...history, "3@n2"], { consistent: false, lastRole: "SECOND", dirty: [["a", blocks(1, 2)], ["b", wholePath()]] });
    for (const policy of ["changes", "primary"] as const) {
      expect(decide(side("n1", n1), side("n2", n2), alone, policy).primary, policy).not.toBe("n2");
      expect(decide(side("n2", n2), side("n1", n1), alone, policy).primary, policy).not.toBe("n2");
    }
  });

  it("diverged data: the other node yielding does not make a node that is not up to date primary", () => {
    const n1 = summaryOf([...history, "3@n1"], { yielding: true });
    const n2 = summaryOf([...history, "3@n2"], { consistent: false });
    expect(decide(side("n1", n1), side("n2", n2), alone, "operator").primary).not.toBe("n2");
  });
});

// ---------------------------------------------------------------------------------------
// planResync

const whole: Plain = { "": "all" };

/** A primary's meta at the end of `gens`. */
function sourceOf(gens: readonly Gen[], dirtyBase: Gen | null, dirty: DirtyMap = emptyDirty): MirrorMeta {
  return { gen: gens.at(-1) ?? null, history: gens.slice(0, -1), consistent: true, lastRole: "PRIM", dirtyBase, dirty, hot: emptyDirty, bootId: null, cacheLost: false, layout: [] };
}

describe("planResync: properties", () => {
  const resyncArbitrary = fc.record({
    pair: lineagePairArbitrary.filter(({ a }) => a.length > 0),
    baseA: baseChoiceArbitrary,
    baseB: baseChoiceArbitrary,
    dirtyA: dirtyEntriesArbitrary,
    dirtyB: dirtyEntriesArbitrary,
    fullsync: fc.boolean(),
  });

  it("full exactly when asked, with no common generation, or when a map does not reach back to it; else the union of both maps", () => {
    fc.assert(
      fc.property(resyncArbitrary, ({ pair, baseA, baseB, dirtyA, dirtyB, fullsync }) => {
        const sourceBase = baseOf(pair.a, baseA);
        const targetBase = baseOf(pair.b, baseB);
        const source = sourceOf(pair.a, sourceBase.base, new Map(dirtyA));
        const target = summaryOf(pair.b, { role: "WAIT", dirtyBase: targetBase.base, dirty: dirtyB, fullsync });
        const common = expectedCommon(pair);
        const covers = (index: number | null): boolean => index !== null && index <= pair.shared.length - 1;
        const full = fullsync || common === null || !covers(sourceBase.index) || !covers(targetBase.index);
        const plan = planResync(source, target);
        expect(plan.full).toBe(full);
        expect(plain(plan.dirty)).toEqual(full ? whole : plainUnion(plain(new Map(dirtyA)), plain(new Map(dirtyB))));
      }),
      { numRuns: 1_000 },
    );
  });

  it("preserve is null when the secondary did not change since the common generation, its dirty paths when it did, the whole tree when its map does not cover", () => {
    fc.assert(
      fc.property(resyncArbitrary, ({ pair, baseA, baseB, dirtyA, dirtyB, fullsync }) => {
        const targetBase = baseOf(pair.b, baseB);
        const source = sourceOf(pair.a, baseOf(pair.a, baseA).base, new Map(dirtyA));
        const target = summaryOf(pair.b, { dirtyBase: targetBase.base, dirty: dirtyB, fullsync });
        const common = expectedCommon(pair);
        const changed = pair.b.length > 0 && (pair.b.length > pair.shared.length || pair.shared.length === 0);
        const covers = common !== null && targetBase.index !== null && targetBase.index <= pair.shared.length - 1;
        const expected = !changed ? null : covers ? dirtyB.map(([path]) => path).sort() : [""];
        expect(planResync(source, target).preserve).toEqual(expected);
      }),
      { numRuns: 1_000 },
    );
  });

  it("does not change the primary's meta or the secondary's summary", () => {
    fc.assert(
      fc.property(resyncArbitrary, ({ pair, baseA, baseB, dirtyA, dirtyB, fullsync }) => {
        const sourceDirty = new Map(dirtyA);
        const source = sourceOf(pair.a, baseOf(pair.a, baseA).base, sourceDirty);
        const target = summaryOf(pair.b, { dirtyBase: baseOf(pair.b, baseB).base, dirty: dirtyB, fullsync });
        const before = [plain(sourceDirty), plain(metaOf(target).dirty)];
        planResync(source, target);
        expect([plain(sourceDirty), plain(metaOf(target).dirty)]).toEqual(before);
      }),
    );
  });
});

describe("planResync: cases", () => {
  const history = ["1@n1", "2@n2"];

  it("a secondary with no data gets everything, and has nothing to preserve", () => {
    const plan = planResync(sourceOf(history, "1@n1"), summaryOf([]));
    expect(plan).toMatchObject({ full: true, preserve: null });
    expect(plain(plan.dirty)).toEqual(whole);
  });

  it("no common generation: everything, and the secondary's whole tree is preserved", () => {
    const plan = planResync(sourceOf(["1@n1"], "1@n1"), summaryOf(["1@n2"], { dirtyBase: "1@n2" }));
    expect(plan).toMatchObject({ full: true, preserve: [""] });
  });

  it("a secondary that stayed behind, both maps covering: exactly the union, nothing to preserve", () => {
    const source = sourceOf([...history, "3@n1"], "2@n2", new Map([["a", blocks(1)], ["d", wholePath()]]));
    const target = summaryOf(history, { dirtyBase: "2@n2", dirty: [["a", blocks(2)], ["b", blocks(0)], ["d", blocks(5)]] });
    const plan = planResync(source, target);
    expect(plan).toMatchObject({ full: false, preserve: null });
    expect(plain(plan.dirty)).toEqual({ a: [1, 2], b: [0], d: "all" });
  });

  it("a secondary that changed alone, both maps covering: the union, and its dirty paths preserved in order", () => {
    const source = sourceOf([...history, "3@n1"], "1@n1", new Map([["a", blocks(1)]]));
    const target = summaryOf([...history, "3@n2"], { dirtyBase: "2@n2", dirty: [["z", blocks(0)], ["b", wholePath()]] });
    const plan = planResync(source, target);
    expect(plan).toMatchObject({ full: false, preserve: ["b", "z"] });
    expect(plain(plan.dirty)).toEqual({ a: [1], b: "all", z: [0] });
  });

  it("the primary's map starting after the common generation: everything", () => {
    const source = sourceOf([...history, "3@n1"], "3@n1");
    expect(planResync(source, summaryOf(history)).full).toBe(true);
  });

  it("the secondary's map with no base: everything, and if it changed alone its whole tree is preserved", () => {
    const source = sourceOf([...history, "3@n1"], "1@n1");
    expect(planResync(source, summaryOf(history, { dirtyBase: null }))).toMatchObject({ full: true, preserve: null });
    expect(planResync(source, summaryOf([...history, "3@n2"], { dirtyBase: null }))).toMatchObject({ full: true, preserve: [""] });
  });

  it("the secondary asking for a full resync gets everything even when the maps cover", () => {
    const source = sourceOf([...history, "3@n1"], "2@n2");
    const plan = planResync(source, summaryOf(history, { dirtyBase: "2@n2", fullsync: true }));
    expect(plan.full).toBe(true);
    expect(plain(plan.dirty)).toEqual(whole);
  });

  it("the same generation on both sides with covering maps: only the union (the activity log), nothing to preserve", () => {
    const source = sourceOf(history, "2@n2", new Map([["a", blocks(3)]]));
    const plan = planResync(source, summaryOf(history, { dirtyBase: "2@n2", dirty: [["a", blocks(4)]] }));
    expect(plan).toMatchObject({ full: false, preserve: null });
    expect(plain(plan.dirty)).toEqual({ a: [3, 4] });
  });
});

describe("decide: a node whose host rebooted", () => {
  it("loses to one that only restarted its service, at the same generation", () => {
    const rebooted = summaryOf(["1@n1"], { lastRole: "PRIM", cacheLost: true });
    const kept = summaryOf(["1@n1"], { lastRole: "SECOND", cacheLost: false });
    expect(decide(side("n1", rebooted), side("n2", kept), alone, "changes").primary).toBe("n2");
    expect(decide(side("n2", kept), side("n1", rebooted), alone, "changes").primary).toBe("n2");
  });
});
