// The farm filter on the host: what the real kernel filter (drivers/real/filter.ts) costs
// a farm's clients, against a baseline run alongside in the same namespaces.
//
// A client namespace and a node namespace on a bridge (198.18.0.0/24); in the node, nginx
// serves a small static file and an iperf3 server listens. From the client, Debian's load
// tools measure the VIP:
//   - HTTP requests/s over keep-alive connections (wrk);
//   - new connections/s, one request each with `Connection: close` (wrk);
//   - bulk TCP throughput from the client to the node (iperf3, one stream).
// BASELINE: the VIP on the node's lo, the client's neighbour entry for it pointing at the
// node's own MAC, no nftables table at all (so no conntrack either).
// FILTERED: a RealFilterPort (in a child process in the node namespace) owning all 256
// buckets of `srcip+srcport` rules for both ports, VIP up with vmac_invisible (the client
// learns the virtual MAC from the service's ARP responder, the bridge floods those frames,
// the netdev table marks them for the host), lease renewed every 50 ms as the farm core
// does. Baseline and filtered runs alternate (ABBA) and the figures are medians.
// A full run adds a reference mode, CONNTRACK ONLY: the baseline plus an nftables table
// with one `ct state` rule, which turns conntrack on in the node namespace and balances
// nothing. The filter needs conntrack (established connections keep their node when
// buckets move), and this tells its share of the cost from the share of the rules.
//
// `node bench/filter-bench.ts [--quick]`; `npm run bench` calls filterFigures(). Needs root,
// network namespaces, nftables, the native addon, and nginx, wrk and iperf3 (installed with
// apt-get when missing).

import { execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { RealFilterOptions } from "../drivers/real/filter.ts";
import { nativeAddonPath } from "../native/index.ts";
import { buildLan, inNs, inNsAsync, ip, readSysctl, spawnInNs, writeSysctl, type Lan } from "./netns.ts";

const agentPath = join(dirname(fileURLToPath(import.meta.url)), "filter-bench-agent.ts");
const nodeIp = "198.18.0.1";
const clientIp = "198.18.0.10";
const vip = "198.18.0.100";
const virtualMac = "5a:fe:c6:12:00:64";
const httpPort = 80;
const iperfPort = 5201;
const staticFileBytes = 1024;
const keepAliveConnections = 32;
const closeConnections = 16;

/** Debian packages of the load tools and the server, by the program they provide. */
const tools = [
  { program: "nginx", pkg: "nginx-light" },
  { program: "wrk", pkg: "wrk" },
  { program: "iperf3", pkg: "iperf3" },
] as const;

export interface FilterBenchOptions {
  readonly quick?: boolean;
  /** Progress lines (tool installation, each run's figures). */
  readonly log?: (line: string) => void;
}

export interface Figure {
  readonly baseline: number;
  readonly filtered: number;
  /** Every run, in order, for the spread. */
  readonly baselineRuns: readonly number[];
  readonly filteredRuns: readonly number[];
  readonly ratio: number;
  /** Reference, full runs only: a node with conntrack on (one `ct state` rule) and no
   *  balancing, over the baseline. The filter needs conntrack; this is its share. */
  readonly conntrackRatio: number | null;
}

export interface FilterFigures {
  readonly rounds: number;
  readonly seconds: number;
  /** wrk, keep-alive: requests per second. */
  readonly keepAlive: Figure;
  /** wrk, `Connection: close`: new connections (one request each) per second. */
  readonly newConnections: Figure;
  /** iperf3, one stream client to node: Gbit/s. */
  readonly bulkGbps: Figure;
  /** Socket errors and non-2xx answers wrk counted, over all runs. */
  readonly httpErrors: { readonly baseline: number; readonly filtered: number };
  readonly renewals: number;
  /** The longest time between two lease renewals of the filtered node (lease: 200 ms). */
  readonly longestRenewGapMs: number;
  /** The most connections conntrack tracked in the node namespace after a filtered run. */
  readonly conntrackPeak: number;
}

// ---- What the host must offer ----

function hasProgram(program: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${program} || test -x /usr/sbin/${program}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function requireHost(log: (line: string) => void): void {
  if (process.getuid?.() !== 0) throw new Error("the farm filter benchmark needs root (network namespaces, nftables): run it as root");
  if (!existsSync(nativeAddonPath)) throw new Error(`the native addon is not built (${nativeAddonPath}): run \`npm ci\` (it builds native/)`);
  if (!hasProgram("ip")) throw new Error("the farm filter benchmark needs the `ip` command: apt-get install iproute2");
  const missing = tools.filter((tool) => !hasProgram(tool.program));
  if (missing.length === 0) return;
  const packages = missing.map((tool) => tool.pkg);
  log(`installing ${packages.join(" ")} with apt-get`);
  const aptGet = (...args: string[]) => execFileSync("apt-get", ["-q", "-y", "-o", "Acquire::Retries=3", "-o", "DPkg::Lock::Timeout=120", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  let failure = "";
  try {
    aptGet("update");
    aptGet("install", "--no-install-recommends", ...packages);
  } catch (error) {
    failure = ` (${((error as { stderr?: string }).stderr ?? (error as Error).message).trim().split("\n").slice(-3).join(" ")})`;
  }
  const still = missing.filter((tool) => !hasProgram(tool.program));
  if (still.length > 0) {
    throw new Error(
      `the farm filter benchmark needs ${still.map((tool) => `${tool.program} (Debian package ${tool.pkg})`).join(", ")}, and \`apt-get install ${still.map((tool) => tool.pkg).join(" ")}\` did not provide it${failure}: install it by hand and run again`,
    );
  }
}

// ---- The world: namespaces, nginx, iperf3 ----

interface World {
  readonly lan: Lan;
  readonly clientNs: string;
  readonly nodeNs: string;
  readonly nodeMac: string;
  readonly dir: string;
  readonly children: ChildProcess[];
}

function nginxConfig(dir: string): string {
  return `user root;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/html;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  server {
    listen ${httpPort} backlog=4096;
    root ${dir}/www;
  }
}
`;
}

/** Waits until `predicate` holds, polling; throws `what` after `timeoutMs`. */
async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const endMs = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > endMs) throw new Error(what);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function listening(ns: string, port: number): boolean {
  return new RegExp(`:${port}\\s`).test(inNs(ns, "ss", "-Hltn"));
}

async function buildWorld(): Promise<World> {
  const lan = buildLan(`tdfb${process.pid}`, [
    { name: "c", address: `${clientIp}/24` },
    { name: "n", address: `${nodeIp}/24` },
  ]);
  let nodeMac: string;
  try {
    nodeMac = inNs(lan.ns("n"), "cat", "/sys/class/net/eth0/address").trim();
  } catch (error) {
    lan.destroy();
    throw error;
  }
  const world: World = {
    lan,
    clientNs: lan.ns("c"),
    nodeNs: lan.ns("n"),
    nodeMac,
    dir: mkdtempSync(join(tmpdir(), "tandem-filter-bench-")),
    children: [],
  };
  try {
    // Many short connections: the client may use every port.
    writeSysctl(world.clientNs, "net/ipv4/ip_local_port_range", "1024 65535");
    mkdirSync(join(world.dir, "www"));
    const page = (body: string) => `<!doctype html><title>tandem</title><p>${body}</p>\n`;
    writeFileSync(join(world.dir, "www", "index.html"), page("x".repeat(staticFileBytes - page("").length)));
    writeFileSync(join(world.dir, "nginx.conf"), nginxConfig(world.dir));
    const nginx = spawnInNs(world.nodeNs, existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx", ["-e", join(world.dir, "nginx-error.log"), "-p", world.dir, "-c", join(world.dir, "nginx.conf")]);
    world.children.push(nginx);
    const iperf = spawnInNs(world.nodeNs, "iperf3", ["-s", "-p", String(iperfPort)]);
    world.children.push(iperf);
    for (const child of world.children) child.stdout?.resume();
    const stderr: string[] = [];
    for (const child of world.children) child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
    await waitFor(() => listening(world.nodeNs, httpPort) && listening(world.nodeNs, iperfPort), 10_000, `nginx or iperf3 did not start listening in the node namespace: ${stderr.join("")}`);
    return world;
  } catch (error) {
    await destroyWorld(world);
    throw error;
  }
}

/** Stops every process of the run and removes the namespaces and files. SIGTERM first, so
 *  that nginx's master reaps its worker; whatever is left in the namespaces after
 *  `graceMs` is killed by lan.destroy(). */
async function destroyWorld(world: World, graceMs = 3_000): Promise<void> {
  const running = world.children.filter((child) => child.exitCode === null && child.signalCode === null);
  const exits = running.map((child) => new Promise<void>((resolve) => child.once("exit", () => resolve())));
  for (const child of running) child.kill("SIGTERM");
  if (graceMs > 0) await Promise.race([Promise.all(exits), new Promise((resolve) => setTimeout(resolve, graceMs))]);
  world.lan.destroy();
  rmSync(world.dir, { recursive: true, force: true });
}

// ---- The modes ----

type ModeName = "baseline" | "filtered" | "conntrack";

interface AgentReport {
  readonly renewals: number;
  readonly longestGapMs: number;
  readonly log: readonly string[];
}

interface Mode {
  /** Ends the mode, leaving the namespaces as they were; what its agent reports. */
  leave(): Promise<AgentReport | null>;
}

function filterOptions(): RealFilterOptions {
  return {
    module: "bench",
    vips: [vip],
    interfaceName: "eth0",
    virtualMac,
    bucketCount: 256,
    hashSeed: 0x7a3d_91c5,
    rules: [
      { port: httpPort, proto: "tcp", mode: "srcip+srcport" },
      { port: iperfPort, proto: "tcp", mode: "srcip+srcport" },
    ],
  };
}

/** The node side (filter-bench-agent.ts) in the node namespace, once its table is in place. */
async function startAgent(world: World, kind: "filter" | "conntrack"): Promise<{ tables: string; stop: () => Promise<AgentReport> }> {
  const agent = spawnInNs(world.nodeNs, process.execPath, [agentPath, kind, JSON.stringify(filterOptions())]);
  world.children.push(agent);
  const stderr: string[] = [];
  agent.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const lines: string[] = [];
  let waiter: (() => void) | null = null;
  createInterface({ input: agent.stdout! }).on("line", (line) => {
    lines.push(line);
    waiter?.();
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => agent.once("exit", () => resolve()));
  void exit.then(() => {
    exited = true;
    waiter?.();
  });
  /** The agent's next line, or an error if it exits or stays silent. */
  const nextLine = async (timeoutMs: number, what: string): Promise<string> => {
    const endMs = performance.now() + timeoutMs;
    while (lines.length === 0) {
      if (exited) throw new Error(`the node agent (${kind}) exited ${what}: ${stderr.join("").trim()}`);
      if (performance.now() > endMs) {
        agent.kill("SIGKILL");
        throw new Error(`the node agent (${kind}) did not answer ${what} within ${timeoutMs} ms: ${stderr.join("").trim()}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      waiter = null;
    }
    return lines.shift()!;
  };
  const ready = JSON.parse(await nextLine(10_000, "while setting up its table")) as { tables: string };
  return {
    tables: ready.tables,
    stop: async () => {
      agent.stdin!.write("stop\n");
      const report = JSON.parse(await nextLine(10_000, "when asked to stop")) as AgentReport;
      await exit;
      return report;
    },
  };
}

/** The VIP on the node's lo and the client's neighbour entry for it on the node's own MAC:
 *  the node accepts the VIP's traffic as its own, with nothing in between. */
function vipWithoutFilter(world: World): () => void {
  ip("-n", world.nodeNs, "address", "add", `${vip}/32`, "dev", "lo");
  ip("-n", world.clientNs, "neigh", "replace", vip, "lladdr", world.nodeMac, "dev", "eth0", "nud", "permanent");
  return () => {
    ip("-n", world.clientNs, "neigh", "del", vip, "dev", "eth0");
    ip("-n", world.nodeNs, "address", "del", `${vip}/32`, "dev", "lo");
  };
}

async function enter(world: World, name: ModeName): Promise<Mode> {
  if (name === "baseline") {
    const undo = vipWithoutFilter(world);
    return { leave: async () => (undo(), null) };
  }
  if (name === "conntrack") {
    const undo = vipWithoutFilter(world);
    try {
      const agent = await startAgent(world, "conntrack");
      return {
        leave: async () => {
          const report = await agent.stop();
          undo();
          return report;
        },
      };
    } catch (error) {
      undo();
      throw error;
    }
  }
  const agent = await startAgent(world, "filter");
  if (!agent.tables.includes("jhash ip saddr . tcp sport mod 256") || !agent.tables.includes("0-255 : jump owned")) {
    await agent.stop();
    throw new Error(`the filter's tables are not the expected ones:\n${agent.tables}`);
  }
  return {
    leave: async () => {
      // The runs must have gone through the virtual MAC, learnt from the service's ARP answer.
      const neighbour = inNs(world.clientNs, "ip", "neigh", "show", vip);
      const report = await agent.stop();
      ip("-n", world.clientNs, "neigh", "flush", "dev", "eth0");
      if (!neighbour.includes(virtualMac)) throw new Error(`the client reached the VIP without the virtual MAC (neighbour entry: ${neighbour.trim() || "none"})`);
      return report;
    },
  };
}

// ---- The load tools ----

interface HttpRun {
  readonly rate: number;
  readonly errors: number;
}

async function wrk(world: World, seconds: number, connections: number, close: boolean): Promise<HttpRun> {
  const args = ["-t1", `-c${connections}`, `-d${seconds}s`, "--timeout", "2s", ...(close ? ["-H", "Connection: close"] : []), `http://${vip}:${httpPort}/index.html`];
  const output = await inNsAsync(world.clientNs, "wrk", args, (seconds + 20) * 1_000);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const requests = /(\d+) requests in/.exec(output);
  if (rate === null || requests === null || Number(requests[1]) === 0) throw new Error(`wrk answered no request from ${vip}:\n${output}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  const errors = (socket === null ? 0 : socket.slice(1).reduce((sum, count) => sum + Number(count), 0)) + (non2xx === null ? 0 : Number(non2xx[1]));
  return { rate: Number(rate[1]), errors };
}

async function iperf3(world: World, seconds: number): Promise<number> {
  const output = await inNsAsync(world.clientNs, "iperf3", ["-c", vip, "-p", String(iperfPort), "-t", String(seconds), "-O", "1", "-J"], (seconds + 20) * 1_000);
  const report = JSON.parse(output) as { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
  const bitsPerSecond = report.end?.sum_received?.bits_per_second;
  if (report.error !== undefined || bitsPerSecond === undefined || bitsPerSecond <= 0) throw new Error(`iperf3 to ${vip} failed: ${report.error ?? output.slice(0, 400)}`);
  return bitsPerSecond / 1e9;
}

function conntrackCount(world: World): number {
  try {
    return Number(readSysctl(world.nodeNs, "net/netfilter/nf_conntrack_count"));
  } catch {
    return 0;
  }
}

// ---- The benchmark ----

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function figure(baselineRuns: readonly number[], filteredRuns: readonly number[], conntrackRuns: readonly number[]): Figure {
  const baseline = median(baselineRuns);
  const filtered = median(filteredRuns);
  return {
    baseline,
    filtered,
    baselineRuns,
    filteredRuns,
    ratio: filtered / baseline,
    conntrackRatio: conntrackRuns.length === 0 ? null : median(conntrackRuns) / baseline,
  };
}

/** How many runs of how long each mode gets: about 2.5 minutes in all, 45 s with --quick. */
export function filterBenchShape(quick: boolean): { readonly rounds: number; readonly seconds: number } {
  return quick ? { rounds: 3, seconds: 2 } : { rounds: 5, seconds: 3 };
}

export async function filterFigures(options: FilterBenchOptions = {}): Promise<FilterFigures> {
  const quick = options.quick ?? false;
  const log = options.log ?? (() => {});
  const { rounds, seconds } = filterBenchShape(quick);
  const modes: readonly ModeName[] = quick ? ["baseline", "filtered"] : ["baseline", "filtered", "conntrack"];
  requireHost(log);
  const world = await buildWorld();
  const onSignal = (signal: NodeJS.Signals) => {
    void destroyWorld(world, 0);
    process.kill(process.pid, signal);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const runs = new Map(modes.map((mode) => [mode, { keepAlive: [] as number[], close: [] as number[], bulk: [] as number[], errors: 0 }]));
    let renewals = 0;
    let longestRenewGapMs = 0;
    let conntrackPeak = 0;
    // Warm-up, not counted: caches, the neighbour tables, nginx's first connections.
    const warm = await enter(world, "baseline");
    await wrk(world, 1, keepAliveConnections, false);
    await warm.leave();
    for (let round = 0; round < rounds; round++) {
      // ABBA: each mode runs first as often as last, so a drift favours none.
      for (const name of round % 2 === 0 ? modes : [...modes].reverse()) {
        const mode = await enter(world, name);
        let report: AgentReport | null = null;
        try {
          const keepAlive = await wrk(world, seconds, keepAliveConnections, false);
          const close = await wrk(world, seconds, closeConnections, true);
          const bulk = await iperf3(world, seconds);
          const into = runs.get(name)!;
          into.keepAlive.push(keepAlive.rate);
          into.close.push(close.rate);
          into.bulk.push(bulk);
          into.errors += keepAlive.errors + close.errors;
          if (name === "filtered") conntrackPeak = Math.max(conntrackPeak, conntrackCount(world));
          log(`   round ${round + 1} ${name.padEnd(9)} ${keepAlive.rate.toFixed(0).padStart(7)} req/s keep-alive  ${close.rate.toFixed(0).padStart(6)} conn/s  ${bulk.toFixed(2).padStart(6)} Gbit/s  (${keepAlive.errors + close.errors} HTTP errors)`);
        } finally {
          report = await mode.leave();
        }
        if (name === "filtered" && report !== null) {
          renewals += report.renewals;
          longestRenewGapMs = Math.max(longestRenewGapMs, report.longestGapMs);
          for (const line of report.log) if (!line.startsWith("VIP ")) log(`   filter: ${line}`);
        }
      }
    }
    const of = (name: ModeName) => runs.get(name) ?? { keepAlive: [], close: [], bulk: [], errors: 0 };
    return {
      rounds,
      seconds,
      keepAlive: figure(of("baseline").keepAlive, of("filtered").keepAlive, of("conntrack").keepAlive),
      newConnections: figure(of("baseline").close, of("filtered").close, of("conntrack").close),
      bulkGbps: figure(of("baseline").bulk, of("filtered").bulk, of("conntrack").bulk),
      httpErrors: { baseline: of("baseline").errors, filtered: of("filtered").errors },
      renewals,
      longestRenewGapMs,
      conntrackPeak,
    };
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    await destroyWorld(world);
  }
}

/** The figures as `npm run bench` prints them. */
export function filterFigureLines(figures: FilterFigures): string[] {
  const goal = 0.97;
  const row = (label: string, unit: string, value: Figure, digits: number) => {
    const spread = (runs: readonly number[]) => `${Math.min(...runs).toFixed(digits)}-${Math.max(...runs).toFixed(digits)}`;
    const reference = value.conntrackRatio === null ? "" : `  [conntrack only: ${value.conntrackRatio.toFixed(3)}]`;
    return `   ${label.padEnd(34)} baseline ${value.baseline.toFixed(digits).padStart(6)} ${unit.padEnd(6)}  filtered ${value.filtered.toFixed(digits).padStart(6)} ${unit.padEnd(6)}  ratio ${value.ratio.toFixed(3)} ${value.ratio >= goal ? "(goal >= 0.97 met)" : "(BELOW the 0.97 goal)"}${reference}   runs ${spread(value.baselineRuns)} | ${spread(value.filteredRuns)}`;
  };
  return [
    row(`HTTP keep-alive (wrk -c${keepAliveConnections})`, "req/s", figures.keepAlive, 0),
    row(`new connections (wrk -c${closeConnections}, close)`, "conn/s", figures.newConnections, 0),
    row("bulk TCP (iperf3, 1 stream)", "Gbit/s", figures.bulkGbps, 2),
    `   HTTP errors: baseline ${figures.httpErrors.baseline}, filtered ${figures.httpErrors.filtered}; lease renewals ${figures.renewals}, longest gap ${figures.longestRenewGapMs.toFixed(0)} ms (lease 200 ms); conntrack peak ${figures.conntrackPeak} entries`,
  ];
}

export function filterSectionTitle(figures: Pick<FilterFigures, "rounds" | "seconds">): string {
  return `Farm filter on the host, client -> VIP across a bridge, nginx-light + wrk + iperf3, medians of ${figures.rounds} runs of ${figures.seconds} s per mode (baseline: same namespaces, VIP on lo, no nftables table)`;
}

if (import.meta.main) {
  const quick = process.argv.includes("--quick");
  const startMs = performance.now();
  console.log(filterSectionTitle(filterBenchShape(quick)));
  const figures = await filterFigures({ quick, log: (line) => console.log(line) });
  for (const line of filterFigureLines(figures)) console.log(line);
  console.log(`   (${((performance.now() - startMs) / 1000).toFixed(0)} s)`);
}
