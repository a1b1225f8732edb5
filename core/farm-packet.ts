// Which bucket a client packet falls into. A pure module: it performs no I/O.
//
// The simulator's filter model and the tests classify packets with this function. The
// real filter hashes in the kernel (nftables jhash with the module's seed), which gives
// other buckets for the same packet; what correctness needs is only that every node of a
// cluster classifies alike, and every real node runs the same kernel expression.

import { combine32 } from "./hash.ts";
import type { FarmConfig, FarmRule } from "./farm-config.ts";

export interface ClientPacket {
  /** IPv4 source address as an unsigned 32-bit integer. */
  readonly srcIp: number;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly proto: "tcp" | "udp";
}

export function ruleFor(config: FarmConfig, packet: ClientPacket): FarmRule | undefined {
  return config.rules.find((rule) => rule.port === packet.dstPort && rule.proto === packet.proto);
}

/** The packet's bucket, or null when no rule balances its port (such packets are not for the VIP). */
export function bucketOfPacket(config: FarmConfig, packet: ClientPacket): number | null {
  const rule = ruleFor(config, packet);
  if (rule === undefined) return null;
  const port = rule.mode === "srcip+srcport" ? packet.srcPort : 0;
  return combine32(combine32(config.hashSeed, packet.srcIp >>> 0), port) % config.bucketCount;
}
