// What two nodes of a mirror module say to each other. Heartbeats travel as datagrams on
// every ring; everything else on the ordered, reliable stream between the two nodes.
// A pure module: types only.

import type { DiskOp, DiskResult, PathSnapshot } from "./disk-ops.ts";
import type { FileDirty, Gen, LastRole } from "./meta.ts";

export type MirrorRole = "STOP" | "WAIT" | "ALONE" | "PRIM" | "SECOND";
export type MirrorReadiness = "NotReady" | "Transient" | "Ready";

/** Datagrams on the heartbeat rings. */
export type MirrorBeat =
  | {
      readonly kind: "beat";
      readonly from: string;
      readonly incarnation: number;
      readonly role: MirrorRole;
      readonly gen: Gen | null;
      /** Its checkers' resources and their states (`remote.` in the peer's <failover>
       *  rules), sorted by name; absent when it watches none (or from an older node). */
      readonly resources?: readonly (readonly [string, "init" | "up" | "down"])[];
    }
  /** The primary lost the stream but still hears the peer: it asks the peer to mark
   *  itself outdated before it goes on alone, so that the peer can never take over with
   *  data older than what the primary goes on acknowledging. */
  | { readonly kind: "outdate"; readonly from: string; readonly gen: Gen | null }
  | { readonly kind: "outdated"; readonly from: string; readonly gen: Gen | null };

/** What a node tells its peer about its data when their stream comes up or its role changes. */
export interface HelloSummary {
  readonly incarnation: number;
  readonly role: MirrorRole;
  readonly gen: Gen | null;
  readonly history: readonly Gen[];
  readonly consistent: boolean;
  readonly lastRole: LastRole;
  readonly dirtyBase: Gen | null;
  readonly dirty: readonly (readonly [string, FileDirty])[];
  /** An operator asked this node to become secondary (`second`): its data may be dropped. */
  readonly yielding: boolean;
  /** An operator asked for a full resync (`prim fullsync`, `second fullsync`). */
  readonly fullsync: boolean;
  /** This node has run without a restart since it was last primary or an up-to-date
   *  secondary: its page cache holds every write it acknowledged or applied. A node that
   *  restarted (maybe after a power loss) may have lost what was not yet durable. */
  readonly continuous: boolean;
  /** The host rebooted since this node's tree was last made the reference (MirrorMeta.cacheLost). */
  readonly cacheLost: boolean;
  /** false while this node holds off being attached (after its disk failed, or held). */
  readonly attachable: boolean;
  /** This node waits for a resource (a checker or rule with action wait): it cannot be
   *  primary now, and its data counts as any node's (absent from older peers: false). */
  readonly held?: boolean;
  /** The last attach session this node received: a primary knows the summary came after it. */
  readonly seenSession: number | null;
  /** Its replicated directories' names (MirrorConfig.layout; empty: one directory). */
  readonly layout: readonly string[];
}

export type MirrorMessage =
  /** `ask`: answer with your own hello even if it did not change. */
  | { readonly kind: "hello"; readonly summary: HelloSummary; readonly ask?: boolean }
  /** From the primary: this node is now its secondary; `plan` is what the resync will send.
   *  `preserve` lists the paths whose current version the secondary must keep aside first
   *  (its changes the primary never had), null when there are none. */
  | {
      readonly kind: "attach";
      readonly session: number;
      readonly full: boolean;
      readonly preserve: readonly string[] | null;
      readonly label: string;
    }
  /** One intercepted operation, in the order the primary dispatched it. */
  | { readonly kind: "rep"; readonly session: number; readonly seq: number; readonly op: DiskOp }
  /** `paths`: with a failure, the paths of the operation (the primary may no longer hold it). */
  | { readonly kind: "rep-ack"; readonly session: number; readonly seq: number; readonly result: DiskResult; readonly paths?: readonly string[] }
  /** One path of the resync; `prune`: remove what the secondary holds below it that the snapshot's children do not name. */
  | { readonly kind: "sync-path"; readonly session: number; readonly path: string; readonly snapshot: PathSnapshot; readonly prune: boolean }
  /** `names`: other names, on the secondary, of files it had written through a name this
   *  path's install took or rewrote (the primary sends them whole too). */
  | { readonly kind: "sync-path-ack"; readonly session: number; readonly path: string; readonly result: DiskResult; readonly names?: readonly string[] }
  /** The resync is complete: the secondary takes the primary's generation once durable. */
  | { readonly kind: "sync-end"; readonly session: number; readonly gen: Gen; readonly history: readonly Gen[]; readonly upTo: number }
  | { readonly kind: "sync-done"; readonly session: number; readonly upTo: number }
  /** Paths differ again (an operation failed on one side only): the secondary is not up to date until they are resent. */
  | { readonly kind: "unsync"; readonly session: number }
  /** Make everything up to `upTo` durable (clears the primary's dirty marks). */
  | { readonly kind: "flush"; readonly session: number; readonly upTo: number }
  | { readonly kind: "flushed"; readonly session: number; readonly upTo: number }
  /** The primary hands over: its application is stopped and every operation acknowledged. */
  | { readonly kind: "handover"; readonly session: number; readonly reason: "swap" | "stop" }
  /** The attach came when this node could not follow (stopping, starting): the primary
   *  treats it like a lost stream. */
  | { readonly kind: "attach-refused"; readonly session: number; readonly reason: string }
  /** The secondary stops following (its disk failed, a stop, a hold); the primary goes on
   *  alone in a new generation. */
  | { readonly kind: "detach"; readonly session: number; readonly reason: string }
  /** The primary would send writes and fsyncs of this session on the lane (docs/mirror.md,
   *  "The lane"); the secondary answers lane-opened once it applies the lane's frames. */
  | { readonly kind: "lane-open"; readonly session: number; readonly epoch: number }
  | { readonly kind: "lane-opened"; readonly session: number; readonly epoch: number }
  /** No frame of this lane epoch is to be applied any more: what the primary sends next on
   *  the stream (the lane's unacknowledged operations among it) comes after them. */
  | { readonly kind: "lane-close"; readonly session: number; readonly epoch: number };
