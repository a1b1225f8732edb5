// Named farm scenarios. Each is a program against the Cluster interface, so it runs
// unchanged on the simulator and (later) on the Docker lab. Deadlines are the product's
// promises: with default timings a lost node's buckets move within 0.5 s.

import { allUpWith, ScenarioFailure, upNodes, type Cluster, type Scenario } from "./cluster.ts";

const threeNodes = [
  { id: "n1", weight: 1 },
  { id: "n2", weight: 1 },
  { id: "n3", weight: 1 },
];
const all = ["n1", "n2", "n3"];
const formBoundMs = 1_000;
const failoverBoundMs = 500;

function expect(condition: boolean, message: string): void {
  if (!condition) throw new ScenarioFailure(message);
}

async function formed(cluster: Cluster, members: readonly string[] = all): Promise<void> {
  await cluster.waitFor(`farm formed with ${members.join(",")}`, allUpWith(members), formBoundMs);
}

export const nodeLoss: Scenario = {
  name: "node-loss",
  summary: "a node loses power under load; the others take its buckets within 0.5 s and its clients are answered again",
  nodes: threeNodes,
  mode: "srcip+srcport",
  async run(cluster) {
    await formed(cluster);
    await cluster.startLoad(12);
    await cluster.sleep(1_000);
    await cluster.kill("n3");
    const tookMs = await cluster.waitFor("n1,n2 own every bucket", allUpWith(["n1", "n2"]), failoverBoundMs);
    expect(tookMs <= failoverBoundMs, `failover took ${tookMs} ms`);
    await cluster.sleep(1_000);
    const stats = await cluster.stopLoad();
    // A request the lost node had taken (acknowledged, not yet answered) dies with it: its
    // client waits out its own answer timeout, which no farm can shorten.
    const boundMs = 1_000 + (stats.answerTimeouts > 0 ? stats.answerTimeoutMs : 0);
    expect(stats.longestGapMs <= boundMs, `a client went ${stats.longestGapMs.toFixed(0)} ms without an answer (bound ${boundMs} ms, ${stats.answerTimeouts} answers lost with the node)`);
    const views = await cluster.views();
    expect(views.filter((view) => view.state === "UP").reduce((sum, view) => sum + view.ownedCount, 0) === 256, "buckets not all owned after the loss");
  },
};

export const nodeJoin: Scenario = {
  name: "node-join",
  summary: "a node joins a loaded farm: it takes only new connections, nobody is reset",
  nodes: threeNodes,
  mode: "srcip+srcport",
  initiallyOff: ["n3"],
  async run(cluster) {
    await formed(cluster, ["n1", "n2"]);
    await cluster.startLoad(12);
    await cluster.sleep(1_000);
    const before = await cluster.loadStats();
    await cluster.boot("n3");
    await formed(cluster);
    await cluster.sleep(2_000);
    const stats = await cluster.stopLoad();
    expect(stats.resets === before.resets, `${stats.resets - before.resets} connections were reset by the join`);
    expect((stats.answeredBy["n3"] ?? 0) > 0, "the new node answered no request");
  },
};

export const rollingRestart: Scenario = {
  name: "rolling-restart",
  summary: "each node in turn is stopped and started under load; the farm keeps answering, and a stopping node answers every request it took",
  nodes: threeNodes,
  mode: "srcip+srcport",
  async run(cluster) {
    await formed(cluster);
    await cluster.startLoad(12);
    for (const node of all) {
      await cluster.sleep(500);
      await cluster.stop(node);
      await cluster.waitFor(`${node} left`, allUpWith(all.filter((id) => id !== node)), failoverBoundMs);
      await cluster.sleep(500);
      await cluster.start(node);
      await formed(cluster);
    }
    await cluster.sleep(500);
    const stats = await cluster.stopLoad();
    // A stop is orderly: the node leaves at once, but the answers to requests it took
    // before still go out (its VIP drains until the application has stopped).
    expect(stats.answerTimeouts === 0, `${stats.answerTimeouts} requests taken before a stop were never answered`);
    expect(stats.longestGapMs <= 1_000, `a client went ${stats.longestGapMs.toFixed(0)} ms without an answer`);
  },
};

export const flappingNetwork: Scenario = {
  name: "flapping-network",
  summary: "one node's links flap (down 400 ms, longer than detection; up 200 ms) for 6 s; the farm never double-serves and settles afterwards",
  nodes: threeNodes,
  mode: "srcip",
  async run(cluster) {
    await formed(cluster);
    await cluster.startLoad(8);
    for (let flap = 0; flap < 10; flap++) {
      await cluster.partition(["n3"], ["n1", "n2"]);
      await cluster.sleep(400);
      await cluster.heal();
      await cluster.sleep(200);
    }
    await formed(cluster);
    await cluster.sleep(1_000);
    await cluster.stopLoad();
  },
};

export const partitionHeal: Scenario = {
  name: "partition-heal",
  summary: "the heartbeat networks split {n1} | {n2,n3}; each side serves on its own, then they merge",
  nodes: threeNodes,
  mode: "srcip+srcport",
  async run(cluster) {
    await formed(cluster);
    await cluster.startLoad(8);
    await cluster.partition(["n1"], ["n2", "n3"]);
    await cluster.waitFor("n1 alone, n2+n3 together", (views) => {
      const byId = new Map(views.map((view) => [view.id, view]));
      return byId.get("n1")?.members.join(",") === "n1" && byId.get("n2")?.members.join(",") === "n2,n3";
    }, failoverBoundMs);
    await cluster.sleep(1_000);
    await cluster.heal();
    await formed(cluster);
    await cluster.sleep(1_000);
    await cluster.stopLoad();
  },
};

export const unhealthyApp: Scenario = {
  name: "unhealthy-app",
  summary: "an application fails its health check: its node leaves the farm before the restart, then rejoins",
  nodes: threeNodes,
  mode: "srcip+srcport",
  async run(cluster) {
    await formed(cluster);
    await cluster.startLoad(12);
    await cluster.sleep(500);
    await cluster.breakApp("n2");
    await cluster.waitFor("n2 left the farm", allUpWith(["n1", "n3"]), failoverBoundMs);
    await cluster.sleep(1_000);
    await cluster.repairApp("n2");
    await formed(cluster);
    await cluster.sleep(1_000);
    const stats = await cluster.stopLoad();
    expect((stats.answeredBy["n2"] ?? 0) > 0, "n2 answered nothing, even after its repair");
  },
};

export const hungNode: Scenario = {
  name: "hung-node",
  summary: "a node hangs: its kernel lease runs out before the others take over; released, it rejoins",
  nodes: threeNodes,
  mode: "srcip+srcport",
  async run(cluster) {
    await formed(cluster);
    await cluster.startLoad(12);
    await cluster.sleep(500);
    await cluster.hang("n1");
    await cluster.waitFor("n2,n3 own every bucket", allUpWith(["n2", "n3"]), failoverBoundMs);
    await cluster.sleep(2_000);
    await cluster.release("n1");
    await formed(cluster);
    await cluster.sleep(500);
    await cluster.stopLoad();
  },
};

export const lossyNetwork: Scenario = {
  name: "lossy-network",
  summary: "60 s with 1 % loss and 20 ms jitter on every ring: no false failover",
  nodes: threeNodes,
  mode: "srcip+srcport",
  async run(cluster) {
    await formed(cluster);
    await cluster.degrade(0.01, 20);
    await cluster.startLoad(4);
    for (let second = 0; second < 60; second++) {
      await cluster.sleep(1_000);
      const up = upNodes(await cluster.views());
      expect(up.length === 3, `false failover after ${second + 1} s: only ${up.join(",")} UP`);
    }
    await cluster.stopLoad();
  },
};

export const farmScenarios: readonly Scenario[] = [nodeLoss, nodeJoin, rollingRestart, flappingNetwork, partitionHeal, unhealthyApp, hungNode, lossyNetwork];
