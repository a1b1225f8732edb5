// Fault plans that once found a bug, kept as they were shrunk so the bug stays fixed.
// Each names what it found; a new find is added here with its replay token decoded.

import { describe, expect, it } from "vitest";
import { runPlan, type FarmPlan } from "../../drivers/sim/farm-plan.ts";
import { lanLink } from "../../drivers/sim/network.ts";

const plan = (overrides: Partial<FarmPlan> & Pick<FarmPlan, "nodes" | "faults">): FarmPlan => ({
  seed: 0,
  rings: ["lan"],
  mode: "srcip",
  link: { ...lanLink, latencyMs: 0.05, jitterMs: 0 },
  clients: 1,
  safetyMs: 3_000,
  bug: "none",
  ...overrides,
});

const found: readonly [string, FarmPlan][] = [
  [
    "a weight-0 node becoming UP owned nothing, so no filter-set started its lease and it lost the lease at every tick",
    plan({ nodes: [{ id: "n1", weight: 1 }, { id: "n2", weight: 0 }, { id: "n3", weight: 1 }], link: { ...lanLink, latencyMs: 1.6666666666665153, jitterMs: 0 }, faults: [{ atMs: 0, verb: "crash", node: "n2" }] }),
  ],
  [
    "a lingering bucket accepted a retransmitted SYN of a flow it never answered, beside the new owner",
    plan({ nodes: [{ id: "n1", weight: 1 }, { id: "n2", weight: 2 }, { id: "n3", weight: 1 }], faults: [{ atMs: 0, verb: "breakApp", node: "n2" }, { atMs: 0, verb: "powerOff", node: "n1" }] }),
  ],
  [
    "the checker missed a node alive for 1 ms between a restart and a crash",
    plan({
      nodes: [{ id: "n1", weight: 1 }, { id: "n2", weight: 1 }, { id: "n3", weight: 1 }],
      rings: ["lan", "private", "backup"],
      link: { ...lanLink, latencyMs: 0.05, jitterMs: 0.2 },
      faults: [
        { atMs: 1_947, verb: "crash", node: "n1" },
        { atMs: 2_081, verb: "restart", node: "n1" },
        { atMs: 2_082, verb: "crash", node: "n1" },
        { atMs: 2_271, verb: "restart", node: "n1" },
      ],
    }),
  ],
  [
    "a paused node read a dead peer's queued heartbeats as fresh and kept it in its view",
    plan({
      nodes: [{ id: "n1", weight: 1 }, { id: "n2", weight: 1 }],
      rings: ["lan", "private", "backup"],
      faults: [
        { atMs: 0, verb: "hang", node: "n2" },
        { atMs: 0, verb: "crash", node: "n1" },
        { atMs: 50, verb: "release", node: "n2" },
        { atMs: 321, verb: "restart", node: "n1" },
      ],
    }),
  ],
];

describe("fault plans that once found a bug", () => {
  it.each(found)("%s", (_, regression) => {
    expect(runPlan(regression).violations).toEqual([]);
  });
});
