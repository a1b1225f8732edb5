// The real clock (drivers/real/clock.ts): monotonic time on performance.now's clock, and
// one-shot named timers over the event loop where re-arming replaces and cancel disarms.

import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import { RealClockPort, timerDelayMsMax } from "../../drivers/real/clock.ts";

describe("RealClockPort", () => {
  const clock = new RealClockPort();
  afterEach(() => clock.cancelAll());

  it("reads the monotonic clock of performance.now, never going backwards", () => {
    const before = performance.now();
    const readings = Array.from({ length: 1_000 }, () => clock.nowMs());
    const after = performance.now();
    expect(readings[0]).toBeGreaterThanOrEqual(before);
    expect(readings.at(-1)).toBeLessThanOrEqual(after);
    for (let index = 1; index < readings.length; index++) expect(readings[index]).toBeGreaterThanOrEqual(readings[index - 1]!);
  });

  it("fires an armed timer once, no earlier than its delay", async () => {
    const fired: number[] = [];
    const armedAtMs = clock.nowMs();
    clock.arm("tick", 30, () => fired.push(clock.nowMs()));
    expect(clock.armed("tick")).toBe(true);
    await sleep(100);
    expect(fired).toHaveLength(1);
    expect(fired[0]! - armedAtMs).toBeGreaterThanOrEqual(29);
    expect(clock.armed("tick")).toBe(false);
  });

  it("re-arming replaces the earlier arm, whether sooner or later", async () => {
    const fired: string[] = [];
    clock.arm("tick", 20, () => fired.push("first"));
    clock.arm("tick", 60, () => fired.push("second"));
    clock.arm("other", 100, () => fired.push("late"));
    clock.arm("other", 10, () => fired.push("early"));
    await sleep(40);
    expect(fired).toEqual(["early"]);
    await sleep(120);
    expect(fired).toEqual(["early", "second"]);
  });

  it("cancel disarms; cancelling an unknown timer does nothing", async () => {
    const fired: string[] = [];
    clock.arm("tick", 10, () => fired.push("tick"));
    clock.cancel("tick");
    clock.cancel("never-armed");
    await sleep(40);
    expect(fired).toEqual([]);
    expect(clock.armed("tick")).toBe(false);
  });

  it("a timer may re-arm itself from its own callback", async () => {
    let count = 0;
    const tick = (): void => {
      count++;
      if (count < 3) clock.arm("tick", 5, tick);
    };
    clock.arm("tick", 5, tick);
    await sleep(100);
    expect(count).toBe(3);
  });

  it("cancelAll disarms every timer", async () => {
    const fired: string[] = [];
    for (const name of ["a", "b", "c"]) clock.arm(name, 10, () => fired.push(name));
    clock.cancelAll();
    await sleep(40);
    expect(fired).toEqual([]);
  });

  it("refuses delays that are negative, not finite or beyond what setTimeout honours", () => {
    for (const delayMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, timerDelayMsMax + 1]) {
      expect(() => clock.arm("tick", delayMs, () => {})).toThrow(AssertionError);
    }
  });
});
