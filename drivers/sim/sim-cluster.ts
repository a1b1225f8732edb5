// The scenarios' Cluster interface over a FarmWorld, in virtual time, with the invariant
// checker attached for the whole run.

import { timelineFields, timelineLine } from "./timeline.ts";
import type { NodeId } from "../../core/types.ts";
import { defaultFarmTimings, type FarmConfig } from "../../core/farm-config.ts";
import { ScenarioFailure, type Cluster, type LoadStats, type NodeView, type Scenario } from "../../scenarios/cluster.ts";
import { FarmChecker } from "./farm-checker.ts";
import { FarmWorld } from "./farm-world.ts";

export interface SimClusterOptions {
  readonly seed: number;
  /** Receives each timeline line as it happens. */
  readonly print?: (line: string) => void;
  readonly trace?: boolean;
}

const timelineEvents = new Set(["farm.state", "farm.peer-lost", "farm.peer-seen", "farm.lease-lost", "farm.rejected", "farm.health", "farm.stop", "farm.start"]);

export class SimCluster implements Cluster {
  readonly world: FarmWorld;
  readonly checker: FarmChecker;
  readonly nodeIds: readonly NodeId[];
  readonly timeline: string[] = [];
  readonly #print: (line: string) => void;
  #loadStartedMs = 0;
  readonly #answeredBy = new Map<NodeId, number>();
  readonly #lastAnswerMs = new Map<number, number>();
  #longestGapMs = 0;

  constructor(scenario: Scenario, options: SimClusterOptions) {
    this.#print = options.print ?? (() => {});
    const config: FarmConfig = {
      module: scenario.name,
      nodes: scenario.nodes,
      rings: ["lan", "private"],
      bucketCount: 256,
      hashSeed: 0x5eed,
      rules: [{ port: 80, proto: "tcp", mode: scenario.mode }],
      timings: defaultFarmTimings,
    };
    let checker: FarmChecker | null = null;
    this.world = new FarmWorld({
      seed: options.seed,
      config,
      trace: options.trace === true ? "full" : "off",
      clients: { count: 0 },
      onPacket: (record) => checker?.onPacket(record),
      onLog: (node, atMs, entry) => {
        if (!timelineEvents.has(entry.event)) return;
        const fields = timelineFields(entry.fields);
        this.#line(atMs, `${node.padEnd(4)} ${entry.event} ${fields}`);
      },
    });
    this.checker = checker = new FarmChecker(this.world);
    this.nodeIds = scenario.nodes.map((node) => node.id);
  }

  /** Powers every node on and starts the invariant checker. */
  bootAll(initiallyOff: readonly NodeId[] = []): void {
    for (const id of this.nodeIds) if (!initiallyOff.includes(id)) this.world.powerOn(id);
    this.checker.start();
  }

  async boot(node: NodeId): Promise<void> {
    this.note(`boot ${node}`);
    this.world.powerOn(node);
  }

  nowMs(): number {
    return this.world.nowMs;
  }

  note(message: string): void {
    this.#line(this.world.nowMs, `---- ${message}`);
  }

  #line(atMs: number, text: string): void {
    const line = timelineLine(atMs, text);
    this.timeline.push(line);
    this.#print(line);
  }

  async start(node: NodeId): Promise<void> {
    this.note(`start ${node}`);
    this.world.startModule(node);
  }
  async stop(node: NodeId): Promise<void> {
    this.note(`stop ${node}`);
    this.world.stopModule(node);
  }
  async kill(node: NodeId): Promise<void> {
    this.note(`kill ${node} (power off)`);
    this.world.powerOff(node);
  }
  async hang(node: NodeId): Promise<void> {
    this.note(`hang ${node}`);
    this.world.hang(node);
  }
  async release(node: NodeId): Promise<void> {
    this.note(`release ${node}`);
    this.world.release(node);
  }
  async partition(groupA: readonly NodeId[], groupB: readonly NodeId[]): Promise<void> {
    this.note(`partition {${groupA.join(",")}} | {${groupB.join(",")}}`);
    for (const a of groupA) {
      for (const b of groupB) {
        this.world.network.partition("*", a, b);
        this.world.network.partition("*", b, a);
      }
    }
  }
  async heal(): Promise<void> {
    this.note("heal all partitions");
    this.world.network.healAll();
  }
  async degrade(lossRate: number, jitterMs: number): Promise<void> {
    this.note(`degrade networks: loss ${lossRate * 100}% jitter ${jitterMs} ms`);
    this.world.network.setLink("*", { lossRate, jitterMs });
  }
  async breakApp(node: NodeId): Promise<void> {
    this.note(`application on ${node} starts failing its health check`);
    this.world.breakApp(node);
  }
  async repairApp(node: NodeId): Promise<void> {
    this.note(`application on ${node} repaired`);
    this.world.repairApp(node);
  }

  async startLoad(clientCount: number): Promise<void> {
    this.note(`client load: ${clientCount} clients`);
    const fleet = this.world.clients;
    fleet.setClientCount(clientCount);
    this.#loadStartedMs = this.world.nowMs;
    fleet.onSuccess = (client, node, atMs) => {
      this.#answeredBy.set(node, (this.#answeredBy.get(node) ?? 0) + 1);
      const last = this.#lastAnswerMs.get(client.ip) ?? this.#loadStartedMs;
      this.#longestGapMs = Math.max(this.#longestGapMs, atMs - last);
      this.#lastAnswerMs.set(client.ip, atMs);
    };
    fleet.start();
  }

  async stopLoad(): Promise<LoadStats> {
    const stats = await this.loadStats();
    this.world.clients.stop();
    this.note(`load stopped: ${stats.answered} answered, ${stats.resets} resets, ${stats.answerTimeouts} answer timeouts, longest gap ${stats.longestGapMs.toFixed(0)} ms`);
    return stats;
  }

  async loadStats(): Promise<LoadStats> {
    const clients = this.world.clients.clients;
    return {
      answeredBy: Object.fromEntries(this.#answeredBy),
      answered: clients.reduce((sum, client) => sum + client.successes, 0),
      resets: clients.reduce((sum, client) => sum + client.resets, 0),
      longestGapMs: this.#longestGapMs,
      answerTimeouts: clients.reduce((sum, client) => sum + client.answerTimeouts, 0),
      answerTimeoutMs: this.world.clients.settings.answerTimeoutMs,
    };
  }

  async sleep(durationMs: number): Promise<void> {
    this.world.runFor(durationMs);
  }

  async waitFor(description: string, condition: (views: readonly NodeView[]) => boolean, timeoutMs: number): Promise<number> {
    const startMs = this.world.nowMs;
    const held = this.world.runUntilCondition(() => condition(this.#viewsNow()), startMs + timeoutMs, 1);
    if (!held) {
      const views = this.#viewsNow().map((view) => `${view.id}=${view.state}[${view.members.join(",")}]`).join(" ");
      throw new ScenarioFailure(`${description}: not true within ${timeoutMs} ms (now ${views})`);
    }
    const tookMs = this.world.nowMs - startMs;
    this.note(`${description} (after ${tookMs.toFixed(0)} ms)`);
    return tookMs;
  }

  async views(): Promise<readonly NodeView[]> {
    return this.#viewsNow();
  }

  #viewsNow(): NodeView[] {
    return this.world.nodes.map((node) => {
      const farm = node.farm;
      const running = node.process === "running" && farm !== null;
      return {
        id: node.id,
        state: running ? farm.state : "DOWN",
        members: running ? farm.members.map((member) => member.id) : [],
        ownedCount: node.kernel.effectiveOwned(this.world.nowMs).size(),
      };
    });
  }
}
