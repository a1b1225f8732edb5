// The simulated world of one mirror module: two nodes, their heartbeat rings and
// replication stream, their disks, scripts and witness probes, and clients writing through
// the VIP, all on one event queue in virtual time. Each node runs the real runtime and
// core (core/mirror) over simulated drivers; the world records what the clients were told
// and checks the mirror's invariants (drivers/sim/mirror-checker.ts).
//
// Faults it injects: power loss (the disk's cache is lost, torn writes optional), a
// service crash (the kernel and its page cache survive), restarts, an application crash,
// network partitions between the nodes (all rings and the stream) and between a node and
// the witness, loss and latency on the rings, a full or failing disk, slow disks, a
// service that does not run for a while (its event loop stalled: pause, resume).
// It cannot inject: clock drift, corruption on the wire
// (the real stream authenticates), or a replication stream cut while heartbeats flow for
// longer than the stream's detection time (both share the partition verbs).

import { assert } from "../../core/assert.ts";
import type { DefaultPrim } from "../../core/config/module-config.ts";
import type { DiskError, DiskOp, DiskResult } from "../../core/mirror/disk-ops.ts";
import type { MirrorBeat, MirrorMessage, MirrorReadiness, MirrorRole } from "../../core/mirror/messages.ts";
import { copyMeta, lineage, type Gen, type MirrorMeta } from "../../core/mirror/meta.ts";
import { initMirror, type MirrorCommand, type MirrorConfig, type MirrorInput } from "../../core/mirror/mirror.ts";
import type { ClockPort, DiskPort, LogPort, ProbePort, ProcessPort } from "../../core/ports.ts";
import type { LogEntry } from "../../core/types.ts";
import { createMirrorRuntime, type MirrorRuntime } from "../../runtime/mirror-runtime.ts";
import { SimDatagrams } from "./datagrams.ts";
import type { Exclusion } from "../../core/mirror/exclude.ts";
import { SimLane, type LaneFrame, type LanePlantedBug } from "./mirror-lane.ts";
import { SimDisk, type SimDiskSettings } from "./disk.ts";
import { EventQueue, runEventsUntil, runUntilHolds } from "./event-queue.ts";
import { MirrorClients, type ClientSettings } from "./mirror-clients.ts";
import { lanLink, SimNetwork, type LinkSettings } from "./network.ts";
import { Prng } from "./prng.ts";
import { SimProbePort } from "./probes.ts";
import { SimProcessPort, type ScriptBehaviour } from "./processes.ts";
import { SimStreams } from "./streams.ts";

export const mirrorNodes = ["n1", "n2"] as const;
export const witnessAddr = "198.51.100.9";
export const mirrorRings = ["lan1", "lan2"] as const;
/** What a held node's service says it waits for (a rule with action wait, due). */
const heldWhy = "rule resource_wait";

/** Test-only: a bug planted in the world's wiring, which the checker must catch. */
export type MirrorPlantedBug = "none" | "ack-before-peer" | "clear-drops-armed" | "ahead-unmarked" | Exclude<LanePlantedBug, "none">;

export interface MirrorWorldOptions {
  readonly seed: number;
  readonly witness?: boolean;
  readonly ack?: "applied" | "received";
  readonly failover?: boolean;
  readonly defaultPrim?: DefaultPrim;
  readonly splitBrain?: MirrorConfig["splitBrain"];
  readonly blockSize?: number;
  readonly clients?: Partial<ClientSettings>;
  readonly disk?: Partial<SimDiskSettings>;
  readonly link?: LinkSettings;
  readonly trace?: "off" | "full";
  readonly plantedBug?: MirrorPlantedBug;
  /** The primary's in-sync writes and fsyncs take the lane (core/mirror/lane.ts). Default:
   *  on for odd seeds, so that runs cover both the replicator of today (none) and the lane. */
  readonly lane?: boolean;
  /** MirrorConfig.summaryDirtyBytesMax (absent: the service's). */
  readonly summaryDirtyBytesMax?: number;
  /** `<notreplicated>` rules (core/mirror/exclude.ts); the checker leaves those paths out. */
  readonly notReplicated?: readonly Exclusion[];
  /** `<tocheck>` paths, checked at each start of the module. */
  readonly toCheck?: readonly string[];
  /** Per node: the names of its replicated directories (MirrorConfig.layout). */
  readonly layouts?: Readonly<Record<string, readonly string[]>>;
  /** How long start_prim takes (the application's start). */
  readonly appStartMs?: number;
  /** Heartbeat pulse and peer-loss timeout (default tandem's: 50 ms and 250 ms). */
  readonly timings?: { readonly pulseMs: number; readonly timeoutMs: number };
  /** Called for every log event of every node. */
  readonly onLog?: (node: string, atMs: number, entry: LogEntry) => void;
}

export interface Violation {
  readonly atMs: number;
  readonly kind: string;
  readonly detail: string;
}

export class MirrorSimNode {
  readonly id: string;
  readonly disk: SimDisk<MirrorMeta>;
  processes: SimProcessPort;
  readonly probes: SimProbePort;
  powered = false;
  running = false;
  /** Down because of a power loss (its page cache is gone), not a crash. */
  lostPower = false;
  incarnation = 0;
  /** Power-ons so far: the host's boot id (a service restart keeps it). */
  boots = 0;
  runtime: MirrorRuntime | null = null;
  moduleWanted = true;
  vip = false;
  vipSinceMs = 0;
  accepting = false;
  role: MirrorRole = "STOP";
  readiness: MirrorReadiness = "NotReady";
  /** Set by an operator's prim or primforce: the next promotion is not automatic. */
  forced = false;
  /** An application start_prim began, until stop_prim or a power loss: a crash of the
   *  service leaves it running, as a real one does (invariant M6). */
  appRunning = false;
  /** A resource its module waits for is down (a checker or rule with action wait): its
   *  service tells every runtime it starts (invariant M7). */
  held = false;
  /** What this incarnation's scripts announced (invariant M8): the role the last
   *  `transition` went to, and whether start_sec ran with no stop_sec since. */
  announced: MirrorRole = "STOP";
  secUp = false;
  readonly requests = new Map<number, (result: DiskResult) => void>();
  lane: SimLane | null = null;
  /** Its service does not run (pause): what it would be given waits here until resume. */
  paused = false;
  waiting: MirrorInput[] = [];

  constructor(id: string, disk: SimDisk<MirrorMeta>, processes: SimProcessPort, probes: SimProbePort) {
    this.id = id;
    this.disk = disk;
    this.processes = processes;
    this.probes = probes;
  }

  get meta(): MirrorMeta | null {
    return this.runtime?.state.meta ?? null;
  }
}

export class MirrorWorld {
  readonly seed: number;
  readonly prng: Prng;
  readonly queue = new EventQueue();
  readonly network: SimNetwork;
  readonly streams: SimStreams<MirrorMessage>;
  /** The lanes' own connection between the nodes (cut and stopped with the stream). */
  readonly lanes: SimStreams<LaneFrame>;
  readonly datagrams: SimDatagrams<MirrorBeat>;
  readonly nodes: readonly MirrorSimNode[];
  readonly clients: MirrorClients;
  readonly trace: string[] = [];
  readonly violations: Violation[] = [];
  /** What clients saw that is a violation unless a split brain happened (see diverged()). */
  readonly suspects: Violation[] = [];
  readonly logs: { atMs: number; node: string; entry: LogEntry }[] = [];
  readonly options: MirrorWorldOptions;
  /** Generations under which some write was acknowledged, and each one's lineage. */
  readonly ackedGens = new Set<Gen>();
  readonly genLineage = new Map<Gen, readonly Gen[]>();
  readonly ackedGenFirstMs = new Map<Gen, number>();
  #nowMs = 0;
  #eventCount = 0;
  #nextRequest = 1;
  readonly #scripts: Record<string, ScriptBehaviour>;

  /** Per node: its replicated directories' names, as its service reads them at start. */
  readonly #layouts = new Map<string, readonly string[]>();

  constructor(options: MirrorWorldOptions) {
    this.options = options;
    for (const [id, layout] of Object.entries(options.layouts ?? {})) this.#layouts.set(id, layout);
    this.seed = options.seed;
    this.prng = new Prng(options.seed);
    const clockMs = () => this.#nowMs;
    this.network = new SimNetwork(this.queue, this.prng.fork("network"), mirrorRings, options.link ?? lanLink, clockMs);
    this.streams = new SimStreams<MirrorMessage>(this.queue, clockMs, mirrorNodes, { latencyMs: 0.2, connectMs: 100, detectMs: 2_000 });
    this.lanes = new SimStreams<LaneFrame>(this.queue, clockMs, mirrorNodes, { latencyMs: 0.2, connectMs: 100, detectMs: 2_000 });
    this.datagrams = new SimDatagrams<MirrorBeat>(this.network, clockMs);
    const appStartMs = options.appStartMs ?? 40;
    const scripts: Record<string, ScriptBehaviour> = {
      prestart: { durationMs: 5 },
      start_both: { durationMs: 5 },
      start_prim: { durationMs: appStartMs },
      stop_prim: { durationMs: 20 },
      start_second: { durationMs: 5 },
      stop_second: { durationMs: 5 },
      start_sec: { durationMs: 5 },
      stop_sec: { durationMs: 5 },
      transition: { durationMs: 2 },
      stop_both: { durationMs: 5 },
      poststop: { durationMs: 5 },
    };
    this.#scripts = scripts;
    this.nodes = mirrorNodes.map((id) => {
      const disk = new SimDisk<MirrorMeta>({ queue: this.queue, clockMs, prng: this.prng.fork(`disk:${id}`), copyMeta, ...(options.disk === undefined ? {} : { settings: options.disk }) });
      const processes = new SimProcessPort({ queue: this.queue, clockMs, scripts });
      const probes = new SimProbePort(this.queue, clockMs, 1);
      probes.hostUp(witnessAddr);
      return new MirrorSimNode(id, disk, processes, probes);
    });
    this.clients = new MirrorClients(this.#clientWorld(), this.prng.fork("clients"), options.clients ?? {});
  }

  get nowMs(): number {
    return this.#nowMs;
  }

  get eventCount(): number {
    return this.#eventCount;
  }

  node(id: string): MirrorSimNode {
    const node = this.nodes.find((each) => each.id === id);
    assert(node !== undefined, `unknown node ${id}`);
    return node;
  }

  peerOf(node: MirrorSimNode): MirrorSimNode {
    return this.nodes.find((each) => each !== node)!;
  }

  note(line: string): void {
    if (this.options.trace === "full") this.trace.push(`${formatMs(this.#nowMs)} ${line}`);
  }

  violation(kind: string, detail: string): void {
    this.violations.push({ atMs: this.#nowMs, kind, detail });
    this.note(`VIOLATION ${kind}: ${detail}`);
  }

  schedule(atMs: number, run: () => void): void {
    assert(atMs >= this.#nowMs, `event scheduled in the past (${atMs} < ${this.#nowMs})`);
    this.queue.push(atMs, run);
  }

  runUntil(timeMs: number): void {
    this.#eventCount += runEventsUntil(this.queue, timeMs, (atMs) => (this.#nowMs = atMs));
    this.#nowMs = Math.max(this.#nowMs, timeMs);
  }

  runFor(durationMs: number): void {
    this.runUntil(this.#nowMs + durationMs);
  }

  runUntilCondition(condition: () => boolean, deadlineMs: number, stepMs = 5): boolean {
    return runUntilHolds(condition, deadlineMs, stepMs, () => this.#nowMs, (timeMs) => this.runUntil(timeMs));
  }

  // ---- the mirror's configuration ----

  /** The operator edits `id`'s <replicated> list: its service reads it at its next start. */
  relist(id: string, layout: readonly string[]): void {
    this.note(`world relist ${id} ${layout.join(",")}`);
    this.#layouts.set(id, layout);
  }

  get laneOn(): boolean {
    return this.options.lane ?? this.seed % 2 === 1;
  }

  config(self: string): MirrorConfig {
    const options = this.options;
    return {
      module: "db",
      self,
      peer: self === "n1" ? "n2" : "n1",
      rings: mirrorRings,
      pulseMs: options.timings?.pulseMs ?? 50,
      timeoutMs: options.timings?.timeoutMs ?? 250,
      joinMs: Math.max(600, 2 * (options.timings?.timeoutMs ?? 250)),
      blockSize: options.blockSize ?? 4_096,
      ack: options.ack ?? "applied",
      failover: options.failover ?? true,
      defaultPrim: options.defaultPrim ?? { kind: "alone" },
      witnesses: options.witness === true ? [witnessAddr] : [],
      witnessTimeoutMs: 300,
      splitBrain: options.splitBrain ?? "changes",
      maxLoop: 3,
      loopIntervalMs: 86_400_000,
      scripts: true,
      scriptEnv: { SAFEMODULE: "db" },
      scriptTimeoutMs: 60_000,
      forceStopTimeoutMs: 60_000,
      resyncWorkers: 4,
      // Small, so that the plans' files are sent in several chunks.
      resyncChunkBytes: 2 * (options.blockSize ?? 4_096),
      // Small, so that the simulator's files span several extents.
      hotExtentBlocks: 4,
      checkpointMs: 500,
      retryMs: 1_000,
      lane: this.laneOn,
      ...(options.notReplicated === undefined ? {} : { notReplicated: options.notReplicated }),
      ...(options.toCheck === undefined ? {} : { toCheck: options.toCheck }),
      ...(options.summaryDirtyBytesMax === undefined ? {} : { summaryDirtyBytesMax: options.summaryDirtyBytesMax }),
      ...(this.#layouts.get(self) === undefined ? {} : { layout: this.#layouts.get(self)! }),
      ...(options.plantedBug === "ack-before-peer" ? { plantedBug: "early-ack" as const } : options.plantedBug === "clear-drops-armed" || options.plantedBug === "ahead-unmarked" ? { plantedBug: options.plantedBug } : {}),
    };
  }

  // ---- verbs (in pairs) ----

  /** powerOn: boots the node; its service starts and, if wanted, starts the module. */
  powerOn(id: string): void {
    const node = this.node(id);
    if (node.powered) return;
    this.note(`world power-on ${id}`);
    node.powered = true;
    node.boots++;
    this.#startService(node);
  }

  /** powerOff: the node loses power: its page cache, its processes and its VIP are gone. */
  powerOff(id: string): void {
    const node = this.node(id);
    if (!node.powered) return;
    this.note(`world power-off ${id}`);
    const peer = this.peerOf(node);
    // The peer holds every acknowledged write when it is primary in a generation that
    // descends from the one this node acknowledged under, or an up-to-date secondary:
    // Ready, in that very generation (a primary gone on alone has one its secondary lacks;
    // a secondary stalled meanwhile still said Ready). Two primaries (this one took over
    // from a peer that stalled, and the peer has not stepped down yet): the peer lacks
    // what this one acknowledged alone.
    const acked = ackGen(node);
    const peerMeta = peer.runtime?.state.meta;
    const wholeElsewhere = peer.running && peerMeta !== undefined && (
      ((peer.role === "PRIM" || peer.role === "ALONE") && (acked === null || lineage(peerMeta).includes(acked))) ||
      (peer.role === "SECOND" && peer.readiness === "Ready" && peerMeta.gen === acked));
    if (peer.running && !wholeElsewhere) {
      // This node may hold the only whole copy (it was primary, or stopped after being the
      // primary alone, while the peer resynced or waited): its power loss is a double failure
      // (docs/simulation.md). Both nodes down at once is counted in #stopService.
      this.note("double failure: a node loses power while its peer is not a whole copy");
      this.clients.doubleFailure();
    }
    if (node.running) this.#stopService(node, "power");
    else {
      node.lostPower = true;
      // Its service had crashed (the page cache kept what it acknowledged); with the peer
      // down too, that cache was the only copy: both down, a power loss among them.
      if (!peer.running) {
        this.note("double failure: a crashed node loses power while its peer is down");
        this.clients.doubleFailure();
      }
    }
    node.appRunning = false;
    node.disk.powerLoss();
    node.powered = false;
  }

  /** crash: the node's service dies; the kernel, its page cache and the VIP address stay
   *  (the VIP with nothing behind it answers nothing). */
  crash(id: string): void {
    const node = this.node(id);
    if (!node.running) return;
    this.note(`world crash ${id}`);
    this.#stopService(node, "crash");
  }

  /** restart: the crashed service starts again (a new incarnation). */
  restart(id: string): void {
    const node = this.node(id);
    if (!node.powered || node.running) return;
    this.note(`world restart ${id}`);
    this.#startService(node);
  }

  /** partition: the two nodes cannot reach each other on any ring nor by the stream. */
  partition(): void {
    this.note("world partition n1 n2");
    this.network.partition("*", "n1", "n2");
    this.network.partition("*", "n2", "n1");
    this.streams.partition("n1", "n2");
    this.lanes.partition("n1", "n2");
  }

  heal(): void {
    this.note("world heal n1 n2");
    this.network.heal("*", "n1", "n2");
    this.network.heal("*", "n2", "n1");
    this.streams.heal("n1", "n2");
    this.lanes.heal("n1", "n2");
  }

  /** cutWitness: `id` cannot reach the witness. */
  cutWitness(id: string): void {
    this.note(`world cut-witness ${id}`);
    this.node(id).probes.hostDown(witnessAddr);
  }

  healWitness(id: string): void {
    this.note(`world heal-witness ${id}`);
    this.node(id).probes.hostUp(witnessAddr);
  }

  /** pause: `id`'s service stops running without dying (its event loop stalled: a long
   *  collector pause, a starved CPU). What it would be given waits: timers come due,
   *  beats and messages arrive, disks and scripts finish; it sends nothing meanwhile. Its
   *  lane goes on (native threads). resume: it runs again, and is given its due timers
   *  first, then the rest in the order it came, as Node does after a stall (its timers
   *  run before it reads its sockets); beats are stamped as read then. */
  pause(id: string): void {
    const node = this.node(id);
    if (!node.running || node.paused) return;
    this.note(`world pause ${id}`);
    node.paused = true;
  }

  resume(id: string): void {
    const node = this.node(id);
    if (!node.paused) return;
    this.note(`world resume ${id}`);
    node.paused = false;
    const waiting = node.waiting.splice(0);
    const runtime = node.runtime;
    if (runtime === null) return;
    const ordered = [...waiting.filter((input) => input.kind === "timer"), ...waiting.filter((input) => input.kind !== "timer")];
    for (const input of ordered) {
      // A later input of the list may have stopped the service (a stop's last script).
      if (node.runtime !== runtime) return;
      runtime.deliver(input.kind === "beat" ? { ...input, receivedAtMs: this.#nowMs } : input);
    }
  }

  /** isolate: `id` reaches neither its peer nor the witness (its network cable is out). */
  isolate(id: string): void {
    this.partition();
    this.cutWitness(id);
  }

  healAll(): void {
    this.heal();
    for (const node of this.nodes) this.healWitness(node.id);
    this.network.setLink("*", this.options.link ?? lanLink);
  }

  /** A checker or errd sees the application fail on `id`, with the action configured. */
  crashApp(id: string, action: "restart" | "stopstart" = "restart"): void {
    const node = this.node(id);
    if (node.runtime === null) return;
    this.note(`world app-crash ${id}${action === "restart" ? "" : ` ${action}`}`);
    node.runtime.deliver({ kind: "app-failed", why: "the application died", action });
  }

  command(id: string, command: MirrorCommand, fullsync = false): void {
    const node = this.node(id);
    this.note(`world command ${id} ${command}${fullsync ? " fullsync" : ""}`);
    if (command === "start") node.moduleWanted = true;
    if (command === "stop") node.moduleWanted = false;
    if (command === "prim" || command === "primforce") node.forced = true;
    if (node.runtime === null) return;
    node.runtime.deliver({ kind: "command", command, fullsync });
  }

  /** A resource `id`'s module waits for goes down (true) or comes back: what its service
   *  tells the core when a checker or rule with action wait holds or no longer does. */
  hold(id: string, held: boolean): void {
    const node = this.node(id);
    if (node.held === held) return;
    this.note(`world hold ${id} ${held ? "on" : "off"}`);
    node.held = held;
    node.runtime?.deliver({ kind: "hold", why: held ? heldWhy : null });
  }

  diskFull(id: string, capacityBytes: number | null): void {
    this.note(`world disk-capacity ${id} ${capacityBytes}`);
    (this.node(id).disk.settings as { capacityBytes: number | null }).capacityBytes = capacityBytes;
  }

  /** diskSlow: every disk call of the node takes `factor` times as long (1: normal again). */
  diskSlow(id: string, factor: number): void {
    this.note(`world disk-slow ${id} x${factor}`);
    const disk = this.node(id).disk;
    if (factor === 1) disk.unslow();
    else disk.slow(factor);
  }

  /** The node's next fsync of a file fails with EIO and loses what of it was not durable. */
  diskLoseWriteback(id: string): void {
    this.note(`world disk-lose-writeback ${id}`);
    this.node(id).disk.loseWriteback();
  }

  diskFailNext(id: string, error: DiskError): void {
    this.note(`world disk-fail-next ${id} ${error}`);
    this.node(id).disk.failNext("write", error);
  }

  // ---- services ----

  #startService(node: MirrorSimNode): void {
    node.running = true;
    node.lostPower = false;
    node.incarnation++;
    const incarnation = node.incarnation;
    const live = () => node.running && node.incarnation === incarnation;
    const clock: ClockPort = this.#clock(node, live);
    const disk = guardDisk(node.disk.open(), live);
    // Scripts of an ended incarnation die with it; run ids start again at 1.
    node.processes = new SimProcessPort({ queue: this.queue, clockMs: () => this.#nowMs, scripts: this.#scripts });
    node.announced = "STOP";
    node.secUp = false;
    const processes = guardProcesses(this.#watchApplication(node, node.processes), live);
    const probes: ProbePort = { probe: (probe, timeoutMs, done) => node.probes.probe(probe, timeoutMs, (result) => live() && done(result)) };
    const log: LogPort = {
      write: (entry) => {
        this.logs.push({ atMs: this.#nowMs, node: node.id, entry });
        this.options.onLog?.(node.id, this.#nowMs, entry);
        if (this.options.trace === "full") this.note(`${node.id} ${entry.level} ${entry.event} ${JSON.stringify(entry.fields)}`);
      },
    };
    const stream = this.streams.start(node.id);
    const laneStream = this.lanes.start(node.id);
    let runtime: MirrorRuntime | null = null;
    const lane = this.laneOn
      ? new SimLane({
          self: node.id,
          peer: this.peerOf(node).id,
          blockSize: this.config(node.id).blockSize,
          extentBlocks: this.config(node.id).hotExtentBlocks,
          disk,
          followerDisk: guardApply(node.disk.aside(), live),
          stream: laneStream,
          later: (run) => this.schedule(this.#nowMs, () => live() && run()),
          intercept: (id, op) => runtime?.deliver({ kind: "intercepted", id, op }),
          answer: (id, result) => this.#completed(node, id, result),
          nameCount: (path) => node.disk.nameCount(path),
          ...(this.options.plantedBug?.startsWith("lane-") === true ? { plantedBug: this.options.plantedBug as LanePlantedBug } : {}),
        })
      : null;
    node.lane = lane;
    const datagrams = this.datagrams.port(node.id);
    const guardedDatagrams = { send: datagrams.send, listen: (receive: Parameters<typeof datagrams.listen>[0]) => datagrams.listen((ring, message, at) => live() && receive(ring, message, at)) };
    runtime = createMirrorRuntime(initMirror(this.config(node.id), incarnation, `${node.id}-boot${node.boots}`), { clock, datagrams: guardedDatagrams, stream, disk, processes, probes, log, ...(lane === null ? {} : { lane }) }, {
      complete: (id, result) => {
        lane?.answered();
        this.#completed(node, id, result);
      },
      vip: (up) => {
        node.vip = up;
        node.vipSinceMs = this.#nowMs;
        this.note(`${node.id} vip ${up ? "up" : "down"}`);
      },
      accepting: (on) => {
        node.accepting = on;
      },
      role: (role, readiness, gen) => this.#roleChanged(node, role, readiness, gen),
    });
    // Every input of the core goes through deliver: a paused service holds them.
    const deliver = runtime.deliver.bind(runtime);
    runtime.deliver = (input) => {
      if (node.paused) node.waiting.push(input);
      else deliver(input);
    };
    node.runtime = runtime;
    if (node.held) runtime.deliver({ kind: "hold", why: heldWhy });
    if (node.moduleWanted) {
      const runtime = node.runtime;
      this.schedule(this.#nowMs + 1, () => live() && runtime.deliver({ kind: "command", command: "start" }));
    }
  }

  #stopService(node: MirrorSimNode, why: "crash" | "power"): void {
    const other = this.peerOf(node);
    node.running = false;
    // A stalled service that dies never runs what it held.
    node.paused = false;
    node.waiting = [];
    node.lostPower = why === "power";
    node.runtime = null;
    node.accepting = false;
    node.role = "STOP";
    node.readiness = "NotReady";
    node.requests.clear();
    // A crash leaves the address configured but nothing answers on it; a power loss removes it.
    node.vip = false;
    this.streams.stop(node.id);
    this.lanes.stop(node.id);
    node.lane = null;
    if (why === "crash") node.disk.crash();
    if (!other.running && (node.lostPower || other.lostPower)) {
      this.note("double failure: both nodes down, a power loss among them");
      this.clients.doubleFailure();
    }
  }

  /** M6: start_prim never runs while an application an earlier start_prim started still
   *  runs (a crashed service's: its lock file and port would make the new one fail).
   *  M8: each `transition` starts from the role the one before went to (STOP at a
   *  service's start), and start_sec and stop_sec alternate, start_sec first. */
  #watchApplication(node: MirrorSimNode, port: ProcessPort): ProcessPort {
    return {
      run: (run, done) => {
        if (run.script === "transition") {
          const [from, to] = run.args;
          if (from !== node.announced) this.violation("M8", `${node.id}: transition ${run.args.join(" ")} after one to ${node.announced}`);
          node.announced = to as MirrorRole;
        }
        // A stop script that outlived its nice timeout runs again told to force: the same stop.
        if ((run.script === "start_sec" || run.script === "stop_sec") && run.args.at(-1) !== "force") {
          const up = run.script === "start_sec";
          if (node.secUp === up) this.violation("M8", `${node.id}: ${run.script} ${up ? "again with no stop_sec since" : "with no start_sec before"}`);
          node.secUp = up;
        }
        if (run.script === "start_prim") {
          if (node.appRunning) this.violation("M6", `${node.id}: start_prim while the application an earlier start_prim started still runs (no stop_prim since)`);
          node.appRunning = true;
        }
        if (run.script === "stop_prim") node.appRunning = false;
        port.run(run, done);
      },
      kill: (id) => port.kill(id),
      count: (query, done) => port.count(query, done),
    };
  }

  #clock(node: MirrorSimNode, live: () => boolean): ClockPort {
    const generations = new Map<string, number>();
    return {
      nowMs: () => this.#nowMs,
      arm: (timer, afterMs, onFire) => {
        const generation = (generations.get(timer) ?? 0) + 1;
        generations.set(timer, generation);
        this.queue.push(this.#nowMs + afterMs, () => live() && generations.get(timer) === generation && onFire());
      },
      cancel: (timer) => generations.set(timer, (generations.get(timer) ?? 0) + 1),
    };
  }

  #roleChanged(node: MirrorSimNode, role: MirrorRole, readiness: MirrorReadiness, gen: Gen | null): void {
    const before = node.role;
    node.role = role;
    node.readiness = readiness;
    this.note(`${node.id} ${role} ${readiness} gen ${gen}`);
    const meta = node.meta;
    if (meta !== null && meta.gen !== null && !this.genLineage.has(meta.gen)) {
      // A generation's lineage is its parent's plus itself: kept whole here, whatever the
      // node's bounded history still holds.
      const parent = meta.history.at(-1);
      this.genLineage.set(meta.gen, parent === undefined ? [meta.gen] : [...(this.genLineage.get(parent) ?? lineage({ ...meta, gen: parent, history: meta.history.slice(0, -1) })), meta.gen]);
    }
    const primary = role === "ALONE" || role === "PRIM";
    // M7: a node held by a resource it waits for never takes a role (it may be leaving one).
    if (node.held && role !== before && (role === "SECOND" || (primary && before !== "ALONE" && before !== "PRIM"))) this.violation("M7", `${node.id} became ${role} while it waits for a resource (action wait)`);
    if (primary && before !== role && !(before === "ALONE" || before === "PRIM")) {
      if (node.forced) {
        node.forced = false;
        return;
      }
      // M5: a node that takes the primary role on its own holds every acknowledged generation.
      // Without a witness, a partition lets both go on: a generation the other side acknowledged
      // after this node last heard from it is a split brain (resolved later), not staleness.
      const mine = new Set(meta === null ? [] : lineage(meta));
      const lastHeardMs = node.runtime?.state.peerBeatMs ?? -Infinity;
      // Stale: behind a generation under which writes were acknowledged (that generation
      // descends from this node's). A diverged one is a split brain (M3, preserve), not this.
      const behind = (acked: Gen): boolean => meta?.gen !== null && meta?.gen !== undefined && acked !== meta.gen && (this.genLineage.get(acked) ?? []).includes(meta.gen);
      const missing = [...this.ackedGens].filter((acked) => !mine.has(acked) && behind(acked) && (this.options.witness === true || (this.ackedGenFirstMs.get(acked) ?? Infinity) <= lastHeardMs));
      if (missing.length > 0) this.violation("M5", `${node.id} became ${role} by itself with generation ${meta?.gen} whose lineage lacks acknowledged generation(s) ${missing.join(", ")}`);
    }
  }

  #completed(node: MirrorSimNode, id: number, result: DiskResult): void {
    const reply = node.requests.get(id);
    if (reply === undefined) return;
    node.requests.delete(id);
    if (result === null) {
      const gen = ackGen(node);
      if (gen !== null) this.#ackedUnder(gen);
    }
    reply(result);
  }

  #ackedUnder(gen: Gen): void {
    if (this.ackedGens.has(gen)) return;
    for (const other of this.ackedGens) {
      const a = this.genLineage.get(gen) ?? [gen];
      const b = this.genLineage.get(other) ?? [other];
      if (!a.includes(other) && !b.includes(gen)) {
        this.clients.checkReads = false;
        if (this.options.witness === true) this.violation("M3", `writes acknowledged under generations ${other} and ${gen}, neither of which descends from the other (two primaries)`);
        else this.note(`split brain: writes acknowledged under ${other} and ${gen}`);
      }
    }
    this.ackedGens.add(gen);
    this.ackedGenFirstMs.set(gen, this.#nowMs);
  }

  /** Whether two generations that ever had a primary diverged (a split brain happened). */
  diverged(): boolean {
    const gens = [...this.genLineage.keys()];
    for (let i = 0; i < gens.length; i++) {
      for (let j = i + 1; j < gens.length; j++) {
        const a = this.genLineage.get(gens[i]!)!;
        const b = this.genLineage.get(gens[j]!)!;
        if (!a.includes(gens[j]!) && !b.includes(gens[i]!)) return true;
      }
    }
    return false;
  }

  /** The node clients reach through the VIP: the last to raise it among those holding it. */
  vipHolder(): MirrorSimNode | null {
    let holder: MirrorSimNode | null = null;
    for (const node of this.nodes) if (node.vip && node.running && (holder === null || node.vipSinceMs > holder.vipSinceMs)) holder = node;
    return holder;
  }

  #clientWorld() {
    const world = this;
    const latencyMs = 0.1;
    return {
      nowMs: () => world.#nowMs,
      schedule: (afterMs: number, run: () => void) => world.schedule(world.#nowMs + afterMs, run),
      submit: (op: DiskOp, done: (result: DiskResult | "unreachable", node: string, gen: Gen | null) => void) => world.submit(op, done),
      read(path: string): { node: string; bytes: Uint8Array | null } | null {
        const node = world.vipHolder();
        if (node === null) return null;
        return { node: node.id, bytes: node.disk.fileBytes(path) };
      },
      // What a client saw is a violation only if no split brain explains it: decided at the end.
      violation: (kind: string, detail: string) => world.suspects.push({ atMs: world.#nowMs, kind, detail }),
    };
  }

  /** Sends `op` through the VIP as an application would; `done` gets the answer, or
   *  "unreachable" at once when no application listens behind the VIP. */
  submit(op: DiskOp, done: (result: DiskResult | "unreachable", node: string, gen: Gen | null) => void): void {
    const latencyMs = 0.1;
    const node = this.vipHolder();
    // No application listens behind the VIP until start_prim has run: refused.
    if (node === null || node.runtime === null || !node.accepting) {
      done("unreachable", "", null);
      return;
    }
    const id = this.#nextRequest++;
    const runtime = node.runtime;
    this.schedule(this.#nowMs + latencyMs, () => {
      if (node.runtime !== runtime) return;
      node.requests.set(id, (result) => {
        const gen = ackGen(node);
        this.schedule(this.#nowMs + latencyMs, () => done(result, node.id, gen));
      });
      if (node.lane !== null) node.lane.submit(id, op);
      else runtime.deliver({ kind: "intercepted", id, op });
    });
  }
}

/** The generation an acknowledgement belongs to: the one the node's disk holds (a new one
 *  the core set in memory and has not persisted yet completes nothing alone: what completes
 *  meanwhile was applied on the peer too, under the generation both have). */
function ackGen(node: MirrorSimNode): Gen | null {
  return node.disk.durableMeta()?.gen ?? null;
}

function guardDisk(port: DiskPort<MirrorMeta>, live: () => boolean): DiskPort<MirrorMeta> {
  return {
    apply: (op, done) => port.apply(op, (result) => live() && done(result)),
    read: (path, blocks, blockSize, done) => port.read(path, blocks, blockSize, (result) => live() && done(result)),
    install: (path, snapshot, blockSize, done) => port.install(path, snapshot, blockSize, (result) => live() && done(result)),
    preserve: (paths, label, done) => port.preserve(paths, label, (result) => live() && done(result)),
    persistMeta: (meta, done) => port.persistMeta(meta, (result) => live() && done(result)),
    loadMeta: (done) => port.loadMeta((meta) => live() && done(meta)),
  };
}

function guardApply(port: Pick<DiskPort<MirrorMeta>, "apply">, live: () => boolean): Pick<DiskPort<MirrorMeta>, "apply"> {
  return { apply: (op, done) => port.apply(op, (result) => live() && done(result)) };
}

function guardProcesses(port: ProcessPort, live: () => boolean): ProcessPort {
  return {
    run: (run, done) => port.run(run, (outcome) => live() && done(outcome)),
    kill: (id) => port.kill(id),
    count: (query, done) => port.count(query, (count) => live() && done(count)),
  };
}

export function formatMs(ms: number): string {
  return `${(ms / 1000).toFixed(3).padStart(9)}s`;
}
