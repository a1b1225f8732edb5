// The simulated world of one farm module: N nodes, their heartbeat rings, their kernels,
// their applications and a fleet of clients, all on one event queue in virtual time.
//
// Each node runs the real runtime and core over simulated drivers. Faults it injects:
// process crash and restart (core state lost, kernel table flushed, conntrack kept),
// power off and on (everything lost), hang and release (the service and its application
// freeze, inputs queue up, the kernel keeps filtering under its lease), the network
// faults of SimNetwork, an application that fails its health check, operator stop/start
// (the stop script stops the application stopMs after the node left the farm).
// It cannot inject: clock drift between nodes, partial kernel failures, slow disks.

import { assert } from "../../core/assert.ts";
import { createFarmNode, type FarmEffect, type FarmInput, type FarmNode } from "../../core/farm.ts";
import type { FarmConfig } from "../../core/farm-config.ts";
import { bucketOfPacket } from "../../core/farm-packet.ts";
import type { ApplicationPort, ClockPort, DatagramPort, FilterPort, LogPort } from "../../core/ports.ts";
import type { LogEntry, NodeId, RingId, StepResult } from "../../core/types.ts";
import type { FarmHeartbeat } from "../../core/farm.ts";
import { createFarmRuntime, type FarmRuntime } from "../../runtime/farm-runtime.ts";
import { EventQueue, runEventsUntil, runUntilHolds } from "./event-queue.ts";
import { SimKernelFilter, type PlantedBug } from "./kernel-filter.ts";
import { lanLink, SimNetwork, type LinkSettings } from "./network.ts";
import { Prng } from "./prng.ts";
import { ClientFleet, type ClientSettings, type PacketRecord } from "./clients.ts";

export interface AppSettings {
  /** How long the application takes to restart. */
  readonly restartMs: number;
  /** How long the health checker takes to notice a change. */
  readonly checkDelayMs: number;
  /** How long a stop takes to stop the application after the node left (its stop script). */
  readonly stopMs: number;
}

export interface FarmWorldOptions {
  readonly seed: number;
  readonly config: FarmConfig;
  readonly link?: LinkSettings;
  readonly clients?: Partial<ClientSettings>;
  readonly app?: Partial<AppSettings>;
  /** "full" keeps a readable line per event (replays, determinism checks); "off" is fast. */
  readonly trace?: "off" | "full";
  readonly plantedBug?: PlantedBug;
  /** Called for every client packet once the nodes' kernels have decided. */
  readonly onPacket?: (record: PacketRecord) => void;
  /** Called for every log event of every node. */
  readonly onLog?: (nodeId: NodeId, atMs: number, entry: LogEntry) => void;
}

export type ProcessState = "down" | "running" | "hung";

/** Bound on inputs queued for a hung node; beyond it datagrams are dropped like a full socket buffer. */
export const hungQueueMax = 100_000;

export class SimNode {
  readonly id: NodeId;
  powered = false;
  process: ProcessState = "down";
  /** When the service last stopped running (crash, power off, hang); null while running. */
  notRunningSinceMs: number | null = 0;
  /** Grows at every process start: the core's incarnation. */
  bootCount = 0;
  /** Whether the operator wants the module started (SafeKit's boot="on"). */
  moduleWanted = true;
  runtime: FarmRuntime | null = null;
  receive: ((ring: RingId, message: FarmHeartbeat, receivedAtMs: number) => void) | null = null;
  healthReport: ((healthy: boolean) => void) | null = null;
  runningReport: ((running: boolean) => void) | null = null;
  readonly timerGeneration = new Map<string, number>();
  hungQueue: (() => void)[] = [];
  hungDropped = 0;
  readonly kernel: SimKernelFilter;
  appBroken = false;
  /** The application runs (started with the module, stopped by its stop, gone with the power). */
  appRunning = false;
  /** Grows at every start and stop of the module: a stop script's end belongs to its stop. */
  moduleCommands = 0;
  appRestartingUntilMs = 0;
  appReportedHealthy = true;

  constructor(id: NodeId, bucketCount: number, bug: PlantedBug) {
    this.id = id;
    this.kernel = new SimKernelFilter(bucketCount, bug);
  }

  /** Runs `input` now, later (hung) or never (down). */
  input(input: () => void): void {
    if (this.process === "running") input();
    else if (this.process === "hung") {
      if (this.hungQueue.length < hungQueueMax) this.hungQueue.push(input);
      else this.hungDropped++;
    }
  }

  get farm(): FarmNode | null {
    return this.runtime?.state ?? null;
  }
}

export class FarmWorld {
  readonly config: FarmConfig;
  readonly seed: number;
  readonly prng: Prng;
  readonly queue = new EventQueue();
  readonly network: SimNetwork;
  readonly nodes: readonly SimNode[];
  readonly clients: ClientFleet;
  readonly trace: string[] = [];
  readonly appSettings: AppSettings;
  #nowMs = 0;
  #eventCount = 0;
  readonly #options: FarmWorldOptions;

  constructor(options: FarmWorldOptions) {
    this.#options = options;
    this.config = options.config;
    this.seed = options.seed;
    this.prng = new Prng(options.seed);
    this.appSettings = { restartMs: 200, checkDelayMs: 100, stopMs: 100, ...options.app };
    this.network = new SimNetwork(this.queue, this.prng.fork("network"), this.config.rings, options.link ?? lanLink, () => this.#nowMs);
    this.nodes = this.config.nodes.map((node) => new SimNode(node.id, this.config.bucketCount, options.plantedBug ?? "none"));
    this.clients = new ClientFleet(this, this.prng.fork("clients"), options.clients ?? {}, options.onPacket);
  }

  get nowMs(): number {
    return this.#nowMs;
  }

  get eventCount(): number {
    return this.#eventCount;
  }

  get tracing(): boolean {
    return this.#options.trace === "full";
  }

  node(id: NodeId): SimNode {
    const node = this.nodes.find((each) => each.id === id);
    assert(node !== undefined, `unknown node ${id}`);
    return node;
  }

  schedule(atMs: number, run: () => void): void {
    assert(atMs >= this.#nowMs, `event scheduled in the past (${atMs} < ${this.#nowMs})`);
    this.queue.push(atMs, run);
  }

  note(line: string): void {
    if (this.tracing) this.trace.push(`${formatMs(this.#nowMs)} ${line}`);
  }

  /** Runs every event up to and including `timeMs`, then sets the clock to `timeMs`. */
  runUntil(timeMs: number): void {
    assert(timeMs >= this.#nowMs, "cannot run backwards");
    this.#eventCount += runEventsUntil(this.queue, timeMs, (atMs) => (this.#nowMs = atMs));
    this.#nowMs = timeMs;
  }

  runFor(durationMs: number): void {
    this.runUntil(this.#nowMs + durationMs);
  }

  /** Runs until `condition` holds (checked every stepMs) or `deadlineMs` passes; returns whether it held. */
  runUntilCondition(condition: () => boolean, deadlineMs: number, stepMs = 5): boolean {
    return runUntilHolds(condition, deadlineMs, stepMs, () => this.#nowMs, (timeMs) => this.runUntil(timeMs));
  }

  // ---- fault and operator verbs (in pairs) ----

  /** powerOn: boots the node; its service starts and, if wanted, starts the module. */
  powerOn(id: NodeId): void {
    const node = this.node(id);
    if (node.powered) return;
    this.note(`world power-on ${id}`);
    node.powered = true;
    node.appRestartingUntilMs = this.#nowMs + this.appSettings.restartMs;
    this.#startProcess(node);
  }

  /** powerOff: the node loses power; nothing it held in memory or kernel survives. */
  powerOff(id: NodeId): void {
    const node = this.node(id);
    if (!node.powered) return;
    this.note(`world power-off ${id}`);
    this.#stopProcess(node);
    node.powered = false;
    node.appRunning = false;
    node.kernel.wipe();
  }

  /** crash: the node's service process dies; the kernel drops its filter table. */
  crash(id: NodeId): void {
    const node = this.node(id);
    if (node.process === "down") return;
    this.note(`world crash ${id}`);
    this.#stopProcess(node);
    node.kernel.flushRules();
  }

  /** restart: the crashed service process starts again with a new incarnation. */
  restart(id: NodeId): void {
    const node = this.node(id);
    if (!node.powered || node.process !== "down") return;
    this.note(`world restart ${id}`);
    this.#startProcess(node);
  }

  /** hang: the service and its application stop running but keep their state. */
  hang(id: NodeId): void {
    const node = this.node(id);
    if (node.process !== "running") return;
    this.note(`world hang ${id}`);
    node.process = "hung";
    node.notRunningSinceMs = this.#nowMs;
  }

  /** release: a hung node resumes and processes what queued up meanwhile, in order. */
  release(id: NodeId): void {
    const node = this.node(id);
    if (node.process !== "hung") return;
    this.note(`world release ${id} queued=${node.hungQueue.length}`);
    node.process = "running";
    node.notRunningSinceMs = null;
    const queued = node.hungQueue;
    node.hungQueue = [];
    for (const input of queued) node.input(input);
  }

  /** startModule: the operator starts the module on the node: its application runs. */
  startModule(id: NodeId): void {
    const node = this.node(id);
    node.moduleWanted = true;
    node.moduleCommands++;
    this.note(`world start ${id}`);
    node.input(() => {
      if (!node.appRunning) this.#setAppRunning(node, true);
      node.runtime?.deliver({ kind: "start" });
    });
  }

  /** stopModule: the operator stops the module on the node: it leaves the farm at once,
   *  and its stop script stops the application stopMs later. */
  stopModule(id: NodeId): void {
    const node = this.node(id);
    node.moduleWanted = false;
    const command = ++node.moduleCommands;
    this.note(`world stop ${id}`);
    node.input(() => {
      node.runtime?.deliver({ kind: "stop" });
      this.schedule(this.#nowMs + this.appSettings.stopMs, () => node.input(() => command === node.moduleCommands && node.powered && this.#setAppRunning(node, false)));
    });
  }

  #setAppRunning(node: SimNode, running: boolean): void {
    this.note(`${node.id} application ${running ? "started" : "stopped"}`);
    node.appRunning = running;
    node.runningReport?.(running);
  }

  /** breakApp: the node's application starts failing its health check (and stops answering). */
  breakApp(id: NodeId): void {
    const node = this.node(id);
    this.note(`world break-app ${id}`);
    node.appBroken = true;
    this.#checkHealthLater(node);
  }

  /** repairApp: the node's application passes its health check again. */
  repairApp(id: NodeId): void {
    const node = this.node(id);
    this.note(`world repair-app ${id}`);
    node.appBroken = false;
    this.#checkHealthLater(node);
  }

  // ---- observation ----

  /** Whether the node's application answers requests now. */
  serving(node: SimNode): boolean {
    return node.powered && node.appRunning && node.process !== "hung" && !node.appBroken && this.#nowMs >= node.appRestartingUntilMs;
  }

  /** UP nodes whose service is running (a hung node counts as not UP). */
  upNodes(): SimNode[] {
    return this.nodes.filter((node) => node.process === "running" && node.farm?.state === "UP");
  }

  /**
   * Stable membership: every running UP node has the same member view, equal to the set of
   * running UP nodes, and no other node's kernel accepts anything. Exactly-one-owner
   * checks apply only then.
   */
  isStable(): boolean {
    const up = this.upNodes();
    if (up.length === 0) return false;
    const ids = up.map((node) => node.id).sort();
    for (const node of up) {
      const members = node.farm!.members;
      if (members.length !== ids.length || members.some((member, index) => member.id !== ids[index])) return false;
    }
    return this.nodes.every((node) => up.includes(node) || !node.kernel.acceptsAnything(this.#nowMs));
  }

  // ---- process life cycle and drivers ----

  #startProcess(node: SimNode): void {
    node.process = "running";
    node.notRunningSinceMs = null;
    node.bootCount++;
    node.hungQueue = [];
    const drivers = {
      clock: this.#clockDriver(node),
      network: this.#networkDriver(node),
      filter: this.#filterDriver(node),
      application: this.#applicationDriver(node),
      log: this.#logDriver(node),
    };
    const observe = this.tracing ? (nowMs: number, input: FarmInput, result: StepResult<FarmNode, FarmEffect>) => this.#traceStep(node, nowMs, input, result) : undefined;
    node.runtime = createFarmRuntime(createFarmNode(this.config, node.id, node.bootCount), drivers, observe);
    node.appReportedHealthy = true;
    // The module's start starts the application; one that outlived a crash of the service still runs.
    if (node.moduleWanted) node.appRunning = true;
    node.runtime.deliver({ kind: "application", running: node.appRunning });
    if (node.moduleWanted) node.runtime.deliver({ kind: "start" });
    this.#checkHealthLater(node);
  }

  #stopProcess(node: SimNode): void {
    if (node.process === "running") node.notRunningSinceMs = this.#nowMs;
    node.process = "down";
    node.runtime = null;
    node.receive = null;
    node.healthReport = null;
    node.runningReport = null;
    node.hungQueue = [];
    node.timerGeneration.clear();
  }

  #clockDriver(node: SimNode): ClockPort {
    const bootCount = node.bootCount;
    return {
      nowMs: () => this.#nowMs,
      arm: (timer, afterMs, onFire) => {
        const generation = (node.timerGeneration.get(timer) ?? 0) + 1;
        node.timerGeneration.set(timer, generation);
        const current = () => node.bootCount === bootCount && node.timerGeneration.get(timer) === generation;
        this.schedule(this.#nowMs + afterMs, () => current() && node.input(() => current() && onFire()));
      },
      cancel: (timer) => node.timerGeneration.set(timer, (node.timerGeneration.get(timer) ?? 0) + 1),
    };
  }

  #networkDriver(node: SimNode): DatagramPort<FarmHeartbeat> {
    return {
      send: (ring, to, message) => {
        const target = this.node(to);
        this.network.transmit(ring, node.id, to, () => {
          const receivedAtMs = this.#nowMs;
          target.input(() => target.receive?.(ring, message, receivedAtMs));
        });
      },
      listen: (receive) => {
        node.receive = receive;
      },
    };
  }

  #filterDriver(node: SimNode): FilterPort {
    return {
      apply: (settings) => node.kernel.apply(settings, this.#nowMs),
      renew: (leaseMs) => node.kernel.renew(leaseMs, this.#nowMs),
      setVip: (state) => node.kernel.setVip(state),
    };
  }

  #applicationDriver(node: SimNode): ApplicationPort {
    return {
      restart: () => {
        node.appRestartingUntilMs = this.#nowMs + this.appSettings.restartMs;
        this.schedule(node.appRestartingUntilMs, () => this.#checkHealthLater(node));
      },
      watchHealth: (report) => {
        node.healthReport = report;
      },
      watchRunning: (report) => {
        node.runningReport = report;
      },
    };
  }

  #logDriver(node: SimNode): LogPort {
    return {
      write: (entry) => {
        this.#options.onLog?.(node.id, this.#nowMs, entry);
        if (this.tracing && entry.level !== "debug") this.note(`${node.id} log ${entry.event} ${formatFields(entry.fields)}`);
      },
    };
  }

  /** The health checker notices the application's state checkDelayMs from now. */
  #checkHealthLater(node: SimNode): void {
    const bootCount = node.bootCount;
    this.schedule(this.#nowMs + this.appSettings.checkDelayMs, () => {
      if (node.bootCount !== bootCount || node.process === "down") return;
      const healthy = !node.appBroken && this.#nowMs >= node.appRestartingUntilMs;
      if (healthy === node.appReportedHealthy) return;
      if (!healthy && this.#nowMs < node.appRestartingUntilMs) {
        // A (re)start in progress is not a failure yet: look again when it should be done.
        this.schedule(node.appRestartingUntilMs, () => this.#checkHealthLater(node));
        return;
      }
      node.appReportedHealthy = healthy;
      node.input(() => node.healthReport?.(healthy));
    });
  }

  #traceStep(node: SimNode, nowMs: number, input: FarmInput, result: StepResult<FarmNode, FarmEffect>): void {
    const farm = result.state;
    const sends = result.effects.filter((effect) => effect.kind === "send").length;
    const other = result.effects.filter((effect) => effect.kind !== "send" && effect.kind !== "log").map(describeEffect);
    const inputText = input.kind === "receive" ? `recv ${input.message.from}#${input.message.seq}@${input.ring} ${input.message.state}${input.message.joining ? "+j" : ""}` : input.kind === "timer" ? "tick" : input.kind === "health" ? `health ${input.healthy}` : input.kind === "application" ? `application running=${input.running}` : input.kind;
    this.trace.push(`${formatMs(nowMs)} ${node.id} ${inputText} | ${farm.state}${farm.joining ? "+j" : ""} [${farm.members.map((member) => member.id).join(",")}] sends=${sends} ${other.join(" ")}`.trimEnd());
  }
}

function describeEffect(effect: FarmEffect): string {
  switch (effect.kind) {
    case "filter-set":
      return `filter(own=${effect.owned.size()} linger=${effect.lingering.size()} reset=${effect.reset.size()})`;
    case "filter-renew":
      return "renew";
    case "timer-arm":
      return `arm+${effect.afterMs}`;
    case "vip":
      return `vip=${effect.state}`;
    default:
      return effect.kind;
  }
}

function formatFields(fields: LogEntry["fields"]): string {
  return Object.entries(fields)
    .filter(([key]) => key !== "module" && key !== "node")
    .map(([key, value]) => `${key}=${value}`)
    .join(" ");
}

export function formatMs(ms: number): string {
  return `t=${ms.toFixed(3).padStart(10)}`;
}
