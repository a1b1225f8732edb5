// The scenarios' Cluster (scenarios/cluster.ts) on the Docker lab (lab.ts), in real time,
// so that the farm scenarios written for the simulator run unchanged on real node
// services in containers.
//
//   boot / kill       container start / `docker kill` (SIGKILL to everything: power loss)
//   hang / release    docker pause / unpause (the cgroup freezer)
//   start / stop      `tandem start|stop -m web` in the node's container
//   partition / heal  the lab's partitions (nftables in the nodes, both ways)
//   degrade           loss between nodes with nftables, jitter with tc netem (lab.degrade;
//                     a clear LabUnsupported where the kernel has no sch_netem)
//   load              a generator in the client container (in-container.ts): one source
//                     address per client, who answered each request, resets, gaps
//   views / waitFor   a watcher in each node running `tandem state --json -m web` every
//                     25 ms, streaming each change; waitFor checks the condition at each
//                     new sample until its deadline
//   breakApp / repairApp  the lab's flag file (/etc/tandem-lab/app-broken) created /
//                     removed in the node: while it exists the node's HTTP server does not
//                     listen, the module's custom checker (custom.http, a connect to
//                     127.0.0.1:80 every 50 ms) sees it down and restarts the application:
//                     the node leaves the farm, then start_both waits for the server to
//                     listen again, i.e. for the repair (lab-config.ts, userconfigXml)
//
// A LabCluster starts from a fresh lab (`down`, then `up` with the scenario's nodes, mode,
// weights and nodes left off), so that a scenario never inherits another's state. The
// timeline has the scenario's steps (note) and every change of a node's farm as its
// watcher sees it, in seconds since the scenario began.

import { performance } from "node:perf_hooks";
import type { NodeId } from "../core/types.ts";
import { ScenarioFailure, type Cluster, type LoadStats, type NodeView, type Scenario } from "../scenarios/cluster.ts";
import { failureStretches, loadScript, type LoadReport, type LoadSettings } from "./in-container.ts";
import { clientContainer, containerPrefix, farmModule, Lab, LabUnsupported, labVip, tandemCli } from "./lab.ts";
import { ExecSession, Timeline, Watchers, withDeadline, type WatchSample } from "./watchers.ts";
import { appBrokenFlag, appCheckResource, loadClientAddress, loadClientCountMax, nodeName } from "./lab-config.ts";

export { LabUnsupported };

/** How long a booted node's service may take to answer. */
const bootServiceMs = 30_000;

/** One sample of a node's watcher. */
export interface LabClusterOptions {
  readonly lab?: Lab;
  /** Receives each timeline line as it happens. */
  readonly print?: (line: string) => void;
  /** Receives the lab's progress (images, containers); default: dropped. */
  readonly progress?: (line: string) => void;
  /** How often each node's watcher asks its service (default 25 ms). */
  readonly watchPeriodMs?: number;
  /** The clients' behaviour (defaults: the simulator's 5 requests per connection, 20 ms think). */
  readonly load?: Partial<Pick<LoadSettings, "requestsPerConnection" | "thinkMs" | "connectTimeoutMs" | "answerTimeoutMs">>;
  /** How long `up` may take to form the farm (default 60 s). */
  readonly upTimeoutMs?: number;
}

/** A sample older than this (the watcher says something at least every 200 ms) means a node that does not answer. */
const staleMs = 1_000;

export class LabCluster implements Cluster {
  readonly lab: Lab;
  readonly nodeIds: readonly NodeId[];
  readonly #timeline: Timeline;
  readonly #loadOptions: NonNullable<LabClusterOptions["load"]>;
  /** The timeline's start by the wall clock, which the programs in the containers share. */
  readonly #startedAtEpochMs: number;
  readonly #watchers: Watchers;
  readonly #powered = new Set<NodeId>();
  readonly #hung = new Set<NodeId>();
  #load: { session: ExecSession; waiting: Map<string, (report: LoadReport) => void>; nextId: number; ended: string | null } | null = null;

  private constructor(lab: Lab, scenario: Scenario, options: LabClusterOptions) {
    this.lab = lab;
    this.nodeIds = scenario.nodes.map((node) => node.id);
    this.#timeline = new Timeline(options.print ?? (() => {}));
    this.#startedAtEpochMs = Date.now() - this.#timeline.nowMs();
    this.#watchers = new Watchers(lab.docker, { module: farmModule, periodMs: options.watchPeriodMs ?? 25, describe: describeSample, line: (text) => this.#timeline.line(text), expected: (node) => this.#powered.has(node) });
    this.#loadOptions = options.load ?? {};
    for (const id of this.nodeIds) if (!(scenario.initiallyOff ?? []).includes(id)) this.#powered.add(id);
  }

  /** A fresh lab for `scenario`: the lab there is removed, a new one comes up with the
   *  scenario's nodes (n1..nN), mode and weights, its initiallyOff nodes created but off. */
  static async create(scenario: Scenario, options: LabClusterOptions = {}): Promise<LabCluster> {
    const expected = scenario.nodes.map((_, index) => nodeName(index));
    const ids = scenario.nodes.map((node) => node.id);
    if (ids.join(",") !== expected.join(",")) throw new LabUnsupported(`scenario ${scenario.name}: the lab's nodes are named ${expected.join(",")}, the scenario's are ${ids.join(",")}`);
    const lab = options.lab ?? new Lab({ progress: options.progress ?? (() => {}) });
    await lab.requireDocker();
    await lab.down();
    await lab.up({
      nodes: ids.length,
      farm: { mode: scenario.mode, powers: Object.fromEntries(scenario.nodes.map((node) => [node.id, node.weight])) },
      off: scenario.initiallyOff ?? [],
      waitMs: options.upTimeoutMs ?? 60_000,
    });
    const cluster = new LabCluster(lab, scenario, options);
    for (const id of cluster.#powered) await cluster.#watchers.watch(id);
    // Every watcher has said something before the scenario begins.
    const deadline = performance.now() + 10_000;
    while ([...cluster.#powered].some((id) => cluster.#watchers.sample(id) === undefined)) {
      if (performance.now() > deadline) throw new Error(`no state from the watchers of ${[...cluster.#powered].filter((id) => cluster.#watchers.sample(id) === undefined).join(", ")} within 10 s`);
      await cluster.#watchers.nextSample(100);
    }
    cluster.note(`lab up: ${ids.map((id) => `${id}${cluster.#powered.has(id) ? "" : " (off)"}`).join(" ")}, mode ${scenario.mode}, VIP ${labVip}`);
    return cluster;
  }

  /** Ends the watchers and the load (the lab stays up: lab.down() removes it). */
  async close(): Promise<void> {
    if (this.#load !== null) {
      this.#load.session.close();
      this.#load = null;
    }
    this.#watchers.close();
  }

  /** Every line so far: the scenario's steps and each change a watcher saw. */
  get timeline(): readonly string[] {
    return this.#timeline.lines;
  }

  nowMs(): number {
    return this.#timeline.nowMs();
  }

  note(message: string): void {
    this.#timeline.note(message);
  }

  // ---- Faults ----

  async boot(node: NodeId): Promise<void> {
    this.#known(node);
    this.note(`boot ${node} (container start)`);
    await this.lab.start(node);
    this.#powered.add(node);
    this.#hung.delete(node);
    await this.#watchers.watch(node);
    // Booted once its service answers, as on the simulator (a node powered on runs its
    // service): the scenarios' deadlines are the farm's, not a container's start-up, which
    // took 1.2–1.6 s on a slow day and left node-join's 1 s formation bound 0.3 s for the farm.
    const started = performance.now();
    while (this.#watchers.sample(node)?.ok !== true) {
      if (performance.now() - started > bootServiceMs) throw new Error(`${node}: its node service did not answer within ${bootServiceMs / 1000} s of the container's start`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    this.note(`${node}'s service answers (${Math.round(performance.now() - started)} ms after the container started)`);
  }

  async kill(node: NodeId): Promise<void> {
    this.#known(node);
    this.note(`kill ${node} (docker kill: power off)`);
    this.#powered.delete(node);
    this.#hung.delete(node);
    await this.lab.kill(node);
    this.#watchers.forget(node);
  }

  async start(node: NodeId): Promise<void> {
    this.note(`start ${node} (tandem start -m ${farmModule})`);
    await this.#tandem(node, ["start", "-m", farmModule]);
  }

  async stop(node: NodeId): Promise<void> {
    this.note(`stop ${node} (tandem stop -m ${farmModule})`);
    await this.#tandem(node, ["stop", "-m", farmModule]);
  }

  async hang(node: NodeId): Promise<void> {
    this.#known(node);
    this.note(`hang ${node} (docker pause)`);
    await this.lab.pause(node);
    this.#hung.add(node);
  }

  async release(node: NodeId): Promise<void> {
    this.#known(node);
    this.note(`release ${node} (docker unpause)`);
    await this.lab.unpause(node);
    // What the watcher said before the freeze is stale: nothing until it speaks again.
    this.#watchers.drop(node);
    this.#hung.delete(node);
  }

  async partition(groupA: readonly NodeId[], groupB: readonly NodeId[]): Promise<void> {
    this.note(`partition {${groupA.join(",")}} | {${groupB.join(",")}}`);
    await this.lab.partition(groupA, groupB);
  }

  async heal(): Promise<void> {
    this.note("heal all partitions");
    await this.lab.heal();
  }

  async degrade(lossRate: number, jitterMs: number): Promise<void> {
    this.note(`degrade the links between nodes: loss ${lossRate * 100}% jitter ${jitterMs} ms`);
    await this.lab.degrade(lossRate, jitterMs);
  }

  async breakApp(node: NodeId): Promise<void> {
    this.#appReachable(node, "breakApp");
    this.note(`break the application on ${node} (${appBrokenFlag} created: its server stops listening; the checker ${appCheckResource} sees it)`);
    await this.lab.breakApp(node);
  }

  async repairApp(node: NodeId): Promise<void> {
    this.#appReachable(node, "repairApp");
    this.note(`repair the application on ${node} (${appBrokenFlag} removed: its server listens again)`);
    await this.lab.repairApp(node);
  }

  #appReachable(node: NodeId, verb: string): void {
    this.#known(node);
    if (!this.#powered.has(node)) throw new ScenarioFailure(`${verb} ${node}: the node is powered off`);
    if (this.#hung.has(node)) throw new ScenarioFailure(`${verb} ${node}: the node is hung`);
  }

  // ---- Load ----

  async startLoad(clientCount: number): Promise<void> {
    if (this.#load !== null) throw new Error("startLoad: the load runs already (stopLoad first)");
    if (!Number.isInteger(clientCount) || clientCount < 1 || clientCount > loadClientCountMax) throw new LabUnsupported(`startLoad(${clientCount}): the lab's client has addresses for 1 to ${loadClientCountMax} clients`);
    this.note(`client load: ${clientCount} clients (each from its own address) on ${labVip}:80`);
    const addresses = Array.from({ length: clientCount }, (_, index) => loadClientAddress(index));
    const added = await this.lab.exec(clientContainer, ["sh", "-c", addresses.map((address) => `ip addr replace ${address}/32 dev eth0`).join(" && ")]);
    if (added.code !== 0) throw new Error(`cannot add the clients' addresses in ${clientContainer}: ${added.stderr.trim()}`);
    const settings: LoadSettings = {
      vip: labVip,
      port: 80,
      addresses,
      requestsPerConnection: this.#loadOptions.requestsPerConnection ?? 5,
      thinkMs: this.#loadOptions.thinkMs ?? 20,
      connectTimeoutMs: this.#loadOptions.connectTimeoutMs ?? 200,
      answerTimeoutMs: this.#loadOptions.answerTimeoutMs ?? 1_000,
    };
    const load = { session: null as unknown as ExecSession, waiting: new Map<string, (report: LoadReport) => void>(), nextId: 1, ended: null as string | null };
    load.session = await ExecSession.start(
      this.lab.docker,
      clientContainer,
      ["node", "-e", loadScript, JSON.stringify(settings)],
      (line) => {
        let message: { id?: string; report?: LoadReport };
        try {
          message = JSON.parse(line);
        } catch {
          return;
        }
        if (message.id !== undefined && message.report !== undefined) {
          load.waiting.get(message.id)?.(message.report);
          load.waiting.delete(message.id);
        }
      },
      (stderr) => {
        load.ended = stderr.trim() === "" ? "the load generator ended" : `the load generator ended: ${stderr.trim().split("\n").slice(-3).join(" | ")}`;
        for (const resolve of load.waiting.values()) resolve(null as unknown as LoadReport);
        load.waiting.clear();
      },
    );
    this.#load = load;
    // Running (its clients starting) once it answers.
    await this.#askLoad("stats");
  }

  async loadStats(): Promise<LoadReport> {
    return this.#askLoad("stats");
  }

  async stopLoad(): Promise<LoadReport> {
    const report = await this.#askLoad("stop");
    // The generator's times are from its own start: on the timeline's clock.
    const startedAtMs = report.startedAtEpochMs - this.#startedAtEpochMs;
    this.#load?.session.close();
    this.#load = null;
    const by = Object.entries(report.answeredBy).sort().map(([node, count]) => `${node} ${count}`).join(", ");
    const gap = report.longestGap === null ? "" : ` (client ${report.longestGap.client}, ended at ${((startedAtMs + report.longestGap.endedAtMs) / 1000).toFixed(3)} s)`;
    this.note(
      `load stopped after ${(report.elapsedMs / 1000).toFixed(1)} s: ${report.answered} answered (${by || "none"}), ${report.resets} resets (${report.refused} refused), ` +
        `${report.closed} closed mid-request, ${report.connectTimeouts} connect and ${report.answerTimeouts} answer timeouts, ${report.badAnswers} bad answers, ` +
        `${report.connections} connections, longest gap ${report.longestGapMs} ms${gap}`,
    );
    const stretches = failureStretches(report);
    if (stretches.length > 0) {
      const at = (ms: number) => ((startedAtMs + ms) / 1000).toFixed(1);
      this.note(`failed requests (resets, timeouts, closed): ${stretches.map((each) => `${at(each.fromMs)}–${at(each.toMs)} s: ${each.failed}`).join(", ")}`);
    }
    return report;
  }

  async #askLoad(verb: "stats" | "stop"): Promise<LoadReport> {
    const load = this.#load;
    if (load === null) throw new Error(`${verb === "stop" ? "stopLoad" : "loadStats"}: no load runs (startLoad first)`);
    if (load.ended !== null) throw new Error(load.ended);
    const id = String(load.nextId++);
    const answer = new Promise<LoadReport>((resolve) => load.waiting.set(id, resolve));
    load.session.write(`${verb} ${id}`);
    const report = await withDeadline(answer, 10_000, `the load generator did not answer "${verb}" within 10 s`);
    if (report === null) throw new Error(load.ended ?? "the load generator ended");
    return report;
  }

  // ---- Looking ----

  async sleep(durationMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, durationMs));
  }

  async views(): Promise<readonly NodeView[]> {
    return this.#viewsNow();
  }

  async waitFor(description: string, condition: (views: readonly NodeView[]) => boolean, timeoutMs: number): Promise<number> {
    const start = performance.now();
    const deadline = start + timeoutMs;
    for (;;) {
      const now = performance.now();
      if (condition(this.#viewsNow())) {
        const tookMs = Math.round(now - start);
        this.note(`${description} (after ${tookMs} ms)`);
        return tookMs;
      }
      if (now >= deadline) {
        const views = this.#viewsNow().map((view) => `${view.id}=${view.state}[${view.members.join(",")}]`).join(" ");
        throw new ScenarioFailure(`${description}: not true within ${timeoutMs} ms (now ${views})`);
      }
      await this.#watchers.nextSample(Math.min(deadline - now, 50));
    }
  }

  #viewsNow(): NodeView[] {
    const now = performance.now();
    return this.nodeIds.map((id): NodeView => {
      const sample = this.#watchers.sample(id);
      const down: NodeView = { id, state: "DOWN", members: [], ownedCount: 0 };
      if (!this.#powered.has(id) || this.#hung.has(id) || sample === undefined || !sample.ok || now - sample.receivedAt > staleMs) return down;
      if (sample.farm === null || sample.farm === undefined) return { id, state: "STOP", members: [], ownedCount: 0 };
      return { id, state: sample.farm.state, members: [...sample.farm.members], ownedCount: sample.farm.owned };
    });
  }

  // ---- Inside ----

  #known(node: NodeId): void {
    if (!this.nodeIds.includes(node)) throw new Error(`no node ${node} in this lab (${this.nodeIds.join(", ")})`);
  }

  async #tandem(node: NodeId, args: readonly string[]): Promise<void> {
    this.#known(node);
    if (!this.#powered.has(node)) throw new ScenarioFailure(`tandem ${args.join(" ")} on ${node}: the node is powered off`);
    if (this.#hung.has(node)) throw new ScenarioFailure(`tandem ${args.join(" ")} on ${node}: the node is hung`);
    const result = await this.lab.exec(`${containerPrefix}${node}`, ["node", tandemCli, ...args]);
    if (result.code !== 0) throw new ScenarioFailure(`tandem ${args.join(" ")} on ${node} failed (${result.code}): ${(result.stdout + result.stderr).trim()}`);
  }
}

function describeSample(sample: WatchSample): string {
  if (!sample.ok) return `no answer from the service (${sample.error ?? "?"})`;
  const farm = sample.farm;
  const module = `${sample.state}/${sample.readiness}${sample.problem ? ` (${sample.problem})` : ""}`;
  if (farm === null || farm === undefined) return `module ${module}, no farm`;
  return `farm ${farm.state} members ${[...farm.members].join(",") || "-"} buckets ${farm.owned}/${farm.buckets} (module ${module})`;
}

export { ExecSession };
