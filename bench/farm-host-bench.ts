// The time from a node's service being killed (SIGKILL) to its buckets being served by the
// others, on this host: three real node services (`tandem daemon`) in network namespaces,
// the lab of test/host/farm-netns.test.ts. Baseline, run alongside: the same farm with
// SafeKit's default farm timings written into the module file (pulse 100 ms × slost_count
// 10). Printed as median and p99 of each, and their ratio.
//
//   node bench/farm-host-bench.ts [--runs N]      (root, nftables, the native addon; N ≥ 20)
//
// One run: pick a victim (rotating over the three nodes), kill its service, and from the
// client open a new connection every 5 ms from a source port the kernel hashes into one of
// the victim's buckets; the time is from the SIGKILL to the first such connection
// answered (by a survivor). Probing starts once the killed process is gone, and a probe
// sent before the takeover is not answered within its 300 ms (its SYN is dropped and
// retransmitted only after 1 s), so the figure is the takeover time plus at most one
// probe interval and one round trip. The victim's service is then restarted and the run
// waits until all three see each other UP again.

import { parseArgs } from "node:util";
import { percentile } from "./farm-bench.ts";
import { FarmLab, farmModule, tandem, type FarmTimingsXml } from "../test/host/farm-lab.ts";
import { requireHost } from "../test/host/netns-lab.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "20" } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${values.runs}: expected a positive whole number`);
const probeIntervalMs = 5;
const probeDeadlineMs = 5_000;
const wallMs = () => performance.timeOrigin + performance.now();

interface Probed {
  readonly answeredAtMs: number;
  readonly answer: string;
}

async function takeoverTimes(timings: FarmTimingsXml | null, label: string): Promise<number[]> {
  const farm = FarmLab.create({ nodeCount: 3, timings });
  const names = farm.nodes.map((node) => node.name);
  try {
    await Promise.all(farm.nodes.map((_, index) => farm.startDaemon(index)));
    await farm.startClient();
    const started = await Promise.all(farm.nodes.map((node) => tandem(node, ["start", "-m", farmModule, "--wait"])));
    if (started.some((result) => result.code !== 0)) throw new Error(`tandem start failed: ${started.map((result) => result.output).join("\n")}`);
    await farm.untilMembers(names);
    // Which buckets each node serves while all three are members (ownership is a function
    // of the members, so it is the same after every rejoin).
    const ports = farm.ports(600);
    const answers = await farm.get(ports);
    const bucketsOf = new Map(names.map((name) => [name, new Set<number>()]));
    answers.forEach((answer, index) => {
      if (answer === null || answer === "reset") throw new Error(`connection from port ${ports[index]} not answered (${answer}) in a healthy farm`);
      bucketsOf.get(answer)!.add(farm.bucketOf(ports[index]!));
    });
    const times: number[] = [];
    for (let run = 0; run < runs; run++) {
      const victim = run % names.length;
      const buckets = bucketsOf.get(names[victim]!)!;
      const probePorts = farm.ports(Math.ceil(probeDeadlineMs / probeIntervalMs) + 10, (port) => buckets.has(farm.bucketOf(port)));
      const killedAt = wallMs();
      await farm.daemons[victim]!.kill();
      const probed = (await farm.client!.call("probe", { host: farm.lab.vip, port: 80, localAddress: farm.lab.clientIp, ports: probePorts, intervalMs: probeIntervalMs, timeoutMs: 300, deadlineMs: probeDeadlineMs })) as Probed | null;
      if (probed === null || probed.answer === names[victim]) throw new Error(`${label}, run ${run + 1}: ${names[victim]}'s buckets were not served by another node within ${probeDeadlineMs} ms (${JSON.stringify(probed)})`);
      times.push(probed.answeredAtMs - killedAt);
      process.stderr.write(`${label} run ${String(run + 1).padStart(2)}: killed ${names[victim]}, its buckets served by ${probed.answer} after ${(probed.answeredAtMs - killedAt).toFixed(1)} ms\n`);
      await farm.startDaemon(victim);
      await farm.untilMembers(names, 30_000);
    }
    return times;
  } finally {
    await farm.destroy();
  }
}

requireHost("bench/farm-host-bench.ts");
const ours = await takeoverTimes(null, "tandem defaults");
const theirs = await takeoverTimes({ pulseMs: 100, slostCount: 10 }, "SafeKit timings");
const fixed = (value: number, digits = 0) => value.toFixed(digits);
const row = (label: string, times: readonly number[]) =>
  `   ${label.padEnd(58)} p50 ${fixed(percentile(times, 0.5)).padStart(5)} ms   p99 ${fixed(percentile(times, 0.99)).padStart(5)} ms   (min ${fixed(Math.min(...times))}, max ${fixed(Math.max(...times))})`;
console.log(`Node service killed (SIGKILL) to its buckets served by the others: 3 node services in network namespaces, ${runs} runs each`);
console.log(row("tandem defaults (heartbeat 50 ms, detection 250 ms)", ours));
console.log(row("baseline: SafeKit timings (pulse 100 ms x slost_count 10)", theirs));
console.log(`   ratio tandem/baseline: p50 ${fixed(percentile(ours, 0.5) / percentile(theirs, 0.5), 2)}, p99 ${fixed(percentile(ours, 0.99) / percentile(theirs, 0.99), 2)}   (goal: p50 and p99 <= 500 ms with defaults: ${percentile(ours, 0.99) <= 500 ? "met" : "NOT met"})`);
