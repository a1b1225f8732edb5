// <farm>: the heartbeat settings of a farm module and the lans that carry them.
// A pure module: it performs no I/O.
//
// `<farm port pulse="100ms" mlost_count="20" slost_count="10">` with one `<lan name/>` per
// network (../../../../shared/userconfig.md). A bare pulse is in ms. A follower is
// declared lost after `slost_count` missed pulses, the leader after `mlost_count`.
//
// Decisions:
// - slost_count is at least 2. A follower's buckets move when it is declared lost, and the
//   kernel lease that makes a hung node drop its buckets must fit strictly between one
//   pulse and the detection time minus half a pulse (core/farm-config.ts,
//   validateTimings): with one missed pulse as the detection time no such lease exists, so
//   a hung follower and its successor could serve the same clients, and a single lost or
//   late datagram would move buckets.
// - The pulse is a whole number of milliseconds from 1 ms to 60 s: the core's timings are
//   integer milliseconds, and a pulse slower than a minute would detect nothing in time.
// - Pre-7.2 files put `<node name addr>` under the farm `<lan>`; nodes are read from
//   cluster.xml only, so such children are reported (a warning) rather than dropped.

import { assert } from "../../assert.ts";
import { farmRingCountMax } from "../../farm-config.ts";
import type { FarmSection } from "../module-config.ts";
import type { ElementReader } from "../reader.ts";
import { located } from "./vip.ts";

export const farmPulseMsDefault = 100;
export const farmPulseMsMax = 60_000;
export const mlostCountDefault = 20;
export const slostCountDefault = 10;
export const lostCountMax = 10_000;

/** Reads `<farm>`; every problem is recorded in the reader's context. */
export function readFarm(farm: ElementReader): FarmSection {
  const port = located(farm, "port") === undefined ? 0 : farm.int("port", 0, 1, 65_535);
  const pulseMs = readPulse(farm);
  const mlostCount = farm.int("mlost_count", mlostCountDefault, 1, lostCountMax);
  const slostCount = readSlostCount(farm);
  const detectionWritten = located(farm, "pulse") !== undefined || located(farm, "slost_count") !== undefined;
  const lans = readLans(farm);
  farm.finish();
  assert(lans.length <= farmRingCountMax, "readLans keeps at most farmRingCountMax lans");
  assert(slostCount >= 2, "readSlostCount never returns a count below 2");
  return { port: port === 0 ? null : port, pulseMs, mlostCount, slostCount, detectionWritten, lans };
}

function readPulse(farm: ElementReader): number {
  const pulseMs = farm.time("pulse", "ms", farmPulseMsDefault);
  if (Number.isInteger(pulseMs) && pulseMs >= 1 && pulseMs <= farmPulseMsMax) return pulseMs;
  farm.report("error", "CONFIG_INVALID_VALUE", `expected a whole number of milliseconds from 1ms to ${farmPulseMsMax / 1_000}s: the pulse paces every heartbeat and the failure detector`, located(farm, "pulse"));
  return farmPulseMsDefault;
}

function readSlostCount(farm: ElementReader): number {
  // The fallback is not 1, so a 1 here was written in the file.
  const slostCount = farm.int("slost_count", slostCountDefault, 1, lostCountMax);
  if (slostCount !== 1) return slostCount;
  farm.report(
    "error",
    "CONFIG_UNSAFE",
    "expected at least 2: with 1, a single lost heartbeat declares a follower lost, and no bucket lease can expire between one pulse and the detection, so a hung follower and its successor could serve the same clients",
    located(farm, "slost_count"),
  );
  return slostCountDefault;
}

function readLans(farm: ElementReader): string[] {
  const lans: string[] = [];
  const readers = farm.children("lan");
  if (readers.length === 0) farm.report("error", "CONFIG_MISSING_ELEMENT", `a <farm> needs at least one <lan name="…"/>: the networks of cluster.xml that carry its heartbeats`);
  for (const [index, lan] of readers.entries()) {
    const name = lan.string("name", "", { required: true, nonEmpty: true }).trim();
    if (lans.includes(name)) lan.report("error", "CONFIG_DUPLICATE", `lan ${name} is listed twice in <farm>; each network carries one heartbeat`, located(lan, "name"));
    else if (index >= farmRingCountMax) lan.report("error", "CONFIG_TOO_MANY", `a farm uses at most ${farmRingCountMax} heartbeat lans; this is lan ${index + 1}`);
    else if (name !== "") lans.push(name);
    for (const node of lan.children("node")) {
      node.report("warning", "CONFIG_LEGACY_FORM", "<node> under the farm <lan> is the pre-7.2 form; tandem takes a lan's nodes from cluster.xml, so declare them there");
    }
    lan.finish();
  }
  return lans;
}
