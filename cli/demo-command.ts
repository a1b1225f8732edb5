// `tandem demo` (npm start): a 3-node farm in the simulator, paced in real time, with a
// live view of node states, owned buckets and which node answers the clients, while a
// node loses power and comes back and an application fails and recovers.

import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { defaultFarmTimings, type FarmConfig } from "../core/farm-config.ts";
import type { NodeId } from "../core/types.ts";
import { FarmChecker } from "../drivers/sim/farm-checker.ts";
import { FarmWorld } from "../drivers/sim/farm-world.ts";

interface Step {
  readonly atMs: number;
  readonly say: string;
  readonly act: (world: FarmWorld) => void;
}

const script: readonly Step[] = [
  { atMs: 500, say: "12 clients start sending requests to the VIP (port 80, srcip+srcport)", act: (world) => world.clients.start() },
  { atMs: 3_000, say: "n3 loses power: n1 and n2 must take its buckets within 0.5 s", act: (world) => world.powerOff("n3") },
  { atMs: 6_000, say: "n3 boots: it takes new connections only; established ones stay put", act: (world) => world.powerOn("n3") },
  { atMs: 9_000, say: "n2's application fails its health check: n2 leaves before it restarts", act: (world) => world.breakApp("n2") },
  { atMs: 11_000, say: "n2's application is repaired: n2 rejoins", act: (world) => world.repairApp("n2") },
];
const endMs = 13_500;
const frameMs = 250;

export async function demoCommand(argv: readonly string[], print: (line: string) => void): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { speed: { type: "string", default: "1" }, "no-pace": { type: "boolean", default: false } }, strict: true });
  const speed = Number(values.speed);
  if (!(speed > 0)) throw new Error(`--speed ${values.speed}: expected a positive number (2 = twice real time)`);
  const pace = !values["no-pace"];
  const config: FarmConfig = {
    module: "web",
    nodes: [{ id: "n1", weight: 1 }, { id: "n2", weight: 1 }, { id: "n3", weight: 1 }],
    rings: ["lan", "private"],
    bucketCount: 256,
    hashSeed: 2026,
    rules: [{ port: 80, proto: "tcp", mode: "srcip+srcport" }],
    timings: defaultFarmTimings,
  };
  let checker: FarmChecker | null = null;
  const world = new FarmWorld({ seed: 2026, config, clients: { count: 12 }, onPacket: (record) => checker?.onPacket(record) });
  checker = new FarmChecker(world);
  const answered = new Map<NodeId, number>();
  world.clients.onSuccess = (_, node) => answered.set(node, (answered.get(node) ?? 0) + 1);
  print("tandem demo: a 3-node farm module in the deterministic simulator (no Docker needed).");
  print(`Heartbeats every ${defaultFarmTimings.heartbeatIntervalMs} ms on two rings; a node is declared dead after ${defaultFarmTimings.detectionTimeoutMs} ms of silence on both.`);
  print("");
  for (const node of world.nodes) world.powerOn(node.id);
  checker.start();
  let nextStep = 0;
  for (let atMs = frameMs; atMs <= endMs; atMs += frameMs) {
    while (nextStep < script.length && script[nextStep]!.atMs <= atMs) {
      world.runUntil(script[nextStep]!.atMs);
      print(`${clock(world.nowMs)}  >>> ${script[nextStep]!.say}`);
      script[nextStep]!.act(world);
      nextStep++;
    }
    world.runUntil(atMs);
    print(`${clock(atMs)}  ${frame(world, answered)}`);
    answered.clear();
    if (pace) await sleep(frameMs / speed);
  }
  checker.stop();
  print("");
  const violations = checker.violations;
  print(violations.length === 0 ? `No invariant broken (${checker.stats.packets} client packets checked).` : `${violations.length} invariant violations: ${violations[0]!.message}`);
  print("Next: npm run sim -- --scenario node-loss   (see npm run sim -- --help for fault plans and replays)");
  return violations.length === 0 ? 0 : 1;
}

function clock(ms: number): string {
  return `${(ms / 1000).toFixed(2).padStart(6)} s`;
}

/** One line: each node's state, buckets owned and requests it answered in the last frame. */
function frame(world: FarmWorld, answered: ReadonlyMap<NodeId, number>): string {
  return world.nodes
    .map((node) => {
      const state = !node.powered ? "OFF " : node.process !== "running" ? "DOWN" : (node.farm?.state ?? "----").padEnd(4);
      const owned = String(node.kernel.effectiveOwned(world.nowMs).size()).padStart(3);
      const requests = String(answered.get(node.id) ?? 0).padStart(3);
      return `${node.id} ${state} ${owned} buckets ${requests} req`;
    })
    .join("  |  ");
}
