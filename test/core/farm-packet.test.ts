// bucketOfPacket: which bucket a client packet falls into, the reference for the simulator's
// filter model. `srcip` keeps a client on one bucket whatever its source port, `srcip+srcport`
// spreads one client's connections, and packets no rule balances get no bucket.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { defaultFarmTimings, type FarmConfig, type FarmRule } from "../../core/farm-config.ts";
import { bucketOfPacket, ruleFor, type ClientPacket } from "../../core/farm-packet.ts";

function configWith(rules: readonly FarmRule[], bucketCount = 256, hashSeed = 0x1234_5678): FarmConfig {
  return {
    module: "web",
    nodes: [{ id: "s1", weight: 1 }, { id: "s2", weight: 1 }],
    rings: ["default"],
    bucketCount,
    hashSeed,
    rules,
    timings: defaultFarmTimings,
  };
}

const affinity = configWith([{ port: 80, proto: "tcp", mode: "srcip" }]);
const spread = configWith([{ port: 80, proto: "tcp", mode: "srcip+srcport" }]);

const ipArbitrary = fc.integer({ min: 0, max: 0xffff_ffff });
const portArbitrary = fc.integer({ min: 1, max: 65_535 });
const seedArbitrary = fc.integer({ min: 0, max: 0xffff_ffff });

function packet(srcIp: number, srcPort: number, dstPort = 80, proto: "tcp" | "udp" = "tcp"): ClientPacket {
  return { srcIp, srcPort, dstPort, proto };
}

describe("srcip mode: a client reaches one bucket whatever its source port", () => {
  it("two packets from the same address and different source ports fall into the same bucket", () => {
    fc.assert(
      fc.property(ipArbitrary, portArbitrary, portArbitrary, seedArbitrary, (srcIp, portA, portB, seed) => {
        const config = configWith(affinity.rules, 256, seed);
        expect(bucketOfPacket(config, packet(srcIp, portA))).toBe(bucketOfPacket(config, packet(srcIp, portB)));
      }),
    );
  });

  it("different client addresses are spread over the buckets", () => {
    // 4096 consecutive addresses (one /20) over 256 buckets: 16 per bucket on average. A
    // hash that ignored the address, or kept only a few of its bits, would leave most
    // buckets empty; a correct hash leaves a bucket empty with probability e^-16 ≈ 1e-7.
    const used = new Set<number | null>();
    for (let offset = 0; offset < 4096; offset++) used.add(bucketOfPacket(affinity, packet(0x0a00_0000 + offset, 40_000)));
    expect(used.size).toBe(256);
  });
});

describe("srcip+srcport mode: one client's connections are spread", () => {
  it("the source ports of one address reach many buckets", () => {
    fc.assert(
      fc.property(ipArbitrary, seedArbitrary, (srcIp, seed) => {
        const config = configWith(spread.rules, 256, seed);
        const used = new Set<number | null>();
        // 1024 ephemeral ports over 256 buckets: a correct hash misses a bucket with
        // probability (255/256)^1024 ≈ 1.8 %, so ~4.6 buckets (σ ≈ 2.1) stay unused. Requiring
        // 200 allows 56 unused, over 20σ away; a hash that ignored the port reaches exactly 1.
        for (let srcPort = 50_000; srcPort < 51_024; srcPort++) used.add(bucketOfPacket(config, packet(srcIp, srcPort)));
        expect(used.size).toBeGreaterThanOrEqual(200);
      }),
      { numRuns: 30 },
    );
  });

  it("the same address and port always fall into the same bucket", () => {
    fc.assert(
      fc.property(ipArbitrary, portArbitrary, (srcIp, srcPort) => {
        expect(bucketOfPacket(spread, packet(srcIp, srcPort))).toBe(bucketOfPacket(spread, packet(srcIp, srcPort)));
      }),
    );
  });
});

describe("packets that no rule balances get no bucket", () => {
  it("a destination port without a rule gives null", () => {
    fc.assert(
      fc.property(ipArbitrary, portArbitrary, portArbitrary, (srcIp, srcPort, dstPort) => {
        fc.pre(dstPort !== 80);
        expect(bucketOfPacket(affinity, packet(srcIp, srcPort, dstPort))).toBeNull();
        expect(bucketOfPacket(spread, packet(srcIp, srcPort, dstPort))).toBeNull();
      }),
    );
  });

  it("a rule for tcp does not balance udp to the same port", () => {
    expect(bucketOfPacket(affinity, packet(0x0a00_0001, 40_000, 80, "udp"))).toBeNull();
    expect(ruleFor(affinity, packet(0x0a00_0001, 40_000, 80, "udp"))).toBeUndefined();
  });

  it("a config without rules balances nothing", () => {
    expect(bucketOfPacket(configWith([]), packet(0x0a00_0001, 40_000))).toBeNull();
  });

  it("each port uses its own rule's mode", () => {
    const config = configWith([
      { port: 80, proto: "tcp", mode: "srcip" },
      { port: 443, proto: "tcp", mode: "srcip+srcport" },
    ]);
    expect(ruleFor(config, packet(1, 2, 443))?.mode).toBe("srcip+srcport");
    expect(ruleFor(config, packet(1, 2, 80))?.mode).toBe("srcip");
  });
});

describe("the bucket is always in range", () => {
  it("an integer in [0, bucketCount) for any packet, bucketCount, seed and mode", () => {
    fc.assert(
      fc.property(
        ipArbitrary,
        fc.integer({ min: 0, max: 65_535 }),
        fc.integer({ min: 1, max: 65_536 }),
        seedArbitrary,
        fc.constantFrom("srcip" as const, "srcip+srcport" as const),
        fc.constantFrom("tcp" as const, "udp" as const),
        (srcIp, srcPort, bucketCount, seed, mode, proto) => {
          const config = configWith([{ port: 8080, proto, mode }], bucketCount, seed);
          const bucketIndex = bucketOfPacket(config, packet(srcIp, srcPort, 8080, proto));
          expect(Number.isInteger(bucketIndex)).toBe(true);
          expect(bucketIndex).toBeGreaterThanOrEqual(0);
          expect(bucketIndex).toBeLessThan(bucketCount);
        },
      ),
    );
  });

  it("bucketCount 1 puts every packet in bucket 0", () => {
    fc.assert(
      fc.property(ipArbitrary, portArbitrary, (srcIp, srcPort) => {
        expect(bucketOfPacket(configWith(spread.rules, 1), packet(srcIp, srcPort))).toBe(0);
      }),
    );
  });
});

describe("the hash seed changes the classification", () => {
  it("two seeds put a set of 256 clients into different buckets", () => {
    fc.assert(
      fc.property(seedArbitrary, seedArbitrary, (seedA, seedB) => {
        fc.pre(seedA !== seedB);
        const bucketsOf = (seed: number) =>
          Array.from({ length: 256 }, (_, offset) => bucketOfPacket(configWith(affinity.rules, 256, seed), packet(0xc0a8_0000 + offset, 1)));
        expect(bucketsOf(seedA)).not.toEqual(bucketsOf(seedB));
      }),
    );
  });
});
