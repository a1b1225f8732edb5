// The real kernel filter (drivers/real/filter.ts) under the FilterPort contract, on this
// host: a "switch" namespace with a bridge, a client namespace and two node namespaces,
// each joined to the bridge by a veth pair. Each node runs the driver and its
// "application" (a TCP server) in a child process (filter-real-agent.ts) inside its
// namespace; the client opens real TCP connections to the VIP. Then what only the real
// driver has: ARP with the virtual MAC, the owner flag, close(), a second service.
//
// Needs root, network namespaces and nftables in the kernel; it FAILS, saying which is
// missing, rather than skip: CI runs as root and must prove the real filter.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BucketSet } from "../../core/bucket-set.ts";
import type { FilterSettings } from "../../core/ports.ts";
import { applyCommands, bucketVerdicts, derivedVirtualMac, invalidOptions, jhash, kernelBucket, setupCommands, type RealFilterOptions } from "../../drivers/real/filter.ts";
import { nativeAddonPath } from "../../native/index.ts";
import { filterPortContract, settings, type ExchangeOutcome, type FilterHarness } from "./filter-contract.ts";

const agentPath = join(dirname(fileURLToPath(import.meta.url)), "filter-real-agent.ts");
const bucketCount = 256;
const hashSeed = 0x7a3d_91c5;
const clientIp = "192.0.2.10";
const vip = "192.0.2.100";
const virtualMac = "5a:fe:c0:00:02:64";
const servicePort = 80;
/** How long the client waits for a greeting or an answer before it counts silence. An
 *  answer takes milliseconds; the margin is for a loaded CI machine (a dropped SYN's
 *  retransmission, 1 s later, is dropped as well, so waiting past it changes nothing). */
const answerWaitMs = 1_200;

function filterOptions(): RealFilterOptions {
  return { module: "web", vips: [vip], interfaceName: "eth0", virtualMac, bucketCount, hashSeed, rules: [{ port: servicePort, proto: "tcp", mode: "srcip+srcport" }] };
}

// ---- What the host must offer ----

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Throws, saying what is missing and what to do, when this host cannot run these tests. */
function requireHost(): void {
  if (process.getuid?.() !== 0) throw new Error("the real filter tests need root (network namespaces, nftables): run them as root, as .ci/run does");
  if (!existsSync(nativeAddonPath)) throw new Error(`the native addon is not built (${nativeAddonPath}): run \`npm ci\` (it builds native/), with libnftables-dev, libmnl-dev, g++ and make installed`);
  try {
    ip("-V");
  } catch {
    throw new Error("the real filter tests need the `ip` command: install iproute2");
  }
}

// ---- The namespaces ----

interface World {
  readonly prefix: string;
  readonly switchNs: string;
  readonly clientNs: string;
  readonly nodeNs: readonly string[];
  readonly nodeIps: readonly string[];
}

let worldCount = 0;

function buildWorld(nodeCount: number): World {
  const prefix = `tdmf${process.pid}x${worldCount++}`;
  const world: World = {
    prefix,
    switchNs: `${prefix}sw`,
    clientNs: `${prefix}c`,
    nodeNs: Array.from({ length: nodeCount }, (_, index) => `${prefix}n${index}`),
    nodeIps: Array.from({ length: nodeCount }, (_, index) => `192.0.2.${index + 1}`),
  };
  try {
    ip("netns", "add", world.switchNs);
  } catch (error) {
    throw new Error(`cannot create a network namespace (\`ip netns add\`): the real filter tests need them. ${(error as Error).message}`);
  }
  ip("-n", world.switchNs, "link", "add", "br0", "type", "bridge");
  ip("-n", world.switchNs, "link", "set", "br0", "up");
  const hosts = [{ ns: world.clientNs, address: clientIp }, ...world.nodeNs.map((ns, index) => ({ ns, address: world.nodeIps[index]! }))];
  hosts.forEach(({ ns, address }, index) => {
    ip("netns", "add", ns);
    ip("-n", world.switchNs, "link", "add", `p${index}`, "type", "veth", "peer", "name", "eth0", "netns", ns);
    ip("-n", world.switchNs, "link", "set", `p${index}`, "master", "br0", "up");
    ip("-n", ns, "address", "add", `${address}/24`, "dev", "eth0");
    ip("-n", ns, "link", "set", "eth0", "up");
    ip("-n", ns, "link", "set", "lo", "up");
  });
  return world;
}

function destroyWorld(world: World): void {
  for (const ns of [world.clientNs, ...world.nodeNs, world.switchNs]) {
    try {
      ip("netns", "delete", ns);
    } catch {
      // Never created, or already gone.
    }
  }
}

function inNs(ns: string, command: string, ...args: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, command, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

// ---- Agents: child processes inside the namespaces ----

class Agent {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  readonly #stderr: string[] = [];
  #nextId = 1;
  #exited: Promise<void>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.stderr!.on("data", (chunk: Buffer) => this.#stderr.push(chunk.toString()));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const reply = JSON.parse(line) as { id: number; ok: boolean; result?: unknown; error?: string };
      const waiter = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.result);
      else waiter?.reject(new Error(reply.error));
    });
    child.once("exit", (code, signal) => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error(`agent exited (${code ?? signal}): ${this.#stderr.join("")}`));
      this.#pending.clear();
    });
  }

  static async start(ns: string, mode: "node" | "client", name: string): Promise<Agent> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, agentPath, mode, name], { stdio: ["pipe", "pipe", "pipe"] });
    const agent = new Agent(child);
    await new Promise<void>((resolve, reject) => {
      agent.#pending.set(0, { resolve: () => resolve(), reject });
    });
    return agent;
  }

  call(op: string, fields: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#child.stdin!.write(`${JSON.stringify({ id, op, ...fields })}\n`);
    });
  }

  /** SIGKILL: the process dies as in a crash, its sockets closed by the kernel. */
  async kill(): Promise<void> {
    this.#child.kill("SIGKILL");
    await this.#exited;
  }
}

async function startNode(ns: string, name: string, options: RealFilterOptions = filterOptions()): Promise<Agent> {
  const agent = await Agent.start(ns, "node", name);
  await agent.call("open", { options });
  await agent.call("serve", { ports: [servicePort] });
  return agent;
}

function wire(settings: FilterSettings) {
  return { owned: settings.owned.toArray(), lingering: settings.lingering.toArray(), reset: settings.reset.toArray(), leaseMs: settings.leaseMs };
}

// ---- The contract's harness ----

function outcomeOf(reply: string): ExchangeOutcome {
  if (reply.startsWith("answered ")) return { kind: "answered", node: Number(reply.slice("answered n".length)) };
  return reply === "reset" ? { kind: "reset" } : { kind: "silent" };
}

async function makeRealHarness(): Promise<FilterHarness> {
  requireHost();
  const world = buildWorld(2);
  let nodes: (Agent | null)[] = [];
  let client: Agent | null = null;
  try {
    client = await Agent.start(world.clientNs, "client", "client");
    nodes = [await startNode(world.nodeNs[0]!, "n0"), await startNode(world.nodeNs[1]!, "n1")];
  } catch (error) {
    await client?.kill();
    for (const node of nodes) await node?.kill();
    destroyWorld(world);
    throw new Error(`cannot start the real filter in a namespace: ${(error as Error).message}`);
  }
  const clientAgent = client;
  let nextPort = 20_000;
  const node = (index: number): Agent => {
    const agent = nodes[index];
    if (agent === null || agent === undefined) throw new Error(`node ${index} is not running`);
    return agent;
  };
  return {
    nodeCount: 2,
    bucketCount,
    newFlows: (count) =>
      Array.from({ length: count }, () => {
        const sourcePort = nextPort++;
        return { sourcePort, bucket: kernelBucket(clientIp, sourcePort, bucketCount, hashSeed) };
      }),
    apply: async (index, settings) => void (await node(index).call("apply", wire(settings))),
    renew: async (index, leaseMs) => void (await node(index).call("renew", { leaseMs })),
    setVip: async (index, state) => void (await node(index).call("setVip", { state })),
    crash: async (index) => {
      await node(index).kill();
      nodes[index] = null;
    },
    connect: async (flows) => {
      const answers = (await clientAgent.call("connect", { host: vip, port: servicePort, localAddress: clientIp, localPorts: flows.map((flow) => flow.sourcePort), timeoutMs: answerWaitMs })) as (string | null)[];
      return answers.map((answer) => (answer === null ? null : Number(answer.slice(1))));
    },
    exchange: async (flow) => outcomeOf((await clientAgent.call("exchange", { localPort: flow.sourcePort, timeoutMs: answerWaitMs })) as string),
    answerFrom: async (index, flow) => {
      await node(index).call("push", { port: flow.sourcePort });
      return outcomeOf((await clientAgent.call("receive", { localPort: flow.sourcePort, timeoutMs: answerWaitMs })) as string);
    },
    acceptedCount: async (index) => ((await node(index).call("stats")) as { accepted: number }).accepted,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    reset: async () => {
      await clientAgent.call("closeAll");
      for (let index = 0; index < nodes.length; index++) {
        if (nodes[index] === null) nodes[index] = await startNode(world.nodeNs[index]!, `n${index}`);
        await node(index).call("setVip", { state: "down" });
        await node(index).call("apply", wire(settings(bucketCount, {})));
      }
    },
    dispose: async () => {
      await clientAgent.kill();
      for (const agent of nodes) await agent?.kill();
      destroyWorld(world);
    },
  };
}

// A lease of 1 s leaves the lease case a margin of a third of a second for each step.
filterPortContract("real nftables filter in network namespaces", makeRealHarness, { flowCount: 200, leaseMs: 1_000 });

// ---- What only the real driver has ----

describe("RealFilterPort on Linux", () => {
  let world: World | null = null;
  let client: Agent;
  let node: Agent;
  const agents: Agent[] = [];

  beforeAll(async () => {
    requireHost();
    world = buildWorld(1);
    client = await Agent.start(world.clientNs, "client", "client");
    agents.push(client);
    node = await startNode(world.nodeNs[0]!, "n0");
    agents.push(node);
  });
  afterAll(async () => {
    for (const agent of agents) await agent.kill().catch(() => {});
    if (world !== null) destroyWorld(world);
  });

  const everything = () => wire(settings(bucketCount, { owned: Array.from({ length: bucketCount }, (_, index) => index) }));
  let nextPort = 30_000;
  const connectOnce = async () => (await client.call("connect", { host: vip, port: servicePort, localAddress: clientIp, localPorts: [nextPort++], timeoutMs: answerWaitMs })) as (string | null)[];

  it("answers ARP for the VIP with the virtual MAC in the payload and its own MAC as frame source, so the bridge never learns the virtual MAC", async () => {
    await node.call("apply", everything());
    await node.call("setVip", { state: "up" });
    inNs(world!.clientNs, "ip", "neigh", "flush", "all");
    expect(await connectOnce()).toEqual(["n0"]);
    expect(inNs(world!.clientNs, "ip", "neigh", "show", vip)).toContain(`lladdr ${virtualMac}`);
    const nodeMac = inNs(world!.nodeNs[0]!, "cat", "/sys/class/net/eth0/address").trim();
    const fdb = ip("-n", world!.switchNs, "neigh", "show").concat(execFileSync("bridge", ["-n", world!.switchNs, "fdb", "show", "br", "br0"], { encoding: "utf8" }));
    expect(fdb).toContain(nodeMac);
    expect(fdb).not.toContain(virtualMac);
    const stats = (await node.call("stats")) as { arp: { requests: number; replies: number; errors: number } };
    expect(stats.arp.replies).toBeGreaterThan(0);
    expect(stats.arp.errors).toBe(0);
  });

  it("announces the VIP with a gratuitous ARP when it comes up", async () => {
    await node.call("setVip", { state: "down" });
    inNs(world!.clientNs, "ip", "neigh", "replace", vip, "lladdr", "02:00:00:00:00:01", "dev", "eth0", "nud", "stale");
    await node.call("setVip", { state: "up" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(inNs(world!.clientNs, "ip", "neigh", "show", vip)).toContain(`lladdr ${virtualMac}`);
  });

  it("draining keeps the VIP on lo and stops answering ARP for it", async () => {
    await node.call("setVip", { state: "up" });
    await node.call("setVip", { state: "draining" });
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo")).toContain(`${vip}/32`);
    inNs(world!.clientNs, "ip", "neigh", "flush", "all");
    const before = ((await node.call("stats")) as { arp: { replies: number } | null }).arp;
    expect(before, "the responder is closed").toBeNull();
    expect(await connectOnce(), "no ARP answer, so no connection").toEqual([null]);
    expect(inNs(world!.clientNs, "ip", "neigh", "show", vip)).not.toContain(virtualMac);
    await node.call("setVip", { state: "down" });
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo")).not.toContain(vip);
  });

  it("puts the VIP on lo with arp_ignore=1 and arp_announce=2 on the interface, and takes it off again", async () => {
    await node.call("setVip", { state: "up" });
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo")).toContain(`${vip}/32`);
    expect(inNs(world!.nodeNs[0]!, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore").trim()).toBe("1");
    expect(inNs(world!.nodeNs[0]!, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_announce").trim()).toBe("2");
    await node.call("setVip", { state: "down" });
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo")).not.toContain(vip);
  });

  it("keeps conntrack's loose pickup on and still never adopts a stranger's flow", async () => {
    // The handover and reset cases of the contract prove the behaviour; this pins that
    // they ran with the kernel default, i.e. the rules alone protect against pickup.
    expect(inNs(world!.nodeNs[0]!, "cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_loose").trim()).toBe("1");
  });

  it("lists its tables with the jhash vmap and the lease", async () => {
    const owned = [0, 1, 2, 3, 9, 200];
    await node.call("apply", wire(settings(bucketCount, { owned, lingering: [4, 5], reset: [9], leaseMs: 5_000 })));
    const listed = (await node.call("list")) as string;
    expect(listed).toContain(`tcp dport 80 jhash ip saddr . tcp sport mod 256 seed 0x7a3d91c5 vmap { 0-3 : jump owned, 4-5 : jump lingering, 9 : jump owned_reset, 200 : jump owned }`);
    expect(listed).toMatch(/elements = \{ 192\.0\.2\.100 timeout 5s expires /);
    expect(listed).toContain("flags owner");
    expect(listed).toContain(`ether daddr ${virtualMac} meta pkttype set host`);
  });

  it("refuses a second service for the same module while the first one lives", async () => {
    const second = await Agent.start(world!.nodeNs[0]!, "node", "second");
    agents.push(second);
    await expect(second.call("open", { options: filterOptions() })).rejects.toThrow(/FilterSetupError: the nftables tables tandem_web belong to another running process/);
    await second.kill();
  });

  it("close() removes the tables and the VIP", async () => {
    const other = await Agent.start(world!.nodeNs[0]!, "node", "other");
    agents.push(other);
    await other.call("open", { options: { ...filterOptions(), module: "other", vips: ["192.0.2.101"] } });
    await other.call("setVip", { state: "up" });
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo")).toContain("192.0.2.101/32");
    expect(await other.call("kernelTables")).toContain("tandem_other");
    await other.call("close");
    const tables = (await other.call("kernelTables")) as string;
    expect(tables).not.toContain("tandem_other");
    expect(tables).toContain("tandem_web");
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo")).not.toContain("192.0.2.101");
    await other.kill();
  });

  it("the kernel deletes the tables when the service's process dies; the next service removes the VIP it left on lo", async () => {
    await node.call("setVip", { state: "up" });
    await node.kill();
    const probe = await Agent.start(world!.nodeNs[0]!, "node", "probe");
    agents.push(probe);
    expect(await probe.call("kernelTables")).not.toContain("tandem_web");
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo"), "the address outlives the process").toContain(vip);
    expect(await connectOnce(), "but nothing answers: the virtual MAC is no longer accepted").toEqual([null]);
    await probe.call("open", { options: filterOptions() });
    expect(inNs(world!.nodeNs[0]!, "ip", "-4", "address", "show", "dev", "lo")).not.toContain(vip);
    await probe.call("close");
    await probe.kill();
  });
});

// ---- Pure parts: the ruleset text and the kernel's hash ----

describe("RealFilterPort ruleset (no kernel needed)", () => {
  it("groups buckets into runs per class, reset before owned", () => {
    const verdicts = bucketVerdicts({ owned: BucketSet.of(8, [0, 1, 2, 5]), lingering: BucketSet.of(8, [3, 7]), reset: BucketSet.of(8, [2]) });
    expect(verdicts).toEqual(["0-1 : jump owned", "2 : jump owned_reset", "3 : jump lingering", "5 : jump owned", "7 : jump lingering"]);
    expect(bucketVerdicts({ owned: BucketSet.empty(4), lingering: BucketSet.empty(4), reset: BucketSet.empty(4) })).toEqual([]);
  });

  it("omits the vmap when no bucket is set, so every VIP packet meets the final drop", () => {
    const empty = BucketSet.empty(bucketCount);
    const commands = applyCommands(filterOptions(), { owned: empty, lingering: empty, reset: empty }, null);
    expect(commands).not.toContain("vmap");
    expect(commands).toContain("add rule ip tandem_web prerouting drop");
    expect(commands).toContain("flush set ip tandem_web lease");
  });

  it("creates the netdev table only with a virtual MAC", () => {
    expect(setupCommands(filterOptions())).toContain("table netdev tandem_web");
    expect(setupCommands({ ...filterOptions(), virtualMac: null })).not.toContain("netdev");
  });

  it("spreads flows over the buckets with Linux's jhash", () => {
    // The kernel itself is the reference: the contract's first case predicts, with this
    // function, exactly which of 200 connections a node answers.
    expect(jhash(new Uint8Array([]), 0), "an empty key returns the initial value").toBe(0xdeadbeef);
    expect(kernelBucket("192.0.2.10", 20_000, 256, hashSeed)).toBe(kernelBucket("192.0.2.10", 20_000, 256, hashSeed));
    const buckets = new Set(Array.from({ length: 2_000 }, (_, port) => kernelBucket("192.0.2.10", 10_000 + port, 256, hashSeed)));
    expect(buckets.size).toBeGreaterThan(240);
  });

  it("derives SafeKit's virtual MAC and validates options", () => {
    expect(derivedVirtualMac("192.168.1.222")).toBe("5a:fe:c0:a8:01:de");
    expect(invalidOptions(filterOptions())).toBeNull();
    expect(invalidOptions({ ...filterOptions(), vips: ["2001:db8::1"] })).toMatch(/IPv4 only/);
    expect(invalidOptions({ ...filterOptions(), module: "we b" })).toMatch(/cannot name an nftables table/);
  });
});
