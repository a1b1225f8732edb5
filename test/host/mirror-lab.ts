// A two-node mirror on this host: two node namespaces (netns-lab.ts), each running the
// real node service (`tandem daemon`) with one mirror module whose replicated directory is
// a directory of its own per node (the FUSE mount lives in the service's mount namespace,
// which `ip netns exec` makes private, so from here each directory shows what is
// underneath). The "application" is whatever a test runs in a service's mount namespace
// (nsenter), as a start_prim script's children would.

import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ModuleView } from "../../service/node-service.ts";
import { requestControl } from "../../service/control.ts";
import { Daemon, labNode, tandem, until, type LabNode } from "./farm-lab.ts";
import { buildLab, destroyLab, inNs, ip, removeStaleLabs, type Lab } from "./netns-lab.ts";
import { mirrorModuleXml } from "../../lab/lab-mirror.ts";
import { fuseBinding } from "../../native/fuse.ts";

function ipNetnsPids(ns: string): number[] {
  return ip("netns", "pids", ns).split("\n").filter((line) => /^\d+$/.test(line.trim())).map(Number);
}

export const mirrorModule = "hostmirror";

export interface MirrorLabNode extends LabNode {
  /** The replicated directory (underneath, seen from here). */
  readonly dataDir: string;
  /** One line per script run: `start_prim`, `stop_prim`, ... */
  readonly scriptLog: string;
  /** The module's other replicated directories (MirrorModuleSpec.moreDirs), underneath. */
  readonly moreDirs: readonly string[];
}

function clusterXml(lab: Lab, names: readonly string[]): string {
  const nodes = names.map((name, index) => `      <node name="${name}" addr="${lab.nodeIps[index]}"/>`).join("\n");
  return `<?xml version="1.0" encoding="utf-8"?>\n<cluster>\n  <lans>\n    <lan name="default">\n${nodes}\n    </lan>\n  </lans>\n</cluster>\n`;
}

/** What the module runs: its scripts (bin/NAME) and the variables they get, per node. */
export interface MirrorModuleSpec {
  readonly scripts: Readonly<Record<string, string>>;
  readonly vars?: (node: MirrorLabNode) => Readonly<Record<string, string>>;
  /** The split-brain checker's witness: the client namespace's address, pinged. */
  readonly witness?: boolean;
  /** More checkers, as XML elements of <check>. */
  readonly checks?: string;
  /** An <errd> element. */
  readonly errd?: string;
  /** A <failover> element. */
  readonly failover?: string;
  /** <rfs async>: "none" (default here) or "second" (SafeKit's default). */
  readonly async?: "none" | "second";
  /** <notreplicated> elements of the replicated directory. */
  readonly notReplicated?: readonly string[];
  /** <tocheck> paths of the replicated directory. */
  readonly toCheck?: readonly string[];
  /** More replicated directories: names of directories beside the data directory
   *  (MirrorLabNode.moreDirs has their paths). */
  readonly moreDirs?: readonly string[];
}

/** Every script of the module notes that it ran (and with which role arguments). */
const noteScript = `#!/bin/sh\necho "$(basename "$0") $*" >> "$SCRIPT_LOG"\n`;

/** The default module: scripts that only note that they ran; `scratch/` and `*.tmp` not
 *  replicated. */
export const notingModule: MirrorModuleSpec = {
  scripts: Object.fromEntries(["prestart", "start_prim", "stop_prim", "start_second", "stop_second", "poststop"].map((name) => [name, noteScript])),
  notReplicated: [`<notreplicated path="scratch"/>`, `<notreplicated regexpath="\\.tmp$"/>`],
};

/** generic-mirror's shape (lab/lab-mirror.ts, mirrorModuleXml): the witness is the client
 *  namespace's address, pinged. */
function userconfigXml(lab: Lab, node: MirrorLabNode, spec: MirrorModuleSpec): string {
  return mirrorModuleXml({
    service: `defaultprim="alone" failover="on"`,
    vip: lab.vip,
    dir: node.dataDir,
    check: [...(spec.witness === true ? [`<splitbrain ident="witness" exec="ping" arg="${lab.clientIp}"/>`] : []), ...(spec.checks === undefined ? [] : [spec.checks])],
    vars: { SCRIPT_LOG: node.scriptLog, DATA_DIR: node.dataDir, ...spec.vars?.(node) },
    ...(spec.async === undefined ? {} : { async: spec.async }),
    ...(spec.notReplicated === undefined ? {} : { notReplicated: spec.notReplicated }),
    ...(spec.toCheck === undefined ? {} : { toCheck: spec.toCheck }),
    ...(spec.errd === undefined ? {} : { errd: spec.errd }),
    ...(spec.failover === undefined ? {} : { failover: spec.failover }),
    moreDirs: node.moreDirs,
  });
}

function writeNodeConfig(lab: Lab, names: readonly string[], node: MirrorLabNode, key: Buffer, spec: MirrorModuleSpec): void {
  const moduleDir = join(node.configDir, "modules", mirrorModule);
  mkdirSync(join(moduleDir, "conf"), { recursive: true });
  mkdirSync(join(moduleDir, "bin"), { recursive: true });
  mkdirSync(node.dataDir, { recursive: true });
  for (const dir of node.moreDirs) mkdirSync(dir, { recursive: true });
  writeFileSync(join(node.configDir, "cluster.xml"), clusterXml(lab, names));
  writeFileSync(join(node.configDir, "cluster.key"), key, { mode: 0o600 });
  chmodSync(join(node.configDir, "cluster.key"), 0o600);
  writeFileSync(join(moduleDir, "conf", "userconfig.xml"), userconfigXml(lab, node, spec));
  for (const [script, text] of Object.entries(spec.scripts)) {
    writeFileSync(join(moduleDir, "bin", script), text);
    chmodSync(join(moduleDir, "bin", script), 0o755);
  }
}

/** Every path under `root` with its kind, mode, owner, size and content hash, its extended
 *  attributes, and for a file with several names all of them (hard links: one file on both
 *  nodes). */
export function treeOf(root: string): Record<string, string> {
  const names = new Map<number, string[]>();
  const entries = treeBelow(root, "", names);
  for (const paths of names.values()) if (paths.length > 1) for (const path of paths) entries[path] += ` names ${paths.sort().join(",")}`;
  return entries;
}

/** ` xattrs name=hex,...` for a path with extended attributes, sorted; "" for none. */
function xattrsOf(at: string): string {
  const found = fuseBinding().xattrs(at);
  if (typeof found === "number") throw new Error(`listxattr ${at}: errno ${found}`);
  if (found.length === 0) return "";
  return ` xattrs ${found.map(([name, value]) => `${name}=${Buffer.from(value).toString("hex")}`).sort().join(",")}`;
}

function treeBelow(root: string, relative: string, names: Map<number, string[]>): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const name of readdirSync(join(root, relative)).sort()) {
    const path = relative === "" ? name : `${relative}/${name}`;
    const status = lstatSync(join(root, path));
    const attributes = `${(status.mode & 0o7777).toString(8)} ${status.uid}:${status.gid}`;
    if (status.isSymbolicLink()) entries[path] = `symlink ${readlinkSync(join(root, path))} ${status.uid}:${status.gid}`;
    else if (status.isDirectory()) {
      entries[path] = `dir ${attributes}`;
      Object.assign(entries, treeBelow(root, path, names));
    } else {
      entries[path] = `file ${attributes} ${status.size} ${createHash("sha256").update(readFileSync(join(root, path))).digest("hex").slice(0, 16)}`;
      if (status.nlink > 1) names.set(status.ino, [...(names.get(status.ino) ?? []), path]);
    }
    entries[path] += xattrsOf(join(root, path));
  }
  return entries;
}

export class MirrorLab {
  readonly lab: Lab;
  readonly root: string;
  readonly nodes: readonly MirrorLabNode[];
  readonly daemons: (Daemon | null)[];

  private constructor(lab: Lab, root: string, nodes: MirrorLabNode[]) {
    this.lab = lab;
    this.root = root;
    this.nodes = nodes;
    this.daemons = nodes.map(() => null);
  }

  static create(spec: MirrorModuleSpec = notingModule): MirrorLab {
    removeStaleLabs();
    const lab = buildLab(2);
    const root = mkdtempSync(join(tmpdir(), `${lab.prefix}-`));
    // Other users (the test's unprivileged application) reach the data directories.
    chmodSync(root, 0o755);
    const key = randomBytes(32);
    const names = ["n1", "n2"];
    const nodes = names.map((name, index): MirrorLabNode => {
      const node = labNode(lab, root, name, index);
      return { ...node, dataDir: join(node.dir, "data"), scriptLog: join(node.dir, "scripts.log"), moreDirs: (spec.moreDirs ?? []).map((more) => join(node.dir, more)) };
    });
    const mirror = new MirrorLab(lab, root, nodes);
    try {
      for (const node of nodes) writeNodeConfig(lab, names, node, key, spec);
    } catch (error) {
      void mirror.destroy();
      throw error;
    }
    return mirror;
  }

  async startDaemon(index: number): Promise<Daemon> {
    const daemon = await Daemon.start(this.nodes[index]!);
    this.daemons[index] = daemon;
    return daemon;
  }

  /** Both services started; n1 made primary by the operator (a new mirror), n2 its
   *  secondary after a full copy of n1's directory. */
  async begin(): Promise<void> {
    for (const index of [0, 1]) if (this.daemons[index] === null) await this.startDaemon(index);
    await this.tandem(0, ["start", "-m", mirrorModule]);
    let last: ModuleView | null = null;
    await until(
      async () => {
        last = await this.view(0);
        return last?.mirror?.why.includes("run prim") === true;
      },
      10_000,
      () => `n1 did not wait for the operator: ${JSON.stringify(last && { state: last.state, problem: last.problem, why: last.mirror?.why })}`,
    );
    const prim = await this.tandem(0, ["prim", "-m", mirrorModule]);
    if (prim.code !== 0) throw new Error(`tandem prim: ${prim.output}`);
    await this.untilRoles(["ALONE", null], 60_000);
    await this.tandem(1, ["start", "-m", mirrorModule]);
    await this.untilRoles(["PRIM", "SECOND"], 120_000);
  }

  /** Runs `script` under /bin/sh as an application of node `index` would: in its service's
   *  mount namespace (where the replicator's mount is) and network namespace. */
  app(index: number, script: string, uid?: number): Promise<{ code: number; output: string }> {
    const daemon = this.daemons[index];
    if (daemon === null || daemon === undefined || daemon.child.pid === undefined) throw new Error(`the service of ${this.nodes[index]!.name} does not run`);
    const user = uid === undefined ? [] : ["--setuid", String(uid), "--setgid", String(uid)];
    return new Promise((resolve) => {
      execFile("nsenter", ["-t", String(daemon.child.pid), "-m", "-n", ...user, "--", "/bin/sh", "-c", script], { encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof (error as { code?: unknown }).code === "number" ? (error as { code: number }).code : 1;
        resolve({ code, output: stdout + stderr });
      });
    });
  }

  async view(index: number): Promise<ModuleView | null> {
    try {
      return ((await requestControl(this.nodes[index]!.socket, "state", { module: mirrorModule }, 5_000)) as ModuleView[])[0]!;
    } catch {
      return null;
    }
  }

  /** Waits until each node named has the role (and Ready); `null` skips a node. */
  async untilRoles(roles: readonly (string | null)[], timeoutMs = 30_000): Promise<ModuleView[]> {
    let last: (ModuleView | null)[] = [];
    await until(
      async () => {
        last = await Promise.all(this.nodes.map((_, index) => (roles[index] === null ? Promise.resolve(null) : this.view(index))));
        return roles.every((role, index) => role === null || (last[index]?.state === role && last[index]?.readiness === "Ready"));
      },
      timeoutMs,
      () => `the mirror did not reach ${roles.join("/")} within ${timeoutMs} ms: ${JSON.stringify(last.map((view) => view && { node: view.node, state: view.state, readiness: view.readiness, problem: view.problem, mirror: view.mirror && { gen: view.mirror.gen, why: view.mirror.why, volume: view.mirror.volume, peer: view.mirror.peerRole } }))}\n${this.daemons.map((daemon) => daemon?.output.split("\n").slice(-15).join("\n")).join("\n----\n")}`,
    );
    return last as ModuleView[];
  }

  tandem(index: number, args: readonly string[]): Promise<{ code: number; output: string }> {
    return tandem(this.nodes[index]!, args);
  }

  /** A power cut, as far as one host can: every process of node `index`'s network
   *  namespace (its service, the application the scripts started) killed at once. */
  async powerOff(index: number): Promise<void> {
    const ns = this.nodes[index]!.ns;
    const pids = ipNetnsPids(ns);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    }
    await this.daemons[index]?.exited;
    this.daemons[index] = null;
  }

  /** partition: the two nodes cannot reach each other (nftables in each node's namespace
   *  drops what comes from or goes to the other); heal removes it. */
  partition(): void {
    for (const [index, other] of [[0, 1], [1, 0]] as const) this.#drop(index, "partition", this.nodes[other]!.ip);
  }

  heal(): void {
    for (const index of [0, 1]) this.#undrop(index, "partition");
  }

  /** cutWitness: node `index` cannot reach the witness (the client's address); healWitness undoes it. */
  cutWitness(index: number): void {
    this.#drop(index, "witness", this.lab.clientIp);
  }

  healWitness(index: number): void {
    this.#undrop(index, "witness");
  }

  /** cutLane: node `index`'s lane connections are reset (a TCP reset answers what it sends
   *  to the peer's lane port); healLane undoes it. */
  cutLane(index: number, port: number): void {
    const rules = `table inet tandem_test_lane {\n chain out { type filter hook output priority -300; tcp dport ${port} reject with tcp reset; }\n}\n`;
    this.#nft(index, rules);
  }

  healLane(index: number): void {
    this.#undrop(index, "lane");
  }

  #drop(index: number, name: string, addr: string): void {
    const table = `tandem_test_${name}`;
    const rules = `table inet ${table} {\n chain in { type filter hook input priority -300; ip saddr ${addr} drop; }\n chain out { type filter hook output priority -300; ip daddr ${addr} drop; }\n}\n`;
    this.#nft(index, rules);
  }

  /** Loads nft rules in node `index`'s namespace; without the nft command, says so. */
  #nft(index: number, rules: string): void {
    try {
      execFileSync("nft", ["--version"], { stdio: "ignore" });
    } catch {
      throw new Error("this test cuts traffic with the nft command, which is not installed (Debian package nftables; .ci/run installs it)");
    }
    execFileSync("ip", ["netns", "exec", this.nodes[index]!.ns, "nft", "-f", "-"], { input: rules });
  }

  #undrop(index: number, name: string): void {
    try {
      inNs(this.nodes[index]!.ns, "nft", "delete", "table", "inet", `tandem_test_${name}`);
    } catch {
      // Not there.
    }
  }

  /** Whether the VIP is on node `index`'s interface. */
  hasVip(index: number): boolean {
    return inNs(this.nodes[index]!.ns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").includes(`${this.lab.vip}/32`);
  }

  scriptRuns(index: number): string[] {
    const file = this.nodes[index]!.scriptLog;
    return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((line) => line !== "") : [];
  }

  async destroy(): Promise<void> {
    await Promise.all(this.daemons.map((daemon) => daemon?.stop(10_000).catch(() => {})));
    destroyLab(this.lab);
    rmSync(this.root, { recursive: true, force: true });
  }
}
