// For tests that drive a simulated mirror by hand (no clients): one operation at a time.

import { expect } from "vitest";
import type { DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import { inSync } from "../../drivers/sim/mirror-checker.ts";
import { MirrorWorld, type MirrorWorldOptions } from "../../drivers/sim/mirror-world.ts";

/** Submits `op` through the VIP and runs until it is answered (within 5 s). */
export function write(world: MirrorWorld, op: DiskOp): DiskResult {
  let answer: DiskResult | "unreachable" | undefined;
  world.submit(op, (result) => (answer = result));
  expect(world.runUntilCondition(() => answer !== undefined, world.nowMs + 5_000, 0.05)).toBe(true);
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
