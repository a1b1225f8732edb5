// The interface a scenario drives. The simulator implements it in virtual time
// (drivers/sim/sim-cluster.ts); the Docker lab will implement it with containers
// (kill = power loss, pause = hang, network disconnect = partition, tc netem = loss).
// Every call is async so that both implementations fit.

import type { NodeId } from "../core/types.ts";

export interface NodeView {
  readonly id: NodeId;
  /** "DOWN" when the node or its service is not running (or hung). */
  readonly state: "STOP" | "WAIT" | "UP" | "DOWN";
  readonly members: readonly NodeId[];
  /** How many buckets its kernel accepts new connections for now. */
  readonly ownedCount: number;
}

export interface LoadStats {
  /** Answered requests per node since the load started. */
  readonly answeredBy: Readonly<Record<NodeId, number>>;
  readonly answered: number;
  readonly resets: number;
  /** The longest time any client went without an answer while the load ran. */
  readonly longestGapMs: number;
  /** Requests sent on an established connection that got no answer within the client's
   *  answer timeout (answerTimeoutMs), after which it gave the connection up. */
  readonly answerTimeouts: number;
  /** The clients' answer timeout (1 s in the simulator and the lab). */
  readonly answerTimeoutMs: number;
}

export interface Cluster {
  readonly nodeIds: readonly NodeId[];
  /** Milliseconds since the cluster was created. */
  nowMs(): number;
  /** start: the operator starts the module on a node. */
  start(node: NodeId): Promise<void>;
  /** stop: the operator stops the module on a node (it leaves the farm at once). */
  stop(node: NodeId): Promise<void>;
  /** kill: the node loses power. */
  kill(node: NodeId): Promise<void>;
  /** boot: a killed node gets power back; its service starts the module. */
  boot(node: NodeId): Promise<void>;
  /** hang: the node's service and application freeze. */
  hang(node: NodeId): Promise<void>;
  /** release: a hung node resumes. */
  release(node: NodeId): Promise<void>;
  /** partition: no heartbeat crosses between the two groups (both ways) until heal. */
  partition(groupA: readonly NodeId[], groupB: readonly NodeId[]): Promise<void>;
  /** heal: every partition is repaired. */
  heal(): Promise<void>;
  /** degrade: every heartbeat network gets this loss rate and jitter; degrade(0, 0) restores it. */
  degrade(lossRate: number, jitterMs: number): Promise<void>;
  /** breakApp: the node's application starts failing its health check. */
  breakApp(node: NodeId): Promise<void>;
  /** repairApp: the node's application passes its health check again. */
  repairApp(node: NodeId): Promise<void>;
  /** Starts client load on the VIP; stopLoad ends it. */
  startLoad(clientCount: number): Promise<void>;
  stopLoad(): Promise<LoadStats>;
  loadStats(): Promise<LoadStats>;
  sleep(durationMs: number): Promise<void>;
  /** Waits until `condition` holds over the node views; throws ScenarioFailure past the deadline. */
  waitFor(description: string, condition: (views: readonly NodeView[]) => boolean, timeoutMs: number): Promise<number>;
  views(): Promise<readonly NodeView[]>;
  /** A line in the scenario's timeline. */
  note(message: string): void;
}

export class ScenarioFailure extends Error {
  override readonly name = "ScenarioFailure";
}

export interface Scenario {
  readonly name: string;
  readonly summary: string;
  readonly nodes: readonly { readonly id: NodeId; readonly weight: number }[];
  readonly mode: "srcip" | "srcip+srcport";
  /** Nodes left powered off when the scenario begins. */
  readonly initiallyOff?: readonly NodeId[];
  run(cluster: Cluster): Promise<void>;
}

/** Helpers scenarios share. */
export const upNodes = (views: readonly NodeView[]): NodeId[] => views.filter((view) => view.state === "UP").map((view) => view.id);

export function allUpWith(expected: readonly NodeId[]): (views: readonly NodeView[]) => boolean {
  const want = [...expected].sort().join(",");
  return (views) =>
    upNodes(views).sort().join(",") === want && views.filter((view) => view.state === "UP").every((view) => [...view.members].sort().join(",") === want);
}
