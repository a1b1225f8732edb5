// A mirror node's checkers' resources travel with its heartbeats (core/mirror/mirror.ts,
// `resources` input): the peer's <failover> rules see them as `remote.` resources
// (service/mirror-checkers.ts). Not heard, not known.

import { describe, expect, it } from "vitest";
import { syncedWorld } from "./mirror-submit.ts";

describe("a mirror's resources, told to its peer", () => {
  it("reach the peer with the next heartbeats, changes included; forgotten once the peer is lost", () => {
    const world = syncedWorld({ seed: 91, lane: false });
    expect(world.node("n2").runtime!.state.peerResources).toEqual([]);
    world.node("n1").runtime!.deliver({ kind: "resources", resources: [["ping.gw", "up"], ["custom.app", "init"]] });
    world.runFor(1_000);
    expect(world.node("n2").runtime!.state.peerResources).toEqual([["custom.app", "init"], ["ping.gw", "up"]]);
    world.node("n1").runtime!.deliver({ kind: "resources", resources: [["custom.app", "down"], ["ping.gw", "up"]] });
    world.runFor(1_000);
    expect(world.node("n2").runtime!.state.peerResources).toEqual([["custom.app", "down"], ["ping.gw", "up"]]);
    world.powerOff("n1");
    world.runFor(5_000);
    expect(world.node("n2").runtime!.state.peerResources).toBeNull();
    expect(world.violations).toEqual([]);
  });
});
