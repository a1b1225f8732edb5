// Fault plans that the fuzzer found with seeds other than CI's (1001, 1002), each a broken
// guarantee that the core had had for a while, or a false report of the checker; kept as
// found (not shrunk). Replay one with `npm run sim -- --module mirror --replay TOKEN
// --trace` (encodeMirrorPlan).

import { describe, expect, it } from "vitest";
import { runMirrorPlan, type MirrorPlan } from "../../drivers/sim/mirror-plan.ts";

const found: readonly [string, MirrorPlan][] = [
  [
    "M1: the primary lost power while its up-to-date secondary was held by a resource; back, it went on alone on its older tree instead of waiting for the held node",
    {"kind": "mirror", "seed": 532214330, "witness": false, "ack": "received", "tornWrites": false, "failover": true, "lane": true, "bug": "none", "faults": [{"atMs": 5, "verb": "powerOff", "node": "n1"}, {"atMs": 9, "verb": "hold", "node": "n2"}, {"atMs": 14, "verb": "powerOn", "node": "n1"}, {"atMs": 3716, "verb": "diskFull", "node": "n2"}, {"atMs": 5206, "verb": "diskRoomy", "node": "n2"}, {"atMs": 6467, "node": "n2", "verb": "crashAppStopstart"}, {"atMs": 8001, "verb": "release", "node": "n2"}]},
  ],
  [
    "M4: a split brain's loser had written through second names of a file; the resync removed those names and never resent the file",
    {"kind": "mirror", "seed": 2746887031, "witness": false, "ack": "applied", "tornWrites": true, "failover": true, "lane": false, "bug": "none", "faults": [{"atMs": 5507, "node": "n2", "verb": "swap"}, {"atMs": 10366, "verb": "diskSlow", "node": "n1"}, {"atMs": 11166, "verb": "diskSlow", "node": "n2"}, {"atMs": 15002, "verb": "diskFast", "node": "n2"}, {"atMs": 15209, "verb": "partition", "node": "n1"}, {"atMs": 15912, "verb": "heal", "node": "n1"}, {"atMs": 16288, "verb": "powerOff", "node": "n1"}, {"atMs": 16648, "verb": "diskFast", "node": "n1"}, {"atMs": 17016, "verb": "stop", "node": "n2"}, {"atMs": 17452, "verb": "powerOn", "node": "n1"}, {"atMs": 18210, "verb": "start", "node": "n2"}]},
  ],
  [
    "M3: elected while cut off, before its peer followed, a primary wrote alone as the peer took over with the witness",
    {"kind": "mirror", "seed": 20, "witness": true, "ack": "applied", "tornWrites": true, "failover": true, "lane": false, "bug": "none", "faults": [{"atMs": 1611, "verb": "hold", "node": "n1"}, {"atMs": 1720, "verb": "partition", "node": "n1"}, {"atMs": 1767, "verb": "release", "node": "n1"}, {"atMs": 3400, "verb": "heal", "node": "n1"}, {"atMs": 13251, "verb": "hold", "node": "n1"}, {"atMs": 13385, "verb": "release", "node": "n1"}]},
  ],
  [
    "checker: a split brain's loser wrote through a name the winner then renamed; kept aside under that old name, not lost",
    {"kind": "mirror", "seed": 2644906799, "witness": false, "ack": "applied", "tornWrites": true, "failover": true, "lane": true, "bug": "none", "faults": [{"atMs": 17056, "verb": "partition", "node": "n2"}, {"atMs": 20327, "verb": "heal", "node": "n2"}]},
  ],
  [
    "M4: a stop never ended: writes sent to a peer that lost power, which came back and was attached again during the witness check, waited for an answer from the lost attachment",
    {"kind": "mirror", "seed": 1831245781, "witness": true, "ack": "applied", "tornWrites": true, "failover": true, "lane": true, "bug": "none", "faults": [{"atMs": 4495, "node": "n1", "verb": "swap"}, {"atMs": 4612, "verb": "powerOff", "node": "n1"}, {"atMs": 4885, "verb": "powerOn", "node": "n1"}, {"atMs": 4990, "verb": "stop", "node": "n2"}, {"atMs": 6298, "verb": "start", "node": "n2"}]},
  ],
];

describe("fault plans found with fresh seeds", () => {
  for (const [why, plan] of found) {
    it(why, () => {
      expect(runMirrorPlan(plan).violations).toEqual([]);
    });
  }
});
