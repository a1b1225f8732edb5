// The mirror scenarios' MirrorCluster interface over a MirrorWorld, in virtual time. The
// mirror's invariants are checked during the run (M3, M5, reads back) and at its end
// (M1, M2, M4: settle and checkFinal).

import { timelineFields, timelineLine } from "./timeline.ts";
import type { NodeId } from "../../core/types.ts";
import { ScenarioFailure } from "../../scenarios/cluster.ts";
import type { MirrorCluster, MirrorOperatorCommand, MirrorScenario, MirrorView, WriteStats } from "../../scenarios/mirror-cluster.ts";
import { checkFinal, settle } from "./mirror-checker.ts";
import { MirrorWorld, type Violation } from "./mirror-world.ts";

const timelineLevels = new Set(["info", "warn", "error"]);

export class SimMirrorCluster implements MirrorCluster {
  readonly world: MirrorWorld;
  readonly nodeIds: readonly NodeId[];
  readonly timeline: string[] = [];
  readonly #print: (line: string) => void;
  #writesFromAck = 0;
  #writesFromMs = 0;

  constructor(scenario: MirrorScenario, options: { readonly seed: number; readonly print?: (line: string) => void; readonly trace?: boolean }) {
    this.#print = options.print ?? (() => {});
    this.world = new MirrorWorld({
      seed: options.seed,
      witness: scenario.witness === true,
      failover: scenario.failover ?? true,
      ...(scenario.defaultPrim === undefined ? {} : { defaultPrim: { kind: "node" as const, node: scenario.defaultPrim } }),
      trace: options.trace === true ? "full" : "off",
      onLog: (node, atMs, entry) => {
        if (!timelineLevels.has(entry.level) || !entry.event.startsWith("mirror.")) return;
        const fields = timelineFields(entry.fields);
        this.#line(atMs, `${node.padEnd(4)} ${entry.event} ${fields}`);
      },
    });
    this.nodeIds = this.world.nodes.map((node) => node.id);
  }

  /** Powers both nodes on and makes n1 the primary of a new mirror (the operator's first prim). */
  async begin(): Promise<void> {
    this.world.powerOn("n1");
    this.world.powerOn("n2");
    this.world.runFor(1_000);
    await this.command("n1", "prim");
    await this.waitFor("n1 PRIM, n2 SECOND", (views) => views.every((view) => view.readiness === "Ready" && (view.id === "n1" ? view.role === "PRIM" : view.role === "SECOND")), 5_000);
  }

  /** Ends the faults, checks convergence and every acknowledged write; the violations. */
  finish(): readonly Violation[] {
    this.note("faults end: heal, power on, settle");
    settle(this.world);
    checkFinal(this.world);
    return this.world.violations;
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

  async kill(node: NodeId): Promise<void> {
    this.note(`kill ${node} (power off)`);
    this.world.powerOff(node);
  }
  async boot(node: NodeId): Promise<void> {
    this.note(`boot ${node}`);
    this.world.powerOn(node);
  }
  async crash(node: NodeId): Promise<void> {
    this.note(`crash ${node}'s service`);
    this.world.crash(node);
  }
  async restart(node: NodeId): Promise<void> {
    this.note(`restart ${node}'s service`);
    this.world.restart(node);
  }
  async partition(): Promise<void> {
    this.note("partition n1 | n2");
    this.world.partition();
  }
  async heal(): Promise<void> {
    this.note("heal the partition");
    this.world.heal();
  }
  async cutWitness(node: NodeId): Promise<void> {
    this.note(`${node} loses the witness`);
    this.world.cutWitness(node);
  }
  async healWitness(node: NodeId): Promise<void> {
    this.note(`${node} reaches the witness again`);
    this.world.healWitness(node);
  }
  async command(node: NodeId, command: MirrorOperatorCommand, options: { readonly fullsync?: boolean } = {}): Promise<void> {
    this.note(`operator: ${command}${options.fullsync === true ? " fullsync" : ""} on ${node}`);
    this.world.command(node, command, options.fullsync === true);
  }
  async crashApp(node: NodeId): Promise<void> {
    this.note(`the application on ${node} dies`);
    this.world.crashApp(node);
  }
  async diskRoom(node: NodeId, freeBytes: number | null): Promise<void> {
    this.note(freeBytes === null ? `${node}'s disk has room again` : `${node}'s disk has ${freeBytes} bytes left`);
    this.world.diskFull(node, freeBytes === null ? null : this.world.node(node).disk.usedBytes + freeBytes);
  }
  async failNextPreserve(node: NodeId): Promise<void> {
    this.note(`${node}'s next preserve fails`);
    this.world.node(node).disk.failNext("preserve", "EIO");
  }
  async startWrites(): Promise<void> {
    this.note("writers start");
    this.#writesFromAck = this.world.clients.acks.length;
    this.#writesFromMs = this.world.nowMs;
    this.world.clients.start();
  }
  async stopWrites(): Promise<WriteStats> {
    this.world.clients.stop();
    this.world.runUntilCondition(() => this.world.clients.idle, this.world.nowMs + 10_000, 5);
    const acks = this.world.clients.acks.slice(this.#writesFromAck);
    let last = this.#writesFromMs;
    let longestGapMs = 0;
    for (const ack of acks) {
      longestGapMs = Math.max(longestGapMs, ack.atMs - last);
      last = ack.atMs;
    }
    const stats = { acked: acks.length, failed: this.world.clients.stats.failed + this.world.clients.stats.timedOut, longestGapMs };
    this.note(`writers stopped: ${stats.acked} acknowledged, ${stats.failed} failed, longest gap ${longestGapMs.toFixed(0)} ms`);
    return stats;
  }
  async sleep(durationMs: number): Promise<void> {
    this.world.runFor(durationMs);
  }
  async waitFor(description: string, condition: (views: readonly MirrorView[]) => boolean, timeoutMs: number): Promise<number> {
    const startMs = this.world.nowMs;
    const held = this.world.runUntilCondition(() => condition(this.#viewsNow()), startMs + timeoutMs, 1);
    if (!held) {
      const views = this.#viewsNow().map((view) => `${view.id}=${view.role}/${view.readiness}(${view.gen})`).join(" ");
      throw new ScenarioFailure(`${description}: not true within ${timeoutMs} ms (now ${views})`);
    }
    const tookMs = this.world.nowMs - startMs;
    this.note(`${description} (after ${tookMs.toFixed(0)} ms)`);
    return tookMs;
  }
  async views(): Promise<readonly MirrorView[]> {
    return this.#viewsNow();
  }
  async resyncBytes(node: NodeId): Promise<number> {
    return this.world.node(node).runtime?.state.stats.resyncBlockBytes ?? 0;
  }

  #viewsNow(): MirrorView[] {
    return this.world.nodes.map((node) => ({
      id: node.id,
      role: node.running ? node.role : "DOWN",
      readiness: node.running ? node.readiness : "NotReady",
      gen: node.meta?.gen ?? null,
    }));
  }
}
