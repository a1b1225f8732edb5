// For tests that drive a simulated mirror by hand (no clients): one operation at a time.

import { expect } from "vitest";
import type { DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import type { MirrorWorld } from "../../drivers/sim/mirror-world.ts";

/** Submits `op` through the VIP and runs until it is answered (within 5 s). */
export function write(world: MirrorWorld, op: DiskOp): DiskResult {
  let answer: DiskResult | "unreachable" | undefined;
  world.submit(op, (result) => (answer = result));
  expect(world.runUntilCondition(() => answer !== undefined, world.nowMs + 5_000, 0.05)).toBe(true);
  expect(answer).not.toBe("unreachable");
  return answer as DiskResult;
}
