// For tests that drive a simulated mirror by hand (no clients): one operation at a time.

import { expect } from "vitest";
import type { DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { MirrorWorld, type MirrorWorldOptions } from "../../drivers/sim/mirror-world.ts";

/** Submits `op` through the VIP and runs until it is answered (within `withinMs`). */
export function write(world: MirrorWorld, op: DiskOp, withinMs = 5_000): DiskResult {
  let answer: DiskResult | "unreachable" | undefined;
  world.submit(op, (result) => (answer = result));
  expect(world.runUntilCondition(() => answer !== undefined, world.nowMs + withinMs, 0.05)).toBe(true);
  expect(answer).not.toBe("unreachable");
  return answer as DiskResult;
}

/** A world of `options` where the operator made n1 primary of a new mirror and n2 is its
 *  secondary, up to date (within 10 s). */
export function syncedWorld(options: MirrorWorldOptions): MirrorWorld {
  const world = new MirrorWorld(options);
  world.powerOn("n1");
  world.powerOn("n2");
  world.runUntil(1_000);
  world.command("n1", "prim");
  expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), 10_000)).toBe(true);
  return world;
}

/** Once the marks of what came before are cleared (both durable): n2 powered off, n1
 *  alone; `then` runs; n2 back and resynced (within 30 s). */
export function whileAway(world: MirrorWorld, then: () => void): void {
  expect(write(world, { kind: "fsync", path: null })).toBeNull();
  expect(world.runUntilCondition(() => world.node("n1").runtime!.state.meta.dirty.size === 0, world.nowMs + 20_000)).toBe(true);
  world.powerOff("n2");
  expect(world.runUntilCondition(() => world.node("n1").role === "ALONE", world.nowMs + 5_000)).toBe(true);
  then();
  world.powerOn("n2");
  expect(world.runUntilCondition(() => world.node("n2").role === "SECOND" && inSync(world), world.nowMs + 30_000)).toBe(true);
}
