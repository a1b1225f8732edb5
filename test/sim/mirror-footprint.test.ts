// A primary runs for months: what its core keeps must follow what is in flight, not every
// path the application ever changed. A database's temporary files have a new name each
// time (PostgreSQL's pgsql_tmp<pid>.<n>): a map keyed by path that is never pruned grows
// with each of them until the daemon runs out of memory.

import { describe, expect, it } from "vitest";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { syncedWorld, write } from "./mirror-submit.ts";

/** The size of every Map, Set and array of `state`, by its path in the state (3 levels). */
function footprint(state: object, prefix = "", out = new Map<string, number>(), depth = 0): Map<string, number> {
  for (const [key, value] of Object.entries(state)) {
    if (value instanceof Map || value instanceof Set) out.set(prefix + key, value.size);
    else if (Array.isArray(value)) out.set(prefix + key, value.length);
    else if (value !== null && typeof value === "object" && depth < 3) footprint(value, `${prefix}${key}.`, out, depth + 1);
  }
  return out;
}

/** The collections of `state` holding more than `limit` entries. */
function largerThan(state: object, limit: number): [string, number][] {
  return [...footprint(state)].filter(([, size]) => size > limit);
}

/** Creates, writes, fsyncs and removes `count` files of names never used again. */
function churn(world: ReturnType<typeof syncedWorld>, prefix: string, count: number): void {
  for (let index = 0; index < count; index++) {
    const path = `${prefix}${index}`;
    expect(write(world, { kind: "create", path, mode: 0o600 })).toBeNull();
    expect(write(world, { kind: "write", path, offset: 0, data: new Uint8Array(512).fill(index) })).toBeNull();
    expect(write(world, { kind: "fsync", path })).toBeNull();
    expect(write(world, { kind: "unlink", path })).toBeNull();
    if (index % 100 === 99) world.runFor(500);
  }
}

describe("a mirror's memory", () => {
  for (const lane of [false, true]) {
    it(`holds nothing per path once the files a workload made and removed are gone (lane ${lane ? "on" : "off"})`, () => {
      const world = syncedWorld({ seed: 5, lane });
      churn(world, "pgsql_tmp", 1_500);
      world.runFor(10_000);
      expect(inSync(world)).toBe(true);
      for (const node of ["n1", "n2"] as const) expect(largerThan(world.node(node).runtime!.state, 32)).toEqual([]);
      expect(world.violations).toEqual([]);
    });
  }

  it("forgets what changed during a resync once the resync is over", () => {
    const world = syncedWorld({ seed: 6, lane: false });
    world.powerOff("n2");
    expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 5_000)).toBe(true);
    // Files for the resync to send, rewritten while it reads them.
    for (let index = 0; index < 40; index++) {
      expect(write(world, { kind: "create", path: `kept${index}`, mode: 0o600 })).toBeNull();
      expect(write(world, { kind: "write", path: `kept${index}`, offset: 0, data: new Uint8Array(1024 * 1024).fill(index) })).toBeNull();
    }
    world.powerOn("n2");
    let index = 0;
    const resynced = () => world.node("n2").role === "SECOND" && inSync(world);
    for (; index < 2_000 && !resynced(); index++) {
      world.submit({ kind: "write", path: `kept${index % 40}`, offset: 0, data: new Uint8Array(512).fill(0xee) }, () => {});
      world.runFor(5);
    }
    expect(world.runUntilCondition(resynced, world.nowMs + 30_000)).toBe(true);
    expect(index).toBeGreaterThan(50);
    world.runFor(10_000);
    // What the resync went through and what changed during it; the activity log's 40 files
    // (hotSeen) are the working set, kept by design.
    const primary = world.node("n1").runtime!.state;
    expect(primary.pathTouched.size).toBe(0);
    expect(primary.link?.queue.length).toBe(0);
    expect(world.violations).toEqual([]);
  });
});
