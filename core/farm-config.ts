// The typed configuration of a farm module, its defaults and its validation.
// A pure module: it performs no I/O.
//
// userconfig.xml parsing (a later issue) produces this structure; the simulator builds it
// directly. Validation returns errors as values (operating errors), never throws.

import { bucketCountMax } from "./bucket-set.ts";
import { hashString32 } from "./hash.ts";
import { weightMax } from "./ownership.ts";
import type { NodeId, RingId } from "./types.ts";

/** `srcip`: a client address always maps to the same bucket (session affinity).
 *  `srcip+srcport`: each connection is hashed on its own (connections spread). */
export type BalanceMode = "srcip" | "srcip+srcport";

export interface FarmRule {
  readonly port: number;
  readonly proto: "tcp" | "udp";
  readonly mode: BalanceMode;
}

export interface FarmNodeConfig {
  readonly id: NodeId;
  /** SafeKit's `power`: share of the traffic, 0 = none. */
  readonly weight: number;
}

export interface FarmTimings {
  /** A node sends a heartbeat on every ring this often; also the tick of the failure detector. */
  readonly heartbeatIntervalMs: number;
  /** A peer is declared dead when every ring has been silent for longer than this. */
  readonly detectionTimeoutMs: number;
  /** The kernel filter forgets a node's buckets unless renewed within this; must be below detectionTimeoutMs. */
  readonly leaseMs: number;
  /** How long a node keeps serving the established connections of a bucket that moved away. */
  readonly handoverWindowMs: number;
}

export interface FarmConfig {
  readonly module: string;
  readonly nodes: readonly FarmNodeConfig[];
  readonly rings: readonly RingId[];
  readonly bucketCount: number;
  /** Seed of the packet hash and of the ownership map: identical on every node. */
  readonly hashSeed: number;
  readonly rules: readonly FarmRule[];
  readonly timings: FarmTimings;
}

/**
 * Defaults: detection in 250–300 ms. With 1 % loss a false detection needs five
 * consecutive heartbeats lost on every ring (p ≈ 1e-10 per interval and ring), and 20 ms
 * of jitter stretches a 50 ms gap to at most 90 ms, far below 250 ms.
 */
export const defaultFarmTimings: FarmTimings = Object.freeze({
  heartbeatIntervalMs: 50,
  detectionTimeoutMs: 250,
  leaseMs: 200,
  handoverWindowMs: 300_000,
});

export const defaultBucketCount = 256;
export const farmNodeCountMax = 64;
export const farmRingCountMax = 8;

export interface ConfigProblem {
  /** Stable code, e.g. CONFIG_INVALID_VALUE. */
  readonly code: string;
  /** Where, as a path into the config: `timings.leaseMs`, `nodes[2].weight`. */
  readonly path: string;
  readonly message: string;
}

export function validateFarmConfig(config: FarmConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const problem = (path: string, message: string, code = "CONFIG_INVALID_VALUE") =>
    problems.push({ code, path, message });
  if (config.module.length === 0) problem("module", "module name must not be empty");
  if (config.nodes.length < 1 || config.nodes.length > farmNodeCountMax) {
    problem("nodes", `a farm has 1 to ${farmNodeCountMax} nodes, found ${config.nodes.length}`);
  }
  const ids = new Set<NodeId>();
  const idOfHash = new Map<number, NodeId>();
  config.nodes.forEach((node, index) => {
    if (node.id.length === 0) problem(`nodes[${index}].id`, "node name must not be empty");
    if (ids.has(node.id)) problem(`nodes[${index}].id`, `node ${node.id} is listed twice`, "CONFIG_DUPLICATE");
    const other = idOfHash.get(hashString32(node.id));
    if (other !== undefined && other !== node.id) {
      problem(`nodes[${index}].id`, `node names ${other} and ${node.id} hash to the same 32-bit value, so they could not share buckets; rename one of them`, "CONFIG_HASH_COLLISION");
    }
    idOfHash.set(hashString32(node.id), node.id);
    ids.add(node.id);
    if (!Number.isInteger(node.weight) || node.weight < 0 || node.weight > weightMax) {
      problem(`nodes[${index}].weight`, `weight of ${node.id} is ${node.weight}; expected an integer 0..${weightMax}`);
    }
  });
  if (config.rings.length < 1 || config.rings.length > farmRingCountMax) {
    problem("rings", `a farm needs 1 to ${farmRingCountMax} heartbeat rings, found ${config.rings.length}`);
  }
  if (new Set(config.rings).size !== config.rings.length) problem("rings", "a ring is listed twice", "CONFIG_DUPLICATE");
  config.rings.forEach((ring, index) => ring.length === 0 && problem(`rings[${index}]`, "ring name must not be empty"));
  if (!Number.isInteger(config.bucketCount) || config.bucketCount < 1 || config.bucketCount > bucketCountMax) {
    problem("bucketCount", `bucketCount is ${config.bucketCount}; expected an integer 1..${bucketCountMax}`);
  }
  if (!Number.isInteger(config.hashSeed) || config.hashSeed < 0 || config.hashSeed > 0xffff_ffff) {
    problem("hashSeed", `hashSeed is ${config.hashSeed}; expected a 32-bit unsigned integer`);
  }
  const rulePorts = new Set<string>();
  config.rules.forEach((rule, index) => {
    if (!Number.isInteger(rule.port) || rule.port < 1 || rule.port > 65_535) {
      problem(`rules[${index}].port`, `port is ${rule.port}; expected 1..65535`);
    }
    const key = `${rule.proto}/${rule.port}`;
    if (rulePorts.has(key)) problem(`rules[${index}]`, `a second rule for ${key}: only one rule may balance a port`, "CONFIG_DUPLICATE");
    rulePorts.add(key);
  });
  problems.push(...validateTimings(config.timings));
  return problems;
}

function validateTimings(timings: FarmTimings): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const positive = (name: keyof FarmTimings) => {
    const value = timings[name];
    if (!Number.isInteger(value) || value < 1) {
      problems.push({ code: "CONFIG_INVALID_VALUE", path: `timings.${name}`, message: `${name} is ${value}; expected a positive integer` });
    }
  };
  positive("heartbeatIntervalMs");
  positive("detectionTimeoutMs");
  positive("leaseMs");
  positive("handoverWindowMs");
  if (timings.detectionTimeoutMs < 2 * timings.heartbeatIntervalMs) {
    problems.push({
      code: "CONFIG_INVALID_VALUE",
      path: "timings.detectionTimeoutMs",
      message: `detectionTimeoutMs (${timings.detectionTimeoutMs}) must be at least twice heartbeatIntervalMs (${timings.heartbeatIntervalMs}), or one lost heartbeat causes a failover`,
    });
  }
  // Safety: a hung node's kernel must forget its buckets before its peers take them over.
  if (timings.leaseMs > timings.detectionTimeoutMs - timings.heartbeatIntervalMs / 2 || timings.leaseMs <= timings.heartbeatIntervalMs) {
    problems.push({
      code: "CONFIG_UNSAFE",
      path: "timings.leaseMs",
      message: `leaseMs (${timings.leaseMs}) must be above heartbeatIntervalMs (${timings.heartbeatIntervalMs}) and below detectionTimeoutMs (${timings.detectionTimeoutMs}) by half an interval, or a hung node and its successor own the same buckets`,
    });
  }
  return problems;
}
