// The mirror's invariants, checked on a MirrorWorld (docs/simulation.md):
//   M1  no acknowledged write is lost through any sequence of single-node failures:
//       every path the clients' acknowledged history determines holds exactly that, on
//       the primary, at the end (and on every read back during the run);
//   M2  nothing fsync-acknowledged is lost through a double power loss (the clients'
//       model forgets only what was not fsync-acknowledged when both nodes were down);
//   M3  with the split-brain checker on, never two nodes acknowledging writes as
//       primaries of diverging generations (checked at every acknowledgement);
//   M4  once the faults stop, the nodes converge to PRIM and SECOND, Ready, with
//       byte-identical trees, within a bound;
//   M5  a node never becomes primary by itself without every generation under which a
//       write was acknowledged (checked at every promotion).
// Without the split-brain checker a split brain may happen; then the losing side's
// changes must have been kept aside (preserved), never silently dropped.

import { excluderOf } from "../../core/mirror/exclude.ts";
import { compareEntry, type Expected } from "./mirror-clients.ts";
import type { MirrorSimNode, MirrorWorld } from "./mirror-world.ts";

/** Bound for M4: from the end of the faults until both nodes are in sync. */
export const convergeBoundMs = 60_000;

/** Ends the faults: heals the network, powers everything on, restarts services and
 *  modules, lets the clients finish; then waits for PRIM/SECOND with identical trees. */
export function settle(world: MirrorWorld, boundMs = convergeBoundMs): boolean {
  world.healAll();
  for (const node of world.nodes) {
    world.resume(node.id);
    if (node.disk.settings.capacityBytes !== null) world.diskFull(node.id, null);
    world.diskSlow(node.id, 1);
    if (!node.powered) world.powerOn(node.id);
    else if (!node.running) world.restart(node.id);
    if (!node.moduleWanted) world.command(node.id, "start");
  }
  world.clients.stop();
  const startMs = world.nowMs;
  const deadline = startMs + boundMs;
  world.runUntilCondition(() => world.clients.idle, deadline, 20);
  const converged = world.runUntilCondition(() => inSync(world), deadline, 20);
  if (!converged) {
    const states = world.nodes.map((node) => `${node.id} ${node.role} ${node.readiness} gen ${node.meta?.gen ?? "-"}${node.runtime === null ? "" : ` (${node.runtime.state.why || node.runtime.state.phase})`}`).join("; ");
    world.violation("M4", `not converged ${boundMs} ms after the faults stopped: ${states}; trees ${world.nodes.map((node) => node.disk.treeDigest("cache", notReplicated(world)).slice(0, 12)).join(" vs ")}${treeDifferences(world)}`);
  }
  return converged;
}

/** The first paths whose entries differ between the two nodes' trees, for the report. */
function treeDifferences(world: MirrorWorld, count = 3): string {
  const leaveOut = notReplicated(world);
  const [a, b] = world.nodes.map((node) => new Map(node.disk.snapshotTree().filter((entry) => !leaveOut(entry.path)).map((entry) => [entry.path, JSON.stringify(entry)])));
  const paths = [...new Set([...a!.keys(), ...b!.keys()])].sort().filter((path) => a!.get(path) !== b!.get(path));
  if (paths.length === 0) return "";
  const shown = paths.slice(0, count).map((path) => `${path || "(root)"}: ${a!.get(path) ?? "absent"} vs ${b!.get(path) ?? "absent"}`);
  return `; ${paths.length} paths differ: ${shown.join("; ")}`;
}

/** PRIM and SECOND, both Ready, no operation in flight, identical trees. */
export function inSync(world: MirrorWorld): boolean {
  const roles = world.nodes.map((node) => `${node.role}/${node.readiness}`).sort().join(",");
  if (roles !== "PRIM/Ready,SECOND/Ready") return false;
  const [a, b] = world.nodes;
  return a!.disk.treeDigest("cache", notReplicated(world)) === b!.disk.treeDigest("cache", notReplicated(world));
}

/** The paths the mirror does not replicate (each node keeps its own). */
function notReplicated(world: MirrorWorld): (path: string) => boolean {
  return excluderOf(world.config(world.nodes[0]!.id).notReplicated);
}

/** M1 and M2 at the end: the primary's tree against the clients' model. Also checks that
 *  a split brain's losing changes were kept aside. */
export function checkFinal(world: MirrorWorld): void {
  const splitBrain = world.diverged();
  if (!splitBrain) for (const suspect of world.suspects) world.violations.push(suspect);
  const primary = world.nodes.find((node) => node.role === "PRIM" || node.role === "ALONE");
  if (primary === undefined) return; // M4 already reported
  const entries = new Map(primary.disk.snapshotTree("cache").map((entry) => [entry.path, entry]));
  const clients = world.clients;
  let checked = 0;
  for (const [path, expected] of clients.expected) {
    if (clients.uncertain.has(path)) continue;
    const actual = actualEntry(primary, entries.get(path), path, expected);
    const problem = compareEntry(expected, actual);
    checked++;
    if (problem !== null) {
      // A file with several names changed by the losing side through any of them.
      const names = expected?.kind === "file" && expected.everNames !== undefined ? [...expected.everNames] : [path];
      if (names.some((name) => lostToSplitBrain(world, name) !== null)) continue;
      world.violation("M1", `${path} on ${primary.id} at the end: ${problem}`);
    }
  }
  world.note(`checked ${checked} paths (${clients.uncertain.size} uncertain)`);
}

function actualEntry(node: MirrorSimNode, entry: ReturnType<MirrorSimNode["disk"]["snapshotTree"]>[number] | undefined, path: string, expected: Expected | null): Expected | null {
  if (entry === undefined) return null;
  switch (entry.kind) {
    case "dir":
      return { kind: "dir", mode: expected?.kind === "dir" ? expected.mode : entry.mode };
    case "symlink":
      return { kind: "symlink", target: entry.target };
    case "file":
      return { kind: "file", content: node.disk.fileBytes(path) ?? new Uint8Array(0), mode: entry.mode, xattrs: new Map(entry.xattrs ?? []) };
  }
}

/** Where a path changed on the losing side of a split brain was kept, or null. */
function lostToSplitBrain(world: MirrorWorld, path: string): string | null {
  if (!world.diverged()) return null;
  for (const node of world.nodes) {
    for (const label of node.disk.preservedLabels()) {
      const kept = node.disk.preserved(label);
      if (kept !== null && kept.some((entry) => entry.path === path || path.startsWith(`${entry.path}/`) || entry.path === "")) return `${node.id}:${label}`;
    }
  }
  return null;
}
