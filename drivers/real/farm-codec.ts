// Farm heartbeats on the wire: the payload codec of the real datagram port. Decoding
// checks every field (the MAC proved who sent it, not that it makes sense): a heartbeat
// that names another sender or module, or buckets out of range, is refused.

import { BucketSet } from "../../core/bucket-set.ts";
import type { FarmHeartbeat, FarmState, MemberRef } from "../../core/farm.ts";
import type { NodeId } from "../../core/types.ts";
import type { PayloadCodec } from "./wire.ts";

const states: readonly FarmState[] = ["STOP", "WAIT", "UP"];
/** More members than a farm can have is not a heartbeat. */
const membersMax = 64;

export function farmHeartbeatCodec(module: string, bucketCount: number): PayloadCodec<FarmHeartbeat> {
  return {
    encode: (message) => ({ ...message, lingering: message.lingering.toArray() }),
    decode: (value, from) => decode(value, from, module, bucketCount),
  };
}

function decode(value: unknown, from: NodeId, module: string, bucketCount: number): FarmHeartbeat | null {
  if (typeof value !== "object" || value === null) return null;
  const fields = value as Record<string, unknown>;
  if (fields["kind"] !== "farm-heartbeat" || fields["module"] !== module || fields["from"] !== from) return null;
  const state = fields["state"];
  if (!states.includes(state as FarmState) || typeof fields["joining"] !== "boolean") return null;
  const [incarnation, seq, epoch] = [fields["incarnation"], fields["seq"], fields["epoch"]];
  if (!isCount(incarnation) || !isCount(seq) || !isCount(epoch)) return null;
  const members = fields["members"];
  if (!Array.isArray(members) || members.length > membersMax || !members.every(isMember)) return null;
  const lingering = fields["lingering"];
  if (!Array.isArray(lingering) || lingering.length > bucketCount || !lingering.every((index) => Number.isInteger(index) && index >= 0 && index < bucketCount)) return null;
  return { kind: "farm-heartbeat", module, from, incarnation, seq, state: state as FarmState, joining: fields["joining"] as boolean, epoch, members: members as MemberRef[], lingering: BucketSet.of(bucketCount, lingering as number[]) };
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isMember(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const member = value as Record<string, unknown>;
  return typeof member["id"] === "string" && member["id"].length > 0 && member["id"].length <= 64 && isCount(member["incarnation"]) && isCount(member["epoch"]);
}
