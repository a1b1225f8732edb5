// The Docker lab's figures (issue 6), each printed beside a baseline run alongside it and
// the ratio between them: real node services in containers (lab/lab.ts), 3 nodes, the farm
// module `web` (a Node HTTP server naming its node behind the VIP, spread by srcip+srcport).
//
//   node bench/lab-bench.ts [--quick] [--only 1,2,3,4] [--verbose] [--connections N (wrk's, 128)]
//
// Needs root, a running dockerd and the lab's images (built or cached by `tandem lab up`).
// Takes the lab's lock (test/lab/lab-lock.ts: one lab per host) for the whole run, removes
// any lab that is there, and removes its own at the end (`tandem lab down`). Figures go to
// stdout, progress to stderr. --quick: about 3 minutes; the full run about 15.
//
// 1. Power-off (docker kill) of one node of three → its clients answered again. As in
//    bench/farm-host-bench.ts: from the client container, new connections from source ports
//    the kernel hashes into the victim's buckets (learnt from a healthy farm), one every
//    5 ms, each given up after 300 ms; the time is from the kill to the first such
//    connection answered by a survivor. The victim then gets power back and the run waits
//    until the farm is whole again. Baseline: the same lab with SafeKit's default farm
//    timings written in the module (`<farm pulse="100ms" slost_count="10">`).
// 2. False failovers: the idle farm for 10 minutes (quick: 1) with 1 % of the packets
//    between nodes dropped each way (the lab's degrade(): nftables random drop; this
//    kernel has no netem, so no jitter). Counted in the nodes' logs: peer-lost and
//    lease-lost events, and changes of the member list. Baseline: a second farm module in
//    the same lab at the same time, with SafeKit's timings (same nodes, same loss, same CPU).
// 3. Connections reset when a node joins under load: the lab's load generator (12 clients,
//    each from its own address, 5 requests per connection, 20 ms apart) runs while a
//    powered-off node boots and joins; resets counted by the clients. Baseline: the same
//    join in the simulator's model (drivers/sim), counting the connections open on the old
//    nodes in the buckets the new one takes at the moment it takes them: what a join that
//    moves buckets at once (no connection-aware hand-over) would reset. A shorter
//    handoverWindowMs cannot stand in for "no hand-over": a lingering set never shrinks
//    while ownership stays the same (core/farm.ts), so a 1 ms window resets nothing either.
// 4. Requests per second through the VIP, 3 nodes vs 1 node: wrk (the host's Debian
//    package, copied into the client container with its libraries) with keep-alive
//    connections against the lab's HTTP server. Baseline: the 1-node lab. CPU time of each
//    container and of the whole host is measured alongside, to show what limits it.

import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { percentile } from "./farm-bench.ts";
import { defaultFarmTimings, type FarmConfig } from "../core/farm-config.ts";
import { hashString32 } from "../core/hash.ts";
import { FarmWorld } from "../drivers/sim/farm-world.ts";
import { kernelBucket } from "../drivers/real/filter.ts";
import { demuxBuffer, DockerUnavailable } from "../lab/images.ts";
import { clientAddress, clientContainer, containerPrefix, farmModule, Lab, labVip } from "../lab/lab.ts";
import { ExecSession, LabCluster } from "../lab/lab-cluster.ts";
import { tarOf } from "../lab/lab-config.ts";
import { moduleView, safekitFarmTimings, upWithTimings, type FarmTimingsXml } from "../lab/lab-timings.ts";
import type { NodeView, Scenario } from "../scenarios/cluster.ts";
import { lockLab } from "../test/lab/lab-lock.ts";

const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, only: { type: "string", default: "1,2,3,4" }, verbose: { type: "boolean", default: false }, connections: { type: "string", default: "128" } } });
const quick = values.quick;
const sections = new Set(values.only.split(",").map((each) => Number(each.trim())));
const shape = {
  killRuns: quick ? 5 : 20,
  idleMinutes: quick ? 1 : 10,
  joins: quick ? 2 : 5,
  simJoinSeeds: quick ? 20 : 100,
  wrkSeconds: quick ? 3 : 6,
  wrkRuns: 3,
};
const names = ["n1", "n2", "n3"];
const bucketCount = 256;
const out = (line = "") => console.log(line);
const progress = (line: string) => process.stderr.write(`  ${line}\n`);
const fixed = (value: number, digits = 0) => value.toFixed(digits);
const wallMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const lab = new Lab({ progress: values.verbose ? (line) => progress(`lab: ${line}`) : () => {} });

// ---- A program in a container, talking over the exec's stdin and stdout ----

/** A long-running `docker exec` with stdin: one JSON request per line, one JSON answer per line (matched by id). */
/** A request/answer agent over lab-cluster's ExecSession: one JSON line each way, matched by id. */
class Agent {
  readonly #waiting = new Map<number, (answer: unknown) => void>();
  #session: ExecSession | null = null;
  #nextId = 1;
  #ended: string | null = null;

  static async start(container: string, cmd: readonly string[]): Promise<Agent> {
    const agent = new Agent();
    agent.#session = await ExecSession.start(
      lab.docker,
      container,
      cmd,
      (line) => {
        const message = JSON.parse(line) as { id: number; answer: unknown };
        agent.#waiting.get(message.id)?.(message.answer);
        agent.#waiting.delete(message.id);
      },
      (errors) => {
        agent.#ended = `the agent in ${container} ended${errors.trim() === "" ? "" : `: ${errors.trim()}`}`;
        for (const resolve of agent.#waiting.values()) resolve(undefined);
        agent.#waiting.clear();
      },
    );
    return agent;
  }

  async call<T>(op: string, fields: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
    if (this.#ended !== null) throw new Error(this.#ended);
    const id = this.#nextId++;
    const answer = new Promise<unknown>((resolve) => this.#waiting.set(id, resolve));
    this.#session!.write(JSON.stringify({ id, op, ...fields }));
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([answer, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${op}: no answer within ${timeoutMs} ms`)), timeoutMs)))]).finally(() => clearTimeout(timer));
    if (result === undefined) throw new Error(this.#ended ?? `${op}: the agent ended`);
    return result as T;
  }

  close(): void {
    this.#session?.close();
  }
}

/** The client's prober (CommonJS, `node -e`): new HTTP connections to the VIP from chosen
 *  source ports. ops: `map` {ports, timeoutMs} → each port's answer; `probe` {ports,
 *  intervalMs, timeoutMs, deadlineMs, notFrom} → a new connection every intervalMs from the
 *  next port until one is answered by a node other than notFrom: {answeredAtMs (wall clock,
 *  ms with a fraction), answer, attempts}, or answeredAtMs null at the deadline. */
const proberScript = String.raw`
"use strict";
const net = require("node:net");
const [host, localAddress] = [process.argv[1], process.argv[2]];
const wallMs = () => performance.timeOrigin + performance.now();
function open(localPort, timeoutMs) {
  return new Promise((resolve) => {
    let done = false;
    let buffer = "";
    const socket = net.connect({ host, port: 80, localAddress, localPort });
    const finish = (answer, graceful) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (graceful) socket.end(); else socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => finish("timeout", false), timeoutMs);
    socket.on("connect", () => socket.write("GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n"));
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = Number((/content-length: *(\d+)/i.exec(buffer.slice(0, end)) || [0, 0])[1]);
      if (buffer.length >= end + 4 + length) finish(buffer.slice(end + 4, end + 4 + length).trim(), true);
    });
    socket.on("error", (error) => finish(error.code === "ECONNRESET" ? "reset" : error.code === "ECONNREFUSED" ? "refused" : "error " + error.code, false));
    socket.on("close", () => finish("closed", false));
  });
}
async function map(m) {
  const answers = [];
  for (let index = 0; index < m.ports.length; index += 50) answers.push(...(await Promise.all(m.ports.slice(index, index + 50).map((port) => open(port, m.timeoutMs)))));
  return answers;
}
function probe(m) {
  const deadline = wallMs() + m.deadlineMs;
  return new Promise((resolve) => {
    let next = 0;
    let done = false;
    const finish = (result) => { if (!done) { done = true; clearInterval(interval); resolve(result); } };
    const launch = () => {
      if (done) return;
      if (next >= m.ports.length || wallMs() > deadline) return finish({ answeredAtMs: null, answer: null, attempts: next });
      const port = m.ports[next++];
      open(port, m.timeoutMs).then((answer) => {
        if (/^n\d+$/.test(answer) && answer !== m.notFrom) finish({ answeredAtMs: wallMs(), answer, attempts: next });
      });
    };
    const interval = setInterval(launch, m.intervalMs);
    launch();
  });
}
let pending = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  const lines = pending.split("\n");
  pending = lines.pop();
  for (const line of lines) {
    if (line.trim() === "") continue;
    const m = JSON.parse(line);
    (m.op === "map" ? map(m) : probe(m)).then((answer) => process.stdout.write(JSON.stringify({ id: m.id, answer }) + "\n"));
  }
});
process.stdin.on("end", () => process.exit(0));
`;

// ---- 1. Power-off to clients answered again ----

async function untilWhole(members: readonly string[], timeoutMs: number): Promise<void> {
  const want = [...members].sort().join(",");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = await Promise.all(members.map((name) => moduleView(lab, name, farmModule)));
    if (views.every((view) => view?.state === "UP" && view.farm?.state === "UP" && [...view.farm.members].sort().join(",") === want)) return;
    if (Date.now() > deadline) throw new Error(`the farm was not whole (${want}) within ${timeoutMs / 1_000} s`);
    await sleep(200);
  }
}

async function killToAnswered(timings: FarmTimingsXml | null, label: string, runs: number): Promise<number[]> {
  progress(`${label}: a fresh 3-node lab`);
  await upWithTimings(lab, { nodes: 3, timings });
  const prober = await Agent.start(clientContainer, ["node", "-e", proberScript, labVip, clientAddress]);
  try {
    const seed = hashString32(farmModule);
    const bucketOf = (port: number) => kernelBucket(clientAddress, port, bucketCount, seed);
    let cursor = 20_000;
    const ports = (count: number, accept: (port: number) => boolean) => {
      const chosen: number[] = [];
      for (let port = cursor; chosen.length < count; port++) {
        if (port > 60_000) port = 20_000;
        if (accept(port)) chosen.push(port);
      }
      return chosen;
    };
    // Which node serves each bucket in the whole farm (a function of the members only).
    const mapPorts = Array.from({ length: 1_000 }, (_, index) => 10_000 + index);
    const answers = await prober.call<string[]>("map", { ports: mapPorts, timeoutMs: 2_000 });
    const ownerOf = new Map<number, string>();
    answers.forEach((answer, index) => {
      if (!names.includes(answer)) throw new Error(`${label}: port ${mapPorts[index]} not answered in a whole farm (${answer})`);
      const bucket = bucketOf(mapPorts[index]!);
      if ((ownerOf.get(bucket) ?? answer) !== answer) throw new Error(`${label}: bucket ${bucket} answered by two nodes (${ownerOf.get(bucket)}, ${answer}): the kernel's hash is not the one computed here`);
      ownerOf.set(bucket, answer);
    });
    const times: number[] = [];
    for (let run = 0; run < runs; run++) {
      const victim = names[run % names.length]!;
      const probePorts = ports(1_100, (port) => ownerOf.get(bucketOf(port)) === victim);
      const killedAt = wallMs();
      await lab.docker.getContainer(`${containerPrefix}${victim}`).kill({ signal: "SIGKILL" });
      const probed = await prober.call<{ answeredAtMs: number | null; answer: string | null; attempts: number }>("probe", { ports: probePorts, intervalMs: 5, timeoutMs: 300, deadlineMs: 5_000, notFrom: victim }, 15_000);
      cursor = probePorts[Math.max(0, probed.attempts - 1)]! + 1;
      if (probed.answeredAtMs === null) throw new Error(`${label}, run ${run + 1}: ${victim}'s buckets were not served by another node within 5 s`);
      const ms = probed.answeredAtMs - killedAt;
      times.push(ms);
      progress(`${label} run ${String(run + 1).padStart(2)}: killed ${victim}, its buckets answered by ${probed.answer} after ${fixed(ms, 1)} ms`);
      await lab.start(victim);
      await untilWhole(names, 60_000);
      await sleep(500);
    }
    return times;
  } finally {
    prober.close();
  }
}

// ---- 2. False failovers at 1 % loss ----

interface LogEntry {
  readonly time: string;
  readonly event: string;
  readonly module?: string;
  readonly members?: string;
}

async function nodeLog(node: string): Promise<LogEntry[]> {
  const buffer = (await lab.docker.getContainer(`${containerPrefix}${node}`).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  return demuxBuffer(buffer).split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return [];
    try {
      return [JSON.parse(line) as LogEntry];
    } catch {
      return [];
    }
  });
}

interface FailoverCount {
  readonly peerLost: number;
  readonly leaseLost: number;
  readonly rejected: number;
  readonly memberChanges: number;
}

function countFailovers(logs: readonly LogEntry[][], module: string, fromMs: number, toMs: number): FailoverCount {
  let peerLost = 0;
  let leaseLost = 0;
  let rejected = 0;
  let memberChanges = 0;
  for (const log of logs) {
    let members: string | null = null;
    for (const entry of log) {
      if (entry.module !== module) continue;
      const at = Date.parse(entry.time);
      const inWindow = at >= fromMs && at <= toMs;
      if (entry.event === "farm.filter") {
        if (inWindow && members !== null && entry.members !== members) memberChanges++;
        members = entry.members ?? null;
      }
      if (!inWindow) continue;
      if (entry.event === "farm.peer-lost") peerLost++;
      if (entry.event === "farm.lease-lost") leaseLost++;
      if (entry.event === "farm.rejected") rejected++;
    }
  }
  return { peerLost, leaseLost, rejected, memberChanges };
}

async function pingLoss(from: string, to: string, count: number): Promise<string> {
  const result = await lab.exec(`${containerPrefix}${from}`, ["ping", "-q", "-c", String(count), "-i", "0.005", "-W", "1", to], 60_000);
  return /([\d.]+)% packet loss/.exec(result.stdout)?.[1] ?? `? (${(result.stderr || result.stdout).trim().split("\n").pop()})`;
}

// ---- 3. Resets at a join under load ----

const joinScenario: Scenario = {
  name: "lab-bench-join",
  summary: "n3 joins a loaded 2-node farm",
  nodes: names.map((id) => ({ id, weight: 1 })),
  mode: "srcip+srcport",
  initiallyOff: ["n3"],
  async run() {},
};

const formedBy = (members: readonly string[]) => (views: readonly NodeView[]) =>
  members.every((id) => {
    const view = views.find((each) => each.id === id);
    return view?.state === "UP" && [...view.members].sort().join(",") === [...members].sort().join(",");
  });

interface JoinOutcome {
  readonly resets: number;
  readonly refused: number;
  readonly otherFailures: number;
  readonly answered: number;
  readonly answeredByJoiner: number;
  readonly joinMs: number;
}

async function labJoins(count: number, clients: number): Promise<JoinOutcome[]> {
  progress("join under load: a fresh lab with n3 powered off");
  const cluster = await LabCluster.create(joinScenario, { lab, print: values.verbose ? (line) => progress(line) : undefined });
  const outcomes: JoinOutcome[] = [];
  try {
    for (let join = 0; join < count; join++) {
      await cluster.waitFor("n1, n2 formed", formedBy(["n1", "n2"]), 60_000);
      await cluster.startLoad(clients);
      await cluster.sleep(1_000);
      const before = await cluster.loadStats();
      await cluster.boot("n3");
      const joinMs = await cluster.waitFor("n3 joined", formedBy(names), 60_000);
      await cluster.sleep(2_000);
      const after = await cluster.stopLoad();
      const failures = (report: typeof after) => report.closed + report.connectTimeouts + report.answerTimeouts + report.badAnswers + Object.values(report.otherErrors).reduce((sum, each) => sum + each, 0);
      const outcome = {
        resets: after.resets - before.resets,
        refused: after.refused - before.refused,
        otherFailures: failures(after) - failures(before),
        answered: after.answered - before.answered,
        answeredByJoiner: (after.answeredBy["n3"] ?? 0) - (before.answeredBy["n3"] ?? 0),
        joinMs,
      };
      outcomes.push(outcome);
      progress(`join ${join + 1}: n3 in the farm ${joinMs} ms after its container start returned; ${outcome.answered} answers (${outcome.answeredByJoiner} by n3), ${outcome.resets} resets, ${outcome.otherFailures} other failures`);
      if (join + 1 < count) {
        await cluster.kill("n3");
        await sleep(500);
      }
    }
  } finally {
    await cluster.close();
  }
  return outcomes;
}

/** The node-join scenario's load in the simulator (drivers/sim, default timings): n3 is
 *  powered on into a loaded n1+n2 farm. `inFlight`: the connections open on n1 or n2, in
 *  buckets n3 takes, at the moment n3's kernel takes them: what a join that moves buckets
 *  at once, without a hand-over, would reset (their next packet reaches n3, which has no
 *  socket for them). `resets`: what the clients saw in the next 5 s with tandem's hand-over. */
function simJoin(seed: number, clients: number): { inFlight: number; resets: number } {
  const config: FarmConfig = {
    module: "bench-join",
    nodes: names.map((id) => ({ id, weight: 1 })),
    rings: ["lan"],
    bucketCount,
    hashSeed: seed,
    rules: [{ port: 80, proto: "tcp", mode: "srcip+srcport" }],
    timings: defaultFarmTimings,
  };
  const world = new FarmWorld({ seed, config, clients: { count: clients, thinkMs: 20, requestsPerConnection: 5 } });
  world.powerOn("n1");
  world.powerOn("n2");
  world.runFor(2_000);
  world.clients.start();
  world.runFor(1_000 + seed % 50);
  const resets = () => world.clients.clients.reduce((sum, client) => sum + client.resets, 0);
  const before = resets();
  world.powerOn("n3");
  const joiner = world.node("n3").kernel;
  if (!world.runUntilCondition(() => !joiner.owned.isEmpty(), world.nowMs + 5_000, 0.1)) throw new Error(`simulator seed ${seed}: n3 took no bucket within 5 s`);
  const inFlight = world.clients.clients.filter((client) => client.connection?.established === true && client.connection.node !== "n3" && joiner.owned.has(client.connection.bucket)).length;
  world.runFor(5_000);
  return { inFlight, resets: resets() - before };
}

// ---- 4. Requests per second, 3 nodes vs 1 ----

/** wrk and the libraries the client image lacks, into /opt/wrk of the client container. */
async function installWrk(): Promise<void> {
  const staging = mkdtempSync(join(tmpdir(), "lab-bench-wrk-"));
  try {
    const files: { path: string; content: Buffer; mode: number }[] = [{ path: "opt/wrk/wrk", content: readFileSync("/usr/bin/wrk"), mode: 0o755 }];
    const ldd = execFileSync("ldd", ["/usr/bin/wrk"], { encoding: "utf8" });
    for (const match of ldd.matchAll(/^\s*(\S+) => (\S+)/gm)) {
      if (!/luajit|libssl|libcrypto/.test(match[1]!)) continue;
      const target = join(staging, match[1]!);
      copyFileSync(realpathSync(match[2]!), target);
      files.push({ path: `opt/wrk/${match[1]}`, content: readFileSync(target), mode: 0o644 });
    }
    await lab.docker.getContainer(clientContainer).putArchive(tarOf([{ path: "opt/wrk", mode: 0o755, directory: true }, ...files]), { path: "/" });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  const check = await lab.exec(clientContainer, ["env", "LD_LIBRARY_PATH=/opt/wrk", "/opt/wrk/wrk", "--version"]);
  if (!/^wrk \S+ \[/m.test(check.stdout + check.stderr)) throw new Error(`wrk does not run in ${clientContainer}: ${(check.stdout + check.stderr).trim()}`);
}

/** CPU time (ns) of a container (cgroup v1 cpuacct, or v2 cpu.stat). */
function containerCpuNs(id: string): number {
  for (const path of [`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, `/sys/fs/cgroup/cpu,cpuacct/docker/${id}/cpuacct.usage`]) {
    try {
      return Number(readFileSync(path, "utf8"));
    } catch {}
  }
  for (const path of [`/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`, `/sys/fs/cgroup/docker/${id}/cpu.stat`]) {
    try {
      return Number(/usage_usec (\d+)/.exec(readFileSync(path, "utf8"))![1]) * 1_000;
    } catch {}
  }
  return NaN;
}

/** Jiffies of the whole host: busy, of which kernel (system, irq, softirq), stolen by the hypervisor, and total. */
function hostCpu(): { busy: number; kernel: number; steal: number; total: number } {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const total = user! + nice! + system! + idle! + iowait! + irq! + softirq! + (steal ?? 0);
  return { busy: total - idle! - iowait!, kernel: system! + irq! + softirq!, steal: steal ?? 0, total };
}

interface RpsOutcome {
  readonly rps: number[];
  readonly spread: Record<string, number>;
  /** Share of one core over the measured runs. */
  readonly clientCores: number;
  readonly nodeCores: Record<string, number>;
  readonly hostBusyCores: number;
  /** Of which system, irq and softirq time (the bridge, the nodes' nftables, TCP). */
  readonly hostKernelCores: number;
  readonly hostStealCores: number;
  readonly cores: number;
  /** wrk's socket errors (a read error is also a connection the server side closed or reset). */
  readonly socketErrors: number;
  /** The farm's own events during the measured runs: a node service stalled past its lease, peers lost. */
  readonly farmEvents: FailoverCount;
}

async function requestsPerSecond(nodeCount: number, connections: number): Promise<RpsOutcome> {
  progress(`requests per second: a fresh ${nodeCount}-node lab`);
  await upWithTimings(lab, { nodes: nodeCount });
  await installWrk();
  const spread: Record<string, number> = {};
  for (const answer of await lab.get(300)) spread[answer] = (spread[answer] ?? 0) + 1;
  const wrk = (seconds: number) => lab.exec(clientContainer, ["env", "LD_LIBRARY_PATH=/opt/wrk", "/opt/wrk/wrk", "-t1", `-c${connections}`, `-d${seconds}s`, "--timeout", "2s", `http://${labVip}:80/`], (seconds + 30) * 1_000);
  await wrk(2); // warm-up: the servers' JIT, the connections' conntrack entries
  const containers = (await lab.docker.listContainers({ all: true, filters: JSON.stringify({ label: ["tandem.lab=1"] }) })).map((info) => ({ name: (info.Names[0] ?? "").replace(/^\/tandem-lab-/, ""), id: info.Id }));
  const cpuBefore = new Map(containers.map((each) => [each.name, containerCpuNs(each.id)]));
  const hostBefore = hostCpu();
  const startedAt = performance.now();
  const fromMs = Date.now();
  let socketErrors = 0;
  const rps: number[] = [];
  for (let run = 0; run < shape.wrkRuns; run++) {
    const result = await wrk(shape.wrkSeconds);
    const match = /Requests\/sec:\s+([\d.]+)/.exec(result.stdout);
    if (match === null) throw new Error(`wrk printed no rate: ${(result.stdout + result.stderr).trim()}`);
    const errors = /Socket errors: (.*)/.exec(result.stdout)?.[1];
    rps.push(Number(match[1]));
    socketErrors += [...(errors ?? "").matchAll(/\d+/g)].reduce((sum, each) => sum + Number(each[0]), 0);
    progress(`${nodeCount} node(s), wrk run ${run + 1}: ${match[1]} req/s${errors === undefined ? "" : ` (socket errors: ${errors})`}`);
  }
  const elapsedNs = (performance.now() - startedAt) * 1e6;
  const hostAfter = hostCpu();
  const toMs = Date.now();
  const nodeNames = Array.from({ length: nodeCount }, (_, index) => `n${index + 1}`);
  const farmEvents = countFailovers(await Promise.all(nodeNames.map(nodeLog)), farmModule, fromMs, toMs);
  const cores = readFileSync("/proc/stat", "utf8").split("\n").filter((line) => /^cpu\d/.test(line)).length;
  const coresOf = (name: string) => (containerCpuNs(containers.find((each) => each.name === name)!.id) - cpuBefore.get(name)!) / elapsedNs;
  return {
    rps,
    spread,
    clientCores: coresOf("client"),
    nodeCores: Object.fromEntries(containers.filter((each) => each.name !== "client").map((each) => [each.name, coresOf(each.name)])),
    hostBusyCores: ((hostAfter.busy - hostBefore.busy) / (hostAfter.total - hostBefore.total)) * cores,
    hostKernelCores: ((hostAfter.kernel - hostBefore.kernel) / (hostAfter.total - hostBefore.total)) * cores,
    hostStealCores: ((hostAfter.steal - hostBefore.steal) / (hostAfter.total - hostBefore.total)) * cores,
    cores,
    socketErrors,
    farmEvents,
  };
}

// ---- The run ----

const row = (label: string, times: readonly number[]) =>
  `   ${label.padEnd(58)} p50 ${fixed(percentile(times, 0.5)).padStart(5)} ms   p99 ${fixed(percentile(times, 0.99)).padStart(5)} ms   (min ${fixed(Math.min(...times))}, max ${fixed(Math.max(...times))})`;

const release = await lockLab("bench/lab-bench.ts");
const started = performance.now();
try {
  await lab.requireDocker();
  out(`tandem Docker lab benchmarks${quick ? " (--quick)" : ""}: 3 node containers, farm module ${farmModule} (srcip+srcport), VIP ${labVip}`);
  out();

  if (sections.has(1)) {
    const ours = await killToAnswered(null, "tandem defaults", shape.killRuns);
    const theirs = await killToAnswered(safekitFarmTimings, "SafeKit timings", shape.killRuns);
    out(`1. Node power-off (docker kill) to its buckets' new connections answered by a survivor, ${shape.killRuns} runs each`);
    out(row("tandem defaults (heartbeat 50 ms, detection 250 ms)", ours));
    out(row("baseline: SafeKit timings (pulse 100 ms x slost_count 10)", theirs));
    out(`   ratio tandem/baseline: p50 ${fixed(percentile(ours, 0.5) / percentile(theirs, 0.5), 2)}, p99 ${fixed(percentile(ours, 0.99) / percentile(theirs, 0.99), 2)}   (goal: p50 and p99 <= 500 ms with defaults: ${percentile(ours, 0.99) <= 500 ? "met" : "NOT met"})`);
    out();
  }

  if (sections.has(2)) {
    progress(`false failovers: a fresh lab with two farm modules (web: tandem defaults; websk: SafeKit timings, VIP 198.18.0.101)`);
    await upWithTimings(lab, { nodes: 3, extra: [{ name: "websk", vip: "198.18.0.101", timings: safekitFarmTimings }] });
    await lab.degrade(0.01, 0);
    const loss = await pingLoss("n1", "198.18.0.2", quick ? 1_000 : 4_000);
    const fromMs = Date.now();
    for (let minute = 0; minute < shape.idleMinutes; minute++) {
      await sleep(60_000);
      progress(`false failovers: ${minute + 1} of ${shape.idleMinutes} minutes idle at 1 % loss`);
    }
    const toMs = Date.now();
    await lab.degrade(0, 0);
    const logs = await Promise.all(names.map(nodeLog));
    const ours = countFailovers(logs, farmModule, fromMs, toMs);
    const theirs = countFailovers(logs, "websk", fromMs, toMs);
    const describe = (count: FailoverCount) => `${count.peerLost + count.leaseLost} (peer-lost ${count.peerLost}, lease-lost ${count.leaseLost}, rejected ${count.rejected}, member-list changes ${count.memberChanges})`;
    out(`2. False failovers, 3 idle nodes, ${shape.idleMinutes} minute(s) with 1 % of the packets between nodes dropped each way (nftables; ping n1->n2->n1 lost ${loss} %)`);
    out(`   ${"tandem defaults (module web)".padEnd(62)} ${describe(ours)}`);
    out(`   ${"baseline: SafeKit timings (module websk, same lab, same time)".padEnd(62)} ${describe(theirs)}`);
    out(`   goal 0: ${ours.peerLost + ours.leaseLost + ours.memberChanges === 0 ? "met" : "NOT met"} (no ratio: ${theirs.peerLost + theirs.leaseLost === 0 ? "both are 0" : `baseline ${theirs.peerLost + theirs.leaseLost}`})`);
    out();
  }

  if (sections.has(3)) {
    const clients = 12;
    const joins = await labJoins(shape.joins, clients);
    const sims = Array.from({ length: shape.simJoinSeeds }, (_, index) => simJoin(index + 1, clients));
    const simWith = sims.map((each) => each.resets);
    const simWithout = sims.map((each) => each.inFlight);
    const sum = (list: readonly number[]) => list.reduce((total, each) => total + each, 0);
    const labResets = sum(joins.map((each) => each.resets));
    out(`3. Connections reset when a node joins under load (${clients} clients, 5 requests per connection, 20 ms apart; n3 powered on into n1+n2)`);
    out(`   lab, tandem (connection-aware hand-over)      ${labResets} resets in ${joins.length} joins (${sum(joins.map((each) => each.answered))} requests answered around them, ${sum(joins.map((each) => each.answeredByJoiner))} by n3; other failures ${sum(joins.map((each) => each.otherFailures))}; n3 seen in the farm ${joins.map((each) => each.joinMs).join(", ")} ms after its container start returned)`);
    out(`   simulator, same load, tandem's hand-over      ${fixed(sum(simWith) / simWith.length, 2)} resets per join (${simWith.length} seeds, max ${Math.max(...simWith)})`);
    out(`   baseline: simulator, buckets moved at once    ${fixed(sum(simWithout) / simWithout.length, 2)} connections per join open on n1/n2 in the buckets n3 takes, at that moment: reset without a hand-over (${simWithout.length} seeds, min ${Math.min(...simWithout)}, max ${Math.max(...simWithout)})`);
    out(`   ratio lab/baseline: ${fixed(labResets / joins.length / Math.max(1e-9, sum(simWithout) / simWithout.length), 2)}   (goal 0 resets: ${labResets === 0 ? "met" : "NOT met"})`);
    out();
  }

  if (sections.has(4)) {
    const connections = Number(values.connections);
    const one = await requestsPerSecond(1, connections);
    const three = await requestsPerSecond(3, connections);
    const median = (list: readonly number[]) => percentile(list, 0.5);
    const cpu = (outcome: RpsOutcome) =>
      `CPU (cores of ${outcome.cores}): host busy ${fixed(outcome.hostBusyCores, 2)} (kernel ${fixed(outcome.hostKernelCores, 2)}, steal ${fixed(outcome.hostStealCores, 2)}); containers: wrk client ${fixed(outcome.clientCores, 2)}, ${Object.entries(outcome.nodeCores).sort().map(([name, cores]) => `${name} ${fixed(cores, 2)}`).join(", ")}`;
    out(`4. Requests per second through the VIP (wrk -t1 -c${connections}, keep-alive, from the client container; median of ${shape.wrkRuns} runs of ${shape.wrkSeconds} s)`);
    out(`   3 nodes                  ${fixed(median(three.rps)).padStart(6)} req/s  (runs ${three.rps.map((each) => fixed(each)).join(", ")}; 300 new connections spread ${Object.entries(three.spread).sort().map(([node, count]) => `${node} ${count}`).join(", ")})`);
    out(`   baseline: 1 node         ${fixed(median(one.rps)).padStart(6)} req/s  (runs ${one.rps.map((each) => fixed(each)).join(", ")})`);
    const serverCores = (outcome: RpsOutcome) => Object.values(outcome.nodeCores).reduce((sum, each) => sum + each, 0);
    const perCore = (outcome: RpsOutcome) => median(outcome.rps) / serverCores(outcome);
    out(`   ratio 3 nodes / 1 node:  ${fixed(median(three.rps) / median(one.rps), 2)}   (requests per CPU-second of the node containers: ${fixed(perCore(three))} with 3, ${fixed(perCore(one))} with 1)`);
    out(`   3 nodes: ${cpu(three)}`);
    out(`   1 node:  ${cpu(one)}`);
    const events = (outcome: RpsOutcome) => `${outcome.socketErrors} wrk socket errors, ${outcome.farmEvents.leaseLost} lease-lost, ${outcome.farmEvents.peerLost} peer-lost`;
    out(`   during the measured runs: 3 nodes ${events(three)}; 1 node ${events(one)}`);
    out();
  }
  out(`(${fixed((performance.now() - started) / 60_000, 1)} minutes)`);
} catch (error) {
  if (error instanceof DockerUnavailable) {
    console.error(`bench/lab-bench.ts: ${error.message}`);
    process.exitCode = 3;
  } else throw error;
} finally {
  await lab.down().catch(() => {});
  release();
}
