// `tandem state`'s line for a mirror module (cli/operate-command.ts, formatView): roles,
// data, peer, the resources its checkers watch, and a resync under way with its progress.

import { describe, expect, it } from "vitest";
import { formatView } from "../../cli/operate-command.ts";
import type { ModuleView } from "../../service/node-service.ts";
import type { MirrorView } from "../../service/mirror-parts.ts";

function mirrorView(changes: Partial<MirrorView>): MirrorView {
  return {
    role: "PRIM",
    readiness: "Ready",
    gen: "3@n1",
    peer: "n2",
    peerRole: "SECOND",
    peerConnected: true,
    consistent: true,
    dir: "/srv/pgdata",
    volume: "intercept",
    stats: { resyncBlockBytes: 0, resyncPaths: 0, resyncs: 0, fullResyncs: 0, replicatedOps: 0, completed: 0, metaWrites: 0, laneOps: 0 },
    intercepted: 0,
    waiting: 0,
    excludedLocal: 0,
    lane: { on: false, alone: false, completed: 0, applied: 0, durableWrites: 0, sparedFsyncs: 0 },
    why: "",
    resources: {},
    resync: null,
    ...changes,
  };
}

function moduleView(mirror: MirrorView): ModuleView {
  return { module: "pg", mode: "mirror", node: "n1", state: mirror.role, readiness: mirror.readiness, goal: "running", resources: mirror.resources, problem: null, farm: null, mirror };
}

describe("tandem state for a mirror module", () => {
  it("shows a resync under way: what is left, what was sent, how fast", () => {
    const line = formatView(moduleView(mirrorView({ resync: { full: true, pathsLeft: 1204, sentBytes: 3 * 1_048_576 * 1024, elapsedMs: 40_000 } })));
    expect(line).toContain("resyncing the peer (full): 1204 paths left, 3072.0 MiB sent in 40 s (77 MiB/s)");
  });

  it("says nothing of a resync when none runs, and names the resources its checkers watch", () => {
    const line = formatView(moduleView(mirrorView({ resources: { "tcp.postgresql": "up", "custom.app": "down" } })));
    expect(line).not.toContain("resyncing");
    expect(line).toContain("tcp.postgresql=up custom.app=down");
    expect(line).toMatch(/^pg +n1 +mirror PRIM \(Ready\)  generation 3@n1, peer n2 SECOND, \/srv\/pgdata intercept/);
  });

  it("shows the lane's operations, and of them the commits' (docs/replicator.md, \"Commits\")", () => {
    const lane = { on: true, alone: false, completed: 120, applied: 0, durableWrites: 0, sparedFsyncs: 0 };
    expect(formatView(moduleView(mirrorView({ lane })))).toMatch(/, lane on \(120 ops\)$/);
    // A node alone's lane: applied here only (docs/mirror.md, "The lane").
    expect(formatView(moduleView(mirrorView({ lane: { ...lane, alone: true } })))).toMatch(/, lane on, alone \(120 ops\)$/);
    const committed = formatView(moduleView(mirrorView({ lane: { ...lane, durableWrites: 40, sparedFsyncs: 39 } })));
    expect(committed).toMatch(/, lane on \(120 ops: 40 writes durable on both, 39 fsyncs spared\)$/);
  });

  it("one path left, under a second: no rate yet", () => {
    const line = formatView(moduleView(mirrorView({ resync: { full: false, pathsLeft: 1, sentBytes: 524_288, elapsedMs: 300 } })));
    expect(line).toMatch(/resyncing the peer \(changes\): 1 path left, 0\.5 MiB sent in 0 s$/);
  });
});
