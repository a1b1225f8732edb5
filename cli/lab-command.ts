// `tandem lab …`: the Docker lab on this host (lab/lab.ts), a farm of real node services
// in containers behind one VIP, and a client container to reach it from.

import { parseArgs } from "node:util";
import { DockerUnavailable } from "../lab/images.ts";
import { clientContainer, describeNode, Lab, labVip, type LabStatus } from "../lab/lab.ts";

const usage = `usage: tandem lab <verb> [--json]
  demo [--for SECONDS] bring the lab up (or reuse it) and watch it live: each node's state and which
                      node answers a client; falls back to the simulated demo where Docker cannot run
                      (npm start; tandem lab demo --help)
  up [--nodes N]      build the images (cached) and start the lab: N nodes (default 3) of the
                      farm module web, VIP ${labVip}, and a client container
  status              each container's state and each node's farm (tandem state, through docker exec)
  get [COUNT]         COUNT (default 12) requests to the VIP from the client, each on a new connection: who answered
  kill NODE           power loss (docker kill); start NODE gives power back
  pause NODE          the node hangs (cgroup freezer); unpause NODE resumes it
  partition A B       no packet crosses between nodes A and B (nftables in both) until heal
  heal                every partition repaired
  down                remove the lab's containers and network (images stay cached)
  scenario NAME       run a farm scenario of the simulator on the lab, unchanged, with its timeline
                      (node-loss, node-join, rolling-restart, hung-node, partition-heal, flapping-network),
                      or a mirror scenario on two nodes replicating PostgreSQL (primary-power-loss,
                      secondary-down-resync, split-brain-witness, swap-under-load, ...)
  Needs a running Docker engine (dockerd) and root; nodes are n1, n2, ...`;

export async function labCommand(argv: readonly string[], print: (line: string) => void): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === "--help" || verb === "-h" || verb === "help") {
    print(usage);
    return verb === undefined ? 2 : 0;
  }
  if (verb === "demo") return (await import("./lab-demo.ts")).labDemoCommand(rest, print);
  if (verb === "scenario") {
    if (rest[0] === undefined) {
      print(`tandem lab scenario: name the scenario\n${usage}`);
      return 2;
    }
    return (await import("../lab/run-scenario.ts")).runScenarioOnLab(rest[0], print);
  }
  const { values, positionals } = parseArgs({ args: rest, options: { json: { type: "boolean", default: false }, nodes: { type: "string" }, help: { type: "boolean", short: "h", default: false } }, allowPositionals: true, strict: true });
  if (values.help) {
    print(usage);
    return 0;
  }
  const json = values.json;
  // With --json, stdout carries only the JSON; progress goes to stderr.
  const progress = json ? (line: string) => process.stderr.write(`${line}\n`) : print;
  const lab = new Lab({ progress });
  const want = (count: number) => {
    if (positionals.length !== count) throw new UsageError(`tandem lab ${verb}: expected ${count === 0 ? "no argument" : count === 1 ? "a node (n1, n2, ...)" : `${count} nodes`}, got ${positionals.length === 0 ? "none" : positionals.join(" ")}`);
    return positionals;
  };
  try {
    switch (verb) {
      case "up": {
        want(0);
        const nodes = values.nodes === undefined ? 3 : Number(values.nodes);
        if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) throw new UsageError(`tandem lab up: --nodes ${values.nodes}: expected 1 to 9`);
        const started = Date.now();
        const result = await lab.up({ nodes });
        if (json) print(JSON.stringify({ already: result.already, images: result.images, status: result.status }));
        else {
          if (!result.already) print(`the lab is up in ${((Date.now() - started) / 1_000).toFixed(1)} s`);
          printStatus(result.status, print);
          print(`try it:   docker exec ${clientContainer} curl -s http://${labVip}/   (or: tandem lab get)`);
          print(`then:     tandem lab kill n2, tandem lab get, tandem lab start n2; tandem lab down removes it all`);
        }
        return 0;
      }
      case "status": {
        want(0);
        await lab.requireDocker();
        const status = await lab.status();
        if (json) print(JSON.stringify(status));
        else if (status.nodes.length === 0 && !status.network) print("no lab is there: tandem lab up");
        else printStatus(status, print);
        return 0;
      }
      case "get": {
        if (positionals.length > 1) want(1);
        const count = positionals.length === 0 ? 12 : Number(positionals[0]);
        if (!Number.isInteger(count) || count < 1 || count > 1_000) throw new UsageError(`tandem lab get: ${positionals[0]}: expected a count, 1 to 1000`);
        await lab.requireDocker();
        const answers = await lab.get(count);
        const tally = new Map<string, number>();
        for (const answer of answers) tally.set(answer, (tally.get(answer) ?? 0) + 1);
        if (json) print(JSON.stringify({ answers, byAnswer: Object.fromEntries(tally) }));
        else print(`${count} requests to ${labVip}: ${[...tally].sort().map(([answer, times]) => `${answer} ${times}`).join(", ")}`);
        return 0;
      }
      case "kill":
      case "start":
      case "pause":
      case "unpause": {
        const [node] = want(1);
        await lab.requireDocker();
        await lab[verb](node!);
        if (json) print(JSON.stringify({ node, done: verb }));
        return 0;
      }
      case "partition": {
        const [a, b] = want(2);
        await lab.requireDocker();
        await lab.partition(a!, b!);
        if (json) print(JSON.stringify({ partition: [a, b] }));
        return 0;
      }
      case "heal":
        want(0);
        await lab.requireDocker();
        await lab.heal();
        if (json) print(JSON.stringify({ healed: true }));
        return 0;
      case "down": {
        want(0);
        const removed = await lab.down();
        if (json) print(JSON.stringify(removed));
        return 0;
      }
      default:
        print(`tandem lab: unknown verb "${verb}"\n${usage}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      print(`${error.message}\n${usage}`);
      return 2;
    }
    if (error instanceof DockerUnavailable) {
      print(`tandem lab: ${error.message}`);
      return 3;
    }
    throw error;
  }
}

class UsageError extends Error {
  override readonly name = "UsageError";
}

function printStatus(status: LabStatus, print: (line: string) => void): void {
  print(`lab ${status.up ? "up" : "not (fully) up"}: network ${status.network ? "tandem-lab" : "missing"}, image ${status.image ?? "none"}, VIP ${status.vip}`);
  for (const node of status.nodes) {
    const partition = node.partitionedFrom.length === 0 ? "" : `, cut from ${node.partitionedFrom.join(",")}`;
    print(`  ${node.name.padEnd(4)} ${node.address.padEnd(13)} ${node.state.padEnd(8)} ${describeNode(node)}${partition}`);
  }
  print(`  client ${status.client.address.padEnd(11)} ${status.client.state}`);
}
