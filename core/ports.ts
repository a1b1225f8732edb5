// Driver ports: the interfaces the core's effects are executed through. A pure module:
// types only. Each port has a simulated implementation (drivers/sim) and a real one
// (drivers/real), and one contract test suite that runs against both.

import type { BucketSet } from "./bucket-set.ts";
import type { DiskError, DiskOp, DiskResult, PathSnapshot } from "./mirror/disk-ops.ts";
import type { LogEntry, NodeId, RingId } from "./types.ts";

/** Monotonic time and one-shot named timers. */
export interface ClockPort {
  /** Milliseconds on a monotonic clock; never goes backwards. */
  nowMs(): number;
  /** Arms `timer` to call `onFire` once after `afterMs`; re-arming replaces the previous arm. */
  arm(timer: string, afterMs: number, onFire: () => void): void;
  /** Disarms `timer`; a no-op when it is not armed. */
  cancel(timer: string): void;
}

/** Heartbeat datagrams on each ring: may be lost, duplicated, delayed or reordered. */
export interface DatagramPort<Message> {
  send(ring: RingId, to: NodeId, message: Message): void;
  /** Registers the one receiver of this node's datagrams. `receivedAtMs` is when the
   *  datagram reached the host, on this port's clock (the kernel's receive timestamp on
   *  Linux), so that time spent waiting in the socket does not count as freshness. */
  listen(receive: (ring: RingId, message: Message, receivedAtMs: number) => void): void;
}

/** What the kernel filter of one module must enforce for the VIP's traffic. */
export interface FilterSettings {
  /** New connections (and their packets) in these buckets are accepted. */
  readonly owned: BucketSet;
  /** Only packets of connections this node already tracks are accepted in these buckets. */
  readonly lingering: BucketSet;
  /** Mid-stream packets of connections no node tracks get a TCP reset (subset of owned). */
  readonly reset: BucketSet;
  /** The filter accepts nothing once leaseMs has passed without apply() or renew(). */
  readonly leaseMs: number;
}

/** The kernel filter and VIP of one farm module on one node. */
export interface FilterPort {
  /** Replaces the whole filter atomically and starts a new lease. */
  apply(settings: FilterSettings): void;
  /** Extends the current lease to leaseMs from now. */
  renew(leaseMs: number): void;
  setVip(state: VipState): void;
}

/** The virtual IP on a farm node. "up": the node serves it (its address is local, ARP for
 *  it is answered). "draining": the node left the farm but its application may still be
 *  answering connections it accepted; the address stays local so those answers can be
 *  routed, ARP is no longer answered, and the (empty) filter accepts nothing. "down": the
 *  address is gone. */
export type VipState = "up" | "draining" | "down";

/** The module's application: restarts and the health checker's verdicts. */
export interface ApplicationPort {
  restart(): void;
  /** Registers the one receiver of health changes (true: healthy). */
  watchHealth(report: (healthy: boolean) => void): void;
  /** Registers the one receiver of whether the application may be running (from its start
   *  until its stop is complete). */
  watchRunning(report: (running: boolean) => void): void;
}

export interface LogPort {
  write(entry: LogEntry): void;
}

// ---- Module scripts, checkers and process monitoring (SafeKit's <user>, <check>, <errd>) ----

/** One run of a module script (`bin/start_both`, ...) or of a custom checker program. */
export interface ScriptRun {
  /** Names this run in logs and in its outcome; unique per module and node. */
  readonly id: number;
  /** The program's name in the module's `bin/` directory, e.g. `stop_both`, or an
   *  absolute path (a custom checker's `exec`). */
  readonly script: string;
  /** SafeKit's three arguments (current state, next state, action), plus `force` on the
   *  second call of a stop script. */
  readonly args: readonly string[];
  /** The whole environment of the run besides PATH (SAFEMODULE, <var> values, ...). */
  readonly env: Readonly<Record<string, string>>;
  /** After this the run's whole process group is killed (SIGTERM, then SIGKILL after a
   *  grace) and the outcome `timed-out` is reported once the group is gone. */
  readonly timeoutMs: number;
}

export type ScriptOutcome =
  | { readonly kind: "exited"; readonly code: number }
  /** Killed by a signal it did not ask for (SIGSEGV, an operator's kill). */
  | { readonly kind: "signalled"; readonly signal: string }
  | { readonly kind: "timed-out" }
  /** No such program in `bin/`: SafeKit treats a missing script as one that did nothing. */
  | { readonly kind: "missing" }
  /** It exists but could not be started (not executable, bad interpreter). */
  | { readonly kind: "not-started"; readonly reason: string };

/** What <errd> asks about the processes of the host. */
export interface ProcessQuery {
  /** Exact process name (the kernel's comm, at most 15 characters). */
  readonly name: string | null;
  /** A JavaScript regular expression searched in the process name (as errd's reader checks it). */
  readonly nameRegex: string | null;
  /** A JavaScript regular expression searched in the arguments after argv[0], joined by spaces. */
  readonly argRegex: string | null;
  /** `name` is a systemd service: the count is 1 when it is active, 0 otherwise. */
  readonly service: boolean;
}

/** Runs module scripts and custom checkers as child processes, and counts processes. */
export interface ProcessPort {
  /** Starts `run` in a process group of its own; calls `done` exactly once, never before
   *  `run` has returned (the runtime must not be re-entered). Output goes to
   *  the module's per-script log. Never throws for a run that fails: that is an outcome. */
  run(run: ScriptRun, done: (outcome: ScriptOutcome) => void): void;
  /** Kills the process group of a run still going (a custom checker on module stop). */
  kill(id: number): void;
  /** How many processes (or active services) match; `done` is called exactly once, with
   *  null when the host could not be asked (no /proc, no systemctl, a scan that failed):
   *  not knowing must not read as "no process" and restart the application. */
  count(query: ProcessQuery, done: (count: number | null) => void): void;
}

/** A checker's probe: one test of one resource, answered up or down. */
export type Probe =
  | { readonly kind: "tcp"; readonly addr: string; readonly port: number }
  | { readonly kind: "ping"; readonly addr: string }
  /** The interface that holds `localAddr` is up and running. */
  | { readonly kind: "intf"; readonly localAddr: string }
  /** `addr` is configured on this host. */
  | { readonly kind: "ip"; readonly addr: string }
  /** Another module is running and Ready (UP; PRIM or ALONE for a mirror): on this node
   *  when `addr` is null, else on the node service at addr:port. */
  | { readonly kind: "module"; readonly module: string; readonly addr: string | null; readonly port: number | null };

export interface ProbeResult {
  readonly up: boolean;
  /** Why it is down, for the log: "ECONNREFUSED", "timed out after 5000 ms". */
  readonly detail: string;
}

export interface ProbePort {
  /** Tests once; calls `done` exactly once, never before `probe` has returned (the runtime
   *  must not be re-entered), within `timeoutMs` plus scheduling slack. */
  probe(probe: Probe, timeoutMs: number, done: (result: ProbeResult) => void): void;
}

// ---- Node-to-node control stream ----

/** One ordered, reliable, authenticated stream to each peer (admin commands travelling
 *  between node services; later the mirror's replication). Messages to one peer arrive
 *  in order, each at most once; while a peer is unreachable `send` drops, and the stream
 *  reports the peer down, so that nothing waits on a message that will never arrive. */
export interface StreamPort<Message> {
  send(to: NodeId, message: Message): void;
  /** Registers the one receiver of this node's messages. Never called before listen returns. */
  listen(receive: (from: NodeId, message: Message) => void): void;
  /** Registers the one receiver of connectivity changes: a peer's stream is up or down. */
  watchPeers(report: (peer: NodeId, connected: boolean) => void): void;
}

// ---- Mirror: the replicated tree of one module on one node ----

/** The replicated tree of one mirror module on one node, below the interception: what the
 *  core asks of the node's own disk. Operations complete in the order they were issued
 *  (a read issued after a write sees it); each `done` is called exactly once, never before
 *  the call has returned (the runtime must not be re-entered). Writes land in a page cache
 *  and become durable on fsync (or when the disk writes them back): a power loss drops
 *  what was not yet durable. The metadata (`Meta`, e.g. generations and dirty maps)
 *  lives outside the tree and is durable when `persistMeta` completes. */
export interface DiskPort<Meta> {
  /** Applies one operation; an fsync completes once what it covers is durable. */
  apply(op: DiskOp, done: (result: DiskResult) => void): void;
  /** What a resync sends of `path`: its kind and attributes and, for a file, the blocks
   *  asked for (`all`: every block of its current size). */
  read(path: string, blocks: readonly number[] | "all", blockSize: number, done: (result: PathSnapshot | DiskError) => void): void;
  /** Makes `path` match `snapshot` (a resync target's side): absent removes it and all
   *  below it; a file is created or replaced, cut or extended to `size`, its given blocks
   *  written; a directory is created (its `children` are not touched); attributes set. */
  install(path: string, snapshot: PathSnapshot, blockSize: number, done: (result: DiskResult) => void): void;
  /** Copies the current version of `paths` (directories with what is below them) to a
   *  recoverable place outside the tree named after `label`; answers that place. Used to
   *  keep a split brain's losing side. */
  preserve(paths: readonly string[], label: string, done: (result: { readonly place: string } | DiskError) => void): void;
  /** Replaces the durable metadata; done once it is durable. */
  persistMeta(meta: Meta, done: (result: DiskResult) => void): void;
  /** The metadata last made durable, or null when there is none (a new node). */
  loadMeta(done: (meta: Meta | null) => void): void;
}
