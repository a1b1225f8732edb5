// One mirror module on one node: roles, the synchronous write path, generations, dirty
// tracking, resync, split brain and swap, as one state machine (docs/mirror.md).
//
//   STOP ─start─▶ (load metadata, prestart, start_both) ─▶ WAIT (joining: listen for the peer)
//     joining ─peer met─▶ decide(): primary ─▶ PRIM (attach the peer, resync) │ SECOND
//     joining ─alone, last role ALONE─▶ ALONE │ otherwise WAIT until the peer or an operator
//     PRIM ─peer lost (witness reached)─▶ ALONE (new generation) │ (witness not reached) ─▶ WAIT
//     SECOND ─peer lost, up to date, failover on, witness reached─▶ ALONE (new generation)
//
// The write path (primary): an intercepted operation's dirty marks are made durable
// first, then it is applied locally and sent to the peer in one order; it completes when
// both applied it (or, with ack "received", when the peer received it; an fsync always
// when durable on both). The peer lost, the primary starts a new generation before it
// completes anything alone.
//
// Unlike the farm's, this state is a mutable object owned by one runtime: stepMirror
// changes it in place and returns it, which keeps a step O(1) per operation. Tests that
// compare states take copies.
//
// A pure module: time enters as nowMs; disk, network, scripts and probes are effects
// whose results come back as inputs.

import { assert, unreachable } from "../assert.ts";
import type { DefaultPrim } from "../config/module-config.ts";
import type { Probe, ScriptOutcome, ScriptRun } from "../ports.ts";
import type { LogEntry, LogLevel } from "../types.ts";
import { decide, planResync, type SplitBrainPolicy } from "./decide.ts";
import { describeOp, isAttributeOp, isMediaError, isWithin, parentOf, pathsOf, type DiskError, type DiskOp, type DiskResult, type PathSnapshot } from "./disk-ops.ts";
import type { HelloSummary, MirrorBeat, MirrorMessage, MirrorReadiness, MirrorRole } from "./messages.ts";
import { addArmed, aheadMaxBytes, aheadOfWrite, extentsOfWrite, type LaneReport } from "./lane.ts";
import { excluderOf, type Exclusion } from "./exclude.ts";
import { coarsenDirty, coarsenToFit, dirtyOf, emptyDirty, expandHot, filterDirty, genCounter, lineage, newMeta, nextGen, RunBlocks, SortedBlocks, summaryDirtyBytesMax, unionDirty, withNewGen, type DirtyMap, type FileDirty, type Gen, type MirrorMeta } from "./meta.ts";
import { describeLayout, sameLayout } from "./volumes.ts";

export interface MirrorConfig {
  readonly module: string;
  readonly self: string;
  readonly peer: string;
  readonly rings: readonly string[];
  readonly pulseMs: number;
  /** No heartbeat on any ring for this long: the peer is lost. */
  readonly timeoutMs: number;
  /** How long a starting node listens for its peer before it decides without it. */
  readonly joinMs: number;
  readonly blockSize: number;
  /** applied: the peer acknowledges once applied (sync); received: on receipt (async="second"). */
  readonly ack: "applied" | "received";
  readonly failover: boolean;
  readonly defaultPrim: DefaultPrim;
  /** The split-brain checker's witnesses; empty: no checker. */
  readonly witnesses: readonly string[];
  readonly witnessTimeoutMs: number;
  readonly splitBrain: SplitBrainPolicy;
  readonly maxLoop: number;
  readonly loopIntervalMs: number;
  /** false: the module has no <user> element and runs no scripts. */
  readonly scripts: boolean;
  readonly scriptEnv: Readonly<Record<string, string>>;
  /** How long a script may run (SafeKit's nicestoptimeout). */
  readonly scriptTimeoutMs: number;
  /** How long a stop script that timed out may run again with `force` (forcestoptimeout). */
  readonly forceStopTimeoutMs: number;
  readonly resyncWorkers: number;
  /** A resync sends a file this many bytes at a time at most (whole blocks, one block at
   *  least): each chunk is one message, which a real stream carries in one frame. */
  readonly resyncChunkBytes: number;
  /** The activity log's extent, in blocks: a write into an extent already marked hot
   *  needs no metadata write (meta.ts). */
  readonly hotExtentBlocks: number;
  /** How often an attached primary clears the dirty marks of what is durable on both. */
  readonly checkpointMs: number;
  /** After its disk failed, a secondary asks to be attached again this often. */
  readonly retryMs: number;
  /** The driver runs a lane (lane.ts): in-sync writes and fsyncs bypass the core's steps. */
  readonly lane: boolean;
  /** `<notreplicated>` (exclude.ts): operations on these paths only are applied here alone,
   *  never marked, sent nor resynced; a secondary keeps its own. */
  readonly notReplicated?: readonly Exclusion[];
  /** `<tocheck>`: paths that must exist in the tree at each start of the module here
   *  (an unmounted disk under the replicated directory leaves them missing); the module
   *  stops otherwise, before any script runs or anything is replicated. */
  readonly toCheck?: readonly string[];
  /** With several replicated directories, their names in the tree, in order (volumes.ts);
   *  absent or empty: one directory. Two nodes whose layouts differ never attach: a
   *  resync would pour one node's directories into the other's. */
  readonly layout?: readonly string[];
  /** The bound of the dirty map in this node's summary, in bytes of JSON (default
   *  summaryDirtyBytesMax, meta.ts): past it the summary names coarser marks. */
  readonly summaryDirtyBytesMax?: number;
  /** Test-only: a bug the simulator must catch. early-ack: complete an operation once
   *  applied locally, without waiting for the peer; clear-drops-armed: a clear keeps hot
   *  only what was written lately, not what the lane may still write into;
   *  ahead-unmarked: arm the extents ahead of a sequential writer without making them hot. */
  readonly plantedBug?: "early-ack" | "clear-drops-armed" | "ahead-unmarked";
}

export type MirrorCommand = "start" | "stop" | "prim" | "primforce" | "second" | "swap" | "restart";

export type MirrorInput =
  | { readonly kind: "command"; readonly command: MirrorCommand; readonly fullsync?: boolean }
  | { readonly kind: "meta-loaded"; readonly meta: MirrorMeta | null }
  | { readonly kind: "meta-persisted"; readonly version: number; readonly result: DiskResult }
  | { readonly kind: "timer"; readonly timer: MirrorTimer }
  | { readonly kind: "beat"; readonly ring: string; readonly message: MirrorBeat; readonly receivedAtMs: number }
  | { readonly kind: "message"; readonly message: MirrorMessage }
  | { readonly kind: "stream"; readonly connected: boolean }
  /** The application issued `op`; answered by one `complete` effect with the same id. */
  | { readonly kind: "intercepted"; readonly id: number; readonly op: DiskOp }
  | { readonly kind: "disk-done"; readonly tag: number; readonly result: DiskResult }
  | { readonly kind: "read-done"; readonly tag: number; readonly result: PathSnapshot | DiskError }
  | { readonly kind: "preserved"; readonly tag: number; readonly result: { readonly place: string } | DiskError }
  | { readonly kind: "script-done"; readonly id: number; readonly outcome: ScriptOutcome }
  | { readonly kind: "probe-result"; readonly epoch: number; readonly up: boolean; readonly detail: string }
  /** The application died or failed its checker. */
  /** A checker or errd saw the application fail. `restart` (default): stop_prim and
   *  start_prim here, on a primary; `stopstart`: the module stops on this node (a primary
   *  hands over to an up-to-date secondary) and starts again. Both count toward maxloop. */
  | { readonly kind: "app-failed"; readonly why: string; readonly action?: "restart" | "stopstart" }
  /** This node's checkers' resources and their states, told to the peer with every beat. */
  | { readonly kind: "resources"; readonly resources: readonly (readonly [string, "init" | "up" | "down"])[] }
  /** A resource the module waits for is down (a checker or `<failover>` rule with action
   *  wait: SafeKit's WAIT), or back (null): while held, this node is neither primary nor
   *  secondary (a primary hands over to an up-to-date secondary). Counts toward maxloop. */
  | { readonly kind: "hold"; readonly why: string | null }
  | { readonly kind: "lane-report"; readonly report: LaneReport };

export type MirrorTimer = "pulse" | "join" | "checkpoint" | "retry" | "grace" | "meta-retry";

export type MirrorEffect =
  | { readonly kind: "load-meta" }
  | { readonly kind: "persist-meta"; readonly version: number; readonly meta: MirrorMeta }
  | { readonly kind: "apply"; readonly tag: number; readonly op: DiskOp }
  | { readonly kind: "read"; readonly tag: number; readonly path: string; readonly blocks: readonly number[] | "all" }
  | { readonly kind: "install"; readonly tag: number; readonly path: string; readonly snapshot: PathSnapshot }
  | { readonly kind: "preserve"; readonly tag: number; readonly paths: readonly string[]; readonly label: string }
  | { readonly kind: "send"; readonly message: MirrorMessage }
  | { readonly kind: "beat"; readonly ring: string; readonly message: MirrorBeat }
  | { readonly kind: "complete"; readonly id: number; readonly result: DiskResult }
  | { readonly kind: "run-script"; readonly run: ScriptRun }
  | { readonly kind: "probe"; readonly epoch: number; readonly probe: Probe; readonly timeoutMs: number }
  | { readonly kind: "timer-arm"; readonly timer: MirrorTimer; readonly afterMs: number }
  | { readonly kind: "timer-cancel"; readonly timer: MirrorTimer }
  | { readonly kind: "vip"; readonly up: boolean }
  /** Whether this node now accepts the application's writes (the checker's M3). */
  | { readonly kind: "accepting"; readonly on: boolean }
  | { readonly kind: "role"; readonly role: MirrorRole; readonly readiness: MirrorReadiness; readonly gen: Gen | null }
  /** The primary's lane (lane.ts): on, off (a stopped report follows), harvest (a report follows). */
  | { readonly kind: "lane"; readonly action: "on"; readonly session: number | null; readonly epoch: number }
  | { readonly kind: "lane"; readonly action: "off" | "harvest" }
  /** "all": the whole path is hot (created, truncated or renamed since the marks were cleared). */
  | { readonly kind: "lane-arm"; readonly path: string; readonly extents: readonly number[] | "all" }
  /** The secondary applies this lane's frames (null: no more, once executed). */
  | { readonly kind: "lane-follow"; readonly lane: { readonly session: number; readonly epoch: number } | null }
  | { readonly kind: "log"; readonly entry: LogEntry };

type Phase = "stopped" | "loading" | "starting" | "joining" | "waiting" | "promoting" | "primary" | "handing-over" | "secondary" | "stopping";

type Continuation =
  | { readonly k: "started" }
  | { readonly k: "prim-started" }
  | { readonly k: "prim-stopped"; readonly then: "handover-swap" | "handover-stop" | "handover-wait" | "stop" | "wait" }
  | { readonly k: "stopped" }
  /** Scripts nothing waits for (start_second, stop_second, and transition, start_sec,
   *  stop_sec announcing a change of role): scripts asked for meanwhile run after them. */
  | { readonly k: "second-scripts" };

/** A script to run: its name (arguments from the role at its start) or a transition with
 *  the change it announces. */
type ScriptCall = string | { readonly name: "transition"; readonly args: readonly [MirrorRole, MirrorRole, "start" | "stop" | "stopwait"] };

type Tag =
  | { readonly t: "local"; readonly seq: number }
  | { readonly t: "remote"; readonly session: number; readonly seq: number; readonly paths: readonly string[]; readonly ackedOnReceipt: boolean }
  /** `blocks`: the chunk asked for; `whole`: a chunk of a path sent whole; `issued`: the
   *  last operation dispatched before the read. */
  | { readonly t: "resync-read"; readonly session: number; readonly path: string; readonly issued: number; readonly blocks: readonly number[]; readonly whole: boolean }
  | { readonly t: "prune-read"; readonly session: number; readonly path: string; readonly snapshot: PathSnapshot }
  /** The other names of the file an intercepted unlink or rename takes a name from (held `id`). */
  | { readonly t: "other-names"; readonly id: number }
  | { readonly t: "install"; readonly session: number; readonly path: string; readonly last: boolean }
  /** On a secondary, before an install: the other names of the file `path` names, for the
   *  acknowledgement of the resync's path `of`. */
  | { readonly t: "names-read"; readonly session: number; readonly of: string; readonly path: string }
  | { readonly t: "checkpoint"; readonly session: number }
  /** The tree made durable before this node's metadata says it is primary (flushInherited). */
  | { readonly t: "inherit-flush" }
  | { readonly t: "synced-flush"; readonly session: number; readonly upTo: number }
  | { readonly t: "peer-flush"; readonly session: number; readonly upTo: number }
  | { readonly t: "sync-end"; readonly session: number; readonly gen: Gen; readonly history: readonly Gen[]; readonly upTo: number; readonly unsyncs: number }
  | { readonly t: "preserve"; readonly session: number; readonly paths: readonly string[] }
  | { readonly t: "tocheck"; readonly start: number; readonly path: string }

interface Pending {
  readonly id: number;
  readonly op: DiskOp;
  local: DiskResult | undefined;
  /** undefined: waiting for the peer; null or an error: its result. */
  peer: DiskResult | undefined;
  /** The peer's answer is not needed (dispatched alone, or the peer detached). */
  peerless: boolean;
  /** The attachment it was sent on (null: none); only that session's answer counts. */
  readonly session: number | null;
}

interface Link {
  readonly session: number;
  inSync: boolean;
  /** What the resync still has to send. */
  plan: Map<string, FileDirty>;
  queue: string[];
  queueIndex: number;
  requeue: string[];
  readonly reading: Set<string>;
  /** Paths with snapshots on the way, and how many (a path re-marked meanwhile is read and
   *  sent again before the first is acknowledged). */
  readonly sending: Map<string, number>;
  /** Paths re-marked while their snapshot was on the way: not done when acknowledged. */
  readonly remarked: Set<string>;
  /** Files being sent in part (resyncChunkBytes at a time) whose plan entry holds blocks
   *  not read yet: their next chunk is read while the earlier ones are on the way. */
  readonly partial: Set<string>;
  /** Whole files read in part: the next block to read and the block count at the last
   *  read (the plan entry stays "all"; rebuilding the rest as a set of blocks at each chunk
   *  made a large file's resync quadratic: 28 CPU seconds for 1 GiB). */
  readonly from: Map<string, { readonly next: number; readonly count: number }>;
  /** Paths the secondary refused, and how many times in a row. */
  readonly refusals: Map<string, number>;
  /** Paths refused again: sent once more at the next retry, not at once. */
  readonly deferred: Set<string>;
  endSent: boolean;
  /** `harvesting`: the lane's report is awaited before the flush (upTo not chosen yet). */
  checkpoint: { upTo: number; local: boolean; peer: boolean; harvesting: boolean } | null;
  /** When the resync under way began: the attachment's, or a resend of paths whose results
   *  differed after it was in sync (`mirror.resynced` and the state's progress count from
   *  here). */
  startedMs: number;
  /** stats.resyncBlockBytes then (the counter is cumulative). */
  startBlockBytes: number;
  /** That resync sends the whole tree. */
  full: boolean;
  /** A checkpoint cleared marks during this attachment. */
  checkpointed: boolean;
}

interface Follow {
  readonly session: number;
  /** A split brain's losing changes are being copied aside: what the primary sends waits
   *  (in `held`) until they are kept, so nothing overwrites them first. */
  preserving: boolean;
  readonly held: MirrorMessage[];
  /** Local applies of replicated operations not yet done. */
  applying: number;
  /** Counts unsync messages: a sync-end overtaken by one does not make this node up to date. */
  unsyncs: number;
  /** The paths this node changed itself before it was attached (its dirty map then),
   *  sorted; and those whose other names were asked for already (askNames). */
  readonly own: readonly string[];
  readonly asked: Set<string>;
  /** Per path of the resync: other names of files it takes or writes, for its acknowledgement. */
  readonly names: Map<string, Set<string>>;
}

export interface MirrorStats {
  /** Bytes of file blocks the resyncs sent (as primary). */
  resyncBlockBytes: number;
  resyncPaths: number;
  resyncs: number;
  fullResyncs: number;
  replicatedOps: number;
  completed: number;
  /** Metadata writes (each one durable before what it covers is applied). */
  metaWrites: number;
  /** Operations the lane completed (counted in replicatedOps and completed too). */
  laneOps: number;
}

export interface Mirror {
  readonly config: MirrorConfig;
  readonly incarnation: number;
  readonly bootId: string;
  phase: Phase;
  why: string;
  meta: MirrorMeta;
  metaVersion: number;
  metaDone: number;
  /** The last metadata write failed: the marks in memory may not be durable, so the next
   *  operation writes them again, whatever it marks. */
  metaFailed: boolean;
  /** What waits for the metadata to be durable after a failed write (whenDurable). */
  metaRetry: ((step: Step) => void)[];
  metaWaiters: { version: number; then: (step: Step) => void }[];
  /** The tag of the flush a node becoming primary waits for before its metadata is
   *  written (flushInherited), or null; `metaDeferred`: a write waits for it. */
  inheritFlush: number | null;
  metaDeferred: boolean;
  nextTag: number;
  readonly tags: Map<number, Tag>;
  // The peer, as heard.
  peerBeatMs: number | null;
  /** When the pulse timer is due; `pulseRecheck`: this pulse was armed at once by a late
   *  one, to judge the peer's silence after what arrived meanwhile is read (pulse()). */
  pulseDueMs: number;
  pulseRecheck: boolean;
  peerAlive: boolean;
  peerIncarnation: number | null;
  peerRole: MirrorRole;
  peerGen: Gen | null;
  /** What the peer's latest heartbeat said: a hello that disagrees is stale. */
  peerBeatGen: Gen | null;
  peerBeatRole: MirrorRole | null;
  askedMs: number;
  streamUp: boolean;
  peerHello: HelloSummary | null;
  /** Operator flags carried in hellos. */
  yielding: boolean;
  fullsync: boolean;
  // Primary.
  app: "stopped" | "starting" | "running" | "stopping";
  accepting: boolean;
  /** Intercepted operations may be dispatched (false while the primary decides how to go on without its peer). */
  dispatching: boolean;
  vip: boolean;
  link: Link | null;
  nextSession: number;
  /** Intercepted, waiting for their marks to be durable (`needs`: a metadata version) or for
   *  dispatching to resume; `extents`: their marks in hot extents (its paths: those marked). */
  readonly held: { id: number; op: DiskOp; needs: number; extents: DirtyMap; localOnly: boolean; asking: boolean }[];
  opSeq: number;
  readonly pending: Map<number, Pending>;
  readonly pathSeq: Map<string, number>;
  /** The sequence number of the last operation on each path (on a parent: one that added
   *  or removed a name in it) dispatched while a resync read was in flight: such a read is
   *  stale when its path or an ancestor is here past the read's own. Emptied whenever no
   *  read is in flight, so it holds what changed during a resync, not every path ever
   *  changed. */
  readonly pathTouched: Map<string, number>;
  /** Paths marked by operations intercepted but not yet dispatched. */
  readonly pathHeld: Map<string, number>;
  /** Paths written since the marks were last cleared (which extents: hotSeen). */
  readonly hotTouched: Set<string>;
  /** When each hot extent was last written (path → extent → ms; the whole entry as
   *  extent -1): a clear keeps the extents of a path written since the last one only if
   *  they were written within hotKeepClears checkpoint periods (the activity log keeps an
   *  active file's working set, not every extent it ever wrote). */
  readonly hotSeen: Map<string, Map<number, number>>;
  fence: { gen: Gen | null } | null;
  /** The generation of the last outdate this node refused (logged once: the sender asks at
   *  every pulse, on every ring). */
  outdateRefused: Gen | null;
  /** A primary without its peer in a generation its peer may have too (elected, handed the
   *  role by a swap, its handover lost): anything it completes alone starts a new one first
   *  (intercepted()). Cleared when the peer is attached (and by a promotion). */
  genShared: boolean;
  /** When this node handed the role over by a swap, until the peer says it took it: a hello
   *  of the peer as secondary was sent before, and would make this node elect itself (both
   *  then primary). Ignored for two peer-loss timeouts at most (a peer that never takes the
   *  role leaves the decision to the hellos again). */
  handedOver: number | null;
  /** The primary's lane: opening (lane-open sent), on (the driver admits), stopping (its
   *  stopped report awaited: until then the core does not know every operation applied).
   *  `armed`: what the lane may have armed (what it was told since it opened; at a
   *  harvest's report, what that report says it wrote, with what it was told since the
   *  harvest before: `armedBefore`, between the two harvests, and `armedSince`, after the
   *  last): a clear keeps all of it hot (keepHot). `session` null: the lane of a primary
   *  alone (no peer attached: its writes and fsyncs applied here only, their marks reported
   *  like any lane's; laneWanted). */
  lane: {
    readonly session: number | null;
    readonly epoch: number;
    state: "opening" | "on" | "stopping";
    armed: Map<string, Set<number> | "all">;
    armedBefore: Map<string, Set<number> | "all">;
    armedSince: Map<string, Set<number> | "all">;
  } | null;
  nextLaneEpoch: number;
  /** After a lane stopped on its own, none opens before this time. */
  laneRetryMs: number;
  /** The secondary applies this lane's frames (`started`: the driver follows it and the
   *  primary heard so; until then the core's operations received before it are applying).
   *  While set, every operation of the core is acknowledged once applied, whatever `ack`:
   *  the lane's follower applies beside the disk port, so the primary must not admit a lane
   *  write before the core's operations ahead of it are on this disk. */
  followLane: { readonly session: number; readonly epoch: number; started: boolean } | null;
  witness: { epoch: number; purpose: "alone" | "promote" } | null;
  /** The witness answered: the pause before acting on it (due then; `recheck`: armed
   *  again at once because it came late). */
  grace: { readonly purpose: "alone" | "promote"; readonly dueMs: number; readonly recheck: boolean } | null;
  witnessEpoch: number;
  // Secondary.
  follow: Follow | null;
  promoteWhenDrained: boolean;
  /** The session this node stopped following to take over (takeOver): if it does not
   *  take over after all, the primary, which may never have lost it, is told (detach). */
  abandoned: number | null;
  /** Running since this node was last primary or an up-to-date secondary (see HelloSummary). */
  continuous: boolean;
  startAfterStop: boolean;
  /** start_second has run (or is asked for) since this node became secondary: stop_second
   *  runs before whatever it does next. */
  secondUp: boolean;
  /** This node's resources (the `resources` input), sent with its beats. */
  resources: readonly (readonly [string, "init" | "up" | "down"])[];
  /** The peer's, from its last beat; null while it is not heard. */
  peerResources: readonly (readonly [string, "init" | "up" | "down"])[] | null;
  /** Why this node waits for a resource (the `hold` input), or null. */
  hold: string | null;
  /** The role the last `transition` announced (SafeKit's "every major state change"). */
  announcedRole: MirrorRole;
  /** start_sec has run (or is asked for): the node became SECOND or a Ready ALONE, and has
   *  been SECOND or ALONE since; stop_sec runs when it is neither. */
  secUp: boolean;
  /** Starts of the module so far: a `<tocheck>` answer of an earlier start is ignored. */
  starts: number;
  /** The last reason the peer could not be paired with (its directories differ), logged once. */
  mismatch: string | null;
  /** While a start reads its `<tocheck>` paths: the metadata loaded, what is still asked
   *  and what was found missing (or unreadable, with its error). */
  checking: { readonly meta: MirrorMeta | null; left: number; readonly missing: string[] } | null;
  /** false after a disk failure, until the retry timer: the primary must not attach this node yet. */
  attachable: boolean;
  /** The last attach session received from the peer (accepted or not). */
  seenSession: number | null;
  // Scripts.
  /** `current`: the script running, with its arguments, and whether it runs with force. */
  job: { names: ScriptCall[]; then: Continuation; running: number | null; current?: { readonly script: string; readonly args: readonly string[]; readonly force: boolean } } | null;
  nextScriptId: number;
  loops: number[];
  reported: string;
  /** The summary last sent to the peer, and its key. */
  sent: HelloSummary | null;
  sentKey: string;
  /** The summary's dirty map, made from `of` (coarsenToFit walks every block): a node
   *  undecided with a beating peer makes a summary at every beat. */
  summaryDirty: { readonly of: DirtyMap; readonly entries: HelloSummary["dirty"] } | null;
  readonly stats: MirrorStats;
}

/** A path written since the last clear keeps the hot extents it wrote within this many
 *  checkpoint periods (checkpointMs); hotSeen's extent for a whole entry. */
const hotKeepClears = 4;
const wholeEntry = -1;

/** Messages a secondary holds while it keeps a split brain's losing changes aside (the
 *  primary's writes wait for their acknowledgements meanwhile, a resync for its acks). */
const heldMessagesMax = 100_000;

const isPrimaryRole = (role: MirrorRole): boolean => role === "ALONE" || role === "PRIM";

/** `bootId` names the host's boot (it changes when the host restarts, not when the service does). */
export function initMirror(config: MirrorConfig, incarnation: number, bootId: string): Mirror {
  assert(config.self !== config.peer, "a mirror's two nodes must differ");
  assert(config.blockSize > 0 && Number.isInteger(config.blockSize), `block size ${config.blockSize}`);
  return {
    config,
    incarnation,
    bootId,
    phase: "stopped",
    why: "",
    meta: newMeta(),
    metaVersion: 0,
    metaDone: 0,
    metaFailed: false,
    metaRetry: [],
    metaWaiters: [],
    inheritFlush: null,
    metaDeferred: false,
    nextTag: 1,
    tags: new Map(),
    peerBeatMs: null,
    pulseDueMs: 0,
    pulseRecheck: false,
    peerAlive: false,
    peerIncarnation: null,
    peerRole: "STOP",
    peerGen: null,
    peerBeatGen: null,
    peerBeatRole: null,
    askedMs: -1_000_000,
    streamUp: false,
    peerHello: null,
    yielding: false,
    fullsync: false,
    app: "stopped",
    accepting: false,
    dispatching: true,
    vip: false,
    link: null,
    nextSession: 1,
    held: [],
    opSeq: 0,
    pending: new Map(),
    pathSeq: new Map(),
    pathTouched: new Map(),
    pathHeld: new Map(),
    hotTouched: new Set(),
    hotSeen: new Map(),
    fence: null,
    outdateRefused: null,
    genShared: false,
    handedOver: null,
    lane: null,
    nextLaneEpoch: 1,
    laneRetryMs: 0,
    followLane: null,
    witness: null,
    grace: null,
    witnessEpoch: 0,
    follow: null,
    promoteWhenDrained: false,
    abandoned: null,
    continuous: false,
    startAfterStop: false,
    secondUp: false,
    resources: [],
    peerResources: null,
    hold: null,
    announcedRole: "STOP",
    secUp: false,
    starts: 0,
    mismatch: null,
    checking: null,
    attachable: true,
    seenSession: null,
    job: null,
    nextScriptId: 1,
    loops: [],
    reported: "",
    sent: null,
    sentKey: "",
    summaryDirty: null,
    stats: { resyncBlockBytes: 0, resyncPaths: 0, resyncs: 0, fullResyncs: 0, replicatedOps: 0, completed: 0, metaWrites: 0, laneOps: 0 },
  };
}

/** The role and readiness operators see (SafeKit's states). */
export function roleOf(s: Mirror): { role: MirrorRole; readiness: MirrorReadiness } {
  switch (s.phase) {
    case "stopped":
      return { role: "STOP", readiness: "NotReady" };
    case "loading":
    case "starting":
      return { role: "STOP", readiness: "Transient" };
    case "joining":
    case "promoting":
      return { role: "WAIT", readiness: "Transient" };
    case "waiting":
      return { role: "WAIT", readiness: "NotReady" };
    case "primary":
      return { role: s.link === null ? "ALONE" : "PRIM", readiness: s.app === "running" && s.accepting && s.dispatching ? "Ready" : "Transient" };
    case "handing-over":
      return { role: s.link === null ? "ALONE" : "PRIM", readiness: "Transient" };
    case "secondary":
      // Not up to date while the primary beats in a generation this node lacks: it went on
      // without it (this node's heartbeats were late, or it stalled) and has not attached
      // it again yet (a stalled secondary said Ready, and its peer's power loss was not
      // counted as a double failure).
      return { role: "SECOND", readiness: s.follow === null ? "NotReady" : s.meta.consistent && s.continuous && (s.peerGen === null || s.peerGen === s.meta.gen || s.meta.history.includes(s.peerGen)) ? "Ready" : "Transient" };
    case "stopping":
      return { role: "STOP", readiness: "Transient" };
    default:
      return unreachable(s.phase);
  }
}

/** One step: the input changes `s` in place; the effects are for the runtime, in order. */
export function stepMirror(s: Mirror, nowMs: number, input: MirrorInput): { state: Mirror; effects: MirrorEffect[] } {
  const out: MirrorEffect[] = [];
  const step = new Step(s, nowMs, out);
  step.handle(input);
  step.reconcileLane();
  step.announceIdle();
  step.report();
  return { state: s, effects: out };
}

class Step {
  readonly s: Mirror;
  readonly now: number;
  readonly out: MirrorEffect[];

  constructor(s: Mirror, now: number, out: MirrorEffect[]) {
    this.s = s;
    this.now = now;
    this.out = out;
  }

  // ---- plumbing ----

  log(level: LogLevel, event: string, fields: Record<string, string | number | boolean | null> = {}): void {
    this.out.push({ kind: "log", entry: { level, event, fields: { module: this.s.config.module, ...fields } } });
  }

  tag(tag: Tag): number {
    const id = this.s.nextTag++;
    this.s.tags.set(id, tag);
    return id;
  }

  send(message: MirrorMessage): void {
    if (this.s.streamUp) this.out.push({ kind: "send", message });
  }

  persist(then?: (step: Step) => void): void {
    const version = ++this.s.metaVersion;
    this.s.stats.metaWrites++;
    if (then !== undefined) this.s.metaWaiters.push({ version, then });
    // Written whole once the flush is done (the latest version covers the earlier ones).
    if (this.s.inheritFlush !== null) this.s.metaDeferred = true;
    else this.out.push({ kind: "persist-meta", version, meta: this.s.meta });
  }

  /** A node becoming primary makes its tree durable before its metadata may say so (a new
   *  generation, its last role): what it applied as a secondary is in its page cache only,
   *  and its peer, which has it, must not lose to a generation that lost it in a power cut
   *  (the fuzzer found a secondary promoted, powered off at once, then elected as newer,
   *  resyncing its peer's acknowledged writes away). */
  flushInherited(): void {
    const s = this.s;
    if (s.inheritFlush !== null) return;
    s.inheritFlush = this.tag({ t: "inherit-flush" });
    this.out.push({ kind: "apply", tag: s.inheritFlush, op: { kind: "fsync", path: null } });
  }

  setMeta(meta: MirrorMeta, then?: (step: Step) => void): void {
    this.s.meta = meta;
    this.persist(then);
  }

  /** setMeta for a continuation that needs the metadata durable (a new generation this
   *  node will act on alone): after a failed write, the metadata is written again every
   *  retryMs, and `then` waits for one that succeeds. */
  setMetaDurably(meta: MirrorMeta, then: (step: Step) => void): void {
    this.setMeta(meta, (step) => step.whenDurable(then));
  }

  whenDurable(then: (step: Step) => void): void {
    const s = this.s;
    // The latest write done failed: the metadata on disk may be older than this node acts on.
    if (!s.metaFailed) {
      then(this);
      return;
    }
    if (s.metaRetry.length === 0) {
      this.log("error", "mirror.meta_retry", { gen: s.meta.gen, afterMs: s.config.retryMs });
      this.out.push({ kind: "timer-arm", timer: "meta-retry", afterMs: s.config.retryMs });
    }
    s.metaRetry.push(then);
  }

  setVip(up: boolean): void {
    if (this.s.vip === up) return;
    this.s.vip = up;
    this.out.push({ kind: "vip", up });
  }

  setAccepting(on: boolean): void {
    if (this.s.accepting === on) return;
    this.s.accepting = on;
    this.out.push({ kind: "accepting", on });
  }

  report(): void {
    const { role, readiness } = roleOf(this.s);
    const key = `${role}/${readiness}/${this.s.meta.gen}`;
    if (key === this.s.reported) return;
    this.s.reported = key;
    this.out.push({ kind: "role", role, readiness, gen: this.s.meta.gen });
  }

  summary(): HelloSummary {
    const { role } = roleOf(this.s);
    const meta = this.s.meta;
    // Within a frame: coarser when it would not fit (covering every mark).
    if (this.s.summaryDirty?.of !== meta.dirty) this.s.summaryDirty = { of: meta.dirty, entries: [...coarsenToFit(meta.dirty, this.s.config.summaryDirtyBytesMax ?? summaryDirtyBytesMax)] };
    return {
      incarnation: this.s.incarnation,
      role,
      gen: meta.gen,
      history: meta.history,
      consistent: meta.consistent,
      lastRole: meta.lastRole,
      dirtyBase: meta.dirtyBase,
      dirty: this.s.summaryDirty.entries,
      yielding: this.s.yielding,
      fullsync: this.s.fullsync,
      continuous: this.s.continuous,
      cacheLost: this.s.meta.cacheLost,
      // A node held by a resource can be neither primary nor attached.
      attachable: this.s.attachable && this.s.hold === null,
      held: this.s.hold !== null,
      seenSession: this.s.seenSession,
      layout: this.s.config.layout ?? [],
    };
  }

  /** Why this node cannot pair with a peer that sent `peer`, or null when it can. */
  layoutMismatch(peer: HelloSummary): string | null {
    const mine = this.s.config.layout ?? [];
    if (sameLayout(mine, peer.layout)) return null;
    return `${this.s.config.peer} replicates other directories (here: ${describeLayout(mine)}; there: ${describeLayout(peer.layout)}): list the same <replicated> directories in the same order on both nodes, then restart the module`;
  }

  /** Whether this node waits for a decision with its peer. */
  undecided(): boolean {
    const s = this.s;
    return s.phase === "joining" || s.phase === "waiting" || (s.phase === "secondary" && s.follow === null) || (s.phase === "primary" && s.link === null && s.app === "running");
  }

  /** Asks the peer for its summary (at most once per pulse). */
  askHello(): void {
    const s = this.s;
    if (!s.streamUp || this.now - s.askedMs < s.config.pulseMs) return;
    s.askedMs = this.now;
    this.send({ kind: "hello", summary: this.summary(), ask: true });
  }

  /** Tells the peer this node's summary when it changed (or always, `force`): the
   *  decision uses the summaries as sent, so both nodes decide on the same two. */
  hello(force = false): void {
    const s = this.s;
    if (!s.streamUp) return;
    const summary = this.summary();
    const key = [summary.role, summary.gen, summary.consistent, summary.lastRole, summary.yielding, summary.fullsync, summary.continuous, summary.cacheLost, summary.attachable, summary.held, summary.seenSession, summary.dirtyBase, summary.dirty.length].join("|");
    if (!force && key === s.sentKey) return;
    s.sentKey = key;
    s.sent = summary;
    this.send({ kind: "hello", summary });
  }

  /** This node has just become secondary: start_second (SafeKit's), once per stint. */
  enterSecond(): void {
    const s = this.s;
    if (s.secondUp) return;
    s.secondUp = true;
    this.queueScripts(["start_second"]);
  }

  /** Scripts that nothing waits for: run now, or after those under way. */
  queueScripts(names: ScriptCall[]): void {
    if (names.length === 0) return;
    if (this.s.job === null) this.runScripts(names, { k: "second-scripts" });
    else this.s.job.names.push(...names);
  }

  /** The scripts that end a stint as secondary (stop_second), to run before whatever
   *  comes next; none if it was not secondary. */
  leaveSecond(): string[] {
    const s = this.s;
    if (!s.secondUp) return [];
    s.secondUp = false;
    return ["stop_second"];
  }

  /** SafeKit's scripts for a change of the role operators see since the last announced:
   *  stop_sec when the node is no longer SECOND or ALONE, `transition` (from, to, action),
   *  start_sec when it became SECOND or a Ready ALONE. Run before any other script that
   *  follows the change (none when the role has not changed). */
  announce(): ScriptCall[] {
    const s = this.s;
    const { role, readiness } = roleOf(s);
    const calls: ScriptCall[] = [];
    if (s.secUp && role !== "SECOND" && role !== "ALONE") {
      s.secUp = false;
      calls.push("stop_sec");
    }
    if (role !== s.announcedRole) {
      const action = role === "STOP" ? "stop" : role === "WAIT" && s.announcedRole !== "STOP" ? "stopwait" : "start";
      calls.push({ name: "transition", args: [s.announcedRole, role, action] });
      s.announcedRole = role;
    }
    if (!s.secUp && (role === "SECOND" || (role === "ALONE" && readiness === "Ready"))) {
      s.secUp = true;
      calls.push("start_sec");
    }
    return calls;
  }

  /** Takes back the announcements queued in `names` and not yet run: the next announce()
   *  says the net change from what last ran, so a role that changed and changed back while
   *  they waited is not announced out of order (invariant M8). */
  takeBackAnnouncements(names: ScriptCall[]): void {
    const s = this.s;
    let role: MirrorRole | null = null;
    let secUp: boolean | null = null;
    const kept: ScriptCall[] = [];
    for (const call of names) {
      if (typeof call !== "string") role ??= call.args[0];
      else if (call === "start_sec" || call === "stop_sec") secUp ??= call === "stop_sec";
      else kept.push(call);
    }
    if (role !== null) s.announcedRole = role;
    if (secUp !== null) s.secUp = secUp;
    names.splice(0, names.length, ...kept);
  }

  /** Cancels the scripts queued and not yet run. Announcements are taken back, and a
   *  start_second that never ran owes no stop_second (one whose start_second ran stays
   *  owed: leaveSecond() gives it again). */
  dropQueued(names: ScriptCall[]): void {
    const s = this.s;
    this.takeBackAnnouncements(names);
    let secondUp: boolean | null = null;
    for (const call of names) if (call === "start_second" || call === "stop_second") secondUp ??= call === "stop_second";
    if (secondUp !== null) s.secondUp = secondUp;
    names.length = 0;
  }

  /** After every step: a change of role with no script under way is announced now. */
  announceIdle(): void {
    if (this.s.job !== null) return;
    this.queueScripts(this.announce());
  }

  runScripts(names: ScriptCall[], then: Continuation): void {
    const job = this.s.job;
    if (job !== null && job.then.k === "second-scripts") {
      // The secondary's scripts are under way: these follow them.
      job.names.push(...names);
      job.then = then;
      return;
    }
    assert(job === null, `scripts ${names.join(",")} asked while ${job?.names.join(",")} run`);
    if (!this.s.config.scripts) {
      this.continueWith(then);
      return;
    }
    this.s.job = { names: [...names], then, running: null };
    this.nextScript();
  }

  nextScript(): void {
    const job = this.s.job!;
    // A change of role announced before the scripts that follow it; start_sec after them.
    this.takeBackAnnouncements(job.names);
    const announced = this.announce();
    const starts = announced.filter((call) => call === "start_sec");
    job.names.unshift(...announced.filter((call) => call !== "start_sec"));
    job.names.push(...starts);
    const call = job.names.shift();
    if (call === undefined) {
      this.s.job = null;
      this.continueWith(job.then);
      return;
    }
    const id = this.s.nextScriptId++;
    job.running = id;
    const { role } = roleOf(this.s);
    const name = typeof call === "string" ? call : call.name;
    const args = typeof call === "string" ? [role, name.startsWith("stop") || name === "poststop" ? "STOP" : role, name.startsWith("stop") ? "stop" : "start"] : [...call.args];
    job.current = { script: name, args, force: false };
    this.out.push({ kind: "run-script", run: { id, script: name, args, env: this.s.config.scriptEnv, timeoutMs: this.s.config.scriptTimeoutMs } });
  }

  continueWith(then: Continuation): void {
    switch (then.k) {
      case "started":
        this.joined();
        return;
      case "prim-started":
        this.primStarted();
        return;
      case "prim-stopped":
        this.primStopped(then.then);
        return;
      case "second-scripts":
        return;
      case "stopped":
        this.s.phase = "stopped";
        // A witness check of the primary it was has nothing left to decide.
        this.s.witness = null;
        this.s.grace = null;
        this.out.push({ kind: "timer-cancel", timer: "pulse" }, { kind: "timer-cancel", timer: "join" }, { kind: "timer-cancel", timer: "checkpoint" }, { kind: "timer-cancel", timer: "retry" });
        this.log("info", "mirror.stopped");
        if (this.s.startAfterStop) {
          this.s.startAfterStop = false;
          this.command("start", false);
        }
        return;
      default:
        unreachable(then);
    }
  }

  // ---- inputs ----

  handle(input: MirrorInput): void {
    const s = this.s;
    switch (input.kind) {
      case "command":
        this.command(input.command, input.fullsync === true);
        return;
      case "meta-loaded": {
        if (s.phase !== "loading" || s.checking !== null) return;
        const toCheck = s.config.toCheck ?? [];
        if (toCheck.length === 0) {
          this.metaLoaded(input.meta);
          return;
        }
        s.checking = { meta: input.meta, left: toCheck.length, missing: [] };
        for (const path of toCheck) this.out.push({ kind: "read", tag: this.tag({ t: "tocheck", start: s.starts, path }), path, blocks: [] });
        return;
      }
      case "meta-persisted":
        s.metaDone = Math.max(s.metaDone, input.version);
        s.metaFailed = input.result !== null;
        if (input.result !== null) {
          this.log("error", "mirror.meta_failed", { error: input.result, version: input.version });
          // Marks not durable: what would be dispatched on the strength of this write (or of
          // marks in memory since it) fails with its error, unapplied, as on a local disk.
          this.failHeldUpTo(input.version, input.result);
        }
        while (s.metaWaiters.length > 0 && s.metaWaiters[0]!.version <= s.metaDone) s.metaWaiters.shift()!.then(this);
        this.drainHeld();
        return;
      case "timer":
        this.timer(input.timer);
        return;
      case "beat":
        this.beat(input.message, input.receivedAtMs);
        return;
      case "stream":
        this.stream(input.connected);
        return;
      case "message":
        this.message(input.message);
        return;
      case "intercepted":
        this.intercepted(input.id, input.op);
        return;
      case "disk-done":
        this.diskDone(input.tag, input.result);
        return;
      case "read-done":
        this.readDone(input.tag, input.result);
        return;
      case "preserved": {
        const tag = s.tags.get(input.tag);
        s.tags.delete(input.tag);
        if (tag?.t !== "preserve") return;
        this.preserved(tag.session, tag.paths, input.result);
        return;
      }
      case "script-done":
        this.scriptDone(input.id, input.outcome);
        return;
      case "probe-result":
        this.witnessResult(input.epoch, input.up, input.detail);
        return;
      case "lane-report":
        this.laneReport(input.report);
        return;
      case "hold":
        this.hold(input.why);
        return;
      case "resources":
        this.s.resources = [...input.resources].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
        return;
      case "app-failed":
        this.appFailed(input.why, input.action ?? "restart");
        return;
      default:
        unreachable(input);
    }
  }

  /** The metadata is loaded (and the `<tocheck>` paths found): the start goes on. */
  metaLoaded(loadedMeta: MirrorMeta | null): void {
    const s = this.s;
    const loaded = loadedMeta ?? newMeta();
    // Written under another boot of this host: the page cache of then is gone.
    const rebooted = loaded.bootId !== null && loaded.bootId !== s.bootId && loaded.gen !== null;
    // The hot extents of before count as dirty whole: what they cover may have been
    // applied here and not on the peer (or the other way round) before the stop.
    s.meta = { ...loaded, dirty: unionDirty(loaded.dirty, expandHot(loaded.hot, s.config.hotExtentBlocks)), hot: emptyDirty, bootId: s.bootId, cacheLost: loaded.cacheLost || rebooted };
    const layout = s.config.layout ?? [];
    const relaid = loaded.gen !== null && loaded.layout !== null && !sameLayout(loaded.layout, layout);
    if (relaid) {
      // The marks name paths in directories listed otherwise: they cannot say what changed
      // where. Whichever node is primary next, the resync is a full one.
      this.log("warn", "mirror.layout_changed", { was: describeLayout(loaded.layout!), now: describeLayout(layout), then: "the next resync copies everything" });
      s.meta = { ...s.meta, dirtyBase: null, dirty: emptyDirty };
    }
    s.meta = { ...s.meta, layout };
    if ((rebooted && !loaded.cacheLost) || relaid || (loaded.gen !== null && loaded.layout === null)) this.persist();
    // The service before this one, on this same boot, was primary: if it died (a crash)
    // its application may still run, on the dead mount, holding what this start needs
    // (a lock, a port). stop_prim first (docs/mirror.md, States).
    const leftPrimary = !rebooted && loaded.gen !== null && (loaded.lastRole === "ALONE" || loaded.lastRole === "PRIM");
    s.phase = "starting";
    this.log("info", "mirror.meta", { gen: s.meta.gen, consistent: s.meta.consistent, lastRole: s.meta.lastRole, dirtyPaths: s.meta.dirty.size });
    // What the peer said before this start may be stale: ask it again.
    s.peerHello = null;
    s.sentKey = "";
    this.askHello();
    this.armPulse(s.config.pulseMs);
    if (leftPrimary) this.log("info", "mirror.cleanup", { why: "the previous service of this boot was primary: stop_prim before starting (its application may still run)" });
    this.runScripts(leftPrimary ? ["stop_prim", "prestart", "start_both"] : ["prestart", "start_both"], { k: "started" });
  }

  /** One `<tocheck>` path read at a start: once all are, the start goes on or the module stops. */
  checked(start: number, path: string, result: PathSnapshot | DiskError): void {
    const s = this.s;
    const checking = s.checking;
    if (checking === null || start !== s.starts || s.phase !== "loading") return;
    if (typeof result === "string") checking.missing.push(`${path} (${result})`);
    else if (result.kind === "absent") checking.missing.push(path);
    checking.left -= 1;
    if (checking.left > 0) return;
    s.checking = null;
    if (checking.missing.length === 0) {
      this.metaLoaded(checking.meta);
      return;
    }
    // Nothing has run yet: no script to stop, nothing replicated.
    s.phase = "stopped";
    s.why = `<tocheck> missing in the replicated directory: ${checking.missing.join(", ")} (is its file system mounted?); start again once there`;
    this.log("error", "mirror.tocheck_missing", { missing: checking.missing.join(", ") });
  }

  command(command: MirrorCommand, fullsync: boolean): void {
    const s = this.s;
    switch (command) {
      case "start":
        const then = s.job?.then;
        if (s.phase === "stopping" || (s.phase === "handing-over" && then?.k === "prim-stopped" && (then.then === "stop" || then.then === "handover-stop"))) {
          // Asked while stopping: start again once stopped.
          s.startAfterStop = true;
          return;
        }
        if (s.phase !== "stopped") return;
        s.phase = "loading";
        s.starts += 1;
        s.checking = null;
        // Continuations of the service before (each would check its phase, but a new
        // promotion's would look like theirs).
        s.metaRetry = [];
        s.continuous = false;
        s.attachable = true;
        s.yielding = false;
        s.fullsync = false;
        this.log("info", "mirror.start");
        this.out.push({ kind: "load-meta" });
        return;
      case "stop":
        this.stopModule("operator stop");
        return;
      case "prim":
      case "primforce":
        this.prim(command === "primforce", fullsync);
        return;
      case "second": {
        if (s.phase === "loading") return;
        if (s.phase === "stopped") {
          // A stopped node started to be secondary (SafeKit's way back for a node whose
          // data should be replaced: `second fullsync`).
          this.command("start", false);
          s.yielding = true;
          s.fullsync = fullsync;
          this.log("warn", "mirror.second", { fullsync, then: "started" });
          return;
        }
        s.yielding = true;
        s.fullsync = fullsync;
        this.log("warn", "mirror.second", { fullsync });
        if (s.phase === "primary") {
          this.leavePrimary("wait", "operator second");
          return;
        }
        const follow = s.follow;
        if (s.phase === "secondary" && follow !== null && fullsync) {
          // Already secondary: it stops following (durably not up to date first) and asks
          // to be attached again, with everything resent.
          s.follow = null;
          s.why = "second fullsync: waiting for the primary to resend everything";
          this.setMeta({ ...s.meta, consistent: false }, (step) => {
            step.send({ kind: "detach", session: follow.session, reason: "the operator asked for a full resync (second fullsync)" });
            step.hello(true);
          });
          return;
        }
        this.hello();
        this.evaluate();
        return;
      }
      case "swap":
        if (s.phase !== "primary" || s.link === null || !s.link.inSync || s.app !== "running") {
          this.log("warn", "mirror.swap_refused", { why: s.phase !== "primary" ? "not primary" : s.link === null ? "no secondary" : "the secondary is not up to date yet" });
          return;
        }
        this.leavePrimary("handover-swap", "swap");
        return;
      case "restart":
        if (s.phase === "primary" && s.app === "running" && s.job === null) this.restartApp("operator restart");
        return;
      default:
        unreachable(command);
    }
  }

  prim(force: boolean, fullsync: boolean): void {
    const s = this.s;
    if (s.phase !== "joining" && s.phase !== "waiting" && s.phase !== "secondary") {
      this.log("warn", "mirror.prim_refused", { why: `the module is ${roleOf(s).role}` });
      return;
    }
    if (s.phase === "secondary" && s.peerAlive) {
      this.log("warn", "mirror.prim_refused", { why: "the peer is primary: use swap" });
      return;
    }
    if (s.hold !== null) {
      this.log("warn", "mirror.prim_refused", { why: `this node waits for ${s.hold} (action wait)` });
      return;
    }
    if (!force && s.meta.gen !== null && !s.meta.consistent) {
      this.log("warn", "mirror.prim_refused", { why: "data not up to date after an interrupted resync: primforce overrides" });
      return;
    }
    this.log("warn", force ? "mirror.primforce" : "mirror.prim", { gen: s.meta.gen, consistent: s.meta.consistent });
    // primforce copies everything: what the forced node holds is the truth from now on.
    s.fullsync = fullsync || force;
    s.yielding = false;
    this.promote(force ? "primforce" : "prim");
  }

  // ---- start, join, decide ----

  joined(): void {
    const s = this.s;
    s.phase = "joining";
    s.why = "listening for the peer";
    this.out.push({ kind: "timer-arm", timer: "join", afterMs: s.config.joinMs });
    this.hello();
    this.evaluate();
  }

  /** With no peer heard after joinMs: start alone only if this node was alone last. */
  joinTimedOut(): void {
    const s = this.s;
    if (s.phase !== "joining") return;
    // Heard: the hello decides; unless the peer's directories differ (no peer to pair with).
    const mismatch = s.peerHello === null ? null : this.layoutMismatch(s.peerHello);
    if (s.peerAlive && mismatch === null) return;
    const meta = s.meta;
    if (meta.gen !== null && meta.consistent && meta.lastRole === "ALONE") {
      this.log("info", "mirror.start_alone", { gen: meta.gen });
      // Its generation is its own: it went on alone last, and the peer never followed since.
      this.becomePrimary(false);
      return;
    }
    this.wait(mismatch ?? (meta.gen === null ? "a new mirror: run prim on the node whose data is right" : !meta.consistent ? "data not up to date (an interrupted resync or outdated): waiting for the other node; primforce overrides" : "data may be not up to date: waiting for the other node, or force with prim"));
  }

  wait(why: string): void {
    const s = this.s;
    if (s.phase !== "waiting" || s.why !== why) this.log("warn", "mirror.wait", { why });
    // The phase first: the scripts queued announce the role they leave it in.
    s.phase = "waiting";
    s.why = why;
    this.queueScripts(this.leaveSecond());
    this.hello();
  }

  /** Decides roles once both nodes' summaries are known and neither is settled with the other. */
  evaluate(): void {
    const s = this.s;
    const peer = s.peerHello;
    if (peer === null || !s.streamUp) return;
    if (peer.role === "STOP") return;
    // A hello older than the peer's last heartbeat (its stream may be dead and not yet
    // known to be): ask again rather than decide on it.
    if (s.peerAlive && (s.peerBeatGen !== peer.gen || (s.peerBeatRole !== null && isPrimaryRole(s.peerBeatRole) !== isPrimaryRole(peer.role)))) {
      this.askHello();
      return;
    }
    this.hello();
    const mismatch = this.layoutMismatch(peer);
    if (mismatch !== null) {
      // Not a peer to pair with: a primary goes on alone, others decide as without one.
      if (s.mismatch !== mismatch) this.log("error", "mirror.layout_mismatch", { why: mismatch });
      s.mismatch = mismatch;
      if (s.phase !== "primary") s.why = mismatch;
      return;
    }
    const mine = s.sent ?? this.summary();
    const verdict = decide({ node: s.config.self, summary: mine }, { node: s.config.peer, summary: peer }, s.config.defaultPrim, s.config.splitBrain);
    if (s.phase === "primary") {
      if (verdict.primary === s.config.self) {
        if (s.link === null && (peer.role === "WAIT" || peer.role === "SECOND") && peer.attachable && (s.app === "running" || (s.app === "starting" && this.awaitingPeer()))) {
          // The lane alone first stops, and the attach comes with its report (laneReport):
          // what it wrote since its last report is known only then, and a resync planned
          // without it would leave those blocks different on the peer.
          if (s.lane !== null && s.lane.session === null) {
            this.stopLane();
            return;
          }
          this.attach(peer);
        }
        return;
      }
      // Both primary at the same generation is a handover in flight, not a split brain.
      if (peer.gen === s.meta.gen && isPrimaryRole(peer.role)) {
        this.askHello();
        return;
      }
      // A split brain this node loses (or leaves to an operator).
      this.log("error", "mirror.splitbrain", { why: verdict.why });
      this.leavePrimary("wait", verdict.why);
      return;
    }
    if (s.phase === "joining" || s.phase === "waiting" || (s.phase === "secondary" && s.follow === null)) {
      if (s.hold !== null) {
        this.wait(this.holdWhy());
        return;
      }
      if (verdict.primary === s.config.self) {
        this.log("info", "mirror.elected", { why: verdict.why });
        s.yielding = false;
        this.becomePrimary();
      } else if (verdict.primary === s.config.peer) {
        if (s.phase !== "secondary") {
          s.phase = "secondary";
          s.why = verdict.why;
          this.enterSecond();
          this.hello();
        }
      } else {
        this.wait(verdict.why);
      }
    }
  }

  // ---- primary ----

  promote(why: string): void {
    const s = this.s;
    if (s.hold !== null) {
      this.wait(this.holdWhy());
      return;
    }
    this.flushInherited();
    s.phase = "promoting";
    s.abandoned = null;
    const gen = nextGen(s.meta, s.config.self, s.peerGen);
    const base = s.meta.gen === null ? gen : s.meta.dirtyBase;
    this.log("warn", "mirror.new_generation", { gen, from: s.meta.gen, why });
    // Not primary before the new generation is durable: back from a crash with the older
    // one, this node would not look ahead of its peer, its writes lost to a resync.
    this.setMetaDurably({ ...withNewGen(s.meta, gen, "ALONE"), consistent: true, dirtyBase: base }, (step) => {
      if (s.phase === "promoting") step.becomePrimary(false);
    });
  }

  /** `genShared`: its generation may be the peer's too (elected, handed the role by a swap),
   *  so what it completes before the peer follows starts a new one first. */
  becomePrimary(genShared = true): void {
    const s = this.s;
    if (s.hold !== null) {
      this.wait(this.holdWhy());
      return;
    }
    this.flushInherited();
    s.phase = "primary";
    s.genShared = genShared;
    s.handedOver = null;
    s.continuous = true;
    // Its tree is the reference from now on; and a node elected as primary is the last
    // one that was (lastRole), should both restart before it attached its peer.
    if (s.meta.cacheLost || s.meta.lastRole === "SECOND" || s.meta.lastRole === null) this.setMeta({ ...s.meta, cacheLost: false, lastRole: s.meta.lastRole === "ALONE" ? "ALONE" : "PRIM" });
    s.follow = null;
    s.dispatching = true;
    s.fence = null;
    s.app = "starting";
    this.setVip(true);
    // The application writes while it starts (a database recovers, writes its lock file).
    this.setAccepting(true);
    this.runScripts([...this.leaveSecond(), "start_prim"], { k: "prim-started" });
    this.hello();
    if (s.peerHello !== null && s.streamUp) this.evaluate();
  }

  primStarted(): void {
    const s = this.s;
    if (s.phase !== "primary") return;
    s.app = "running";
    this.setAccepting(true);
    this.log("info", "mirror.primary", { role: roleOf(s).role, gen: s.meta.gen });
    this.drainHeld();
    if (s.link === null) this.evaluate();
  }

  /** Stops the application and then goes where `then` says. */
  leavePrimary(then: "handover-swap" | "handover-stop" | "handover-wait" | "stop" | "wait", why: string): void {
    const s = this.s;
    this.log("info", "mirror.leave_primary", { then, why });
    s.phase = then === "stop" ? "stopping" : "handing-over";
    s.why = why;
    if (then === "wait") {
      // This node may no longer be the one whose data counts: nothing more is accepted.
      this.setAccepting(false);
      this.failHeld("EIO");
    }
    // Otherwise the application writes while it stops (a database's shutdown checkpoint),
    // replicated as before, until stop_prim has returned.
    if (s.link === null) {
      // Without a secondary nothing can confirm what was dispatched for one (a fencing or a
      // witness check in progress): those operations fail, so that the drain can end.
      s.fence = null;
      this.failUnconfirmed("EIO");
    } else {
      // Sent to an attachment lost since (the peer came back and was attached again during
      // the witness check): no answer comes, and going alone would have completed them,
      // which a node leaving the role does not. They fail, so that the drain can end (the
      // fuzzer found a stop waiting for ever); the new attachment's resync covers their paths.
      this.failUnconfirmed("EIO", s.link.session);
    }
    if (s.job !== null) {
      // A script is running: cancel the start that follows it (scripts nothing waits for
      // stay), stop the application if it started or may have, and continue after it.
      if (s.job.then.k !== "second-scripts") {
        this.dropQueued(s.job.names);
        s.job.names.push(...this.leaveSecond());
      }
      s.job.then = { k: "prim-stopped", then };
      if (s.app === "starting" || s.app === "running") s.job.names.push("stop_prim");
      s.app = "stopping";
      return;
    }
    s.app = "stopping";
    this.runScripts(["stop_prim"], { k: "prim-stopped", then });
  }

  primStopped(then: "handover-swap" | "handover-stop" | "handover-wait" | "stop" | "wait"): void {
    const s = this.s;
    s.app = "stopped";
    this.setAccepting(false);
    this.failHeld("EIO");
    this.setVip(false);
    if (this.busy()) {
      // Drain: operations already dispatched finish first (their completions come back).
      s.job = { names: [], then: { k: "prim-stopped", then }, running: null };
      return;
    }
    const link = s.link;
    if ((then === "handover-swap" || then === "handover-stop" || then === "handover-wait") && link !== null && link.inSync) {
      this.send({ kind: "handover", session: link.session, reason: then === "handover-swap" ? "swap" : "stop" });
      s.link = null;
      this.out.push({ kind: "timer-cancel", timer: "checkpoint" });
      this.setMeta({ ...s.meta, lastRole: "SECOND" });
      if (then === "handover-swap") {
        s.handedOver = this.now;
        s.peerHello = null;
        s.phase = "secondary";
        s.why = "swap";
        this.enterSecond();
        this.hello();
        return;
      }
    } else if (link !== null) {
      // Leaving a secondary that is not up to date: it must not take over.
      this.send({ kind: "detach", session: link.session, reason: "the primary stopped" });
      s.link = null;
    }
    if (then === "stop" || then === "handover-stop") {
      s.phase = "stopping";
      this.runScripts(["stop_both", "poststop"], { k: "stopped" });
      return;
    }
    if (then === "wait" || then === "handover-swap" || then === "handover-wait") {
      s.phase = "waiting";
      this.hello();
      this.evaluate();
    }
  }

  stopModule(why: string): void {
    const s = this.s;
    s.startAfterStop = false;
    switch (s.phase) {
      case "stopped":
      case "stopping":
        return;
      case "primary":
        this.leavePrimary(s.link !== null && s.link.inSync ? "handover-stop" : "stop", why);
        return;
      case "handing-over":
        if (s.job !== null && s.job.then.k === "prim-stopped") s.job.then = { k: "prim-stopped", then: "stop" };
        return;
      default:
        break;
    }
    this.log("info", "mirror.stop", { why });
    const follow = s.follow;
    s.follow = null;
    if (follow !== null) this.leaveFollow(follow, "the secondary stops");
    s.phase = "stopping";
    this.out.push({ kind: "timer-cancel", timer: "join" });
    if (s.job !== null) {
      this.dropQueued(s.job.names);
      s.job.then = { k: "stopped" };
      s.job.names.push(...this.leaveSecond(), "stop_both", "poststop");
      return;
    }
    this.runScripts([...this.leaveSecond(), "stop_both", "poststop"], { k: "stopped" });
  }

  restartApp(why: string): void {
    const s = this.s;
    this.log("warn", "mirror.restart", { why });
    s.app = "starting";
    // Stopping and starting the application again both write, replicated as before.
    this.runScripts(["stop_prim", "start_prim"], { k: "prim-started" });
  }

  appFailed(why: string, action: "restart" | "stopstart"): void {
    const s = this.s;
    if (action === "restart" ? s.phase !== "primary" || s.app !== "running" : s.phase === "stopped" || s.phase === "stopping" || s.phase === "loading" || s.startAfterStop) return;
    if (!this.loop(why)) return;
    if (action === "restart") {
      this.restartApp(why);
      return;
    }
    // SafeKit's stopstart: the whole module, so a primary's peer takes over.
    this.log("warn", "mirror.stopstart", { why });
    this.stopModule(`stopstart: ${why}`);
    s.startAfterStop = true;
  }

  /** Counts an automatic action toward maxloop; past it the module stops here (false). */
  loop(why: string): boolean {
    const s = this.s;
    s.loops = s.loops.filter((at) => s.config.loopIntervalMs === 0 || this.now - at < s.config.loopIntervalMs);
    s.loops.push(this.now);
    if (s.config.maxLoop > 0 && s.loops.length > s.config.maxLoop) {
      this.log("error", "mirror.maxloop", { why, loops: s.loops.length });
      this.stopModule(`maxloop: ${why}`);
      return false;
    }
    return true;
  }

  /** Why a held node waits, for `tandem state`. */
  holdWhy(): string {
    return `waiting for ${this.s.hold} (action wait)`;
  }

  hold(why: string | null): void {
    const s = this.s;
    const was = s.hold;
    if (was === why) return;
    s.hold = why;
    if (why === null) {
      this.log("info", "mirror.hold_over", { was: was ?? "" });
      // It decides again as at a start: with its peer, or alone if it was alone last.
      if (s.phase === "waiting") this.joined();
      else this.hello();
      return;
    }
    this.log("warn", "mirror.hold", { why });
    if (was !== null) {
      if (s.phase === "waiting") s.why = this.holdWhy();
      return;
    }
    if (s.phase === "stopped" || s.phase === "loading" || s.phase === "starting" || s.phase === "stopping") return;
    if (!this.loop(why)) return;
    switch (s.phase) {
      case "primary":
        this.leavePrimary(s.link !== null && s.link.inSync ? "handover-wait" : "wait", this.holdWhy());
        return;
      case "handing-over": {
        // A swap under way ends waiting, not as secondary.
        const then = s.job?.then;
        if (then?.k === "prim-stopped" && then.then === "handover-swap") s.job!.then = { k: "prim-stopped", then: "handover-wait" };
        return;
      }
      case "secondary": {
        const follow = s.follow;
        s.follow = null;
        if (follow !== null) this.leaveFollow(follow, `the secondary waits for ${why}`);
        this.wait(this.holdWhy());
        return;
      }
      default:
        this.wait(this.holdWhy());
    }
  }

  // ---- the write path ----

  intercepted(id: number, op: DiskOp): void {
    const s = this.s;
    // Accepting: primary, from start_prim to the end of stop_prim.
    if (!s.accepting) {
      this.out.push({ kind: "complete", id, result: s.phase === "secondary" ? "EROFS" : "EIO" });
      return;
    }
    if (op.kind === "link" && this.crossesExclusion(op.from, op.to)) {
      // A replicated name of a file written through one that is not (or the other way): as
      // across file systems, refused (ln says so, mail delivery falls back to a copy).
      this.out.push({ kind: "complete", id, result: "EXDEV" });
      return;
    }
    if (this.localOnly(op)) {
      // Not replicated: applied here, in order with the rest, and nothing else.
      s.held.push({ id, op, needs: 0, extents: emptyDirty, localOnly: true, asking: false });
      this.drainHeld();
      return;
    }
    let needs = 0;
    const marks = dirtyOf(op, s.config.blockSize);
    // Marked now, dispatched later: no checkpoint may clear these marks in between.
    for (const path of marks.keys()) s.pathHeld.set(path, (s.pathHeld.get(path) ?? 0) + 1);
    // The precise marks in memory; their extents durable before the operation is applied
    // (a metadata write only when an extent is new to the hot map).
    const own = coarsenDirty(marks, s.config.hotExtentBlocks);
    const extents = this.withAhead(op, own);
    const dirty = unionDirty(s.meta.dirty, marks);
    const hot = unionDirty(s.meta.hot, s.config.plantedBug === "ahead-unmarked" ? own : extents);
    const grew = hot !== s.meta.hot;
    if (dirty !== s.meta.dirty || grew) s.meta = { ...s.meta, dirty, hot };
    // After a failed metadata write the marks in memory may not be durable: written again.
    if (grew || (s.metaFailed && needs === 0)) {
      this.persist();
      needs = s.metaVersion;
    }
    // A name going away (unlinked, renamed over) may be one of a file's several: what was
    // written through it is the other names' too, and marked only under it. Those names are
    // asked for first, to be marked whole before the name goes (docs/mirror.md, "Hard links").
    const unnamed = op.kind === "unlink" ? op.path : op.kind === "rename" && op.from !== op.to ? op.to : null;
    s.held.push({ id, op, needs, extents, localOnly: false, asking: unnamed !== null });
    if (unnamed !== null) this.out.push({ kind: "read", tag: this.tag({ t: "other-names", id }), path: unnamed, blocks: [] });
    this.drainHeld();
  }

  /** A write's extents with those ahead of it (aheadOfWrite) when it follows a run of
   *  armed extents (the lane on) or, alone, of extents it wrote (no lane: every write
   *  takes the core): made hot by the same metadata write as its own, armed with them at
   *  dispatch. Only extents already hot when the write needs no metadata write. Alone, a
   *  sequential rewrite wrote a metadata record for each 1 MiB write (its 16 extents new
   *  to the hot map). */
  withAhead(op: DiskOp, extents: DirtyMap): DirtyMap {
    const s = this.s;
    if (op.kind !== "write") return extents;
    const own = extents.get(op.path);
    const hot = s.meta.hot.get(op.path);
    const armed = s.lane?.state === "on" ? s.lane.armed.get(op.path) : s.link === null ? s.hotSeen.get(op.path) : undefined;
    if (own === undefined || own.all || hot === undefined || hot.all || armed === undefined || armed === "all") return extents;
    // The write's extents, ascending (one write: a few, in one run).
    const written = [...own.blocks].sort((a, b) => a - b);
    const grows = written.some((extent) => !hot.blocks.has(extent));
    const extentBytes = s.config.blockSize * s.config.hotExtentBlocks;
    const ahead = aheadOfWrite(armed, hot.blocks, written, Math.max(1, Math.floor(aheadMaxBytes / extentBytes)), grows);
    if (ahead.length === 0) return extents;
    const out = new Map(extents);
    out.set(op.path, { all: false, blocks: new Set([...own.blocks, ...ahead]) });
    return out;
  }

  /** The other names of the file an operation held as `id` takes a name from: marked whole
   *  (durably, before it is dispatched), as what was written through that name. */
  otherNames(id: number, result: PathSnapshot | DiskError): void {
    const s = this.s;
    const entry = s.held.find((each) => each.id === id);
    if (entry === undefined || !entry.asking) return;
    entry.asking = false;
    const excludes = excluderOf(s.config.notReplicated);
    const others = typeof result !== "string" && result.kind === "file" ? (result.links ?? []).filter((each) => !excludes(each)) : [];
    if (others.length > 0) {
      const marks: DirtyMap = new Map(others.map((each) => [each, { all: true, blocks: new Set<number>() }]));
      for (const path of marks.keys()) s.pathHeld.set(path, (s.pathHeld.get(path) ?? 0) + 1);
      const extents = coarsenDirty(marks, s.config.hotExtentBlocks);
      entry.extents = unionDirty(entry.extents, extents);
      const dirty = unionDirty(s.meta.dirty, marks);
      const hot = unionDirty(s.meta.hot, extents);
      if (dirty !== s.meta.dirty || hot !== s.meta.hot) {
        s.meta = { ...s.meta, dirty, hot };
        this.persist();
        entry.needs = s.metaVersion;
      }
      // A resync under way sends them too: what went through the name may never have
      // reached the peer's file of the others (written while the peer lacked the name).
      const link = s.link;
      if (link !== null && !link.inSync) {
        // Its end may be announced already: not any more (as for a diverged operation).
        if (link.endSent) {
          link.endSent = false;
          this.send({ kind: "unsync", session: link.session });
        }
        for (const [path, mark] of marks) this.plan(link, path, mark);
        this.pumpResync();
      }
    }
    this.drainHeld();
  }

  /** One of the two paths is excluded from replication and the other is not. */
  crossesExclusion(a: string, b: string): boolean {
    if ((this.s.config.notReplicated?.length ?? 0) === 0) return false;
    const excludes = excluderOf(this.s.config.notReplicated);
    return excludes(a) !== excludes(b);
  }

  /** Every path of `op` is excluded from replication (an operation naming none, such as an
   *  fsync of the whole tree, is replicated). */
  localOnly(op: DiskOp): boolean {
    // Every intercepted operation asks: nothing to work out without rules.
    if ((this.s.config.notReplicated?.length ?? 0) === 0) return false;
    const paths = pathsOf(op);
    const excludes = excluderOf(this.s.config.notReplicated);
    return paths.length > 0 && paths.every((path) => excludes(path));
  }

  drainHeld(): void {
    const s = this.s;
    // Not while dispatching waits (a fence, a witness check): what decides then may not
    // let this node write alone at all.
    if (s.dispatching && this.writesAloneInSharedGen()) {
      // Its peer may take over while it is not attached (its secondary, when the
      // split-brain checker is on: cut off now, this node would write while the peer,
      // losing it, goes on with the witness): what it would complete alone waits for the
      // attach (made at once, start_prim running or not: evaluate), or for the peer's loss
      // and the witness.
      if (this.peerMayTakeOver()) {
        if (s.app === "starting" && s.peerHello !== null && s.streamUp) this.evaluate();
        return;
      }
      // What it completes now is on this node only: its peer must not look as recent. (Not
      // at the handover's loss: a stop that writes nothing more leaves the peer up to date.)
      s.genShared = false;
      const gen = nextGen(s.meta, s.config.self, s.peerGen);
      this.log("warn", "mirror.new_generation", { gen, from: s.meta.gen, why: "a write before the peer follows, in a generation it has too" });
      this.setMeta(withNewGen(s.meta, gen, "ALONE"));
      const first = s.held.find((entry) => !entry.localOnly)!;
      first.needs = Math.max(first.needs, s.metaVersion);
    }
    while (s.held.length > 0 && s.dispatching && s.accepting && !s.held[0]!.asking && s.held[0]!.needs <= s.metaDone) {
      const { id, op, extents, localOnly } = s.held.shift()!;
      this.dispatch(id, op, extents, localOnly);
    }
  }

  /** A primary whose generation its peer has too, the peer not attached: with the
   *  split-brain checker on, a peer that beats may take over on losing it (a secondary, a
   *  node taking the role over whose last beat said WAIT). Not one that is stopped, held by
   *  a resource, not up to date or without data, nor one of another layout. */
  peerMayTakeOver(): boolean {
    const s = this.s;
    if (s.config.witnesses.length === 0 || !s.peerAlive || s.peerBeatRole === "STOP" || s.mismatch !== null) return false;
    const peer = s.peerHello;
    return peer === null || (peer.held !== true && peer.consistent && peer.gen !== null);
  }

  /** Writes wait for the peer to follow (peerMayTakeOver): it is attached without waiting
   *  for start_prim to end. */
  awaitingPeer(): boolean {
    return this.writesAloneInSharedGen() && this.peerMayTakeOver();
  }

  /** A replicated operation is held while this primary has no secondary attached, in a
   *  generation its peer has too: completed now, it would be on this node only. */
  writesAloneInSharedGen(): boolean {
    const s = this.s;
    return s.genShared && s.link === null && s.held.some((entry) => !entry.localOnly);
  }

  /** The operations held for a metadata write up to `version` (or for none: their marks
   *  were in memory, perhaps only since a write that failed) complete with `error`. */
  failHeldUpTo(version: number, error: DiskError): void {
    const s = this.s;
    const failing = s.held.filter((entry) => !entry.localOnly && entry.needs <= version);
    if (failing.length === 0) return;
    const failed = new Set(failing);
    s.held.splice(0, s.held.length, ...s.held.filter((entry) => !failed.has(entry)));
    for (const { id, extents } of failing) {
      this.unhold(extents.keys());
      this.out.push({ kind: "complete", id, result: error });
    }
  }

  failHeld(error: DiskError): void {
    for (const { id, extents } of this.s.held.splice(0)) {
      this.unhold(extents.keys());
      this.out.push({ kind: "complete", id, result: error });
    }
  }

  unhold(marked: Iterable<string>): void {
    const s = this.s;
    for (const path of marked) {
      const count = (s.pathHeld.get(path) ?? 1) - 1;
      if (count > 0) s.pathHeld.set(path, count);
      else s.pathHeld.delete(path);
    }
  }

  /** `extents`: its marks in hot extents. */
  touch(op: DiskOp, extents: DirtyMap): void {
    const s = this.s;
    if (s.link === null || s.link.reading.size === 0) s.pathTouched.clear();
    else {
      for (const path of pathsOf(op)) {
        s.pathTouched.set(path, s.opSeq);
        if (op.kind !== "write" && op.kind !== "truncate" && !isAttributeOp(op) && op.kind !== "fsync") s.pathTouched.set(parentOf(path), s.opSeq);
      }
    }
    for (const [path, entry] of extents) {
      s.pathSeq.set(path, s.opSeq);
      this.touchHot(path, entry.all || entry.blocks.size === 0 ? "all" : entry.blocks);
    }
  }

  dispatch(id: number, op: DiskOp, extents: DirtyMap, localOnly = false): void {
    const s = this.s;
    const seq = ++s.opSeq;
    this.unhold(extents.keys());
    this.touch(op, extents);
    const link = localOnly ? null : s.link;
    s.pending.set(seq, { id, op, local: undefined, peer: undefined, peerless: link === null, session: link?.session ?? null });
    this.out.push({ kind: "apply", tag: this.tag({ t: "local", seq }), op });
    if (link !== null && op.kind === "rename") this.carryPlan(link, op.from, op.to);
    if (link !== null) {
      s.stats.replicatedOps++;
      this.send({ kind: "rep", session: link.session, seq, op });
    }
    // Its marks are durable (dispatched after them): the lane may write there from now on
    // (into the whole of a file created or truncated since the last clear: its next writes).
    if (localOnly) return;
    if ((op.kind === "create" || op.kind === "truncate") && s.meta.hot.get(op.path)?.all === true) this.armLane(op.path, "all");
    if (op.kind === "write") {
      if (s.meta.hot.get(op.path)?.all === true) this.armLane(op.path, "all");
      else {
        // Its own extents, and those made hot ahead of it (withAhead).
        const ahead = extents.get(op.path);
        const armed = new Set([...extentsOfWrite(op, s.config.blockSize, s.config.hotExtentBlocks), ...(ahead === undefined || ahead.all ? [] : ahead.blocks)]);
        if (armed.size > 0) this.armLane(op.path, [...armed]);
      }
    }
  }

  tryComplete(seq: number): void {
    const s = this.s;
    const pending = s.pending.get(seq);
    if (pending === undefined || pending.local === undefined) return;
    if (!pending.peerless && pending.peer === undefined && s.config.plantedBug !== "early-ack") return;
    if (!pending.peerless && pending.peer !== pending.local && !isMediaError(pending.peer ?? null)) this.diverge(pending.op, `${describeOp(pending.op)}: ${pending.local ?? "ok"} here, ${pending.peer ?? "ok"} on ${s.config.peer}`);
    s.pending.delete(seq);
    s.stats.completed++;
    this.out.push({ kind: "complete", id: pending.id, result: pending.local });
    this.drained();
  }

  /** Continues what waited for the last dispatched operation to complete (a drain). */
  drained(): void {
    const s = this.s;
    if (!this.busy() && s.job !== null && s.job.running === null && s.job.names.length === 0) {
      const then = s.job.then;
      s.job = null;
      this.continueWith(then);
    }
  }

  /** Operations in flight this node does not know of yet: dispatched and unfinished, or on
   *  a stopping lane (its report brings them). */
  busy(): boolean {
    const s = this.s;
    return s.pending.size > 0 || s.lane?.state === "stopping";
  }

  // ---- the lane (lane.ts) ----

  /** Whether the primary's writes may take the lane now, and which: running, with no
   *  script, fence or decision under way, and either attached to an up-to-date peer
   *  ("attached"; with ack "received" too: the lane's frames are acknowledged once applied,
   *  and so are the core's operations while the secondary follows a lane; see followLane),
   *  or alone ("alone": no peer attached, in a generation of its own, made durable before
   *  `dispatching` came back, and no witness check or grace under way). A node alone marks
   *  every write and replicates none: without a lane each one took the core, 0.10-0.24 of
   *  the raw disk (docs/replicator.md, "Measured: a node alone"). */
  laneWanted(): "attached" | "alone" | null {
    const s = this.s;
    const link = s.link;
    if (!s.config.lane || s.phase !== "primary" || s.app !== "running" || !s.accepting || !s.dispatching || s.job !== null || s.fence !== null) return null;
    if (link !== null) return s.streamUp && link.inSync ? "attached" : null;
    return !s.genShared && s.witness === null && s.grace === null ? "alone" : null;
  }

  /** After every step: opens the lane when wanted, stops it when no longer, and stops the
   *  secondary's when it follows that session no more. */
  reconcileLane(): void {
    const s = this.s;
    if (!s.config.lane) return;
    const lane = s.lane;
    const wanted = this.laneWanted();
    const session = wanted === "attached" ? s.link!.session : null;
    if (lane !== null && lane.state !== "stopping" && !(wanted !== null && lane.session === session)) this.stopLane();
    if (s.lane === null && wanted !== null && this.now >= s.laneRetryMs) {
      const lane = { session, epoch: s.nextLaneEpoch++, state: "opening" as "opening" | "on", armed: new Map(), armedBefore: new Map(), armedSince: new Map() };
      s.lane = lane;
      if (session !== null) this.send({ kind: "lane-open", session, epoch: lane.epoch });
      else {
        // Alone: no peer to open it with. Its reports come at each checkpoint period.
        lane.state = "on";
        this.out.push({ kind: "lane", action: "on", session: null, epoch: lane.epoch });
        this.out.push({ kind: "timer-arm", timer: "checkpoint", afterMs: s.config.checkpointMs });
      }
    }
    const follow = s.followLane;
    if (follow !== null && !(s.phase === "secondary" && s.follow !== null && s.follow.session === follow.session && !s.follow.preserving)) this.stopFollowingLane();
  }

  /** Stops the primary's lane: one that is on reports, stopped, before anything it did is
   *  known (busy() until then). */
  stopLane(): void {
    const s = this.s;
    const lane = s.lane;
    if (lane === null || lane.state === "stopping") return;
    if (lane.state === "on") {
      lane.state = "stopping";
      this.out.push({ kind: "lane", action: "off" });
    } else {
      s.lane = null;
    }
    // Ahead of what the stream carries next (the lane's unfinished operations among it).
    if (lane.session !== null) this.send({ kind: "lane-close", session: lane.session, epoch: lane.epoch });
  }

  /** The secondary follows the lane it was offered once the core's operations received
   *  before are applied (acknowledged on receipt, the primary may have answered them). */
  startFollowingLane(): void {
    const s = this.s;
    const lane = s.followLane;
    if (lane === null || lane.started || s.follow === null || s.follow.applying > 0) return;
    lane.started = true;
    this.out.push({ kind: "lane-follow", lane: { session: lane.session, epoch: lane.epoch } });
    this.send({ kind: "lane-opened", session: lane.session, epoch: lane.epoch });
  }

  stopFollowingLane(): void {
    const s = this.s;
    const lane = s.followLane;
    s.followLane = null;
    if (lane?.started === true) this.out.push({ kind: "lane-follow", lane: null });
  }

  laneReport(report: LaneReport): void {
    const s = this.s;
    // What the lane wrote is marked as if dispatched now: no flush already under way clears it.
    let marks: DirtyMap = report.marks;
    for (const { op } of report.resubmit) marks = unionDirty(marks, dirtyOf(op, s.config.blockSize));
    if (marks.size > 0) {
      const seq = ++s.opSeq;
      s.meta = { ...s.meta, dirty: unionDirty(s.meta.dirty, marks) };
      for (const path of marks.keys()) s.pathSeq.set(path, seq);
    }
    for (const [path, extents] of report.touched) this.touchHot(path, extents.length === 0 ? "all" : extents);
    // A harvest left armed what the lane wrote since its last report (within what was
    // armed) and what it was told to arm since (core/mirror/lane.ts).
    const harvested = s.lane;
    if (!report.stopped && harvested !== null && harvested.epoch === report.epoch && harvested.state === "on") {
      const armed = new Map<string, Set<number> | "all">();
      for (const [path, extents] of report.touched) {
        const was = harvested.armed.get(path);
        const kept = was === undefined ? [] : was === "all" ? extents : extents.filter((extent) => was.has(extent));
        if (kept.length > 0) addArmed(armed, path, kept);
      }
      for (const told of [harvested.armedBefore, harvested.armedSince]) {
        for (const [path, extents] of told) addArmed(armed, path, extents === "all" ? "all" : [...extents]);
      }
      harvested.armed = armed;
    }
    const lane = s.lane;
    const alone = lane !== null && lane.epoch === report.epoch && lane.session === null;
    for (const { path, op, error } of report.errors) {
      this.log(isMediaError(error as DiskError) ? "error" : "warn", "mirror.local_disk", { op, error, lane: true });
      // Attached (alone there is no link): applied on the peer, not here.
      this.divergePaths([path], `${op}: ${error} here (the lane)`);
    }
    if (report.differed.length > 0) this.divergePaths(report.differed, `${report.why} (the lane)`);
    s.stats.laneOps += report.completed;
    s.stats.completed += report.completed;
    if (!alone) s.stats.replicatedOps += report.completed;
    let attachWaits = false;
    if (report.stopped && lane !== null && lane.epoch === report.epoch && lane.state !== "opening") {
      if (lane.state === "on") {
        // On its own: a failure. The operations it gives back take the stream.
        this.log("warn", "mirror.lane_stopped", { why: report.why, resubmitted: report.resubmit.length });
        s.laneRetryMs = this.now + s.config.checkpointMs;
        if (lane.session !== null) this.send({ kind: "lane-close", session: lane.session, epoch: lane.epoch });
      }
      s.lane = null;
      attachWaits = alone;
    }
    const link = s.link;
    if (link !== null && link.checkpoint !== null && link.checkpoint.harvesting) this.startFlush(link);
    // Applied here already: the core completes them as if intercepted now, in that order.
    for (const { id, op } of report.resubmit) this.intercepted(id, op);
    this.drained();
    // A peer to attach waited for this report (evaluate): every mark of the lane alone is
    // in the dirty map now, which the resync's plan is made of.
    if (attachWaits && s.phase === "primary" && s.link === null && s.peerHello !== null && s.streamUp) this.evaluate();
  }

  /** Operations the peer never confirmed fail (this node may not complete them alone);
   *  `except`: not those sent on this session, which may still be answered. */
  failUnconfirmed(error: DiskError, except?: number): void {
    const s = this.s;
    for (const [seq, pending] of [...s.pending]) {
      if (pending.peerless || pending.peer !== undefined || (except !== undefined && pending.session === except)) continue;
      s.pending.delete(seq);
      this.out.push({ kind: "complete", id: pending.id, result: error });
    }
  }

  /** An operation gave different results on the two sides: resend its paths. */
  diverge(op: DiskOp, why: string): void {
    this.divergePaths(pathsOf(op), why);
  }

  divergePaths(paths: readonly string[], why: string): void {
    const s = this.s;
    const link = s.link;
    if (link === null) return;
    // During a resync the secondary lacks paths not sent yet: expected, not a warning.
    this.log(link.inSync ? "warn" : "debug", "mirror.diverged_op", { why });
    const marks = new Map<string, FileDirty>();
    for (const path of paths) {
      marks.set(path, { all: true, blocks: new Set() });
      marks.set(parentOf(path), { all: false, blocks: new Set() });
    }
    s.meta = { ...s.meta, dirty: unionDirty(s.meta.dirty, marks) };
    this.persist();
    if (link.inSync) {
      link.startedMs = this.now;
      link.startBlockBytes = s.stats.resyncBlockBytes;
      link.full = false;
    }
    if (link.inSync || link.endSent) {
      link.inSync = false;
      link.endSent = false;
      this.send({ kind: "unsync", session: link.session });
    }
    for (const [path, entry] of marks) this.plan(link, path, entry);
    this.pumpResync();
  }

  diskDone(tagId: number, result: DiskResult): void {
    const s = this.s;
    const tag = s.tags.get(tagId);
    if (tag === undefined) return;
    s.tags.delete(tagId);
    switch (tag.t) {
      case "inherit-flush":
        if (s.inheritFlush !== tagId) return;
        s.inheritFlush = null;
        if (result !== null) this.log("error", "mirror.flush_failed", { error: result, why: "making the tree durable before this node's metadata says it is primary" });
        if (s.metaDeferred) {
          s.metaDeferred = false;
          this.out.push({ kind: "persist-meta", version: s.metaVersion, meta: s.meta });
        }
        return;
      case "local": {
        const pending = s.pending.get(tag.seq);
        if (pending === undefined) return;
        pending.local = result;
        if (result !== null && isMediaError(result)) this.log("error", "mirror.local_disk", { op: describeOp(pending.op), error: result });
        this.tryComplete(tag.seq);
        return;
      }
      case "remote":
        this.remoteApplied(tag.session, tag.seq, tag.ackedOnReceipt, tag.paths, result);
        return;
      case "install": {
        const follow = s.follow;
        if (follow === null || follow.session !== tag.session) return;
        if (result !== null) {
          if (isMediaError(result)) {
            this.followerDiskFailed(`resync of ${tag.path}: ${result}`);
            return;
          }
          this.log("warn", "mirror.install_failed", { path: tag.path, error: result });
        }
        // Installs complete in order: the path's own install, issued after its prunes, answers.
        if (!tag.last) return;
        const names = follow.names.get(tag.path);
        follow.names.delete(tag.path);
        this.send({ kind: "sync-path-ack", session: tag.session, path: tag.path, result, ...(names === undefined ? {} : { names: [...names].sort() }) });
        return;
      }
      case "checkpoint": {
        const link = s.link;
        if (link === null || link.session !== tag.session || link.checkpoint === null) return;
        link.checkpoint.local = true;
        this.checkpointDone(link);
        return;
      }
      case "synced-flush": {
        const link = s.link;
        // Once a checkpoint has cleared marks (after its harvest, with the extents it armed
        // again since), it has done this one's work: clearing now could drop the hot
        // extents of a file the lane writes into that the checkpoint armed.
        if (result === null && link !== null && link.session === tag.session && link.inSync && !link.checkpointed) this.clearDirty(tag.upTo, false);
        return;
      }
      case "peer-flush":
        if (s.follow !== null && s.follow.session === tag.session) this.send({ kind: "flushed", session: tag.session, upTo: tag.upTo });
        return;
      case "sync-end": {
        const follow = s.follow;
        if (follow === null || follow.session !== tag.session || follow.unsyncs !== tag.unsyncs) return;
        if (result !== null) {
          this.followerDiskFailed(`flush at the end of the resync: ${result}`);
          return;
        }
        this.setMeta({ gen: tag.gen, history: tag.history, consistent: true, lastRole: "SECOND", dirtyBase: tag.gen, dirty: emptyDirty, hot: emptyDirty, bootId: s.bootId, cacheLost: false, layout: s.meta.layout }, (step) => {
          if (follow.unsyncs !== tag.unsyncs) return;
          // Up to date, durably, and running since: the best copy if the primary is lost now.
          s.continuous = true;
          if (s.follow === follow) {
            step.log("info", "mirror.in_sync", { gen: tag.gen });
            step.send({ kind: "sync-done", session: tag.session, upTo: tag.upTo });
          }
        });
        return;
      }
      case "resync-read":
      case "prune-read":
      case "other-names":
      case "names-read":
      case "preserve":
      case "tocheck":
        return;
      default:
        unreachable(tag);
    }
  }

  // ---- the secondary ----

  remoteApplied(session: number, seq: number, ackedOnReceipt: boolean, paths: readonly string[], result: DiskResult): void {
    const s = this.s;
    const follow = s.follow;
    if (follow === null || follow.session !== session) return;
    follow.applying--;
    if (isMediaError(result)) {
      this.followerDiskFailed(`replicated operation ${seq}: ${result}`);
      return;
    }
    // Acknowledged on receipt, the primary already had a first answer: a failure comes later,
    // with the paths, because the primary may have completed the operation meanwhile.
    if (!ackedOnReceipt || result !== null) this.send({ kind: "rep-ack", session, seq, result, ...(result === null ? {} : { paths }) });
    this.startFollowingLane();
    if (follow.applying === 0 && s.promoteWhenDrained) {
      s.promoteWhenDrained = false;
      this.takeOver("the primary is lost");
    }
  }

  /** The losing changes of a split brain are kept (go on with what the primary sent
   *  meanwhile), or could not be (follow no more: overwriting them would lose them). */
  preserved(session: number, paths: readonly string[], result: { readonly place: string } | DiskError): void {
    const s = this.s;
    const follow = s.follow;
    if (follow === null || follow.session !== session) return;
    if (typeof result === "string") {
      this.log("error", "mirror.preserve_failed", { error: result, paths: paths.join(" ") });
      this.followerDiskFailed(`the split brain's losing changes could not be kept aside (${result})`);
      return;
    }
    this.log("warn", "mirror.splitbrain_preserved", { place: result.place, paths: paths.join(" ") });
    follow.preserving = false;
    for (const message of follow.held.splice(0)) this.message(message);
  }

  followerDiskFailed(why: string): void {
    const s = this.s;
    const follow = s.follow;
    if (follow === null) return;
    this.log("error", "mirror.secondary_disk", { why });
    s.follow = null;
    s.attachable = false;
    // Not up to date, durably, before the primary goes on without this node.
    this.setMeta({ ...s.meta, consistent: false }, (step) => step.send({ kind: "detach", session: follow.session, reason: why }));
    this.wait(`the disk failed (${why}): retrying attachment every ${s.config.retryMs} ms`);
    this.out.push({ kind: "timer-arm", timer: "retry", afterMs: s.config.retryMs });
  }

  /** This secondary stops following (a stop, a hold) and tells its primary. Its copy stays
   *  whole when everything it acknowledged is applied (with ack "applied" each
   *  acknowledgement follows its apply, on the lane too; with "received", once nothing is
   *  still applying): everything the primary completed is in it (an operation still
   *  applying is one the primary has not completed: present or not, no promise is broken,
   *  and the primary's dirty map names its path), and the primary starts a new generation
   *  on a detach before it completes anything alone, so this copy is never taken for more
   *  than it is. Marking it not up to date instead would throw away the one whole copy if
   *  the primary lost power just then (its page cache with it). Otherwise (an operation
   *  still applying, a split brain's changes being kept aside, a resync unfinished) it is
   *  marked not up to date, durably, before the primary hears. */
  leaveFollow(follow: Follow, reason: string): void {
    const s = this.s;
    const detach = { kind: "detach", session: follow.session, reason } as const;
    if (s.meta.consistent && !follow.preserving && (s.config.ack === "applied" || follow.applying === 0)) {
      this.send(detach);
      return;
    }
    this.setMeta({ ...s.meta, consistent: false }, (step) => step.send(detach));
  }

  /** The peer is gone and this secondary was up to date with it: take over. */
  takeOver(why: string): void {
    const s = this.s;
    if (s.phase !== "secondary") return;
    if (!s.config.failover) {
      this.wait("failover is off: waiting for an operator (prim)");
      return;
    }
    if (!s.meta.consistent) {
      this.wait("data not up to date (the resync did not finish): waiting for the other node; primforce overrides");
      return;
    }
    if (s.peerGen !== null && !lineage(s.meta).includes(s.peerGen)) {
      this.wait(`the primary went on alone (generation ${s.peerGen}): waiting for it`);
      return;
    }
    if (s.follow !== null && s.follow.applying > 0) {
      s.promoteWhenDrained = true;
      return;
    }
    // Lost, the primary may still count on the session (it may never have lost this
    // node); one that handed the role over has let it go.
    s.abandoned = s.peerAlive ? null : (s.follow?.session ?? null);
    s.follow = null;
    this.checkWitness("promote", why);
  }

  /** A takeover that does not happen (the primary beats again, the witness is not
   *  reached): the primary may never have lost this node (its heartbeats reached it while
   *  this node's were late, or this node stalled), and it still counts on the session
   *  this node stopped following: told, it goes on without it (a new generation) and
   *  attaches it again. This node waits meanwhile, as after any detach, so it cannot take
   *  over with a copy older than what the primary then completes alone. Untold, the
   *  primary's writes waited for acknowledgements that never came (the fuzzer found it,
   *  with a 300 ms stall of the primary: test/sim/mirror-stall.test.ts). */
  abandonedTakeover(why: string): void {
    const s = this.s;
    const session = s.abandoned;
    s.abandoned = null;
    if (session !== null) this.send({ kind: "detach", session, reason: why });
    this.wait(why);
  }

  message(message: MirrorMessage): void {
    const s = this.s;
    const follow = s.follow;
    if (follow !== null && follow.preserving && "session" in message && message.session === follow.session && message.kind !== "attach") {
      assert(follow.held.length < heldMessagesMax, `more than ${heldMessagesMax} messages held while a split brain's changes are kept aside`);
      follow.held.push(message);
      return;
    }
    switch (message.kind) {
      case "hello": {
        if (message.ask === true) this.hello(true);
        // An attached peer that says it is not a secondary (its module restarted) follows no more.
        if (s.phase === "primary" && s.link !== null && message.summary.seenSession === s.link.session && message.summary.role !== "SECOND") {
          s.peerHello = message.summary;
          this.linkLost(`the peer is ${message.summary.role}, not following`);
          return;
        }
        if (s.handedOver !== null) {
          // Sent before the peer took the role this node handed it: its next hello says so.
          if (message.summary.role === "SECOND" && this.now - s.handedOver < 2 * s.config.timeoutMs) return;
          s.handedOver = null;
        }
        const before = s.peerHello;
        s.peerHello = message.summary;
        s.peerRole = message.summary.role;
        s.peerGen = message.summary.gen;
        if (before !== null && before.incarnation !== message.summary.incarnation && s.follow !== null) s.follow = null;
        this.evaluate();
        return;
      }
      case "attach":
        this.attached(message);
        return;
      case "rep": {
        const follow = s.follow;
        if (follow === null || follow.session !== message.session) return;
        follow.applying++;
        const ackedOnReceipt = s.config.ack === "received" && message.op.kind !== "fsync" && s.followLane === null;
        this.out.push({ kind: "apply", tag: this.tag({ t: "remote", session: message.session, seq: message.seq, paths: pathsOf(message.op), ackedOnReceipt }), op: message.op });
        if (ackedOnReceipt) this.send({ kind: "rep-ack", session: message.session, seq: message.seq, result: null });
        return;
      }
      case "rep-ack": {
        const link = s.link;
        if (link === null || link.session !== message.session) return;
        const pending = s.pending.get(message.seq);
        if (pending === undefined) {
          // Completed on the secondary's receipt; applying it failed there since: resend its paths.
          if (message.result !== null && !isMediaError(message.result)) this.divergePaths(message.paths ?? [], `operation ${message.seq}: ${message.result} on ${s.config.peer} after its receipt`);
          return;
        }
        if (pending.peer === undefined || s.config.ack === "applied") pending.peer = message.result;
        else if (message.result !== null) pending.peer = message.result;
        this.tryComplete(message.seq);
        return;
      }
      case "sync-path":
        this.syncPath(message.session, message.path, message.snapshot, message.prune);
        return;
      case "sync-path-ack":
        this.syncPathAcked(message.session, message.path, message.result, message.names ?? []);
        return;
      case "sync-end": {
        const follow = s.follow;
        if (follow === null || follow.session !== message.session) return;
        this.out.push({ kind: "apply", tag: this.tag({ t: "sync-end", session: message.session, gen: message.gen, history: message.history, upTo: message.upTo, unsyncs: follow.unsyncs }), op: { kind: "fsync", path: null } });
        return;
      }
      case "sync-done":
        this.syncDone(message.session, message.upTo);
        return;
      case "unsync":
        if (s.follow !== null && s.follow.session === message.session) {
          s.follow.unsyncs++;
          this.setMeta({ ...s.meta, consistent: false });
        }
        return;
      case "flush":
        if (s.follow !== null && s.follow.session === message.session) this.out.push({ kind: "apply", tag: this.tag({ t: "peer-flush", session: message.session, upTo: message.upTo }), op: { kind: "fsync", path: null } });
        return;
      case "flushed": {
        const link = s.link;
        if (link === null || link.session !== message.session || link.checkpoint === null || link.checkpoint.upTo !== message.upTo) return;
        link.checkpoint.peer = true;
        this.checkpointDone(link);
        return;
      }
      case "handover": {
        const follow = s.follow;
        if (follow === null || follow.session !== message.session) return;
        this.log("info", "mirror.handover", { reason: message.reason });
        if (message.reason === "swap") {
          s.follow = null;
          // The old primary's summary says primary until its next hello (as secondary).
          s.peerHello = null;
          this.setMeta({ ...s.meta, lastRole: "PRIM" });
          // What it completes before the old primary attaches is on this node only: the
          // first such write starts a new generation (becomePrimary; a promotion here would
          // show the old primary a peer that waits, and it would take the role back).
          this.becomePrimary();
          return;
        }
        this.takeOver("the primary stopped");
        return;
      }
      case "lane-open": {
        const follow = s.follow;
        if (!s.config.lane || s.phase !== "secondary" || follow === null || follow.session !== message.session || follow.preserving) return;
        if (s.followLane?.started === true) this.out.push({ kind: "lane-follow", lane: null });
        s.followLane = { session: message.session, epoch: message.epoch, started: false };
        this.startFollowingLane();
        return;
      }
      case "lane-opened": {
        const lane = s.lane;
        if (lane === null || lane.state !== "opening" || lane.session !== message.session || lane.epoch !== message.epoch) return;
        lane.state = "on";
        this.out.push({ kind: "lane", action: "on", session: lane.session, epoch: lane.epoch });
        return;
      }
      case "lane-close":
        if (s.followLane !== null && s.followLane.session === message.session && s.followLane.epoch === message.epoch) this.stopFollowingLane();
        return;
      case "attach-refused":
        if (s.link !== null && s.link.session === message.session) this.linkLost(message.reason);
        return;
      case "detach":
        if (s.follow !== null && s.follow.session === message.session) {
          s.follow = null;
          if (s.phase === "secondary") this.wait(`detached: ${message.reason}`);
          return;
        }
        if (this.leaving() && s.link !== null && s.link.session === message.session) {
          this.leavingLinkLost(`the secondary detached: ${message.reason}`);
          return;
        }
        if (s.link !== null && s.link.session === message.session) {
          // The secondary may have kept its whole copy (leaveFollow): a new generation
          // before anything completes alone, so that copy is never taken for the newer.
          this.log("warn", "mirror.peer_detached", { why: message.reason });
          this.goAlone(`the secondary detached: ${message.reason}`);
        }
        return;
      default:
        unreachable(message);
    }
  }

  attached(message: Extract<MirrorMessage, { kind: "attach" }>): void {
    const s = this.s;
    s.seenSession = message.session;
    s.abandoned = null;
    if ((s.phase !== "secondary" && s.phase !== "waiting" && s.phase !== "joining") || s.hold !== null) {
      // Not now (stopping, starting, primary, held): the primary must not count on this node.
      this.send({ kind: "attach-refused", session: message.session, reason: s.hold !== null ? `the peer waits for ${s.hold}` : `the peer is ${roleOf(s).role}` });
      return;
    }
    s.phase = "secondary";
    s.why = "";
    this.enterSecond();
    const preserving = message.preserve !== null && message.preserve.length > 0;
    const own = [...s.meta.dirty.keys()].sort();
    s.follow = { session: message.session, preserving, held: [], applying: 0, unsyncs: 0, own, asked: new Set(), names: new Map() };
    s.yielding = false;
    s.fullsync = false;
    this.out.push({ kind: "timer-cancel", timer: "join" });
    this.log("info", "mirror.attached", { full: message.full, preserve: message.preserve?.length ?? 0 });
    if (message.preserve !== null && message.preserve.length > 0) {
      this.log("error", "mirror.splitbrain_loser", { paths: message.preserve.join(" "), label: message.label });
      this.out.push({ kind: "preserve", tag: this.tag({ t: "preserve", session: message.session, paths: message.preserve }), paths: message.preserve, label: message.label });
    }
    this.setMeta({ ...s.meta, consistent: false, lastRole: "SECOND" });
  }

  syncPath(session: number, path: string, snapshot: PathSnapshot, prune: boolean): void {
    const s = this.s;
    const follow = s.follow;
    if (follow === null || follow.session !== session) return;
    // A directory's install keeps what is below it (its prune, below, removes names).
    this.askNames(follow, path, path, snapshot.kind !== "dir");
    if (prune && snapshot.kind === "dir") {
      this.out.push({ kind: "read", tag: this.tag({ t: "prune-read", session, path, snapshot }), path, blocks: [] });
      return;
    }
    this.out.push({ kind: "install", tag: this.tag({ t: "install", session, path, last: true }), path, snapshot });
  }

  /** What this node wrote through one name of a file is the file's, but was marked under
   *  that name only. Before an install takes or rewrites such a name (`path`, and with
   *  `below` the names under it), the file's other names are read, once per resync, and
   *  given with the acknowledgement of `of`: the primary sends them whole too
   *  (docs/mirror.md, "Hard links"). */
  askNames(follow: Follow, of: string, path: string, below: boolean): void {
    const excludes = excluderOf(this.s.config.notReplicated);
    const ask = (each: string): void => {
      if (follow.asked.has(each) || excludes(each)) return;
      follow.asked.add(each);
      this.out.push({ kind: "read", tag: this.tag({ t: "names-read", session: follow.session, of, path: each }), path: each, blocks: [] });
    };
    const own = follow.own;
    let index = lowerBound(own, path);
    if (own[index] === path) ask(path);
    if (!below) return;
    const prefix = path === "" ? "" : `${path}/`;
    for (index = lowerBound(own, prefix); index < own.length && own[index]!.startsWith(prefix); index++) ask(own[index]!);
  }

  readDone(tagId: number, result: PathSnapshot | DiskError): void {
    const s = this.s;
    const tag = s.tags.get(tagId);
    if (tag === undefined) return;
    s.tags.delete(tagId);
    if (tag.t === "tocheck") {
      this.checked(tag.start, tag.path, result);
      return;
    }
    if (tag.t === "other-names") {
      this.otherNames(tag.id, result);
      return;
    }
    if (tag.t === "names-read") {
      const follow = s.follow;
      if (follow === null || follow.session !== tag.session) return;
      const links = typeof result !== "string" && result.kind === "file" ? (result.links ?? []) : [];
      if (links.length === 0) return;
      const names = follow.names.get(tag.of) ?? new Set<string>();
      for (const each of links) names.add(each);
      follow.names.set(tag.of, names);
      return;
    }
    if (tag.t === "prune-read") {
      const follow = s.follow;
      if (follow === null || follow.session !== tag.session) return;
      const keep = tag.snapshot.kind === "dir" ? new Set(tag.snapshot.children) : new Set<string>();
      const extras = typeof result !== "string" && result.kind === "dir" ? result.children.filter((child) => !keep.has(child)) : [];
      const excludes = excluderOf(s.config.notReplicated);
      for (const child of extras) {
        const childPath = tag.path === "" ? child : `${tag.path}/${child}`;
        // What this node does not replicate is its own.
        if (excludes(childPath)) continue;
        this.askNames(follow, tag.path, childPath, true);
        this.out.push({ kind: "install", tag: this.tag({ t: "install", session: tag.session, path: tag.path, last: false }), path: childPath, snapshot: { kind: "absent" } });
      }
      this.out.push({ kind: "install", tag: this.tag({ t: "install", session: tag.session, path: tag.path, last: true }), path: tag.path, snapshot: tag.snapshot });
      return;
    }
    if (tag.t !== "resync-read") return;
    const link = s.link;
    if (link === null || link.session !== tag.session) return;
    link.reading.delete(tag.path);
    // Changed since the read was issued, through this name or another of the same file.
    const links = typeof result !== "string" && result.kind === "file" ? (result.links ?? []) : [];
    const stale = this.touchedSince(tag.path, tag.issued) || links.some((each) => this.touchedSince(each, tag.issued));
    if (link.reading.size === 0) s.pathTouched.clear();
    const entry = link.plan.get(tag.path);
    if (entry === undefined) {
      this.pumpResync();
      return;
    }
    if (typeof result === "string") {
      this.log("error", "mirror.resync_read", { path: tag.path, error: result });
      link.requeue.push(tag.path);
      this.out.push({ kind: "timer-arm", timer: "retry", afterMs: s.config.retryMs });
      return;
    }
    if (stale) {
      link.requeue.push(tag.path);
      this.pumpResync();
      return;
    }
    if (result.kind === "dir" && entry.all) for (const child of result.children) this.plan(link, tag.path === "" ? child : `${tag.path}/${child}`, { all: true, blocks: new Set() });
    if (result.kind === "file") {
      for (const block of result.blocks.values()) s.stats.resyncBlockBytes += block.length;
      this.keepRest(link, tag.path, entry, tag, result.size);
    } else {
      // No longer a file (gone, a directory, a symlink): this snapshot is all there is.
      link.partial.delete(tag.path);
      link.from.delete(tag.path);
    }
    s.stats.resyncPaths++;
    link.sending.set(tag.path, (link.sending.get(tag.path) ?? 0) + 1);
    link.remarked.delete(tag.path);
    this.send({ kind: "sync-path", session: link.session, path: tag.path, snapshot: this.bindingOf(result, tag.whole), prune: result.kind === "dir" && entry.all });
    // Its next chunk is read now, not once this one is acknowledged.
    if (link.partial.has(tag.path)) link.requeue.push(tag.path);
    this.pumpResync();
  }

  // ---- resync, as primary ----

  /** Blocks a resync sends of a file per message: a stream frame stays small. */
  chunkBlocks(): number {
    return Math.max(1, Math.floor(this.s.config.resyncChunkBytes / this.s.config.blockSize));
  }

  /** After a read of one chunk of `path` (a file of `size` bytes): what its plan entry
   *  holds beyond the blocks that read asked for stays planned (a whole file as a cursor,
   *  blocks marked since the read was issued included), its next chunk read at once. */
  keepRest(link: Link, path: string, entry: FileDirty, read: { readonly blocks: readonly number[]; readonly whole: boolean }, size: number): void {
    if (entry.all) {
      const start = read.blocks[0] ?? 0;
      if (!read.whole || start !== (link.from.get(path)?.next ?? 0)) {
        // Made whole, or marked again below where it was, since the read was issued: read
        // on from where the entry says now.
        link.partial.add(path);
        return;
      }
      const count = Math.ceil(size / this.s.config.blockSize);
      const next = start + read.blocks.length;
      if (next < count) {
        link.from.set(path, { next, count });
        link.partial.add(path);
        return;
      }
      // All read: the entry stays, as the blocks of this last chunk, until the last
      // snapshot is acknowledged (marks coming meanwhile add to it).
      link.from.delete(path);
      link.plan.set(path, { all: false, blocks: new Set(read.blocks) });
      link.partial.delete(path);
      return;
    }
    const rest = this.blocksLeft(entry.blocks, read.blocks);
    if (rest.size === 0) {
      // All read: the entry stays until the last snapshot is acknowledged.
      link.partial.delete(path);
      return;
    }
    link.plan.set(path, { all: false, blocks: rest });
    link.partial.add(path);
  }

  /** What a resync sends of a file read: with its other replicated names when the path is
   *  sent whole (its name may have changed while the peer did not follow: the install binds
   *  it to the file they name), without them when only changed blocks are (they go into
   *  whatever file the peer's name has, which is the right one: a name that changed is
   *  whole). */
  bindingOf(snapshot: PathSnapshot, whole: boolean): PathSnapshot {
    if (snapshot.kind !== "file") return snapshot;
    const { links, ...rest } = snapshot;
    if (!whole) return rest;
    const excludes = excluderOf(this.s.config.notReplicated);
    return { ...rest, links: (links ?? []).filter((each) => !excludes(each)) };
  }

  /** A rename during a resync moves what is under `from` to `to` on both sides, the
   *  secondary's stale copies included: if the resync still had to send anything under
   *  `from`, all of `to` is sent again (reading `from` now finds nothing). */
  carryPlan(link: Link, from: string, to: string): void {
    if (link.inSync || from === to) return;
    for (const path of link.plan.keys()) {
      if (!isWithin(path, from)) continue;
      this.plan(link, to, { all: true, blocks: new Set() });
      return;
    }
  }

  /** Whether an operation dispatched after `seq` changed `path` or one of its ancestors. */
  touchedSince(path: string, seq: number): boolean {
    for (let at = path; ; at = parentOf(at)) {
      if ((this.s.pathTouched.get(at) ?? 0) > seq) return true;
      if (at === "") return false;
    }
  }

  /** The blocks of `planned` that a read of `asked` leaves: the rest of the sorted blocks
   *  when the read asked for their first ones (as pumpResync does), else those not asked. */
  blocksLeft(planned: ReadonlySet<number>, asked: readonly number[]): ReadonlySet<number> {
    if (planned instanceof SortedBlocks) {
      const first = planned.first(asked.length);
      if (first.length === asked.length && first.every((block, index) => block === asked[index])) return planned.after(asked.length);
    }
    return RunBlocks.minus(planned, new Set(asked));
  }

  plan(link: Link, path: string, entry: FileDirty): void {
    if (excluderOf(this.s.config.notReplicated)(path)) return;
    const before = link.plan.get(path);
    const cursor = link.from.get(path);
    if (before === undefined) {
      link.plan.set(path, entry);
      link.requeue.push(path);
    } else if (!before.all) {
      link.plan.set(path, entry.all ? entry : { all: false, blocks: RunBlocks.union(before.blocks, entry.blocks) });
    } else if (cursor !== undefined) {
      // A whole file read in part: marks below where it is are sent again.
      if (entry.all) link.from.delete(path);
      else if ((RunBlocks.runsOf(entry.blocks)[0] ?? cursor.next) < cursor.next) {
        link.from.delete(path);
        link.plan.set(path, { all: false, blocks: RunBlocks.union(entry.blocks, RunBlocks.range(cursor.next, cursor.count - cursor.next)) });
      }
      link.partial.add(path);
      link.requeue.push(path);
    }
    if (link.sending.has(path)) {
      link.remarked.add(path);
      link.requeue.push(path);
    }
  }

  attach(peer: HelloSummary): void {
    const s = this.s;
    const planned = planResync(s.meta, peer, s.fullsync);
    // A mixed operation (a rename out of an excluded place) marks an excluded path too.
    const excludes = excluderOf(s.config.notReplicated);
    const plan = { ...planned, dirty: filterDirty(planned.dirty, (path) => !excludes(path)) };
    const session = s.nextSession++ * 1000 + (s.incarnation % 1000);
    s.fullsync = false;
    const link: Link = {
      session,
      inSync: false,
      plan: new Map(plan.dirty),
      queue: [...plan.dirty.keys()].sort(),
      queueIndex: 0,
      requeue: [],
      reading: new Set(),
      sending: new Map(),
      remarked: new Set(),
      partial: new Set(),
      from: new Map(),
      refusals: new Map(),
      deferred: new Set(),
      endSent: false,
      checkpoint: null,
      startedMs: this.now,
      startBlockBytes: s.stats.resyncBlockBytes,
      full: plan.full,
      checkpointed: false,
    };
    s.link = link;
    s.genShared = false;
    s.stats.resyncs++;
    if (plan.full) s.stats.fullResyncs++;
    // Operations dispatched alone and still in flight are covered by the plan (marked before dispatch).
    // The largest parts of the plan, for an operator wondering what a resync sends.
    const entries = [...plan.dirty];
    const largest = entries
      .filter(([, entry]) => !entry.all)
      .sort(([a, x], [b, y]) => y.blocks.size - x.blocks.size || (a < b ? -1 : 1))
      .slice(0, 5)
      .map(([path, entry]) => `${path || "/"} (${entry.blocks.size} blocks)`)
      .join(", ");
    const wholes = entries.filter(([, entry]) => entry.all).map(([path]) => path || "/");
    const whole = `${wholes.length}${wholes.length === 0 ? "" : `: ${wholes.slice(0, 12).join(", ")}${wholes.length > 12 ? ", ..." : ""}`}`;
    this.log(plan.preserve === null ? "info" : "warn", "mirror.attach", { peer: s.config.peer, full: plan.full, paths: plan.dirty.size, why: plan.why, whole, largest });
    this.send({ kind: "attach", session, full: plan.full, preserve: plan.preserve, label: `splitbrain-${peer.gen ?? "none"}-${s.config.peer}` });
    this.out.push({ kind: "timer-arm", timer: "checkpoint", afterMs: s.config.checkpointMs });
    this.pumpResync();
    // Writes held until the peer follows (peerMayTakeOver) go now, to both.
    this.drainHeld();
  }

  pumpResync(): void {
    const s = this.s;
    const link = s.link;
    if (link === null || link.inSync) return;
    // Snapshots in flight, not paths: a large file has several of its chunks on the way.
    let sending = 0;
    for (const count of link.sending.values()) sending += count;
    while (link.reading.size + sending < s.config.resyncWorkers) {
      let path: string | undefined;
      while (path === undefined) {
        const next = link.requeue.length > 0 ? link.requeue.shift() : link.queueIndex < link.queue.length ? link.queue[link.queueIndex++] : undefined;
        if (next === undefined) {
          // Gone through: a full resync's queue names every path of the tree, not kept for
          // the link's lifetime.
          link.queue = [];
          link.queueIndex = 0;
          break;
        }
        if (!link.plan.has(next) || link.reading.has(next) || (link.sending.has(next) && !link.remarked.has(next) && !link.partial.has(next))) continue;
        path = next;
      }
      if (path === undefined) break;
      const entry = link.plan.get(path)!;
      link.reading.add(path);
      // At most one chunk per read: a whole file is read from its cursor, what lies past its
      // end is not answered (a directory answers its children whatever the blocks).
      const chunk = this.chunkBlocks();
      const start = entry.all ? (link.from.get(path)?.next ?? 0) : 0;
      let blocks: number[];
      if (entry.all) blocks = Array.from({ length: chunk }, (_, index) => start + index);
      else {
        // Sorted once; the chunks after this one go on from where it ends (keepRest).
        const sorted = SortedBlocks.of(entry.blocks);
        if (sorted !== entry.blocks) link.plan.set(path, { all: false, blocks: sorted });
        blocks = sorted.first(chunk);
      }
      this.out.push({ kind: "read", tag: this.tag({ t: "resync-read", session: link.session, path, issued: s.opSeq, blocks, whole: entry.all }), path, blocks });
    }
    if (link.plan.size === 0 && link.reading.size === 0 && link.sending.size === 0 && !link.endSent) {
      link.endSent = true;
      // Once the peer is up to date it may take over and go on without this node, which
      // then must not start alone after a restart: PRIM is durable before the peer can be.
      this.setMeta({ ...s.meta, lastRole: "PRIM" }, (step) => {
        if (s.link !== link || !link.endSent || link.plan.size > 0) return;
        step.send({ kind: "sync-end", session: link.session, gen: s.meta.gen!, history: s.meta.history, upTo: s.opSeq });
      });
    }
  }

  syncPathAcked(session: number, path: string, result: DiskResult, names: readonly string[]): void {
    const s = this.s;
    const link = s.link;
    if (link === null || link.session !== session) return;
    // Other names of files the secondary wrote through a name this path took or rewrote.
    for (const name of names) this.plan(link, name, { all: true, blocks: new Set() });
    const left = (link.sending.get(path) ?? 1) - 1;
    if (result !== null) {
      // What this snapshot carried is not on the peer, and the acknowledgement does not say
      // which blocks it held: the whole path again.
      link.plan.set(path, { all: true, blocks: new Set() });
      link.from.delete(path);
      link.partial.add(path);
    }
    if (left > 0) {
      // Other snapshots of the path are on the way: decide once the last is acknowledged.
      link.sending.set(path, left);
      if (result !== null) this.refused(link, path, result);
      this.pumpResync();
      return;
    }
    link.sending.delete(path);
    if (result === null) link.refusals.delete(path);
    if (result === null && !link.remarked.has(path) && !link.partial.has(path)) link.plan.delete(path);
    else if (result !== null) this.refused(link, path, result);
    else link.requeue.push(path);
    link.remarked.delete(path);
    this.pumpResync();
  }

  /** The secondary could not install `path` (not a failure of its disk: it detaches for
   *  those). Sent again at once the first time (a conflict with what the stream did
   *  meanwhile passes); refused again, it waits for the next retry (retryMs), so that a
   *  refusal that lasts costs one attempt per retry, not a loop. The secondary is not up
   *  to date until it takes it. */
  refused(link: Link, path: string, error: DiskError): void {
    const s = this.s;
    const times = (link.refusals.get(path) ?? 0) + 1;
    link.refusals.set(path, times);
    if (times === 1) {
      link.requeue.push(path);
      return;
    }
    // Logged at the second refusal, then every tenth: the operator sees why the secondary
    // does not come up to date, without a line per retry.
    if (times % 10 === 2) this.log("error", "mirror.resync_refused", { path, error, times, then: `sent again every ${s.config.retryMs} ms; the secondary is not up to date until it takes it` });
    link.deferred.add(path);
    this.out.push({ kind: "timer-arm", timer: "retry", afterMs: s.config.retryMs });
  }

  syncDone(session: number, upTo: number): void {
    const s = this.s;
    const link = s.link;
    if (link === null || link.session !== session || link.plan.size > 0) return;
    link.inSync = true;
    link.endSent = false;
    this.log("info", "mirror.resynced", { peer: s.config.peer, ms: this.now - link.startedMs, full: link.full, blockBytes: s.stats.resyncBlockBytes - link.startBlockBytes });
    // The secondary holds everything up to upTo durably; this node's own copy of what it
    // wrote alone may still be only in its page cache: its marks go once it is durable here too.
    this.setMeta({ ...s.meta, dirtyBase: s.meta.gen });
    this.out.push({ kind: "apply", tag: this.tag({ t: "synced-flush", session, upTo }), op: { kind: "fsync", path: null } });
    // defaultprim names the peer: once it is up to date, the primary role goes back to it.
    const preferred = s.config.defaultPrim;
    if (preferred.kind === "node" && preferred.node === s.config.peer && s.phase === "primary" && s.app === "running" && s.job === null) {
      this.log("info", "mirror.swap_back", { to: s.config.peer, why: "defaultprim" });
      this.leavePrimary("handover-swap", `defaultprim=${s.config.peer}`);
    }
  }

  /** Lets the lane write into these extents of `path` (hot and durable), when it is on. */
  armLane(path: string, extents: readonly number[] | "all"): void {
    const lane = this.s.lane;
    if (lane === null || lane.state !== "on") return;
    this.out.push({ kind: "lane-arm", path, extents });
    for (const map of [lane.armed, lane.armedSince]) addArmed(map, path, extents);
  }

  /** `path` is written now, into these hot extents (or as a whole). */
  touchHot(path: string, extents: Iterable<number> | "all"): void {
    const s = this.s;
    const seen = s.hotSeen.get(path) ?? new Map<number, number>();
    for (const extent of extents === "all" ? [wholeEntry] : extents) seen.set(extent, this.now);
    s.hotSeen.set(path, seen);
    s.hotTouched.add(path);
  }

  /** Clears the marks of what is durable on both up to operation `upTo`. A path's hot
   *  extents go too, unless it was written since the last clear: then those it wrote
   *  within hotKeepClears checkpoint periods stay (an active file keeps its working set
   *  hot, so its next writes there need no metadata write; what it has not written for a
   *  while leaves the activity log, as in DRBD's). */
  clearDirty(upTo: number, rebase: boolean): void {
    const s = this.s;
    const pending = (path: string) => (s.pathSeq.get(path) ?? 0) > upTo || s.pathHeld.has(path);
    const dirty = filterDirty(s.meta.dirty, pending);
    const hot = this.keepHot(pending);
    s.hotTouched.clear();
    if (dirty === s.meta.dirty && hot === s.meta.hot && !rebase) return;
    for (const [path, seq] of s.pathSeq) if (seq <= upTo) s.pathSeq.delete(path);
    this.setMeta({ ...s.meta, dirty, hot, dirtyBase: rebase ? s.meta.gen : s.meta.dirtyBase });
  }

  /** The hot map a clear leaves: a pending path's whole entry; of a path written since
   *  the last clear, the extents written within hotKeepClears checkpoint periods; every
   *  extent the lane may write into (armed: it must stay durable, however long the flush
   *  before this clear took); nothing of the others (the same map when nothing goes). */
  keepHot(pending: (path: string) => boolean): DirtyMap {
    const s = this.s;
    const keepMs = hotKeepClears * s.config.checkpointMs;
    for (const [path, seen] of s.hotSeen) {
      for (const [extent, atMs] of seen) if (this.now - atMs >= keepMs) seen.delete(extent);
      if (seen.size === 0 || !s.meta.hot.has(path)) s.hotSeen.delete(path);
    }
    // What is not pending is durable on both: any of it may go; what stays only spares
    // the next writes there a metadata write.
    let out: Map<string, FileDirty> | null = null;
    for (const [path, entry] of s.meta.hot) {
      if (pending(path)) continue;
      const seen = s.hotTouched.has(path) ? s.hotSeen.get(path) : undefined;
      const armed = s.config.plantedBug === "clear-drops-armed" ? undefined : s.lane?.armed.get(path);
      if (seen?.has(wholeEntry) === true || armed === "all") continue;
      const recent = [...(seen?.keys() ?? []), ...(armed ?? [])];
      const blocks = new Set(entry.all ? recent : recent.filter((extent) => entry.blocks.has(extent)));
      if (!entry.all && blocks.size > 0 && blocks.size === entry.blocks.size) continue;
      out ??= new Map(s.meta.hot);
      if (blocks.size === 0) out.delete(path);
      else out.set(path, { all: false, blocks });
    }
    return out ?? s.meta.hot;
  }

  startFlush(link: Link): void {
    const s = this.s;
    link.checkpoint = { upTo: s.opSeq, local: false, peer: false, harvesting: false };
    this.out.push({ kind: "apply", tag: this.tag({ t: "checkpoint", session: link.session }), op: { kind: "fsync", path: null } });
    this.send({ kind: "flush", session: link.session, upTo: s.opSeq });
  }

  checkpointDone(link: Link): void {
    const checkpoint = link.checkpoint!;
    if (!checkpoint.local || !checkpoint.peer) return;
    link.checkpoint = null;
    if (!link.inSync) return;
    link.checkpointed = true;
    this.clearDirty(checkpoint.upTo, false);
  }

  // ---- the peer: heartbeats, stream, loss ----

  timer(timer: MirrorTimer): void {
    const s = this.s;
    switch (timer) {
      case "pulse":
        this.pulse();
        return;
      case "join":
        this.joinTimedOut();
        return;
      case "checkpoint": {
        const link = s.link;
        const lane = s.lane;
        if (link === null) {
          // Alone nothing is cleared; the lane reports what it wrote (its marks, kept in
          // memory natively until then) once per period.
          if (lane !== null && lane.session === null && lane.state === "on") {
            lane.armedBefore = lane.armedSince;
            lane.armedSince = new Map();
            this.out.push({ kind: "lane", action: "harvest" });
            this.out.push({ kind: "timer-arm", timer: "checkpoint", afterMs: s.config.checkpointMs });
          }
          return;
        }
        // A stopping lane's report is awaited: what it wrote is not known yet.
        if (link.inSync && link.checkpoint === null && lane?.state !== "stopping" && (s.meta.dirty.size > 0 || s.meta.hot.size > 0 || lane?.state === "on")) {
          if (lane?.state === "on") {
            // What the lane completed is flushed with the rest: its report first.
            link.checkpoint = { upTo: 0, local: false, peer: false, harvesting: true };
            lane.armedBefore = lane.armedSince;
            lane.armedSince = new Map();
            this.out.push({ kind: "lane", action: "harvest" });
          } else {
            this.startFlush(link);
          }
        }
        this.out.push({ kind: "timer-arm", timer: "checkpoint", afterMs: s.config.checkpointMs });
        return;
      }
      case "grace": {
        const grace = s.grace;
        if (grace === null) return;
        // Late: the beats that would end it may wait unread, as for a pulse (pulse()).
        if (!grace.recheck && this.stalledPast(grace.dueMs)) {
          s.grace = { ...grace, recheck: true };
          this.out.push({ kind: "timer-arm", timer: "grace", afterMs: 0 });
          return;
        }
        s.grace = null;
        if (!s.peerAlive) {
          this.witnessPassed(grace.purpose, s.config.witnesses.length === 0 ? "the peer is lost" : "the peer is lost; the witness answers");
          return;
        }
        this.log("warn", "mirror.peer_back", { peer: s.config.peer, during: grace.purpose === "alone" ? "going alone" : "taking over" });
        if (grace.purpose === "alone") {
          // The peer beats again, its stream maybe dead: it must be outdated first.
          if (s.phase === "primary") this.linkLost("the peer came back during the witness check");
          // Leaving the role: its writes wait while the peer may take over.
          else if (this.leaving()) this.resumeLeaving();
          return;
        }
        if (s.phase === "promoting") {
          if (s.abandoned !== null) {
            this.abandonedTakeover("the primary beats again: waiting for it to attach this node");
            return;
          }
          s.phase = "secondary";
          this.enterSecond();
          this.hello();
        }
        return;
      }
      case "meta-retry": {
        const waiting = s.metaRetry.splice(0);
        if (waiting.length > 0) this.persist((step) => {
          for (const then of waiting) step.whenDurable(then);
        });
        return;
      }
      case "retry":
        if (s.link !== null && !s.link.inSync) {
          s.link.requeue.push(...s.link.deferred);
          s.link.deferred.clear();
          this.pumpResync();
        }
        if ((s.phase === "waiting" || s.phase === "secondary") && s.follow === null) {
          s.attachable = true;
          this.hello();
          this.evaluate();
        }
        return;
      default:
        unreachable(timer);
    }
  }

  /** A timer due at `dueMs` that comes a pulse or more late: this node did not run
   *  meanwhile, and what its peer sent then may wait unread behind it (pulse()). */
  stalledPast(dueMs: number): boolean {
    return this.now - dueMs >= this.s.config.pulseMs;
  }

  armPulse(afterMs: number, recheck = false): void {
    this.s.pulseDueMs = this.now + afterMs;
    this.s.pulseRecheck = recheck;
    this.out.push({ kind: "timer-arm", timer: "pulse", afterMs });
  }

  /** Beats to the peer, and judges its silence. A pulse that comes a pulse or more late
   *  means this node did not run meanwhile (its event loop stalled: a long pause of the
   *  collector, no CPU), and the silence it measures is its own: the peer's beats of that
   *  time wait unread behind this timer (Node runs due timers before it reads sockets).
   *  It judges once they are read, at a pulse armed at once; that one judges whatever its
   *  own lateness, so a stalled node still finds a dead peer, a loop turn later. Judging
   *  at once, a primary dropped its link (its lane, its secondary's state) at each stall
   *  past the timeout while its peer beat all along (test/sim/mirror-stall.test.ts). */
  pulse(): void {
    const s = this.s;
    if (s.phase === "stopped") return;
    const recheck = s.pulseRecheck;
    const lateMs = this.now - s.pulseDueMs;
    if (!recheck) {
      for (const ring of s.config.rings) this.out.push({ kind: "beat", ring, message: { kind: "beat", from: s.config.self, incarnation: s.incarnation, role: roleOf(s).role, gen: s.meta.gen, ...(s.resources.length === 0 ? {} : { resources: s.resources }) } });
      if (s.fence !== null) for (const ring of s.config.rings) this.out.push({ kind: "beat", ring, message: { kind: "outdate", from: s.config.self, gen: s.meta.gen } });
    }
    if (s.peerAlive && s.peerBeatMs !== null && this.now - s.peerBeatMs >= s.config.timeoutMs) {
      if (!recheck && this.stalledPast(s.pulseDueMs)) {
        this.log("warn", "mirror.stalled", { lateMs, silentMs: this.now - s.peerBeatMs, then: "the peer's silence is judged once what it sent meanwhile is read" });
        this.armPulse(0, true);
        return;
      }
      s.peerAlive = false;
      s.peerResources = null;
      this.log("warn", "mirror.peer_lost", { peer: s.config.peer, silentMs: this.now - s.peerBeatMs });
      this.peerLost();
    }
    // The recheck keeps the pulse's rhythm: the beats were sent at the late one.
    this.armPulse(recheck ? Math.max(0, s.config.pulseMs - lateMs) : s.config.pulseMs);
  }

  beat(message: MirrorBeat, receivedAtMs: number): void {
    const s = this.s;
    if (message.from !== s.config.peer || s.phase === "stopped") return;
    switch (message.kind) {
      case "beat":
        s.peerBeatMs = Math.max(s.peerBeatMs ?? receivedAtMs, receivedAtMs);
        if (!s.peerAlive) this.log("info", "mirror.peer_heard", { peer: s.config.peer, role: message.role });
        s.peerAlive = true;
        s.peerIncarnation = message.incarnation;
        s.peerRole = message.role;
        if (message.gen !== null) s.peerGen = message.gen;
        s.peerBeatGen = message.gen;
        s.peerBeatRole = message.role;
        s.peerResources = message.resources ?? [];
        if (s.link !== null && isPrimaryRole(message.role) && message.gen !== null && s.meta.gen !== null && genCounter(message.gen) > genCounter(s.meta.gen)) {
          // The secondary of this link beats as the primary of a newer generation: it took
          // over while this node did not run (a stall) or while its own heartbeats were
          // late, and follows no longer. What this node sent on the link is acknowledged
          // by nobody: it fails (EIO), and this node leaves the role; the peer, newer, then
          // attaches it. Unseen, a primary stalled in a handover waited for those
          // acknowledgements forever (a stall plan: test/sim/mirror-stall.test.ts).
          const why = `${s.config.peer} took over (generation ${message.gen})`;
          if (this.leaving()) this.leavingLinkLost(why);
          else if (s.phase === "primary") {
            this.failUnconfirmed("EIO");
            this.leavePrimary("wait", why);
          }
          return;
        }
        // Writes held for a peer that could take over: not any more once it no longer could.
        if (s.phase === "primary" && s.genShared && s.link === null) this.drainHeld();
        // Undecided with a peer that beats: its summary is missing or older than this beat.
        if (this.undecided()) {
          if (s.peerHello === null || s.peerHello.gen !== message.gen || isPrimaryRole(s.peerHello.role) !== isPrimaryRole(message.role)) this.askHello();
          else this.evaluate();
        }
        return;
      case "outdate": {
        if (s.phase === "primary" || s.phase === "handing-over") return;
        const answer = (): void => {
          for (const ring of s.config.rings) this.out.push({ kind: "beat", ring, message: { kind: "outdated", from: s.config.self, gen: message.gen } });
        };
        if (!s.meta.consistent) {
          // Said only once that is durable (below): not while a write is under way (its
          // own answer follows it), after a failed one at a retry that succeeds (one
          // pending at a time: the sender asks at every pulse).
          if (s.metaFailed) {
            if (s.metaRetry.length === 0) this.whenDurable(answer);
          } else if (s.metaDone >= s.metaVersion) answer();
          return;
        }
        if (message.gen !== null && s.meta.gen !== message.gen && lineage(s.meta).includes(message.gen)) {
          // This node went on past that generation (it took over from a primary that
          // stalled, then restarted): it has what the sender lacks. Outdated, neither could
          // be elected (the newer one not up to date): both waited for primforce (a stall
          // plan: test/sim/mirror-stall.test.ts). The sender, unanswered, does not go on.
          if (s.outdateRefused !== message.gen) this.log("warn", "mirror.outdate_refused", { by: s.config.peer, gen: message.gen, ours: s.meta.gen });
          s.outdateRefused = message.gen;
          return;
        }
        this.log("warn", "mirror.outdated", { by: s.config.peer, gen: message.gen });
        s.follow = null;
        // Durable before it is said: the sender then goes on alone, and this node, back from
        // a crash with "up to date" on disk, could take over without what it wrote alone.
        this.setMetaDurably({ ...s.meta, consistent: false }, (step) => {
          if (s.phase === "secondary") step.wait("outdated: the primary went on without this node");
          for (const ring of s.config.rings) step.out.push({ kind: "beat", ring, message: { kind: "outdated", from: s.config.self, gen: message.gen } });
        });
        return;
      }
      case "outdated":
        if (s.fence !== null) {
          this.log("info", "mirror.peer_outdated", { peer: s.config.peer });
          s.fence = null;
          this.goAlone("the peer is outdated");
        }
        return;
      default:
        unreachable(message);
    }
  }

  stream(connected: boolean): void {
    const s = this.s;
    s.streamUp = connected;
    if (connected) {
      this.hello(true);
      return;
    }
    s.peerHello = null;
    if (s.phase === "primary" && s.link !== null) {
      this.linkLost("the stream to the peer is down");
      return;
    }
    if (this.leaving() && s.link !== null) {
      this.leavingLinkLost("the stream to the peer is down");
      return;
    }
    if (s.follow !== null) {
      // Keep following in spirit: if the primary is also lost, takeOver decides.
      s.follow = null;
      if (!s.peerAlive && s.phase === "secondary") this.takeOver("the primary is lost");
    }
  }

  /** The secondary went away (detached, stream down, lost) while this node leaves the
   *  primary role. A handover cannot finish: the node goes where it was to take it, without
   *  a peer (waiting, or stopped), and the generation counts as shared (the peer may be
   *  taking over). A stop without handing over (a stop during a resync) ends as one without
   *  a secondary (leavePrimary). Either way, what only the peer could confirm fails, so
   *  that the drain ends: going alone, which would complete those operations, is not for a
   *  node leaving the role (the fuzzer found stops waiting for ever). The paths' marks
   *  stay: the next resync covers them. */
  leavingLinkLost(why: string): void {
    const s = this.s;
    if (s.phase === "handing-over") {
      this.log("warn", "mirror.handover_lost", { peer: s.config.peer, why });
      s.genShared = true;
    } else {
      this.log("warn", "mirror.peer_detached", { why });
      s.fence = null;
    }
    s.link = null;
    this.out.push({ kind: "timer-cancel", timer: "checkpoint" });
    this.failUnconfirmed("EIO");
    this.drained();
  }

  /** This node leaves the primary role: its application may still write while it stops. */
  leaving(): boolean {
    return this.s.phase === "handing-over" || this.s.phase === "stopping";
  }

  /** A node leaving the role, its peer lost, after the witness check: what it completes
   *  alone until the end of its stop takes a new generation first (drainHeld), and waits
   *  while the peer beats and may take over. The link lost as primary left `genShared`
   *  false (goAlone would start the generation): a stop during the check found writes
   *  completed alone in the generation the peer kept, and lost once it was elected. */
  resumeLeaving(): void {
    const s = this.s;
    if (s.link !== null) return;
    s.genShared = true;
    s.dispatching = true;
    this.drainHeld();
  }

  /** The attached peer stopped following (stream down, attach refused, restarted): it must
   *  be made outdated before this primary completes anything alone. */
  linkLost(why: string): void {
    const s = this.s;
    s.link = null;
    this.out.push({ kind: "timer-cancel", timer: "checkpoint" });
    s.dispatching = false;
    if (s.peerAlive) {
      // The peer still beats: it must mark itself outdated before this node goes on alone.
      this.log("warn", "mirror.fencing", { peer: s.config.peer, why });
      s.fence = { gen: s.meta.gen };
      for (const ring of s.config.rings) this.out.push({ kind: "beat", ring, message: { kind: "outdate", from: s.config.self, gen: s.meta.gen } });
    } else {
      this.checkWitness("alone", "the peer is lost");
    }
  }

  peerLost(): void {
    const s = this.s;
    s.peerHello = null;
    s.handedOver = null;
    if (this.leaving()) {
      if (s.link !== null) this.leavingLinkLost("the peer is lost");
      if (this.leaving() && s.link === null && s.genShared && s.config.witnesses.length > 0 && s.witness === null && s.grace === null) {
        // Leaving the role (its application still writing while it stops), in a
        // generation the peer has too: the peer may be taking over. What it would complete
        // alone waits for the witness, as for a primary; unreached, it fails (a sweep of
        // stops around peer faults found a stop's writes completed alone, cut off from the
        // witness, while the peer took over).
        s.dispatching = false;
        this.checkWitness("alone", "the peer is lost");
      }
      return;
    }
    // Not attached yet, in a generation the peer has too: the peer may be going on.
    if (s.phase === "primary" && (s.link !== null || s.fence !== null || (s.genShared && s.config.witnesses.length > 0))) {
      s.link = null;
      s.fence = null;
      s.dispatching = false;
      this.out.push({ kind: "timer-cancel", timer: "checkpoint" });
      this.checkWitness("alone", "the peer is lost");
      return;
    }
    if (s.phase === "secondary") this.takeOver("the primary is lost");
  }

  checkWitness(purpose: "alone" | "promote", why: string): void {
    const s = this.s;
    if (s.config.witnesses.length === 0) {
      this.startGrace(purpose);
      return;
    }
    const epoch = ++s.witnessEpoch;
    s.witness = { epoch, purpose };
    if (purpose === "promote") s.phase = "promoting";
    this.out.push({ kind: "probe", epoch, probe: { kind: "ping", addr: s.config.witnesses[0]! }, timeoutMs: s.config.witnessTimeoutMs });
  }

  witnessResult(epoch: number, up: boolean, detail: string): void {
    const s = this.s;
    if (s.witness === null || s.witness.epoch !== epoch) return;
    const purpose = s.witness.purpose;
    s.witness = null;
    if (up) {
      // The witness answered; but a partition that just healed lets both nodes reach it.
      // Wait two pulses: if the peer beats again meanwhile, this node does not go on without it.
      this.startGrace(purpose);
      return;
    }
    const why = `split-brain checker: witness ${s.config.witnesses[0]} not reached (${detail})`;
    this.log("error", "mirror.witness_down", { detail });
    if (purpose === "alone" && s.phase === "primary") {
      // Operations the peer never confirmed fail: this node may not go on alone.
      this.failUnconfirmed("EIO");
      this.leavePrimary("wait", why);
      return;
    }
    if (purpose === "alone") {
      // Leaving the role: it may not go on alone either; nothing more is accepted, and
      // its stop goes on.
      if (this.leaving()) {
        this.setAccepting(false);
        this.failHeld("EIO");
      }
      return;
    }
    // A check begun before a stop of the module: that decision was made since.
    if (s.phase !== "promoting") return;
    this.abandonedTakeover(why);
  }

  /** Two pulses before acting on a lost peer: a partition that just healed (which would
   *  also let both nodes reach a witness) shows as the peer's heartbeats coming back. */
  startGrace(purpose: "alone" | "promote"): void {
    const s = this.s;
    if (purpose === "promote") s.phase = "promoting";
    s.grace = { purpose, dueMs: this.now + 2 * s.config.pulseMs, recheck: false };
    this.out.push({ kind: "timer-arm", timer: "grace", afterMs: 2 * s.config.pulseMs });
  }

  witnessPassed(purpose: "alone" | "promote", why: string): void {
    // A check begun before a stop and a start of the module: that decision was made since.
    if (purpose === "promote" && this.s.phase !== "promoting") return;
    if (purpose === "alone") {
      this.goAlone(why);
      return;
    }
    // The primary may have outdated this node meanwhile (over the heartbeat rings).
    if (!this.s.meta.consistent) {
      this.wait("outdated: the primary went on without this node");
      return;
    }
    this.promote(why);
  }

  /** The primary goes on without its peer: a new generation first, then what waited. */
  goAlone(why: string): void {
    const s = this.s;
    if (this.leaving()) {
      this.resumeLeaving();
      return;
    }
    if (s.phase !== "primary") return;
    s.link = null;
    s.dispatching = false;
    this.out.push({ kind: "timer-cancel", timer: "checkpoint" });
    s.genShared = false;
    const gen = nextGen(s.meta, s.config.self, s.peerGen);
    this.log("warn", "mirror.new_generation", { gen, from: s.meta.gen, why });
    // Nothing completes alone before the new generation is durable (as for promote).
    this.setMetaDurably(withNewGen(s.meta, gen, "ALONE"), (step) => {
      if (s.phase !== "primary") return;
      // The peer may have been attached again meanwhile: what was dispatched before belongs to no session.
      s.dispatching = true;
      for (const [seq, pending] of s.pending) {
        pending.peerless = true;
        step.tryComplete(seq);
      }
      step.drainHeld();
      step.hello();
    });
  }

  scriptDone(id: number, outcome: ScriptOutcome): void {
    const s = this.s;
    const job = s.job;
    if (job === null || job.running !== id) return;
    job.running = null;
    if (!(outcome.kind === "exited" && outcome.code === 0) && outcome.kind !== "missing") this.log("warn", "mirror.script", { id, outcome: outcome.kind === "exited" ? `exit ${outcome.code}` : outcome.kind });
    const current = job.current;
    if (outcome.kind === "timed-out" && current !== undefined && current.script.startsWith("stop_") && !current.force) {
      // SafeKit's nice stop did not finish: the same stop script again, told to force.
      this.log("warn", "mirror.script_force", { script: current.script, after: s.config.scriptTimeoutMs });
      const again = s.nextScriptId++;
      job.running = again;
      job.current = { ...current, force: true };
      this.out.push({ kind: "run-script", run: { id: again, script: current.script, args: [...current.args, "force"], env: s.config.scriptEnv, timeoutMs: s.config.forceStopTimeoutMs } });
      return;
    }
    if (job.names.length === 0 && job.then.k === "prim-stopped" && this.busy()) {
      // Drain before leaving primary: the last completion continues.
      return;
    }
    this.nextScript();
  }
}

export type { MirrorMeta } from "./meta.ts";

/** The first index of `sorted` whose string is not below `key`. */
function lowerBound(sorted: readonly string[], key: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]! < key) low = middle + 1;
    else high = middle;
  }
  return low;
}
