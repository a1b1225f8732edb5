// The Docker lab: a farm of real node services in containers on this host, driven through
// dockerode.
//
// - A network `tandem-lab` of its own (bridge driver, internal: no route out of it, no
//   NAT), 198.18.0.0/24 in 198.18.0.0/15, the range kept for network benchmarks; lab
//   traffic goes only to the lab's containers. Gateway .254, the VIP .100.
// - Node containers tandem-lab-n1..nN at .1..N, from the node image: NET_ADMIN (nftables,
//   addresses, ARP), SYS_ADMIN, /dev/fuse when the host has it, arp_ignore/arp_announce
//   on eth0 set by the engine (/proc/sys is read-only in a container: the service finds
//   them set), a volume for /var/lib/tandem (the service's state survives a power loss, as
//   a disk would), /run on tmpfs (gone at power loss, as RAM is). Their /etc/tandem is
//   written before they start; their main process is `tandem daemon --node nK` (through
//   /etc/tandem-lab/boot.sh, which execs it), logging to stdout: `docker logs`.
// - A client container tandem-lab-client at .10, same image, sleeping: requests to the
//   VIP are made from it with `docker exec`.
//
// Faults: kill = `docker kill` (SIGKILL to the whole container: power loss; the network
// namespace, hence the service's nftables tables and the VIP, goes with it), start =
// power back, pause/unpause = the cgroup freezer (a hang). A partition drops packets
// between two nodes with nftables rules inside both containers (table inet tandem_lab,
// hooked before everything else), not by disconnecting a container from the network: a
// disconnected node would lose its clients too and its eth0 would vanish under the running
// service, whereas the farm's interesting case is nodes that no longer hear each other
// but still reach the clients. The rules are kept in /etc/tandem-lab/partition.nft,
// which the boot script re-applies, so a partition outlives a power loss like a cut
// cable; heal removes them everywhere. A paused node cannot be changed (unpause it first).
//
// Everything the lab creates carries the label tandem.lab=1; `down` removes exactly that
// (containers with their volumes, and the network); images stay cached.

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import type { ModuleView } from "../service/node-service.ts";
import { dockerClient, ensureImages, requireDocker, withTimeout, type Images, type Progress } from "./images.ts";
import { appBrokenFlag, clientAddress, degradeFile, degradeScript, farmModule, firstFileOf, labDynamicRange, labGateway, labSubnet, labVip, nodeAddress, nodeFiles, nodeName, partitionFile, partitionPeers, partitionRules, tarOf, type FarmOptions } from "./lab-config.ts";

export const labLabel = "tandem.lab";
const roleLabel = "tandem.lab.role";
const nodeLabel = "tandem.lab.node";
export const networkName = "tandem-lab";
export const bridgeName = "tandem-lab0";
export const containerPrefix = "tandem-lab-";
export const clientContainer = `${containerPrefix}client`;
export const tandemCli = "/opt/tandem/dist/cli/tandem.js";
export { clientAddress, farmModule, labVip, labSubnet };

export type ContainerState = "running" | "paused" | "exited" | "created" | "restarting" | "removing" | "dead" | "missing";

export interface NodeStatus {
  readonly name: string;
  readonly container: string;
  readonly address: string;
  readonly state: ContainerState;
  /** Nodes this one is partitioned from (packets dropped both ways). */
  readonly partitionedFrom: readonly string[];
  /** `tandem state --json -m web` on the node, when it is running and its service answers. */
  readonly farm: ModuleView | null;
  /** Why `farm` is null while the container runs. */
  readonly problem: string | null;
}

export interface LabStatus {
  /** Whether the network and every container exist and run. */
  readonly up: boolean;
  readonly network: boolean;
  readonly image: string | null;
  readonly vip: string;
  readonly client: { readonly container: string; readonly address: string; readonly state: ContainerState };
  readonly nodes: readonly NodeStatus[];
}

export interface UpResult {
  readonly already: boolean;
  readonly images: Images | null;
  readonly status: LabStatus;
}

/** An answer to one request through the VIP: the node's name, or what went wrong. */
export type Answer = string | "reset" | "timeout" | "refused" | "error";

/** What the lab cannot do on this host or at all (the message names it). */
export class LabUnsupported extends Error {
  override readonly name = "LabUnsupported";
}

export interface UpOptions {
  nodes?: number;
  waitMs?: number;
  /** How the farm spreads clients and weighs nodes; applies to containers created now. */
  farm?: FarmOptions;
  /** Nodes created but left powered off (a scenario's initiallyOff). */
  off?: readonly string[];
}

export interface LabOptions {
  readonly docker?: Docker;
  readonly progress?: Progress;
}

export class Lab {
  readonly docker: Docker;
  readonly #progress: Progress;

  constructor(options: LabOptions = {}) {
    this.docker = options.docker ?? dockerClient();
    this.#progress = options.progress ?? (() => {});
  }

  /** Throws DockerUnavailable (saying how to start dockerd) when the engine does not answer. */
  async requireDocker(): Promise<void> {
    await requireDocker(this.docker);
  }

  // ---- up and down ----

  /** Builds the images (cached), creates the network and the containers, and waits until
   *  the farm is UP on every node. On a lab that is up already it changes nothing; on
   *  one partly there it starts what is stopped and creates what is missing. */
  async up(options: UpOptions = {}): Promise<UpResult> {
    const count = options.nodes ?? 3;
    if (!Number.isInteger(count) || count < 1 || count > 9) throw new Error(`a lab has 1 to 9 nodes, not ${count}`);
    await this.requireDocker();
    const existing = await this.#containers();
    const names = existing.some((info) => info.Labels[roleLabel] === "node")
      ? existing.flatMap((info) => (info.Labels[roleLabel] === "node" ? [info.Labels[nodeLabel]!] : [])).sort()
      : Array.from({ length: count }, (_, index) => nodeName(index));
    const off = options.off ?? [];
    const unknownOff = off.filter((name) => !names.includes(name));
    if (unknownOff.length > 0) throw new Error(`up: no node ${unknownOff.join(", ")} to leave off (nodes: ${names.join(" ")})`);
    if (off.length > 0 && existing.length > 0) throw new Error(`up: nodes are left off only in a new lab, and one is there: \`tandem lab down\` first`);
    const before = await this.status();
    if (before.up) {
      if (names.length !== count) this.#progress(`the lab is up with ${names.length} node(s), not ${count}: \`tandem lab down\` first to change it`);
      this.#progress(`the lab is already up: ${names.join(" ")} and the client`);
      return { already: true, images: null, status: before };
    }
    const images = await ensureImages(this.docker, this.#progress);
    if (existing.length > 0 && names.length !== count) this.#progress(`a lab of ${names.length} node(s) is there: completing it (\`tandem lab down\` first to change its size)`);
    const labImage = existing.find((info) => info.Labels[roleLabel] === "node")?.Image;
    if (labImage !== undefined && labImage !== images.node) this.#progress(`note: the lab's containers run ${labImage}, the current build is ${images.node}: \`tandem lab down\` then \`up\` to run it`);
    await this.#ensureNetwork();
    // One key for the whole lab; an existing node's own copy is what counts for it.
    const key = await this.#existingKey(existing) ?? randomBytes(32);
    for (const [index, name] of names.entries()) await this.#ensureContainer(`${containerPrefix}${name}`, () => this.#createNode(images.node, names, index, key, options.farm ?? {}), !off.includes(name));
    await this.#ensureContainer(clientContainer, () => this.#createClient(images.node));
    const cut = (await this.status()).nodes.filter((node) => node.partitionedFrom.length > 0);
    if (cut.length > 0) {
      // The farm stays split: waiting for one view of it would be waiting for nothing.
      this.#progress(`note: partitions in place (${cut.map((node) => `${node.name} cut from ${node.partitionedFrom.join(",")}`).join("; ")}): the farm stays split until \`tandem lab heal\``);
      return { already: false, images, status: await this.status() };
    }
    await this.waitForFarm(names.filter((name) => !off.includes(name)), options.waitMs ?? 60_000);
    return { already: false, images, status: await this.status() };
  }

  /** Removes every container and network labelled as the lab's (containers with their
   *  volumes); nothing else, images included. Quiet when there is nothing. */
  async down(): Promise<{ containers: string[]; networks: string[] }> {
    await this.requireDocker();
    const containers = await this.#containers();
    await Promise.all(containers.map((info) => this.docker.getContainer(info.Id).remove({ force: true, v: true })));
    const networks = await this.docker.listNetworks({ filters: JSON.stringify({ label: [`${labLabel}=1`] }) });
    for (const network of networks) await this.docker.getNetwork(network.Id).remove();
    const removed = { containers: containers.map((info) => (info.Names[0] ?? info.Id).replace(/^\//, "")), networks: networks.map((network) => network.Name) };
    this.#progress(removed.containers.length + removed.networks.length === 0 ? "nothing to remove: no lab is there" : `removed ${[...removed.containers, ...removed.networks.map((name) => `network ${name}`)].join(", ")}`);
    return removed;
  }

  // ---- Looking ----

  async status(): Promise<LabStatus> {
    const containers = await this.#containers();
    const networks = await this.docker.listNetworks({ filters: JSON.stringify({ label: [`${labLabel}=1`] }) });
    const nodes = containers.filter((info) => info.Labels[roleLabel] === "node").sort((a, b) => a.Labels[nodeLabel]!.localeCompare(b.Labels[nodeLabel]!));
    const client = containers.find((info) => info.Labels[roleLabel] === "client");
    const views = await Promise.all(
      nodes.map(async (info): Promise<NodeStatus> => {
        const name = info.Labels[nodeLabel]!;
        const state = containerState(info);
        const partitionedFrom = await this.#partitionPeers(info.Id);
        let farm: ModuleView | null = null;
        let problem: string | null = state === "running" ? null : `the container is ${state}`;
        if (state === "running") {
          const result = await this.exec(info.Id, ["node", tandemCli, "state", "--json", "-m", farmModule], 15_000).catch((error: Error) => ({ code: -1, stdout: "", stderr: error.message }));
          if (result.code === 0) {
            try {
              farm = (JSON.parse(result.stdout) as ModuleView[])[0] ?? null;
            } catch {
              problem = `tandem state printed no JSON: ${result.stdout.slice(0, 200)}`;
            }
          } else problem = (result.stderr || result.stdout).trim().split("\n").slice(-1)[0] ?? `tandem state failed (${result.code})`;
        }
        return { name, container: `${containerPrefix}${name}`, address: nodeAddressOf(info), state, partitionedFrom, farm, problem };
      }),
    );
    const clientState = client === undefined ? "missing" : containerState(client);
    return {
      up: networks.length > 0 && nodes.length > 0 && clientState === "running" && nodes.every((info) => containerState(info) === "running"),
      network: networks.length > 0,
      image: nodes[0]?.Image ?? null,
      vip: labVip,
      client: { container: clientContainer, address: clientAddress, state: clientState },
      nodes: views,
    };
  }

  /** The lab's node names (from its containers). */
  async nodeNames(): Promise<string[]> {
    return (await this.#containers()).flatMap((info) => (info.Labels[roleLabel] === "node" ? [info.Labels[nodeLabel]!] : [])).sort();
  }

  /** Waits until every node of `members` runs the farm UP and Ready with exactly those members. */
  async waitForFarm(members: readonly string[], timeoutMs: number): Promise<LabStatus> {
    const want = [...members].sort().join(",");
    const deadline = Date.now() + timeoutMs;
    let said = "";
    for (;;) {
      const status = await this.status();
      const nodes = status.nodes.filter((node) => members.includes(node.name));
      const ready = nodes.length === members.length && nodes.every((node) => node.farm?.state === "UP" && node.farm.readiness === "Ready" && node.farm.farm?.state === "UP" && [...node.farm.farm.members].sort().join(",") === want);
      const line = `farm: ${nodes.map((node) => `${node.name} ${describeNode(node)}`).join(", ")}`;
      if (ready) {
        this.#progress(`${line}: ready`);
        return status;
      }
      if (line !== said) {
        this.#progress(line);
        said = line;
      }
      if (Date.now() > deadline) throw new Error(`the farm did not come UP on ${want} within ${timeoutMs / 1_000} s: ${line}`);
      await sleep(500);
    }
  }

  // ---- Faults ----

  /** Power loss: SIGKILL to everything in the container. */
  async kill(node: string): Promise<void> {
    const container = await this.#node(node);
    const state = containerState(await this.#info(container.id));
    if (state === "paused") await container.handle.unpause().catch(() => {});
    if (state === "running" || state === "paused") await container.handle.kill({ signal: "SIGKILL" });
    this.#progress(state === "running" || state === "paused" ? `${node}: killed (power off)` : `${node}: was not running (${state})`);
  }

  /** Power back: the container starts; its service starts the farm module (boot="on"). */
  async start(node: string): Promise<void> {
    const container = await this.#node(node);
    const state = containerState(await this.#info(container.id));
    if (state === "paused") throw new Error(`${node} is paused: \`tandem lab unpause ${node}\``);
    if (state !== "running") await container.handle.start();
    this.#progress(state === "running" ? `${node}: already running` : `${node}: started (power on)`);
  }

  /** A hang: every process of the node frozen (cgroup freezer). */
  async pause(node: string): Promise<void> {
    const container = await this.#node(node);
    const state = containerState(await this.#info(container.id));
    if (state !== "running") throw new Error(`${node} is ${state}: only a running node can be paused`);
    await container.handle.pause();
    this.#progress(`${node}: paused (hung)`);
  }

  async unpause(node: string): Promise<void> {
    const container = await this.#node(node);
    const state = containerState(await this.#info(container.id));
    if (state !== "paused") throw new Error(`${node} is ${state}, not paused`);
    await container.handle.unpause();
    this.#progress(`${node}: unpaused`);
  }

  /** No packet crosses between the two groups (both ways) until heal(). */
  async partition(groupA: string | readonly string[], groupB: string | readonly string[]): Promise<void> {
    const a = typeof groupA === "string" ? [groupA] : [...groupA];
    const b = typeof groupB === "string" ? [groupB] : [...groupB];
    const overlap = a.filter((name) => b.includes(name));
    if (overlap.length > 0 || a.length === 0 || b.length === 0) throw new Error(`partition: two non-empty groups of different nodes, not ${a.join(",")} and ${b.join(",")}`);
    // One listing, then every node at once: the cut is in place on all of them within
    // tens of milliseconds (a flapping link is cut and repaired every few hundred).
    const containers = await this.#containers();
    const nodes = new Map(containers.filter((info) => info.Labels[roleLabel] === "node").map((info) => [info.Labels[nodeLabel]!, info]));
    const unknown = [...a, ...b].filter((name) => !nodes.has(name));
    if (unknown.length > 0) throw new Error(`no lab node ${unknown.join(", ")} (nodes: ${[...nodes.keys()].sort().join(" ") || "none: tandem lab up"})`);
    refusePaused([...a, ...b].map((name) => nodes.get(name)!));
    const changes = new Map<string, string[]>();
    for (const [side, other] of [[a, b], [b, a]] as const) for (const name of side) changes.set(name, other);
    await Promise.all(
      [...changes].map(async ([name, others]) => {
        const info = nodes.get(name)!;
        const peers = [...new Set([...(await this.#partitionPeers(info.Id)), ...others])].sort();
        await this.#setPartition(info, peers, containers);
      }),
    );
    this.#progress(`partition: ${a.join(",")} | ${b.join(",")} (no packet crosses, both ways)`);
  }

  /** Every partition repaired, on every node. */
  async heal(): Promise<void> {
    const containers = await this.#containers();
    const nodes = containers.filter((info) => info.Labels[roleLabel] === "node").sort((x, y) => x.Labels[nodeLabel]!.localeCompare(y.Labels[nodeLabel]!));
    const peers = await Promise.all(nodes.map((info) => this.#partitionPeers(info.Id)));
    const partitioned = nodes.filter((_, index) => peers[index]!.length > 0);
    refusePaused(partitioned);
    await Promise.all(partitioned.map((info) => this.#setPartition(info, [], containers)));
    const names = partitioned.map((info) => info.Labels[nodeLabel]!);
    this.#progress(names.length === 0 ? "heal: no partition to heal" : `heal: partitions removed on ${names.join(" ")}`);
  }

  /** The node's application starts failing its health check: the lab's flag file
   *  (/etc/tandem-lab/app-broken), while it exists, keeps the node's HTTP server from
   *  listening on port 80, which the module's checker sees (connection refused). Neither
   *  a restart of the application nor a power loss removes it: repairApp does. */
  async breakApp(name: string): Promise<void> {
    await this.#appFlag(name, true);
    this.#progress(`${name}: application broken (${appBrokenFlag}): its server stops listening`);
  }

  /** The node's application is repaired: the flag removed, its server listens again. */
  async repairApp(name: string): Promise<void> {
    await this.#appFlag(name, false);
    this.#progress(`${name}: application repaired`);
  }

  async #appFlag(name: string, broken: boolean): Promise<void> {
    const { id } = await this.#node(name);
    const state = containerState(await this.#info(id));
    if (state !== "running") throw new Error(`${broken ? "break" : "repair"} the application of ${name}: the node is ${state}${state === "paused" ? " (unpause it first)" : " (start it first)"}`);
    const result = await this.exec(id, ["sh", "-c", broken ? `: > ${appBrokenFlag}` : `rm -f ${appBrokenFlag}`]);
    if (result.code !== 0) throw new Error(`${broken ? "break" : "repair"} the application of ${name} failed (${result.code}): ${(result.stderr || result.stdout).trim()}`);
  }

  /** Every node's links to the other nodes lose `lossRate` of their packets (each
   *  direction; nftables) and, with `jitterMs` > 0, are delayed by [0, jitterMs] (tc netem);
   *  degrade(0, 0) restores them. Client traffic is left alone. Kept in each node's
   *  /etc/tandem-lab/degrade.sh, which the boot script runs, so it outlives a power loss.
   *  Throws LabUnsupported when jitter is asked for and the kernel has no sch_netem. */
  async degrade(lossRate: number, jitterMs: number): Promise<void> {
    if (!(lossRate >= 0 && lossRate <= 1) || !(jitterMs >= 0 && jitterMs <= 10_000)) throw new Error(`degrade: loss rate in [0, 1] and jitter in [0, 10000] ms, not ${lossRate} and ${jitterMs}`);
    const all = await this.#containers();
    const nodes = all.filter((info) => info.Labels[roleLabel] === "node");
    if (nodes.length === 0) throw new Error("degrade: no lab node (tandem lab up)");
    const paused = nodes.filter((info) => containerState(info) === "paused").map((info) => info.Labels[nodeLabel]!);
    if (paused.length > 0) throw new Error(`degrade: ${paused.join(", ")} paused: its links cannot change now (unpause first)`);
    const running = nodes.filter((info) => containerState(info) === "running");
    if (jitterMs > 0) {
      const probe = running[0] === undefined ? null : await this.exec(running[0].Id, ["sh", "-c", "tc qdisc add dev lo root netem delay 1ms && tc qdisc del dev lo root"]);
      if (probe !== null && probe.code !== 0) {
        const kernel = (await this.exec(running[0]!.Id, ["uname", "-r"])).stdout.trim();
        throw new LabUnsupported(
          `degrade: a jitter of ${jitterMs} ms needs tc netem, and this kernel (${kernel}) has no sch_netem (tc says: ${(probe.stderr || probe.stdout).trim()}): ` +
            "latency and jitter cannot be emulated on this host (loss alone can: degrade(rate, 0) drops packets with nftables)",
        );
      }
    }
    for (const info of nodes) {
      const peers = nodes.filter((other) => other.Id !== info.Id).map(nodeAddressOf);
      const script = lossRate === 0 && jitterMs === 0 ? "" : degradeScript(peers, lossRate, jitterMs);
      const handle = this.docker.getContainer(info.Id);
      await handle.putArchive(tarOf([{ path: degradeFile.slice(1), content: script, mode: 0o755 }]), { path: "/" });
      if (containerState(info) !== "running") continue;
      const result = await this.exec(info.Id, ["sh", "-c", script === "" ? degradeScript([], 0, 0) : script]);
      if (result.code !== 0) throw new Error(`degrade on ${info.Labels[nodeLabel]} failed (${result.code}): ${(result.stderr || result.stdout).trim()}`);
    }
    this.#progress(lossRate === 0 && jitterMs === 0 ? "degrade: links between nodes restored" : `degrade: links between nodes lose ${lossRate * 100} %, jitter ${jitterMs} ms`);
  }

  // ---- Clients ----

  /** `count` HTTP requests to the VIP from the client container, all at once, each on a
   *  new connection (so from a new source port): who answered each. */
  async get(count: number, options: { timeoutMs?: number; path?: string } = {}): Promise<Answer[]> {
    const timeoutMs = options.timeoutMs ?? 2_000;
    const script = `
const http = require("node:http");
const [count, timeoutMs, host, path] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3], process.argv[4]];
const one = () => new Promise((resolve) => {
  let done = false;
  const finish = (answer) => { if (!done) { done = true; resolve(answer); } };
  const request = http.get({ host, port: 80, path, agent: false, timeout: timeoutMs }, (response) => {
    let body = "";
    response.setEncoding("utf8");
    response.on("data", (chunk) => (body += chunk));
    response.on("end", () => finish(body.trim()));
    response.on("error", () => finish("reset"));
  });
  request.on("timeout", () => { request.destroy(); finish("timeout"); });
  request.on("error", (error) => finish(error.code === "ECONNRESET" ? "reset" : error.code === "ECONNREFUSED" ? "refused" : done ? "" : "error"));
});
Promise.all(Array.from({ length: count }, one)).then((answers) => console.log(JSON.stringify(answers)));
`;
    const result = await this.exec(clientContainer, ["node", "-e", script, String(count), String(timeoutMs), labVip, options.path ?? "/"], timeoutMs + 30_000);
    if (result.code !== 0) throw new Error(`requests from ${clientContainer} failed (${result.code}): ${result.stderr.trim()}`);
    return JSON.parse(result.stdout) as Answer[];
  }

  /** Runs `cmd` in a container (name or id): its exit code and output. */
  async exec(container: string, cmd: readonly string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
    const handle = this.docker.getContainer(container);
    const exec = await handle.exec({ Cmd: [...cmd], AttachStdout: true, AttachStderr: true });
    const stream = (await exec.start({ hijack: true, stdin: false })) as NodeJS.ReadableStream & { destroy(): void };
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = "";
    let err = "";
    stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    this.docker.modem.demuxStream(stream, stdout, stderr);
    const ended = new Promise<void>((resolve, reject) => {
      stream.on("end", () => resolve());
      stream.on("close", () => resolve());
      stream.on("error", reject);
    });
    try {
      await withTimeout(ended, timeoutMs, `${cmd.join(" ").slice(0, 80)} in ${container} ran longer than ${timeoutMs} ms`);
    } catch (error) {
      stream.destroy();
      throw error;
    }
    const info = await exec.inspect();
    return { code: info.ExitCode ?? -1, stdout: out, stderr: err };
  }

  // ---- Inside ----

  async #containers(): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${labLabel}=1`] }) });
  }

  async #info(id: string): Promise<Docker.ContainerInfo> {
    const info = (await this.#containers()).find((each) => each.Id === id);
    if (info === undefined) throw new Error(`container ${id} is gone`);
    return info;
  }

  async #node(name: string): Promise<{ id: string; handle: Docker.Container }> {
    const containers = await this.#containers();
    const info = containers.find((each) => each.Labels[roleLabel] === "node" && (each.Labels[nodeLabel] === name || each.Names.includes(`/${name}`)));
    if (info === undefined) {
      const names = containers.flatMap((each) => (each.Labels[roleLabel] === "node" ? [each.Labels[nodeLabel]!] : []));
      throw new Error(`no lab node ${name} (nodes: ${names.sort().join(" ") || "none: tandem lab up"})`);
    }
    return { id: info.Id, handle: this.docker.getContainer(info.Id) };
  }

  async #partitionPeers(id: string): Promise<string[]> {
    try {
      const stream = (await this.docker.getContainer(id).getArchive({ path: partitionFile })) as NodeJS.ReadableStream;
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
      return partitionPeers(firstFileOf(Buffer.concat(chunks))?.toString("utf8") ?? "");
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return [];
      throw error;
    }
  }

  /** Writes the node's partition file and, when it runs, applies it at once. */
  async #setPartition(info: Docker.ContainerInfo, peers: readonly string[], all: readonly Docker.ContainerInfo[]): Promise<void> {
    const container = { id: info.Id, handle: this.docker.getContainer(info.Id) };
    const addressOf = (name: string) => {
      const info = all.find((each) => each.Labels[nodeLabel] === name);
      if (info === undefined) throw new Error(`no lab node ${name}`);
      return nodeAddressOf(info);
    };
    const rules = partitionRules(peers.map((name) => ({ name, address: addressOf(name) })));
    await container.handle.putArchive(tarOf([{ path: partitionFile.slice(1), content: rules, mode: 0o644 }]), { path: "/" });
    if (containerState(info) !== "running") return;
    const command = rules === "" ? ["sh", "-c", "nft delete table inet tandem_lab 2>/dev/null; true"] : ["nft", "-f", partitionFile];
    const result = await this.exec(container.id, command);
    if (result.code !== 0) throw new Error(`nft in ${container.id.slice(0, 12)} failed: ${result.stderr.trim()}`);
  }

  async #existingKey(existing: readonly Docker.ContainerInfo[]): Promise<Buffer | null> {
    const node = existing.find((info) => info.Labels[roleLabel] === "node");
    if (node === undefined) return null;
    try {
      const stream = (await this.docker.getContainer(node.Id).getArchive({ path: "/etc/tandem/cluster.key" })) as NodeJS.ReadableStream;
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
      return firstFileOf(Buffer.concat(chunks));
    } catch {
      return null;
    }
  }

  async #ensureNetwork(): Promise<void> {
    const networks = await this.docker.listNetworks({ filters: JSON.stringify({ name: [networkName] }) });
    const found = networks.find((network) => network.Name === networkName);
    if (found !== undefined) {
      if (found.Labels?.[labLabel] !== "1") throw new Error(`a Docker network named ${networkName} exists that the lab did not create: remove it (docker network rm ${networkName}) or rename it`);
      return;
    }
    await this.docker.createNetwork({
      Name: networkName,
      Driver: "bridge",
      Internal: true,
      CheckDuplicate: true,
      Labels: { [labLabel]: "1" },
      Options: { "com.docker.network.bridge.name": bridgeName },
      IPAM: { Driver: "default", Config: [{ Subnet: labSubnet, Gateway: labGateway, IPRange: labDynamicRange }] },
    });
    this.#progress(`network ${networkName}: ${labSubnet} (bridge ${bridgeName}, internal), VIP ${labVip}`);
  }

  /** Creates the container when missing, starts it when it is not running (unless `start` is false). */
  async #ensureContainer(name: string, create: () => Promise<Docker.Container>, start = true): Promise<void> {
    const info = (await this.#containers()).find((each) => each.Names.includes(`/${name}`));
    if (info === undefined) {
      const container = await create();
      if (!start) {
        this.#progress(`${name}: created, left powered off`);
        return;
      }
      await container.start();
      this.#progress(`${name}: started`);
      return;
    }
    const state = containerState(info);
    if (state === "paused") {
      await this.docker.getContainer(info.Id).unpause();
      this.#progress(`${name}: unpaused`);
    } else if (state !== "running" && start) {
      await this.docker.getContainer(info.Id).start();
      this.#progress(`${name}: started`);
    }
  }

  async #createNode(image: string, names: readonly string[], index: number, key: Buffer, farm: FarmOptions): Promise<Docker.Container> {
    const name = names[index]!;
    const container = await this.docker.createContainer({
      name: `${containerPrefix}${name}`,
      Hostname: name,
      Image: image,
      Cmd: ["/bin/sh", "/etc/tandem-lab/boot.sh"],
      Labels: { [labLabel]: "1", [roleLabel]: "node", [nodeLabel]: name },
      Volumes: { "/var/lib/tandem": {} },
      StopTimeout: 15,
      HostConfig: {
        Init: true,
        CapAdd: ["NET_ADMIN", "SYS_ADMIN"],
        Devices: existsSync("/dev/fuse") ? [{ PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm" }] : [],
        Sysctls: { "net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.eth0.arp_announce": "2" },
        Tmpfs: { "/run": "rw,nosuid,nodev,mode=755" },
        NetworkMode: networkName,
        RestartPolicy: { Name: "no" },
      },
      NetworkingConfig: { EndpointsConfig: { [networkName]: { IPAMConfig: { IPv4Address: nodeAddress(index) } } } },
    });
    await container.putArchive(tarOf(nodeFiles(names, name, key, farm)), { path: "/" });
    return container;
  }

  async #createClient(image: string): Promise<Docker.Container> {
    return this.docker.createContainer({
      name: clientContainer,
      Hostname: "client",
      Image: image,
      Cmd: ["sleep", "infinity"],
      Labels: { [labLabel]: "1", [roleLabel]: "client" },
      StopTimeout: 2,
      HostConfig: { Init: true, CapAdd: ["NET_ADMIN"], NetworkMode: networkName, RestartPolicy: { Name: "no" } },
      NetworkingConfig: { EndpointsConfig: { [networkName]: { IPAMConfig: { IPv4Address: clientAddress } } } },
    });
  }
}

/** A paused node cannot change its rules. */
function refusePaused(nodes: readonly Docker.ContainerInfo[]): void {
  for (const info of nodes) {
    const name = info.Labels[nodeLabel]!;
    if (containerState(info) === "paused") throw new Error(`${name} is paused: its rules cannot change now (\`tandem lab unpause ${name}\` first)`);
  }
}

function containerState(info: Docker.ContainerInfo): ContainerState {
  return (info.State as ContainerState | undefined) ?? "missing";
}

function nodeAddressOf(info: Docker.ContainerInfo): string {
  const settings = info.NetworkSettings?.Networks?.[networkName];
  const address = settings?.IPAMConfig?.IPv4Address || settings?.IPAddress;
  if (address) return address;
  const index = Number(/^n(\d+)$/.exec(info.Labels[nodeLabel] ?? "")?.[1] ?? 0) - 1;
  return index >= 0 ? nodeAddress(index) : "";
}

/** One short phrase for a node's farm: "UP 3 members 85 buckets", "WAIT", "exited". */
export function describeNode(node: NodeStatus): string {
  if (node.state !== "running") return node.state;
  if (node.farm === null) return `no answer${node.problem === null ? "" : ` (${node.problem})`}`;
  const farm = node.farm.farm;
  if (farm === null) return `${node.farm.state}${node.farm.problem === null ? "" : ` (${node.farm.problem})`}`;
  return `${node.farm.state}/${farm.state} members ${[...farm.members].sort().join(",")} buckets ${farm.ownedBuckets}/${farm.bucketCount}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
