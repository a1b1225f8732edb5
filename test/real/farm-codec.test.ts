// Farm heartbeats survive the wire exactly, and anything that does not make sense is refused.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BucketSet } from "../../core/bucket-set.ts";
import type { FarmHeartbeat } from "../../core/farm.ts";
import { farmHeartbeatCodec } from "../../drivers/real/farm-codec.ts";

const codec = farmHeartbeatCodec("web", 256);
const heartbeat: FarmHeartbeat = {
  kind: "farm-heartbeat",
  module: "web",
  from: "n2",
  incarnation: 1_764_000_000_000,
  seq: 42,
  state: "UP",
  joining: false,
  epoch: 3,
  members: [
    { id: "n1", incarnation: 7, epoch: 1 },
    { id: "n2", incarnation: 1_764_000_000_000, epoch: 3 },
  ],
  lingering: BucketSet.of(256, [0, 1, 2, 200]),
};
const roundTrip = (message: FarmHeartbeat, from = message.from) => codec.decode(JSON.parse(JSON.stringify(codec.encode(message))), from);

describe("farm heartbeat codec", () => {
  it("round-trips a heartbeat exactly", () => {
    const decoded = roundTrip(heartbeat);
    expect({ ...decoded, lingering: decoded?.lingering.toArray() }).toEqual({ ...heartbeat, lingering: [0, 1, 2, 200] });
  });

  it.each<[string, Record<string, unknown>]>([
    ["another sender than the authenticated one", { from: "n3" }],
    ["another module", { module: "api" }],
    ["an unknown state", { state: "PRIM" }],
    ["a negative sequence", { seq: -1 }],
    ["a bucket out of range", { lingering: [256] }],
    ["a member without id", { members: [{ incarnation: 1, epoch: 0 }] }],
  ])("refuses %s", (_, change) => {
    expect(codec.decode({ ...(codec.encode(heartbeat) as object), ...change }, "n2")).toBeNull();
  });

  it("never throws, whatever the JSON", () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => codec.decode(value, "n2") === null || typeof value === "object"));
  });
});
