// The interface a mirror scenario drives: the farm's Cluster verbs that make sense for
// two nodes with a replicated tree (power, partitions, operator commands, waiting on
// states), plus a witness, the application, the disks, and client writes whose
// acknowledgements are checked. The simulator implements it in virtual time
// (drivers/sim/sim-mirror-cluster.ts); the Docker lab will with containers and a real
// database (the mirror-for-real issue).

import type { MirrorReadiness, MirrorRole } from "../core/mirror/messages.ts";
import type { NodeId } from "../core/types.ts";

export interface MirrorView {
  readonly id: NodeId;
  /** "DOWN" when the node or its service is not running. */
  readonly role: MirrorRole | "DOWN";
  readonly readiness: MirrorReadiness;
  /** The node's data generation (null: a node that never held this mirror's data). */
  readonly gen: string | null;
}

export interface WriteStats {
  readonly acked: number;
  readonly failed: number;
  /** The longest time the writers went without an acknowledgement while they ran. */
  readonly longestGapMs: number;
}

export type MirrorOperatorCommand = "prim" | "primforce" | "second" | "swap" | "start" | "stop";

export interface MirrorCluster {
  readonly nodeIds: readonly NodeId[];
  nowMs(): number;
  /** kill: the node loses power (its page cache too). */
  kill(node: NodeId): Promise<void>;
  /** boot: a killed node gets power back; its service starts the module. */
  boot(node: NodeId): Promise<void>;
  /** crash: the node's service dies (the kernel and its page cache survive); restart brings it back. */
  crash(node: NodeId): Promise<void>;
  restart(node: NodeId): Promise<void>;
  /** partition: the nodes cannot reach each other on any network until heal. */
  partition(): Promise<void>;
  heal(): Promise<void>;
  /** cutWitness / healWitness: the node cannot / can reach the split-brain witness. Faults
   *  are applied one call at a time, and on the lab a call takes up to a second: a scenario
   *  that means a node cut from its peer and the witness at once cuts the witness first. */
  cutWitness(node: NodeId): Promise<void>;
  healWitness(node: NodeId): Promise<void>;
  /** An operator command on a node (`tandem prim`, `swap`, ...). */
  command(node: NodeId, command: MirrorOperatorCommand, options?: { readonly fullsync?: boolean }): Promise<void>;
  /** The application on the node dies (its checker or errd reports it). */
  crashApp(node: NodeId): Promise<void>;
  /** The node's disk has only `freeBytes` more room (null: no limit). */
  diskRoom(node: NodeId, freeBytes: number | null): Promise<void>;
  /** The node's next copy of a split brain's losing changes (preserve) fails with EIO. */
  failNextPreserve(node: NodeId): Promise<void>;
  /** Writers that create, write, fsync and read back files through the VIP. */
  startWrites(): Promise<void>;
  stopWrites(): Promise<WriteStats>;
  sleep(durationMs: number): Promise<void>;
  waitFor(description: string, condition: (views: readonly MirrorView[]) => boolean, timeoutMs: number): Promise<number>;
  views(): Promise<readonly MirrorView[]>;
  /** What the node's replicator has sent as resync, in bytes of file blocks (its counters). */
  resyncBytes(node: NodeId): Promise<number>;
  note(message: string): void;
}

export interface MirrorScenario {
  readonly name: string;
  readonly summary: string;
  /** The split-brain checker's witness is configured. */
  readonly witness?: boolean;
  readonly failover?: boolean;
  /** `defaultprim` names this node (the primary role goes back to it after a resync). */
  readonly defaultPrim?: NodeId;
  run(cluster: MirrorCluster): Promise<void>;
}

/** PRIM on `primary` and SECOND on the other, both Ready. */
export function inSyncWith(primary: NodeId): (views: readonly MirrorView[]) => boolean {
  return (views) => views.every((view) => (view.id === primary ? view.role === "PRIM" : view.role === "SECOND") && view.readiness === "Ready");
}

export function roleOf(views: readonly MirrorView[], node: NodeId): MirrorView["role"] {
  return views.find((view) => view.id === node)?.role ?? "DOWN";
}
