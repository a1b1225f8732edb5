// validateFarmConfig: each kind of bad input is reported as a value with a stable code and
// the path of the offending field; a valid config with the default timings has no problem.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bucketCountMax } from "../../core/bucket-set.ts";
import {
  defaultBucketCount,
  defaultFarmTimings,
  farmNodeCountMax,
  farmRingCountMax,
  validateFarmConfig,
  type ConfigProblem,
  type FarmConfig,
  type FarmTimings,
} from "../../core/farm-config.ts";
import { weightMax } from "../../core/ownership.ts";

function validConfig(): FarmConfig {
  return {
    module: "web",
    nodes: [
      { id: "s1", weight: 1 },
      { id: "s2", weight: 1 },
      { id: "s3", weight: 2 },
    ],
    rings: ["default", "backup"],
    bucketCount: defaultBucketCount,
    hashSeed: 0x1234_5678,
    rules: [
      { port: 80, proto: "tcp", mode: "srcip" },
      { port: 443, proto: "tcp", mode: "srcip+srcport" },
      { port: 53, proto: "udp", mode: "srcip+srcport" },
    ],
    timings: defaultFarmTimings,
  };
}

function withTimings(timings: Partial<FarmTimings>): FarmConfig {
  return { ...validConfig(), timings: { ...defaultFarmTimings, ...timings } };
}

/** The (code, path) pairs of the problems, the part of a problem that callers rely on. */
function codesAndPaths(problems: readonly ConfigProblem[]): string[] {
  return problems.map((problem) => `${problem.code} ${problem.path}`);
}

describe("a valid farm config has no problem", () => {
  it("the sample config with defaultFarmTimings", () => {
    expect(validateFarmConfig(validConfig())).toEqual([]);
  });

  it("boundary values: 1 node, 1 ring, no rule, weights 0 and weightMax, bucketCount 1 and max, seed 0 and 2^32-1", () => {
    const base = validConfig();
    const cases: FarmConfig[] = [
      { ...base, nodes: [{ id: "s1", weight: 0 }], rings: ["r"], rules: [] },
      { ...base, nodes: [{ id: "s1", weight: weightMax }] },
      { ...base, bucketCount: 1, hashSeed: 0 },
      { ...base, bucketCount: bucketCountMax, hashSeed: 0xffff_ffff },
      { ...base, rules: [{ port: 1, proto: "udp", mode: "srcip" }, { port: 65_535, proto: "tcp", mode: "srcip" }] },
      { ...base, nodes: Array.from({ length: farmNodeCountMax }, (_, i) => ({ id: `s${i}`, weight: 1 })) },
      { ...base, rings: Array.from({ length: farmRingCountMax }, (_, i) => `r${i}`) },
    ];
    for (const config of cases) expect(validateFarmConfig(config)).toEqual([]);
  });

  it("defaultFarmTimings is frozen, so no caller can change every farm's defaults", () => {
    expect(Object.isFrozen(defaultFarmTimings)).toBe(true);
  });
});

describe("validateFarmConfig reports each problem with its code and path", () => {
  const base = validConfig();
  it.each<[string, FarmConfig, string[]]>([
    ["an empty module name", { ...base, module: "" }, ["CONFIG_INVALID_VALUE module"]],
    ["no node", { ...base, nodes: [] }, ["CONFIG_INVALID_VALUE nodes"]],
    [
      "more than farmNodeCountMax nodes",
      { ...base, nodes: Array.from({ length: farmNodeCountMax + 1 }, (_, i) => ({ id: `s${i}`, weight: 1 })) },
      ["CONFIG_INVALID_VALUE nodes"],
    ],
    [
      "a duplicate node (the second listing is named)",
      { ...base, nodes: [{ id: "s1", weight: 1 }, { id: "s2", weight: 1 }, { id: "s1", weight: 2 }] },
      ["CONFIG_DUPLICATE nodes[2].id"],
    ],
    ["a negative weight", { ...base, nodes: [{ id: "s1", weight: 1 }, { id: "s2", weight: -1 }] }, ["CONFIG_INVALID_VALUE nodes[1].weight"]],
    ["a weight above weightMax", { ...base, nodes: [{ id: "s1", weight: weightMax + 1 }] }, ["CONFIG_INVALID_VALUE nodes[0].weight"]],
    ["a fractional weight", { ...base, nodes: [{ id: "s1", weight: 0.5 }] }, ["CONFIG_INVALID_VALUE nodes[0].weight"]],
    ["a NaN weight", { ...base, nodes: [{ id: "s1", weight: Number.NaN }] }, ["CONFIG_INVALID_VALUE nodes[0].weight"]],
    ["no ring", { ...base, rings: [] }, ["CONFIG_INVALID_VALUE rings"]],
    [
      "more than farmRingCountMax rings",
      { ...base, rings: Array.from({ length: farmRingCountMax + 1 }, (_, i) => `r${i}`) },
      ["CONFIG_INVALID_VALUE rings"],
    ],
    ["a duplicate ring", { ...base, rings: ["default", "default"] }, ["CONFIG_DUPLICATE rings"]],
    ["bucketCount 0", { ...base, bucketCount: 0 }, ["CONFIG_INVALID_VALUE bucketCount"]],
    ["bucketCount above bucketCountMax", { ...base, bucketCount: bucketCountMax + 1 }, ["CONFIG_INVALID_VALUE bucketCount"]],
    ["a fractional bucketCount", { ...base, bucketCount: 2.5 }, ["CONFIG_INVALID_VALUE bucketCount"]],
    ["a negative hashSeed", { ...base, hashSeed: -1 }, ["CONFIG_INVALID_VALUE hashSeed"]],
    ["a hashSeed of 2^32", { ...base, hashSeed: 0x1_0000_0000 }, ["CONFIG_INVALID_VALUE hashSeed"]],
    ["a fractional hashSeed", { ...base, hashSeed: 0.5 }, ["CONFIG_INVALID_VALUE hashSeed"]],
    ["rule port 0", { ...base, rules: [{ port: 0, proto: "tcp", mode: "srcip" }] }, ["CONFIG_INVALID_VALUE rules[0].port"]],
    [
      "rule port 65536 (second rule)",
      { ...base, rules: [{ port: 80, proto: "tcp", mode: "srcip" }, { port: 65_536, proto: "tcp", mode: "srcip" }] },
      ["CONFIG_INVALID_VALUE rules[1].port"],
    ],
    [
      "node names whose hashes collide",
      { ...base, nodes: [{ id: "costarring", weight: 1 }, { id: "liquid", weight: 1 }] },
      ["CONFIG_HASH_COLLISION nodes[1].id"],
    ],
    ["an empty node name", { ...base, nodes: [{ id: "", weight: 1 }] }, ["CONFIG_INVALID_VALUE nodes[0].id"]],
    ["an empty ring name", { ...base, rings: ["default", ""] }, ["CONFIG_INVALID_VALUE rings[1]"]],
    [
      "two rules for one port and protocol",
      { ...base, rules: [{ port: 80, proto: "tcp", mode: "srcip" }, { port: 80, proto: "tcp", mode: "srcip+srcport" }] },
      ["CONFIG_DUPLICATE rules[1]"],
    ],
  ])("%s", (_, config, expected) => {
    expect(codesAndPaths(validateFarmConfig(config))).toEqual(expected);
  });

  it("several problems are all reported, in field order", () => {
    const config: FarmConfig = { ...base, module: "", nodes: [{ id: "s1", weight: 101 }], bucketCount: 0 };
    expect(codesAndPaths(validateFarmConfig(config))).toEqual([
      "CONFIG_INVALID_VALUE module",
      "CONFIG_INVALID_VALUE nodes[0].weight",
      "CONFIG_INVALID_VALUE bucketCount",
    ]);
  });

  it("every problem has a message that names the offending value", () => {
    const [problem] = validateFarmConfig({ ...base, nodes: [{ id: "s9", weight: 250 }] });
    expect(problem?.message).toContain("s9");
    expect(problem?.message).toContain("250");
  });
});

describe("validateFarmConfig checks the timings", () => {
  it.each<[string, Partial<FarmTimings>, string[]]>([
    ["heartbeatIntervalMs 0", { heartbeatIntervalMs: 0 }, ["CONFIG_INVALID_VALUE timings.heartbeatIntervalMs"]],
    ["a fractional detectionTimeoutMs", { detectionTimeoutMs: 250.5 }, ["CONFIG_INVALID_VALUE timings.detectionTimeoutMs"]],
    ["a fractional handoverWindowMs", { handoverWindowMs: 1.5 }, ["CONFIG_INVALID_VALUE timings.handoverWindowMs"]],
    ["handoverWindowMs 0", { handoverWindowMs: 0 }, ["CONFIG_INVALID_VALUE timings.handoverWindowMs"]],
    [
      "detection below 2 heartbeats",
      { heartbeatIntervalMs: 50, detectionTimeoutMs: 99, leaseMs: 60 },
      ["CONFIG_INVALID_VALUE timings.detectionTimeoutMs"],
    ],
    ["lease equal to the detection timeout", { leaseMs: 250 }, ["CONFIG_UNSAFE timings.leaseMs"]],
    ["lease above the detection timeout", { leaseMs: 1000 }, ["CONFIG_UNSAFE timings.leaseMs"]],
    ["lease less than half an interval below detection", { leaseMs: 226 }, ["CONFIG_UNSAFE timings.leaseMs"]],
    ["lease equal to the heartbeat interval", { leaseMs: 50 }, ["CONFIG_UNSAFE timings.leaseMs"]],
    ["lease below the heartbeat interval", { leaseMs: 10 }, ["CONFIG_UNSAFE timings.leaseMs"]],
    ["leaseMs 0", { leaseMs: 0 }, ["CONFIG_INVALID_VALUE timings.leaseMs", "CONFIG_UNSAFE timings.leaseMs"]],
  ])("%s", (_, timings, expected) => {
    expect(codesAndPaths(validateFarmConfig(withTimings(timings)))).toEqual(expected);
  });

  it.each<[string, Partial<FarmTimings>]>([
    ["detection exactly 2 heartbeats", { heartbeatIntervalMs: 50, detectionTimeoutMs: 100, leaseMs: 75 }],
    ["lease exactly half an interval below detection", { leaseMs: 225 }],
    ["lease one ms above the heartbeat interval", { leaseMs: 51 }],
  ])("accepts %s", (_, timings) => {
    expect(validateFarmConfig(withTimings(timings))).toEqual([]);
  });

  // The safety argument of the kernel lease: whatever the numbers, timings that pass
  // validation let a hung node's filter forget its buckets (leaseMs) before its peers
  // declare it dead (detectionTimeoutMs), and tolerate one lost heartbeat.
  it("any accepted timings have heartbeat < lease < detection and detection >= 2 heartbeats", () => {
    const timingsArbitrary = fc.record({
      heartbeatIntervalMs: fc.integer({ min: -5, max: 2_000 }),
      detectionTimeoutMs: fc.integer({ min: -5, max: 10_000 }),
      leaseMs: fc.integer({ min: -5, max: 10_000 }),
      handoverWindowMs: fc.integer({ min: -5, max: 1_000_000 }),
    });
    fc.assert(
      fc.property(timingsArbitrary, (timings) => {
        const problems = validateFarmConfig({ ...validConfig(), timings });
        if (problems.length > 0) return;
        expect(timings.heartbeatIntervalMs).toBeGreaterThanOrEqual(1);
        expect(timings.handoverWindowMs).toBeGreaterThanOrEqual(1);
        expect(timings.leaseMs).toBeGreaterThan(timings.heartbeatIntervalMs);
        expect(timings.leaseMs).toBeLessThan(timings.detectionTimeoutMs);
        expect(timings.detectionTimeoutMs).toBeGreaterThanOrEqual(2 * timings.heartbeatIntervalMs);
      }),
      { numRuns: 2_000 },
    );
  });

  it("timings that satisfy the documented constraints are accepted", () => {
    const timingsArbitrary = fc
      .record({ heartbeatIntervalMs: fc.integer({ min: 2, max: 1_000 }), extraMs: fc.nat(5_000), handoverWindowMs: fc.integer({ min: 1, max: 1_000_000 }) })
      .chain(({ heartbeatIntervalMs, extraMs, handoverWindowMs }) => {
        const detectionTimeoutMs = 2 * heartbeatIntervalMs + extraMs;
        const leaseMaxMs = Math.floor(detectionTimeoutMs - heartbeatIntervalMs / 2);
        return fc.record({
          heartbeatIntervalMs: fc.constant(heartbeatIntervalMs),
          detectionTimeoutMs: fc.constant(detectionTimeoutMs),
          leaseMs: fc.integer({ min: heartbeatIntervalMs + 1, max: leaseMaxMs }),
          handoverWindowMs: fc.constant(handoverWindowMs),
        });
      });
    fc.assert(
      fc.property(timingsArbitrary, (timings) => {
        expect(validateFarmConfig({ ...validConfig(), timings })).toEqual([]);
      }),
    );
  });
});
