// The mirror scenarios' MirrorCluster (scenarios/mirror-cluster.ts) on the Docker lab, in
// real time, with PostgreSQL 15 as the application: the scenarios written for the
// simulator run unchanged on real node services, the real replicator and a real database.
//
//   the module     `pg` on n1 and n2 (lab.ts's containers; the lab's farm module removed
//                  at boot): /srv/pgdata replicated (async="none"), VIP 198.18.0.101 on
//                  eth0, start_prim / stop_prim start and stop PostgreSQL as user postgres
//                  (the first primary's start_prim makes the cluster with initdb, through
//                  the replicator like any write), a tcp checker on port 5432 restarting a
//                  dead server; with the scenario's witness, the client's address pinged
//   kill / boot    docker kill / start: a power loss (every process at once; the
//                  container's files stay, as a disk's would)
//   partition      the lab's partitions (nftables in both nodes); cutWitness drops the
//                  client's address in the node (its clients are cut too: a node cut from
//                  the witness is cut from the network)
//   writes         a client in the client container committing `insert into t values (i)`
//                  through the VIP, a connection each, reporting every acknowledged commit
//   crashApp       the server killed (SIGKILL) on the node
//   views          a watcher in each node (in-container.ts), as LabCluster's
//   crash/restart  the service killed (SIGKILL) with the container running: the boot
//                  script, which starts it again when it dies, holds until restart
//   diskRoom, failNextPreserve: LabUnsupported (the lab has no disk faults)
//
// Deadlines: a scenario's waits are written for the simulator, whose application starts
// at once; PostgreSQL takes about a second to start and recover. Each wait here is given
// the scenario's bound plus `slackMs` (default 15 s) and records how long it took: the
// runner reports every wait against its bound (outcome.waits).
//
// At the end (finish): faults repaired, both nodes on; they must converge (one PRIM, one
// SECOND, both Ready); every acknowledged commit must be in the table read through the VIP
// (after a split brain, commits missing are allowed only when the losing side kept its
// changed files aside; with the witness configured a split brain fails the run); then, the database stopped on the primary, both data directories
// must be equal byte for byte (kind, mode, owner, size, content of every path).

import { performance } from "node:perf_hooks";
import type { NodeId } from "../core/types.ts";
import { ScenarioFailure } from "../scenarios/cluster.ts";
import type { MirrorCluster, MirrorOperatorCommand, MirrorScenario, MirrorView, WriteStats } from "../scenarios/mirror-cluster.ts";
import { ExecSession, Timeline, Watchers, withDeadline, type WatchSample } from "./watchers.ts";
import { bootScript, clientAddress, tarOf, type TarEntry } from "./lab-config.ts";
import { clientContainer, containerPrefix, Lab, LabUnsupported, tandemCli } from "./lab.ts";

export const mirrorLabModule = "pg";
export const mirrorLabVip = "198.18.0.101";
export const pgDataDir = "/srv/pgdata";
const pgBin = "/usr/lib/postgresql/15/bin";
const pgLog = "/var/log/postgresql/lab.log";
const preservedDir = `/var/lib/tandem/modules/${mirrorLabModule}/mirror/preserved`;
const writesStopFile = "/tmp/tandem-lab-writes.stop";
/** While it exists the boot script does not start the service again (on /run: gone at power loss). */
const holdFile = "/run/tandem-lab-hold";
/** While it exists start_prim does not start PostgreSQL (finish's comparison). */
const pgHoldFile = "/etc/tandem-lab/pg-hold";
const nodes = ["n1", "n2"] as const;

const startPrim = `#!/bin/sh
# start_prim: PostgreSQL on the replicated data directory, as user postgres. The first
# primary of a new mirror makes the cluster (initdb), replicated like any write.
set -eu
# The lab's final comparison holds the database stopped. Its tcp checker would fail, and
# start_prim again after each restart: four within loop_interval (maxloop) stopped the
# module under the comparison's reads (ENOTCONN). A placeholder answers on the port instead.
if [ -e ${pgHoldFile} ]; then
  echo "start_prim: held by ${pgHoldFile}: a placeholder listens on 127.0.0.1:5432"
  # It listens before start_prim returns (the checker probes again at once), then serves
  # in the background; one already there keeps the port.
  python3 -c 'import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", 5432))
except OSError:
    raise SystemExit(0)
s.listen(16)
if os.fork() > 0:
    os._exit(0)
os.setsid()
while True:
    s.accept()[0].close()' > /dev/null 2>&1 < /dev/null
  exit 0
fi
if [ ! -s "$PG_DATA/PG_VERSION" ]; then
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust --no-sync > /dev/null
  printf "listen_addresses = '*'\\nunix_socket_directories = ''\\nport = 5432\\n" >> "$PG_DATA/postgresql.conf"
  echo "host all all 198.18.0.0/15 trust" >> "$PG_DATA/pg_hba.conf"
fi
# A postmaster.pid that came from the other node names one of its processes, not ours.
if ! pgrep -x postgres > /dev/null; then rm -f "$PG_DATA/postmaster.pid"; fi
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "${pgLog}" -w -t 120 start
`;

const stopPrim = `#!/bin/sh
# stop_prim: a fast shutdown (open transactions rolled back, everything committed on disk).
set -u
if [ -s "$PG_DATA/PG_VERSION" ]; then runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop || true; fi
`;

/** A mirror module's userconfig.xml in generic-mirror's shape: the VIP on the real
 *  interface, one replicated directory acknowledged once applied on the secondary
 *  (async="none"; `async`: "second", SafeKit's default, on receipt), tandem's default
 *  timings. `check`: the <check> element's children (none: no element); `notReplicated`:
 *  <notreplicated> elements of the directory. Shared with the
 *  host tests' mirror (test/host/mirror-lab.ts). */
export function mirrorModuleXml(spec: { readonly service: string; readonly vip: string; readonly dir: string; readonly check: readonly string[]; readonly vars: Readonly<Record<string, string>>; readonly async?: "none" | "second"; readonly notReplicated?: readonly string[]; readonly toCheck?: readonly string[]; readonly moreDirs?: readonly string[]; readonly errd?: string; readonly failover?: string }): string {
  const inside = [...(spec.toCheck ?? []).map((path) => `<tocheck path="${path}"/>`), ...(spec.notReplicated ?? [])];
  const excluded = inside.map((line) => `\n        ${line}`).join("");
  const check = spec.check.length === 0 ? "" : `    <check>\n${spec.check.map((line) => `      ${line}\n`).join("")}    </check>\n`;
  return `<?xml version="1.0" encoding="utf-8"?>
<safe>
  <service mode="mirror" ${spec.service}>
    <heart>
      <heartbeat name="default"/>
    </heart>
    <vip>
      <interface_list>
        <interface>
          <real_interface>
            <virtual_addr addr="${spec.vip}" where="one_side_alias"/>
          </real_interface>
        </interface>
      </interface_list>
    </vip>
    <rfs async="${spec.async ?? "none"}">
      <replicated dir="${spec.dir}" mode="read_only">${excluded}
      </replicated>
${(spec.moreDirs ?? []).map((dir) => `      <replicated dir="${dir}" mode="read_only"/>\n`).join("")}    </rfs>
${check}${spec.errd === undefined ? "" : `    ${spec.errd}\n`}${spec.failover === undefined ? "" : `    ${spec.failover}\n`}    <user nicestoptimeout="60s" forcestoptimeout="10s">
${Object.entries(spec.vars).map(([name, value]) => `      <var name="${name}" value="${value}"/>`).join("\n")}
    </user>
  </service>
</safe>
`;
}

/** The lab module's userconfig.xml with the scenario's options. */
export function mirrorUserconfig(scenario: Pick<MirrorScenario, "witness" | "failover" | "defaultPrim">): string {
  return mirrorModuleXml({
    service: `boot="on" defaultprim="${scenario.defaultPrim ?? "alone"}" failover="${scenario.failover === false ? "off" : "on"}"`,
    vip: mirrorLabVip,
    dir: pgDataDir,
    check: [
      ...(scenario.witness === true ? [`<splitbrain ident="witness" exec="ping" arg="${clientAddress}"/>`] : []),
      `<tcp ident="postgresql" when="prim" action="restart"><to addr="127.0.0.1" port="5432" interval="5s" timeout="2s"/></tcp>`,
    ],
    vars: { PG_BIN: pgBin, PG_DATA: pgDataDir },
  });
}

/** The files a mirror lab node gets over a plain lab node's, relative to /. */
export function mirrorNodeFiles(node: string, scenario: Pick<MirrorScenario, "witness" | "failover" | "defaultPrim">): TarEntry[] {
  const module = `etc/tandem/modules/${mirrorLabModule}`;
  const plain = bootScript(node);
  const daemon = /^exec (node .* daemon .*)$/m.exec(plain);
  if (daemon === null) throw new Error("mirrorNodeFiles: the lab's boot script no longer ends by exec'ing the service");
  const boot = `${plain.slice(0, daemon.index).replace(/^#!\/bin\/sh\n# The lab's boot of .*\n/, `#!/bin/sh
# The mirror lab's boot of ${node}: the pg module only, its data directory in place; the
# service started again whenever it dies, unless ${holdFile} exists (crash / restart).
rm -rf /etc/tandem/modules/web
install -d -o postgres -g postgres -m 700 ${pgDataDir}
`)}while :; do
  if [ -e ${holdFile} ]; then sleep 0.05; continue; fi
  ${daemon[1]}
done
`;
  return [
    { path: module, mode: 0o755, directory: true },
    { path: `${module}/conf`, mode: 0o755, directory: true },
    { path: `${module}/bin`, mode: 0o755, directory: true },
    { path: `${module}/conf/userconfig.xml`, content: mirrorUserconfig(scenario), mode: 0o644 },
    { path: `${module}/bin/start_prim`, content: startPrim, mode: 0o755 },
    { path: `${module}/bin/stop_prim`, content: stopPrim, mode: 0o755 },
    { path: "etc/tandem-lab/boot.sh", content: boot, mode: 0o755 },
  ];
}

/** The client's loop: one commit per connection from `first` on, until the stop file appears. */
function writerScript(first: number): string {
  return `rm -f ${writesStopFile}; i=${first - 1}
while [ ! -e ${writesStopFile} ]; do
  i=$((i + 1))
  if PGCONNECT_TIMEOUT=1 timeout 5 ${pgBin}/psql -h ${mirrorLabVip} -U postgres -d postgres -Atq -c "insert into t values ($i)" > /dev/null 2>&1; then echo "ack $i"; else echo "fail $i"; sleep 0.05; fi
done
echo end`;
}

/** A prober (node, in the client container): a new connection to PostgreSQL on the VIP
 *  every 20 ms, each given up after 500 ms; prints the wall-clock time of the first
 *  ReadyForQuery (the server accepts connections and is out of recovery) and exits.
 *  argv: host, timeout in ms. */
const answerProbe = String.raw`
const net = require("node:net");
const [host, timeoutMs] = [process.argv[1], Number(process.argv[2])];
const params = Buffer.from("user\0postgres\0database\0postgres\0\0");
const startup = Buffer.alloc(8 + params.length);
startup.writeInt32BE(startup.length, 0);
startup.writeInt32BE(196608, 4);
params.copy(startup, 8);
const deadline = Date.now() + timeoutMs;
function attempt() {
  const socket = net.connect({ host, port: 5432 });
  let pending = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), 500);
  socket.on("connect", () => socket.write(startup));
  socket.on("data", (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 1 + pending.readInt32BE(1)) {
      const type = String.fromCharCode(pending[0]);
      if (type === "Z") { console.log(Date.now()); process.exit(0); }
      if (type === "E") { socket.destroy(); return; }
      pending = pending.subarray(1 + pending.readInt32BE(1));
    }
  });
  socket.on("error", () => {});
  socket.on("close", () => clearTimeout(timer));
}
setInterval(() => {
  if (Date.now() > deadline) { console.log("timeout"); process.exit(1); }
  attempt();
}, 20);
attempt();
`;

/** One resync as the primary's service logged it (mirror.resynced). */
export interface LabResync {
  readonly primary: NodeId;
  readonly full: boolean;
  readonly blockBytes: number;
  readonly ms: number;
}

/** A wait of the scenario, against the bound the scenario wrote for the simulator. */
export interface LabWait {
  readonly description: string;
  readonly boundMs: number;
  readonly tookMs: number;
}

export interface LabMirrorOptions {
  readonly lab?: Lab;
  readonly print?: (line: string) => void;
  readonly progress?: (line: string) => void;
  /** Added to each of the scenario's deadlines (default 15 s; see the header). */
  readonly slackMs?: number;
}

/** A sample older than this means a node that does not answer. */
const staleMs = 1_000;

export class LabMirrorCluster implements MirrorCluster {
  readonly lab: Lab;
  readonly nodeIds: readonly NodeId[] = nodes;
  readonly #timeline: Timeline;
  readonly waits: LabWait[] = [];
  /** Every resync of the run, from the services' logs (filled by finish). */
  readonly resyncs: LabResync[] = [];
  readonly #slackMs: number;
  readonly #watchers: Watchers;
  readonly #powered = new Set<NodeId>(nodes);
  readonly #witness: boolean;
  /** Both nodes seen primary and Ready at once under different generations (a split
   *  brain), as "A and B"; null: never. A primary still deciding how to go on without its
   *  peer says ALONE/Transient under its old generation and holds writes: not counted. */
  #splitBrain: string | null = null;
  // The writers.
  #nextId = 1;
  readonly #acked = new Set<number>();
  #writer: { session: ExecSession; startedAt: number; acks: number[]; failed: number; ended: boolean; onEnd: (() => void) | null } | null = null;

  private constructor(lab: Lab, scenario: MirrorScenario, options: LabMirrorOptions) {
    this.lab = lab;
    this.#witness = scenario.witness === true;
    this.#timeline = new Timeline(options.print ?? (() => {}));
    this.#slackMs = options.slackMs ?? 15_000;
    // Both nodes primary is looked for at every sample, not only while a wait polls.
    this.#watchers = new Watchers(lab.docker, { module: mirrorLabModule, periodMs: 25, describe: describeSample, line: (text) => this.#timeline.line(text), expected: (node) => this.#powered.has(node), onSample: () => this.#views() });
  }

  /** A fresh lab (the one there is removed) with the scenario's mirror module on n1 and n2,
   *  both powered on, their modules started and waiting for the operator. */
  static async create(scenario: MirrorScenario, options: LabMirrorOptions = {}): Promise<LabMirrorCluster> {
    const lab = options.lab ?? new Lab({ progress: options.progress ?? (() => {}) });
    await lab.requireDocker();
    await lab.down();
    await lab.up({ nodes: nodes.length, off: [...nodes] });
    for (const node of nodes) await lab.docker.getContainer(`${containerPrefix}${node}`).putArchive(tarOf(mirrorNodeFiles(node, scenario)), { path: "/" });
    const cluster = new LabMirrorCluster(lab, scenario, options);
    for (const node of nodes) {
      await lab.start(node);
      await cluster.#watchers.watch(node);
    }
    cluster.note(`lab up: n1 n2, mirror module ${mirrorLabModule} (PostgreSQL 15 on ${pgDataDir}), VIP ${mirrorLabVip}${scenario.witness === true ? `, witness ${clientAddress}` : ""}`);
    return cluster;
  }

  /** n1 made the primary of a new mirror (the operator's first prim); n2 its secondary
   *  after a full copy; table t created through the VIP. */
  async begin(): Promise<void> {
    await this.#until("both WAIT for the operator", (views) => views.every((view) => view.role === "WAIT"), 60_000);
    await this.command("n1", "prim");
    await this.#until("n1 PRIM, n2 SECOND (the database made and copied)", (views) => views.every((view) => view.readiness === "Ready" && view.role === (view.id === "n1" ? "PRIM" : "SECOND")), 180_000);
    const created = await this.#psql("create table t (i integer primary key)", 30_000);
    if (created === null) throw new Error(`create table t through the VIP failed: ${this.#lastPsqlError}`);
    this.note("table t created");
  }

  /** After a failure: the last lines of each node's service log (its container's output,
   *  over every boot), for what the timeline cannot say (a service that died, and why). */
  async noteServiceLogs(lines = 40): Promise<void> {
    for (const node of nodes) {
      const log = await this.#serviceLog(node).catch((error: Error) => `(no log: ${error.message})`);
      // The engine's 8-byte frame headers sit between lines: strip control bytes.
      const tail = log.split("\n").map((line) => line.replace(/[\x00-\x08\x0b-\x1f]/g, "").trimEnd()).filter((line) => line !== "").slice(-lines);
      this.note(`last ${tail.length} lines of ${node}'s service log:\n${tail.map((line) => `    ${line.length > 400 ? `${line.slice(0, 400)}...` : line}`).join("\n")}`);
    }
  }

  async close(): Promise<void> {
    this.#writer?.session.close();
    this.#writer = null;
    this.#watchers.close();
  }

  /** Every line so far: the scenario's steps and each change a watcher saw. */
  get timeline(): readonly string[] {
    return this.#timeline.lines;
  }

  nowMs(): number {
    return this.#timeline.nowMs();
  }

  note(message: string): void {
    this.#timeline.note(message);
  }

  // ---- Faults ----

  async kill(node: NodeId): Promise<void> {
    this.#known(node);
    this.note(`kill ${node} (docker kill: power off)`);
    this.#powered.delete(node);
    await this.lab.kill(node);
    this.#watchers.forget(node);
  }

  async boot(node: NodeId): Promise<void> {
    this.#known(node);
    this.note(`boot ${node} (container start)`);
    await this.lab.start(node);
    this.#powered.add(node);
    await this.#watchers.watch(node);
  }

  async crash(node: NodeId): Promise<void> {
    this.note(`crash ${node}'s service (SIGKILL; the kernel, its page cache and the application stay)`);
    await this.#exec(node, ["sh", "-c", `touch ${holdFile} && pkill -KILL -f "[t]andem.js daemon"`]);
  }

  async restart(node: NodeId): Promise<void> {
    this.note(`restart ${node}'s service`);
    await this.#exec(node, ["rm", "-f", holdFile]);
  }

  /** Lifts a crash's hold (the service starts again) and a witness cut. */
  async #repair(node: NodeId): Promise<void> {
    await this.#exec(node, ["sh", "-c", `rm -f ${holdFile}; nft delete table inet tandem_lab_witness 2>/dev/null; true`]);
  }

  async partition(): Promise<void> {
    this.note("partition n1 | n2");
    await this.lab.partition("n1", "n2");
  }

  async heal(): Promise<void> {
    this.note("heal the partition");
    await this.lab.heal();
  }

  async cutWitness(node: NodeId): Promise<void> {
    this.note(`${node} loses the witness (and its clients: ${clientAddress} dropped)`);
    const rules = `table inet tandem_lab_witness {\n chain in { type filter hook input priority -400; ip saddr ${clientAddress} drop; }\n chain out { type filter hook output priority -400; ip daddr ${clientAddress} drop; }\n}\n`;
    await this.#exec(node, ["sh", "-c", `printf '%s' '${rules}' | nft -f -`]);
  }

  async healWitness(node: NodeId): Promise<void> {
    this.note(`${node} reaches the witness again`);
    await this.#exec(node, ["nft", "delete", "table", "inet", "tandem_lab_witness"]);
  }

  async command(node: NodeId, command: MirrorOperatorCommand, options: { readonly fullsync?: boolean } = {}): Promise<void> {
    this.note(`operator: ${command}${options.fullsync === true ? " fullsync" : ""} on ${node}`);
    await this.#exec(node, ["node", tandemCli, command, ...(options.fullsync === true ? ["fullsync"] : []), "-m", mirrorLabModule]);
  }

  async crashApp(node: NodeId): Promise<void> {
    this.note(`the application on ${node} dies (PostgreSQL killed)`);
    await this.#exec(node, ["pkill", "-KILL", "-x", "postgres"]);
  }

  async diskRoom(node: NodeId): Promise<void> {
    throw new LabUnsupported(`diskRoom on ${node}: the lab has no disk faults (test/host/mirror-errors.test.ts fills a real disk)`);
  }

  async failNextPreserve(node: NodeId): Promise<void> {
    throw new LabUnsupported(`failNextPreserve on ${node}: the lab has no disk faults`);
  }

  // ---- Writes ----

  async startWrites(): Promise<void> {
    if (this.#writer !== null) throw new Error("startWrites: the writers run already");
    this.note("writers start (a commit per connection through the VIP)");
    const writer = { session: null as unknown as ExecSession, startedAt: this.nowMs(), acks: [] as number[], failed: 0, ended: false, onEnd: null as (() => void) | null };
    const ended = () => {
      writer.ended = true;
      writer.onEnd?.();
    };
    writer.session = await ExecSession.start(
      this.lab.docker,
      clientContainer,
      ["sh", "-c", writerScript(this.#nextId)],
      (line) => {
        const [word, id] = line.trim().split(" ");
        if (word === "ack") {
          this.#acked.add(Number(id));
          writer.acks.push(this.nowMs());
        } else if (word === "fail") writer.failed++;
        else if (word === "end") ended();
        if (id !== undefined) this.#nextId = Math.max(this.#nextId, Number(id) + 1);
      },
      ended,
    );
    this.#writer = writer;
  }

  async stopWrites(): Promise<WriteStats> {
    const writer = this.#writer;
    if (writer === null) throw new Error("stopWrites: no writers run");
    await this.lab.exec(clientContainer, ["touch", writesStopFile]);
    if (!writer.ended) await withDeadline(new Promise<void>((resolve) => (writer.onEnd = resolve)), 15_000, "the writers did not stop within 15 s");
    writer.session.close();
    this.#writer = null;
    let last = writer.startedAt;
    let longestGapMs = 0;
    for (const at of [...writer.acks, this.nowMs()]) {
      longestGapMs = Math.max(longestGapMs, at - last);
      last = at;
    }
    const stats = { acked: writer.acks.length, failed: writer.failed, longestGapMs };
    this.note(`writers stopped: ${stats.acked} acknowledged, ${stats.failed} failed, longest gap ${longestGapMs.toFixed(0)} ms`);
    return stats;
  }

  // ---- Looking ----

  async sleep(durationMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, durationMs));
  }

  async views(): Promise<readonly MirrorView[]> {
    return this.#views();
  }

  async waitFor(description: string, condition: (views: readonly MirrorView[]) => boolean, timeoutMs: number): Promise<number> {
    const { tookMs } = await this.#until(description, condition, timeoutMs + this.#slackMs);
    this.waits.push({ description, boundMs: timeoutMs, tookMs });
    if (tookMs > timeoutMs) this.note(`(${description}: ${tookMs.toFixed(0)} ms, over the simulator's ${timeoutMs} ms by the application's real start)`);
    return tookMs;
  }

  async resyncBytes(node: NodeId): Promise<number> {
    this.#known(node);
    const sample = this.#watchers.sample(node);
    if (sample?.mirror == null) throw new ScenarioFailure(`resyncBytes of ${node}: its service does not answer`);
    return sample.mirror.resyncBytes;
  }

  /** Wall-clock time (ms since the epoch) at which PostgreSQL first accepted a
   *  connection on the VIP, trying from now on (answerProbe). */
  async firstAnswer(timeoutMs: number): Promise<number> {
    const result = await this.lab.exec(clientContainer, ["node", "-e", answerProbe, mirrorLabVip, String(timeoutMs)], timeoutMs + 30_000);
    const at = Number(result.stdout.trim());
    if (result.code !== 0 || !Number.isFinite(at)) throw new ScenarioFailure(`PostgreSQL did not answer on the VIP within ${timeoutMs} ms (${(result.stdout + result.stderr).trim()})`);
    return at;
  }

  // ---- The end ----

  /** Repairs every fault, powers both nodes on, and checks what the header says; throws
   *  ScenarioFailure on the first thing wrong. */
  async finish(): Promise<void> {
    if (this.#witness && this.#splitBrain !== null) throw new ScenarioFailure(`two primaries at once with the split-brain witness configured: ${this.#splitBrain}`);
    this.note("faults end: heal, witness back, services restarted, power on");
    if (this.#writer !== null) await this.stopWrites();
    await this.lab.heal();
    for (const node of nodes) if (this.#powered.has(node)) await this.#repair(node);
    for (const node of nodes) if (!this.#powered.has(node)) await this.boot(node);
    const { views } = await this.#until("one PRIM, one SECOND, both Ready", (views) => views.every((view) => view.readiness === "Ready") && views.some((view) => view.role === "PRIM") && views.some((view) => view.role === "SECOND"), 180_000);
    const primary = views.find((view) => view.role === "PRIM")!.id;
    const secondary = views.find((view) => view.role === "SECOND")!.id;
    const rows = await this.#psql("select i from t", 60_000, true);
    if (rows === null) throw new ScenarioFailure(`select through the VIP failed: ${this.#lastPsqlError}`);
    const present = new Set(rows.split("\n").filter((line) => line !== "").map(Number));
    const lost = [...this.#acked].filter((id) => !present.has(id)).sort((a, b) => a - b);
    if (lost.length > 0) {
      const kept = (await this.#exec(secondary, ["sh", "-c", `ls -A ${preservedDir} 2>/dev/null | wc -l`])).trim();
      if (this.#splitBrain === null) throw new ScenarioFailure(`${lost.length} acknowledged commits missing: ${lost.slice(0, 20).join(" ")}${lost.length > 20 ? " ..." : ""}`);
      if (Number(kept) === 0) throw new ScenarioFailure(`after a split brain ${lost.length} acknowledged commits are missing and ${secondary}, the losing side, kept nothing aside (${preservedDir} is empty)`);
      this.note(`${lost.length} commits acknowledged by the losing side of the split brain are not in the database: its changed files are kept aside on ${secondary} (${preservedDir})`);
    }
    this.note(`${this.#acked.size} acknowledged commits checked${lost.length === 0 ? ", all present" : ""}`);
    // The database stopped on the primary (its shutdown checkpoint replicated like any
    // write), and held stopped on both: its checker would start it again meanwhile.
    for (const node of nodes) await this.#exec(node, ["touch", pgHoldFile]);
    await this.#exec(primary, ["runuser", "-u", "postgres", "--", `${pgBin}/pg_ctl`, "-D", pgDataDir, "-m", "fast", "-w", "-t", "60", "stop"]);
    // The secondary's module stopped before the comparison: hashing 40 MB through each mount
    // loads both nodes, and a heartbeat delayed past the peer timeout made the secondary take
    // over and remount under the reads (ENOTCONN; CI, with other tests running beside). A
    // stopped secondary keeps its whole copy; its primary goes on alone, writing nothing.
    await this.command(secondary, "stop");
    await this.#until(`${secondary} STOP before the comparison`, (views) => views.find((view) => view.id === secondary)?.role === "STOP", 60_000);
    const [primaryTree, secondaryTree] = await Promise.all([this.#tree(primary), this.#tree(secondary)]);
    if (primaryTree !== secondaryTree) {
      const a = primaryTree.split("\n");
      const b = new Set(secondaryTree.split("\n"));
      const differ = a.filter((line) => !b.has(line)).slice(0, 10);
      throw new ScenarioFailure(`the data directories differ (${primary} primary, ${secondary} secondary), first lines of ${primary}'s not on ${secondary}:\n${differ.join("\n")}`);
    }
    this.note(`data directories equal byte for byte (${primaryTree.split("\n").length} lines of listing and digests)`);
    const plans: string[] = [];
    for (const node of nodes) {
      const log = await this.#serviceLog(node);
      this.resyncs.push(...entriesOf<{ full: boolean; blockBytes: number; ms: number }>(log, "mirror.resynced").map((entry) => ({ primary: node, full: entry.full, blockBytes: entry.blockBytes, ms: entry.ms })));
      // What each incremental resync planned (mirror.attach): explains one larger than usual.
      for (const entry of entriesOf<{ full: boolean; paths: number; whole: string; largest: string }>(log, "mirror.attach")) {
        if (!entry.full) plans.push(`resync plan of ${node}: ${entry.paths} paths; whole: ${entry.whole}; largest: ${entry.largest}`);
      }
    }
    this.note(`resyncs: ${this.resyncs.map((each) => `${each.primary} ${each.full ? "full" : "incremental"} ${each.blockBytes} bytes in ${each.ms.toFixed(0)} ms`).join("; ")}`);
    for (const plan of plans) this.note(plan);
  }

  /** node's service log: its container's output over every boot. */
  async #serviceLog(node: NodeId): Promise<string> {
    const output = (await this.lab.docker.getContainer(`${containerPrefix}${node}`).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    return output.toString("latin1");
  }

  /** Kind, mode, owner (and size, link target) of every path of the data directory, then
   *  the digest of every file. A directory's size is the file system's own business (it
   *  grows with entries made and removed since), not replicated data. */
  async #tree(node: NodeId): Promise<string> {
    return this.#exec(node, ["sh", "-c", `cd ${pgDataDir} && find . -mindepth 1 \\( -type d -printf '%p d %m %U:%G\\n' \\) -o -printf '%p %y %m %U:%G %s %l\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum`], 120_000);
  }

  // ---- Inside ----

  #lastPsqlError = "";

  /** psql from the client against the VIP, retried until `timeoutMs`; its output, or null. */
  async #psql(sql: string, timeoutMs: number, quiet = false): Promise<string | null> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const result = await this.lab.exec(clientContainer, ["env", "PGCONNECT_TIMEOUT=2", "timeout", "20", `${pgBin}/psql`, "-h", mirrorLabVip, "-U", "postgres", "-d", "postgres", "-Atq", "-c", sql], 30_000).catch((error: Error) => ({ code: -1, stdout: "", stderr: error.message }));
      if (result.code === 0) return result.stdout.trim();
      this.#lastPsqlError = (result.stderr || result.stdout).trim();
      if (performance.now() > deadline) return null;
      if (!quiet) this.#timeline.line(`psql: ${this.#lastPsqlError.split("\n")[0]} (retrying)`);
      await this.sleep(500);
    }
  }

  #known(node: NodeId): void {
    if (!(nodes as readonly string[]).includes(node)) throw new ScenarioFailure(`no node ${node} in the mirror lab (n1, n2)`);
  }

  async #exec(node: NodeId, cmd: readonly string[], timeoutMs = 60_000): Promise<string> {
    this.#known(node);
    if (!this.#powered.has(node)) throw new ScenarioFailure(`${cmd.join(" ")} on ${node}: the node is powered off`);
    const result = await this.lab.exec(`${containerPrefix}${node}`, cmd, timeoutMs);
    if (result.code !== 0) {
      // stderr says why; of stdout (a listing may run to megabytes) only its end.
      const stdout = result.stdout.trim();
      const tail = stdout.length > 600 ? `... ${stdout.slice(-600)}` : stdout;
      throw new ScenarioFailure(`${cmd.join(" ")} on ${node} failed (${result.code}): ${result.stderr.trim().slice(0, 4000)}${tail === "" ? "" : `\n(stdout) ${tail}`}`);
    }
    return result.stdout;
  }

  #views(): MirrorView[] {
    const now = performance.now();
    const views = nodes.map((id): MirrorView => {
      const sample = this.#watchers.sample(id);
      if (!this.#powered.has(id) || sample === undefined || !sample.ok || now - sample.receivedAt > staleMs) return { id, role: "DOWN", readiness: "NotReady", gen: null };
      return { id, role: sample.state as MirrorView["role"], readiness: (sample.readiness ?? "NotReady") as MirrorView["readiness"], gen: sample.mirror?.gen ?? null };
    });
    const primaries = views.filter((view) => (view.role === "ALONE" || view.role === "PRIM") && view.readiness === "Ready");
    if (primaries.length === 2 && primaries[0]!.gen !== primaries[1]!.gen && this.#splitBrain === null) {
      this.#splitBrain = primaries.map((view) => `${view.id} ${view.role} ${view.gen}`).join(" and ");
      this.#timeline.line(`both nodes primary (split brain): ${this.#splitBrain}`);
    }
    return views;
  }

  /** Waits until `condition` holds on the views; the time it took. */
  async #until(description: string, condition: (views: readonly MirrorView[]) => boolean, timeoutMs: number): Promise<{ views: MirrorView[]; tookMs: number }> {
    const started = performance.now();
    for (;;) {
      const views = this.#views();
      if (condition(views)) return { views, tookMs: performance.now() - started };
      const waited = performance.now() - started;
      if (waited > timeoutMs) throw new ScenarioFailure(`${description}: not within ${timeoutMs} ms (${views.map((view) => `${view.id} ${view.role}/${view.readiness}${this.#why(view.id)}`).join(", ")})`);
      await this.#watchers.nextSample(Math.min(200, timeoutMs - waited + 1));
    }
  }

  #why(node: NodeId): string {
    const why = this.#watchers.sample(node)?.mirror?.why ?? "";
    return why === "" ? "" : ` (${why})`;
  }
}

function describeSample(sample: WatchSample): string {
  if (!sample.ok) return `no answer from the service (${sample.error ?? "?"})`;
  const mirror = sample.mirror;
  return `${sample.state}/${sample.readiness}${mirror == null ? "" : ` gen ${mirror.gen ?? "-"} peer ${mirror.peerRole} volume ${mirror.volume ?? "-"}`}`;
}

export interface LabMirrorOutcome {
  readonly passed: boolean;
  readonly failure: string | null;
  readonly timeline: readonly string[];
  readonly waits: readonly LabWait[];
  readonly resyncs: readonly LabResync[];
  /** From nothing to a mirror in sync with its database (lab, images cached, initdb, full copy). */
  readonly setupMs: number;
  readonly runMs: number;
}

/** Runs a mirror scenario on a fresh lab, then checks its end (LabMirrorCluster.finish).
 *  The lab stays up afterwards (lab.down() removes it). */
export async function runMirrorScenarioOnLab(scenario: MirrorScenario, options: LabMirrorOptions = {}): Promise<LabMirrorOutcome> {
  const started = performance.now();
  let cluster: LabMirrorCluster | null = null;
  let failure: string | null = null;
  let setupMs = 0;
  try {
    cluster = await LabMirrorCluster.create(scenario, options);
    await cluster.begin();
    setupMs = performance.now() - started;
    cluster.note(`scenario ${scenario.name}: ${scenario.summary}`);
    await scenario.run(cluster);
    await cluster.finish();
  } catch (error) {
    failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    cluster?.note(`FAILED: ${failure}`);
    await cluster?.noteServiceLogs().catch(() => {});
  } finally {
    await cluster?.close();
  }
  if (setupMs === 0) setupMs = performance.now() - started;
  return { passed: failure === null, failure, timeline: cluster?.timeline ?? [], waits: cluster?.waits ?? [], resyncs: cluster?.resyncs ?? [], setupMs: Math.round(setupMs), runMs: Math.round(performance.now() - started - setupMs) };
}

/** The entries of one event in a service log. The engine's 8-byte frame headers sit between
 *  lines: each line is read from its "{". */
function entriesOf<T>(log: string, event: string): T[] {
  return [...log.matchAll(new RegExp(`\\{[^\\n{]*"event":"${event.replace(".", "\\.")}"[^\\n]*\\}`, "g"))].map((match) => JSON.parse(match[0]) as T);
}
