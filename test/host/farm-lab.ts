// A three-node farm on this host: a lab of network namespaces (netns-lab.ts) where each
// node namespace runs the real node service (`tandem daemon`) with its own configuration,
// state, log directory and control socket, one farm module whose application is a small
// HTTP server answering with its node's name, and a client agent in the client namespace.
// Shared by test/host/farm-netns.test.ts and bench/farm-host-bench.ts.

import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { hashString32 } from "../../core/hash.ts";
import { kernelBucket } from "../../drivers/real/filter.ts";
import type { ModuleView } from "../../service/node-service.ts";
import { requestControl } from "../../service/control.ts";
import { buildLab, destroyLab, removeStaleLabs, type Lab } from "./netns-lab.ts";
import { httpServer } from "../../lab/lab-config.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
export const cliPath = join(repoRoot, "cli", "tandem.ts");
const clientAgentPath = fileURLToPath(new URL("./client-agent.ts", import.meta.url));
export const farmModule = "hostfarm";
export const bucketCount = 256;
/** The module's hash seed, as toFarmConfig derives it from the module's name. */
export const hashSeed = hashString32(farmModule);

export interface FarmTimingsXml {
  /** SafeKit's <farm pulse slost_count>; absent: tandem's defaults. */
  readonly pulseMs: number;
  readonly slostCount: number;
}

export interface LabNode {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly dir: string;
  readonly configDir: string;
  readonly stateDir: string;
  readonly socket: string;
  /** One line per connection the node's HTTP server accepted: the client's address:port. */
  readonly acceptLog: string;
  readonly pidFile: string;
  readonly flags: readonly string[];
}

// ---- Configuration ----

function clusterXml(lab: Lab, names: readonly string[]): string {
  const nodes = names.map((name, index) => `      <node name="${name}" addr="${lab.nodeIps[index]}"/>`).join("\n");
  return `<?xml version="1.0" encoding="utf-8"?>\n<cluster>\n  <lans>\n    <lan name="default">\n${nodes}\n    </lan>\n  </lans>\n</cluster>\n`;
}

/** The shape of templates/modules/nginx-farm: a vmac_invisible VIP (its MAC left out, so it
 *  is derived from the address as SafeKit does), port 80 balanced per connection. */
function userconfigXml(lab: Lab, names: readonly string[], node: LabNode, timings: FarmTimingsXml | null): string {
  const farmAttributes = timings === null ? "" : ` pulse="${timings.pulseMs}ms" slost_count="${timings.slostCount}"`;
  const hosts = names.map((name) => `            <host name="${name}" power="1"/>`).join("\n");
  const vars = { NODE_NAME: node.name, NODE_BIN: process.execPath, SERVER: join(node.configDir, "modules", farmModule, "bin", "http-server.mjs"), ACCEPT_LOG: node.acceptLog, PID_FILE: node.pidFile, SERVER_LOG: join(node.dir, "http-server.log") };
  return `<?xml version="1.0" encoding="utf-8"?>
<safe>
  <macro name="VIRTUAL_IP" value="${lab.vip}"/>
  <service mode="farm">
    <farm${farmAttributes}>
      <lan name="default"/>
    </farm>
    <vip>
      <interface_list>
        <interface>
          <virtual_interface type="vmac_invisible">
            <virtual_addr addr="%VIRTUAL_IP%" where="alias"/>
          </virtual_interface>
        </interface>
      </interface_list>
      <loadbalancing_list>
        <group name="web">
          <cluster>
${hosts}
          </cluster>
          <rule virtual_addr="*" port="80" proto="tcp" filter="on_port"/>
        </group>
      </loadbalancing_list>
    </vip>
    <user nicestoptimeout="10s" forcestoptimeout="5s">
${Object.entries(vars).map(([name, value]) => `      <var name="${name}" value="${value}"/>`).join("\n")}
    </user>
  </service>
</safe>
`;
}


/** Starts the server in the background, first stopping one a killed service left behind. */
const startBoth = `#!/bin/sh
# start_both: this node's HTTP server on port 80, in the background.
set -eu
if [ -f "$PID_FILE" ]; then
  old=$(cat "$PID_FILE")
  rm -f "$PID_FILE"
  kill -9 "$old" 2>/dev/null || true
  i=0
  while kill -0 "$old" 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.02; done
fi
"$NODE_BIN" "$SERVER" "$NODE_NAME" "$ACCEPT_LOG" "$PID_FILE" >>"$SERVER_LOG" 2>&1 </dev/null &
i=0
while [ ! -f "$PID_FILE" ]; do
  i=$((i + 1))
  if [ $i -gt 500 ]; then echo "the HTTP server did not start"; exit 1; fi
  sleep 0.02
done
`;

const stopBoth = `#!/bin/sh
# stop_both: stops this node's HTTP server.
set -u
[ -f "$PID_FILE" ] || exit 0
pid=$(cat "$PID_FILE")
rm -f "$PID_FILE"
kill "$pid" 2>/dev/null || exit 0
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 250 ]; do i=$((i + 1)); sleep 0.02; done
`;

function writeNodeConfig(lab: Lab, names: readonly string[], node: LabNode, key: Buffer, timings: FarmTimingsXml | null): void {
  const moduleDir = join(node.configDir, "modules", farmModule);
  mkdirSync(join(moduleDir, "conf"), { recursive: true });
  mkdirSync(join(moduleDir, "bin"), { recursive: true });
  writeFileSync(join(node.configDir, "cluster.xml"), clusterXml(lab, names));
  writeFileSync(join(node.configDir, "cluster.key"), key, { mode: 0o600 });
  chmodSync(join(node.configDir, "cluster.key"), 0o600);
  writeFileSync(join(moduleDir, "conf", "userconfig.xml"), userconfigXml(lab, names, node, timings));
  writeFileSync(join(moduleDir, "bin", "http-server.mjs"), httpServer);
  for (const [script, text] of [["start_both", startBoth], ["stop_both", stopBoth]] as const) {
    writeFileSync(join(moduleDir, "bin", script), text);
    chmodSync(join(moduleDir, "bin", script), 0o755);
  }
}

/** Node `index` of `lab`, its files under `root/<name>`, its service's flags. */
export function labNode(lab: Lab, root: string, name: string, index: number): LabNode {
  const dir = join(root, name);
  const configDir = join(dir, "config");
  const stateDir = join(dir, "state");
  const socket = join(dir, "tandem.sock");
  return {
    name,
    ns: lab.nodeNs[index]!,
    ip: lab.nodeIps[index]!,
    dir,
    configDir,
    stateDir,
    socket,
    acceptLog: join(dir, "accepted.log"),
    pidFile: join(dir, "http-server.pid"),
    flags: ["--config", configDir, "--state", stateDir, "--log-dir", join(dir, "log"), "--socket", socket, "--node", name],
  };
}

// ---- The node service ----

export class Daemon {
  readonly node: LabNode;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  #output = "";

  private constructor(node: LabNode) {
    this.node = node;
    this.child = spawn("ip", ["netns", "exec", node.ns, process.execPath, cliPath, "daemon", ...node.flags], { stdio: ["ignore", "pipe", "pipe"], cwd: repoRoot });
    this.exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
    this.child.stdout!.on("data", (chunk: Buffer) => (this.#output += chunk.toString()));
    this.child.stderr!.on("data", (chunk: Buffer) => (this.#output += chunk.toString()));
  }

  /** Starts the service and resolves once its control socket listens. */
  static async start(node: LabNode): Promise<Daemon> {
    const daemon = new Daemon(node);
    let exited = false;
    void daemon.exited.then(() => (exited = true));
    await until(() => daemon.#output.includes('"event":"service.listening"') || exited, 20_000, () => `the node service of ${node.name} did not start listening:\n${daemon.#output}`);
    if (exited) throw new Error(`the node service of ${node.name} exited at start:\n${daemon.#output}`);
    return daemon;
  }

  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** A crash: SIGKILL (`ip netns exec` execs the service, so the pid is the service's). */
  async kill(): Promise<void> {
    if (this.running) this.child.kill("SIGKILL");
    await this.exited;
  }

  /** A clean stop (SIGTERM: stop scripts run), SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

// ---- The command line and the control socket ----

/** Runs `tandem ARGS --socket SOCKET` as an operator would (asynchronously: the test's
 *  event loop keeps running). */
export function tandem(node: LabNode, args: readonly string[], timeoutMs = 60_000): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, ...args, "--socket", node.socket], { encoding: "utf8", timeout: timeoutMs, cwd: repoRoot }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof (error as { code?: unknown }).code === "number" ? ((error as { code: number }).code) : 1;
      resolve({ code, output: stdout + stderr });
    });
  });
}

/** `tandem state --json` of the farm module on `node`. */
export async function farmState(node: LabNode): Promise<ModuleView> {
  const result = await tandem(node, ["state", "--json", "-m", farmModule]);
  if (result.code !== 0) throw new Error(`tandem state on ${node.name} failed (${result.code}): ${result.output}`);
  return (JSON.parse(result.output) as ModuleView[])[0]!;
}

/** The same view over the control socket directly: for tight polling loops. */
export async function farmStateQuick(node: LabNode): Promise<ModuleView | null> {
  try {
    return ((await requestControl(node.socket, "state", { module: farmModule }, 5_000)) as ModuleView[])[0]!;
  } catch {
    return null;
  }
}

// ---- The client ----

export type Answer = string | "reset" | null;

/** A process in the client namespace that makes HTTP connections to the VIP from chosen
 *  source ports and sends datagrams (client-agent.ts). */
export class Client {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #stderr = "";
  #nextId = 1;
  readonly exited: Promise<void>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.stderr!.on("data", (chunk: Buffer) => (this.#stderr += chunk.toString()));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const reply = JSON.parse(line) as { id: number; ok: boolean; result?: unknown; error?: string };
      const waiter = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.result);
      else waiter?.reject(new Error(reply.error));
    });
    child.once("exit", (code, signal) => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error(`the client agent exited (${code ?? signal}): ${this.#stderr}`));
      this.#pending.clear();
    });
  }

  static async start(ns: string): Promise<Client> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, clientAgentPath], { stdio: ["pipe", "pipe", "pipe"], cwd: repoRoot });
    const client = new Client(child);
    await new Promise<unknown>((resolve, reject) => client.#pending.set(0, { resolve, reject }));
    return client;
  }

  call(op: string, fields: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#child.stdin!.write(`${JSON.stringify({ id, op, ...fields })}\n`);
    });
  }

  async kill(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill("SIGKILL");
    await this.exited;
  }
}

// ---- The farm ----

export interface FarmLabOptions {
  readonly nodeCount?: number;
  /** null: tandem's default farm timings. */
  readonly timings?: FarmTimingsXml | null;
}

export class FarmLab {
  readonly lab: Lab;
  readonly root: string;
  readonly key: Buffer;
  readonly nodes: readonly LabNode[];
  readonly daemons: (Daemon | null)[];
  client: Client | null = null;
  #nextPort = 10_000;

  private constructor(lab: Lab, root: string, key: Buffer, nodes: LabNode[]) {
    this.lab = lab;
    this.root = root;
    this.key = key;
    this.nodes = nodes;
    this.daemons = nodes.map(() => null);
  }

  /** Builds the namespaces and each node's configuration (after removing what a crashed
   *  earlier run left); starts nothing yet. */
  static create(options: FarmLabOptions = {}): FarmLab {
    removeStaleLabs();
    const nodeCount = options.nodeCount ?? 3;
    const lab = buildLab(nodeCount);
    const root = mkdtempSync(join(tmpdir(), `${lab.prefix}-`));
    const key = randomBytes(32);
    const names = Array.from({ length: nodeCount }, (_, index) => `n${index + 1}`);
    const nodes = names.map((name, index) => labNode(lab, root, name, index));
    const farm = new FarmLab(lab, root, key, nodes);
    try {
      for (const node of nodes) writeNodeConfig(lab, names, node, key, options.timings ?? null);
    } catch (error) {
      void farm.destroy();
      throw error;
    }
    return farm;
  }

  async startDaemon(index: number): Promise<Daemon> {
    const daemon = await Daemon.start(this.nodes[index]!);
    this.daemons[index] = daemon;
    return daemon;
  }

  async startClient(): Promise<Client> {
    this.client = await Client.start(this.lab.clientNs);
    return this.client;
  }

  /** Fresh client source ports, never used before in this lab (wrapping after 50 000). */
  ports(count: number, accept: (port: number) => boolean = () => true): number[] {
    const ports: number[] = [];
    while (ports.length < count) {
      const port = this.#nextPort++;
      if (this.#nextPort > 60_000) this.#nextPort = 10_000;
      if (accept(port)) ports.push(port);
    }
    return ports;
  }

  /** The kernel's bucket of a connection from the client's `port`. */
  bucketOf(port: number): number {
    return kernelBucket(this.lab.clientIp, port, bucketCount, hashSeed);
  }

  /** New HTTP connections to the VIP from `ports`, each answered (the node's name), reset or
   *  silent (null, which includes a connection closed without an answer). `path` "/slow/MS"
   *  is answered MS milliseconds after it arrives. */
  async get(ports: readonly number[], options: { keep?: boolean; timeoutMs?: number; path?: string } = {}): Promise<Answer[]> {
    return (await this.client!.call("get", { host: this.lab.vip, port: 80, localAddress: this.lab.clientIp, ports, keep: options.keep ?? false, timeoutMs: options.timeoutMs ?? 2_000, path: options.path ?? "/" })) as Answer[];
  }

  /** Another request on connections opened with `keep`. */
  async again(ports: readonly number[], timeoutMs = 2_000): Promise<Answer[]> {
    return (await this.client!.call("again", { ports, timeoutMs })) as Answer[];
  }

  /** Source ports each node's server accepted, by node name. */
  accepted(): Map<string, number[]> {
    return new Map(this.nodes.map((node) => [node.name, existsSync(node.acceptLog) ? readFileSync(node.acceptLog, "utf8").split("\n").filter((line) => line !== "").map((line) => Number(line.slice(line.lastIndexOf(":") + 1))) : []]));
  }

  async states(): Promise<ModuleView[]> {
    return Promise.all(this.nodes.map((node) => farmState(node)));
  }

  /** Waits until the running nodes `members` all see the farm UP with exactly those members. */
  async untilMembers(members: readonly string[], timeoutMs = 20_000): Promise<void> {
    const want = [...members].sort().join(",");
    const nodes = this.nodes.filter((node) => members.includes(node.name));
    let last: (ModuleView | null)[] = [];
    await until(
      async () => {
        last = await Promise.all(nodes.map((node) => farmStateQuick(node)));
        return last.every((view) => view !== null && view.state === "UP" && view.readiness === "Ready" && view.farm?.state === "UP" && [...view.farm.members].sort().join(",") === want);
      },
      timeoutMs,
      () => `the farm did not settle on members ${want} within ${timeoutMs} ms: ${JSON.stringify(last.map((view) => view && { node: view.node, state: view.state, farm: view.farm && { state: view.farm.state, members: view.farm.members, owned: view.farm.ownedBuckets } }))}`,
    );
  }

  /** Stops everything it started and deletes the namespaces and files. Never throws. */
  async destroy(): Promise<void> {
    await this.client?.kill().catch(() => {});
    await Promise.all(this.daemons.map((daemon) => daemon?.stop(5_000).catch(() => {})));
    // Servers a killed service left behind (the namespaces' deletion kills them anyway).
    for (const node of this.nodes) {
      try {
        if (existsSync(node.pidFile)) process.kill(Number(readFileSync(node.pidFile, "utf8").trim()), "SIGKILL");
      } catch {
        // Gone already.
      }
    }
    destroyLab(this.lab);
    rmSync(this.root, { recursive: true, force: true });
  }
}

export async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, why: () => string, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(why());
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// ---- Capturing a datagram on the wire ----

/** Reads IPv4 packets arriving on eth0 of the namespace (an AF_PACKET socket, as tcpdump
 *  does) until one is UDP from `fromIp` to `port`, and prints its payload in hex. Python
 *  is used because Node has no raw sockets; it is present wherever the native addon was
 *  built (node-gyp needs it). */
const captureScript = `
import binascii, socket, sys
source, port, timeout = socket.inet_aton(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("eth0", 0))
s.settimeout(timeout)
while True:
    data, address = s.recvfrom(65535)
    if address[2] != socket.PACKET_HOST or data[9] != 17 or data[12:16] != source:
        continue
    header = (data[0] & 15) * 4
    if int.from_bytes(data[header + 2:header + 4], "big") != port:
        continue
    sys.stdout.write(binascii.hexlify(data[header + 8:]).decode())
    break
`;

/** The payload of the next UDP datagram from `fromIp` to `port` that reaches namespace `ns`. */
export function captureDatagram(ns: string, fromIp: string, port: number, timeoutMs = 3_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile("ip", ["netns", "exec", ns, "python3", "-c", captureScript, fromIp, String(port), String(timeoutMs / 1_000)], { encoding: "utf8", timeout: timeoutMs + 5_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`no datagram from ${fromIp} to port ${port} captured in ${ns}: ${stderr || error.message}`));
      else resolve(Buffer.from(stdout.trim(), "hex"));
    });
  });
}

/** Throws when python3 (for captureDatagram) is missing. */
export function requirePython(what: string): void {
  try {
    execFileSync("python3", ["-c", "import socket; socket.AF_PACKET"], { stdio: "ignore" });
  } catch {
    throw new Error(`${what} needs python3 (it captures a heartbeat with an AF_PACKET socket): apt-get install python3`);
  }
}
