// Which bucket a client packet falls into. A pure module: it performs no I/O.
//
// The real filter computes the same classification in the kernel (nftables jhash); this
// function is the reference the simulator's filter model and the tests use.

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
