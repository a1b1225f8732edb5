// What the lab writes into each container: the node's /etc/tandem (cluster.xml, the
// cluster key, a farm module `web` like test/host/farm-lab.ts's: a vmac_invisible VIP,
// port 80 spread per connection, whose application is a small HTTP server answering with
// the node's name, watched by a custom health checker) and /etc/tandem-lab (the boot
// script, the partition rules, the flag that breaks the application), as tar archives for
// the engine's putArchive.

export const labSubnet = "198.18.0.0/24";
export const labGateway = "198.18.0.254";
/** Addresses Docker may hand out on its own (none of the lab's fixed ones). */
export const labDynamicRange = "198.18.0.128/25";
export const labVip = "198.18.0.100";
export const clientAddress = "198.18.0.10";
export const farmModule = "web";
export const partitionFile = "/etc/tandem-lab/partition.nft";
export const acceptLog = "/var/log/tandem-web/accepted.log";
/** While this file exists the node's HTTP server does not listen: its application is
 *  broken (LabCluster.breakApp). Outside /run, so that neither a restart of the
 *  application nor a power loss repairs it; only removing it does (repairApp). */
export const appBrokenFlag = "/etc/tandem-lab/app-broken";
/** The custom checker's resource (CLASS.IDENT) in failover rules and `tandem state`. */
export const appCheckResource = "custom.http";
/** A shell script degrading the links to the other nodes (lab.degrade), re-run at boot. */
export const degradeFile = "/etc/tandem-lab/degrade.sh";

export const nodeName = (index: number): string => `n${index + 1}`;
export const nodeAddress = (index: number): string => `198.18.0.${index + 1}`;

export function clusterXml(names: readonly string[]): string {
  const nodes = names.map((name, index) => `      <node name="${name}" addr="${nodeAddress(index)}"/>`).join("\n");
  return `<?xml version="1.0" encoding="utf-8"?>\n<cluster>\n  <lans>\n    <lan name="default">\n${nodes}\n    </lan>\n  </lans>\n</cluster>\n`;
}

/** How the farm spreads clients and weighs nodes (the scenarios' `mode` and weights):
 *  srcip+srcport (on_port, the default) or srcip (on_addr); each node's power, 1 by default. */
export interface FarmOptions {
  readonly mode?: "srcip" | "srcip+srcport";
  readonly powers?: Readonly<Record<string, number>>;
}

/** The shape of templates/modules/nginx-farm: a vmac_invisible VIP (its MAC derived from
 *  the address), port 80 balanced per connection; boot="on" so that a node that gets
 *  power back starts it.
 *
 *  The application's health check: a custom checker (bin/http-check) that connects to
 *  127.0.0.1:80 every 50 ms and sets `custom.http` up or down on a change; its action is
 *  restart. Not a <tcp> checker: its interval and timeout count in whole seconds (at
 *  least 1 s, timeout below interval), too slow for the scenarios' 500 ms from a broken
 *  application to its node out of the farm. The failover rules are looked at every 50 ms
 *  (`period`) and act once a rule has held for 50 ms (`handle_time`): a down seen by the
 *  checker restarts the application within about 100 ms. A restart makes the module
 *  Transient before stop_both runs, so the node leaves the farm first; start_both then
 *  waits until the server listens again (up to 8 s), so a broken application keeps its
 *  node out of the farm, inside that one restart, until it is repaired, instead of joining
 *  and failing again in a loop. Each break is therefore one counted automatic action (a
 *  start_both that gives up after 8 s is one more). maxloop 10 within loop_interval 1 h:
 *  a scenario's break is far from it, a few breaks an hour in a long-lived lab are too,
 *  and an application broken for good stops the module after ten failed starts (about
 *  85 s, measured) instead of restarting it forever; SafeKit's default (3 in 24 h) would stop
 *  the module on the fourth break of the lab's life, and then no repair would bring the
 *  node back. */
export function userconfigXml(names: readonly string[], node: string, farm: FarmOptions = {}): string {
  const hosts = names.map((name) => `            <host name="${name}" power="${farm.powers?.[name] ?? 1}"/>`).join("\n");
  const vars = {
    NODE_NAME: node,
    NODE_BIN: "/usr/local/bin/node",
    SERVER: `/etc/tandem/modules/${farmModule}/bin/http-server.mjs`,
    ACCEPT_LOG: acceptLog,
    PID_FILE: "/run/tandem-web.pid",
    LISTENING_FILE: "/run/tandem-web.listening",
    BROKEN_FLAG: appBrokenFlag,
    SERVER_LOG: "/var/log/tandem-web/http-server.log",
  };
  return `<?xml version="1.0" encoding="utf-8"?>
<safe>
  <macro name="VIRTUAL_IP" value="${labVip}"/>
  <service mode="farm" boot="on" maxloop="10" loop_interval="1h">
    <farm>
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
          <rule virtual_addr="*" port="80" proto="tcp" filter="${farm.mode === "srcip" ? "on_addr" : "on_port"}"/>
        </group>
      </loadbalancing_list>
    </vip>
    <user nicestoptimeout="10s" forcestoptimeout="5s">
${Object.entries(vars).map(([name, value]) => `      <var name="${name}" value="${value}"/>`).join("\n")}
    </user>
    <check>
      <custom ident="${appCheckResource.slice("custom.".length)}" when="both" action="restart" exec="http-check" arg="127.0.0.1 80 50"/>
    </check>
    <failover period="50ms" handle_time="50ms"/>
  </service>
</safe>
`;
}

/** HTTP on port 80 of every address, answering every request with the node's name
 *  (`/slow/MS`: after MS milliseconds); idle keep-alive connections are never timed out.
 *  Each accepted connection appends the client's address and port to a file. SIGTERM
 *  stops it as a real service stops: it stops listening, answers the requests it has in
 *  progress, and exits once they are answered (at most 3 s later), without waiting for
 *  its clients to close their connections.
 *
 *  argv: name, accept log, pid file, and for the lab two more: the broken flag and the
 *  listening file. Without them (test/host/farm-lab.ts) it listens at once and writes the
 *  pid file once it listens. With them it writes the pid file at once (stop_both can stop
 *  it whatever its state), then looks at the flag every 20 ms: while the flag exists it
 *  does not listen (its listener closed, its connections dropped: a dead application,
 *  which a connect to port 80 sees refused), otherwise it listens and the listening file
 *  exists. Connections from 127.0.0.1 (the health checker's) are not logged. */
export const httpServer = `import { appendFileSync, existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
const [name, acceptLog, pidFile, brokenFlag, listeningFile] = process.argv.slice(2);
const lab = brokenFlag !== undefined && listeningFile !== undefined;
const writeFile = (file, text) => {
  writeFileSync(file + ".tmp", text);
  renameSync(file + ".tmp", file);
};
const open = (onListening) => {
  const server = createServer((request, response) => {
    inProgress++;
    // Exits on the next turn, once the answer's write has reached the kernel.
    response.on("close", () => --inProgress === 0 && stopping && setImmediate(() => process.exit(0)));
    request.resume();
    response.setHeader("content-type", "text/plain");
    const url = request.url ?? "/";
    const delayMs = url.startsWith("/slow/") ? Number(url.slice("/slow/".length)) : 0;
    if (!(delayMs > 0)) response.end(name);
    else setTimeout(() => response.end(name), Math.min(delayMs, 10_000));
  });
  servers.add(server);
  server.keepAliveTimeout = 0;
  server.on("connection", (socket) => {
    if (lab && socket.remoteAddress === "127.0.0.1") return;
    appendFileSync(acceptLog, socket.remoteAddress + ":" + socket.remotePort + "\\n");
  });
  server.listen(80, "0.0.0.0", () => onListening(server));
  return server;
};
const servers = new Set();
let inProgress = 0;
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
  for (const server of servers) server.close();
  if (inProgress === 0) process.exit(0);
  setTimeout(() => process.exit(0), 3_000).unref();
});
if (!lab) {
  open(() => writeFile(pidFile, process.pid + "\\n"));
} else {
  writeFile(pidFile, process.pid + "\\n");
  let server = null;
  let listening = false;
  const follow = () => {
    const broken = existsSync(brokenFlag);
    if (broken && server !== null) {
      const closing = server;
      server = null;
      listening = false;
      rmSync(listeningFile, { force: true });
      closing.close();
      closing.closeAllConnections();
      console.log(new Date().toISOString() + " broken (" + brokenFlag + "): not listening");
    } else if (!broken && server === null) {
      const opening = open(() => {
        if (server !== opening) return;
        listening = true;
        writeFile(listeningFile, "");
        console.log(new Date().toISOString() + " listening on port 80");
      });
      // A listener still closing, or one a killed server left: try again at the next look.
      opening.on("error", (error) => {
        if (server === opening) server = null;
        console.log(new Date().toISOString() + " cannot listen: " + error.message);
      });
      server = opening;
    }
  };
  follow();
  setInterval(follow, 20);
}
`;

/** The lab module's custom checker (bin/http-check; args: address, port, period in ms):
 *  connects to the address and port every period (a connection not made within 4
 *  periods, at least 200 ms, is a failure) and sets the resource it is given
 *  (TANDEM_RESOURCE, of module SAFEMODULE) up or down when that changes, through the
 *  node service's control socket (the CLI's `tandem set`, imported, not spawned: a spawn
 *  costs ~90 ms). The service starts it when the module comes UP and kills it before
 *  stop_both. */
export const httpCheck = `#!/usr/local/bin/node
import { connect } from "node:net";
const { operateCommand } = await import("/opt/tandem/dist/cli/operate-command.js");
const [address, port, period] = [process.argv[2] || "127.0.0.1", Number(process.argv[3] || 80), Number(process.argv[4] || 50)];
const module = process.env.SAFEMODULE;
const resource = process.env.TANDEM_RESOURCE;
const timeoutMs = Math.max(200, 4 * period);
const probe = () => new Promise((resolve) => {
  const socket = connect({ host: address, port });
  const done = (up, detail) => {
    clearTimeout(timer);
    socket.destroy();
    resolve({ up, detail });
  };
  const timer = setTimeout(() => done(false, "no connection within " + timeoutMs + " ms"), timeoutMs);
  socket.once("connect", () => done(true, "connected"));
  socket.once("error", (error) => done(false, error.code || error.message));
});
let reported = null;
for (;;) {
  const started = Date.now();
  const { up, detail } = await probe();
  const state = up ? "up" : "down";
  if (state !== reported) {
    let said = "";
    const code = await operateCommand("set", ["-m", module, "-r", resource, "-v", state], (line) => (said += line + "\\n")).catch((error) => ((said = String(error)), 1));
    console.log(new Date().toISOString() + " " + address + ":" + port + " " + state + " (" + detail + ")" + (code === 0 ? "" : ": tandem set failed: " + said.trim()));
    // Reported again at the next look when the service did not take it.
    if (code === 0) reported = state;
  }
  await new Promise((resolve) => setTimeout(resolve, Math.max(1, period - (Date.now() - started))));
}
`;

export const startBoth = `#!/bin/sh
# start_both: this node's HTTP server on port 80, in the background; returns once it
# listens. While the application is broken ($BROKEN_FLAG exists) it does not listen:
# start_both waits for that, up to 8 s (below nicestoptimeout, 10 s, which would kill it),
# so that a restart of a broken application keeps the module Transient (its node out of
# the farm) until the application is repaired, rather than joining with nothing behind it.
set -eu
mkdir -p "$(dirname "$ACCEPT_LOG")" "$(dirname "$SERVER_LOG")"
if [ -f "$PID_FILE" ]; then
  old=$(cat "$PID_FILE")
  rm -f "$PID_FILE"
  kill -9 "$old" 2>/dev/null || true
  i=0
  while kill -0 "$old" 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.02; done
fi
rm -f "$LISTENING_FILE"
"$NODE_BIN" "$SERVER" "$NODE_NAME" "$ACCEPT_LOG" "$PID_FILE" "$BROKEN_FLAG" "$LISTENING_FILE" >>"$SERVER_LOG" 2>&1 </dev/null &
i=0
while [ ! -f "$LISTENING_FILE" ]; do
  i=$((i + 1))
  if [ $i -gt 400 ]; then
    if [ -f "$BROKEN_FLAG" ]; then echo "the HTTP server is broken ($BROKEN_FLAG): not listening after 8 s"; else echo "the HTTP server did not start"; fi
    exit 1
  fi
  sleep 0.02
done
`;

export const stopBoth = `#!/bin/sh
# stop_both: stops this node's HTTP server.
set -u
rm -f "$LISTENING_FILE"
[ -f "$PID_FILE" ] || exit 0
pid=$(cat "$PID_FILE")
rm -f "$PID_FILE"
kill "$pid" 2>/dev/null || exit 0
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 250 ]; do i=$((i + 1)); sleep 0.02; done
`;

/** The container's main process: re-applies the lab's partition rules (a cut cable stays
 *  cut across a power loss), then becomes the node service, logging to stdout. */
export function bootScript(node: string): string {
  return `#!/bin/sh
# The lab's boot of ${node}.
if [ -s ${partitionFile} ]; then
  nft -f ${partitionFile} || echo "tandem-lab: cannot apply ${partitionFile}" >&2
fi
if [ -s ${degradeFile} ]; then
  sh ${degradeFile} || echo "tandem-lab: cannot apply ${degradeFile}" >&2
fi
exec node /opt/tandem/dist/cli/tandem.js daemon --node ${node}
`;
}

/** nftables rules that drop every packet between this node and `peers` (their addresses),
 *  both ways, before anything else sees it. An empty list: no partition. The first line
 *  names the peers (the lab reads it back). */
export function partitionRules(peers: readonly { name: string; address: string }[]): string {
  if (peers.length === 0) return "";
  const addresses = peers.map((peer) => peer.address).join(", ");
  return `# peers: ${peers.map((peer) => peer.name).join(" ")}
table inet tandem_lab
delete table inet tandem_lab
table inet tandem_lab {
  chain input {
    type filter hook input priority -400; policy accept;
    ip saddr { ${addresses} } drop
  }
  chain output {
    type filter hook output priority -400; policy accept;
    ip daddr { ${addresses} } drop
  }
}
`;
}

/** The peers named on the first line of a partition file. */
export function partitionPeers(text: string): string[] {
  const match = /^# peers: (.*)$/m.exec(text);
  return match === null ? [] : match[1]!.split(" ").filter((name) => name !== "");
}

/** The script that degrades this node's links to `peers` (their addresses): `lossRate`
 *  of the packets it sends them dropped (nftables: numgen random, output hook, so that
 *  each direction of a link loses that rate once), and with `jitterMs` > 0 a delay drawn
 *  uniformly in [0, jitterMs] (tc netem, as the simulator's jitter: netem with a jitter
 *  and no distribution is uniform in [delay - jitter, delay + jitter]) on the packets to
 *  them only (an htb root whose class 1:20, selected by destination, holds the netem).
 *  Client traffic is left alone, as the simulator degrades only the heartbeat rings.
 *  lossRate 0 and jitterMs 0: a script that removes both. */
export function degradeScript(peers: readonly string[], lossRate: number, jitterMs: number): string {
  const lines = ["#!/bin/sh", `# tandem-lab degrade: loss ${lossRate * 100} % and jitter ${jitterMs} ms to ${peers.join(" ") || "no peer"}`];
  lines.push("nft delete table inet tandem_lab_degrade 2>/dev/null", "tc qdisc del dev eth0 root 2>/dev/null", "set -e");
  const perTenThousand = Math.round(lossRate * 10_000);
  if (perTenThousand > 0 && peers.length > 0) {
    lines.push(`nft -f - <<'EOF'
table inet tandem_lab_degrade {
  chain output {
    type filter hook output priority -390; policy accept;
    ip daddr { ${peers.join(", ")} } numgen random mod 10000 < ${perTenThousand} drop
  }
}
EOF`);
  }
  if (jitterMs > 0 && peers.length > 0) {
    const half = (jitterMs / 2).toFixed(3);
    lines.push(
      "tc qdisc add dev eth0 root handle 1: htb default 10",
      "tc class add dev eth0 parent 1: classid 1:10 htb rate 10gbit quantum 60000",
      "tc class add dev eth0 parent 1: classid 1:20 htb rate 10gbit quantum 60000",
      `tc qdisc add dev eth0 parent 1:20 handle 20: netem delay ${half}ms ${half}ms`,
      ...peers.map((address) => `tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst ${address}/32 flowid 1:20`),
    );
  }
  return `${lines.join("\n")}\n`;
}

/** The address of the load's client number `index` (0-based), added to the client
 *  container's eth0 so that every simulated client has its own source address, as in the
 *  simulator (srcip spreads by it): 198.18.0.11 to .99. */
export const loadClientCountMax = 89;
export const loadClientAddress = (index: number): string => `198.18.0.${11 + index}`;

export interface TarEntry {
  readonly path: string;
  readonly content?: string | Buffer;
  readonly mode: number;
  readonly directory?: boolean;
}

/** Every file a node container gets, relative to /. */
export function nodeFiles(names: readonly string[], node: string, key: Buffer, farm: FarmOptions = {}): TarEntry[] {
  const module = `etc/tandem/modules/${farmModule}`;
  return [
    { path: "etc/tandem", mode: 0o755, directory: true },
    { path: "etc/tandem/modules", mode: 0o755, directory: true },
    { path: module, mode: 0o755, directory: true },
    { path: `${module}/conf`, mode: 0o755, directory: true },
    { path: `${module}/bin`, mode: 0o755, directory: true },
    { path: "etc/tandem-lab", mode: 0o755, directory: true },
    { path: "etc/tandem/cluster.xml", content: clusterXml(names), mode: 0o644 },
    { path: "etc/tandem/cluster.key", content: key, mode: 0o600 },
    { path: `${module}/conf/userconfig.xml`, content: userconfigXml(names, node, farm), mode: 0o644 },
    { path: `${module}/bin/http-server.mjs`, content: httpServer, mode: 0o644 },
    { path: `${module}/bin/start_both`, content: startBoth, mode: 0o755 },
    { path: `${module}/bin/stop_both`, content: stopBoth, mode: 0o755 },
    { path: `${module}/bin/http-check`, content: httpCheck, mode: 0o755 },
    { path: "etc/tandem-lab/boot.sh", content: bootScript(node), mode: 0o755 },
  ];
}

/** A ustar archive of `entries` (owned by root), as the engine's putArchive takes. */
export function tarOf(entries: readonly TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const content = entry.directory ? Buffer.alloc(0) : Buffer.from(entry.content ?? "");
    const header = Buffer.alloc(512);
    const name = entry.directory ? `${entry.path}/` : entry.path;
    if (Buffer.byteLength(name) > 100) throw new Error(`tar: path too long: ${name}`);
    header.write(name, 0, 100, "utf8");
    header.write(octal(entry.mode, 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(content.length, 12), 124);
    header.write(octal(Math.floor(Date.now() / 1_000), 12), 136);
    header.write("        ", 148);
    header.write(entry.directory ? "5" : "0", 156);
    header.write("ustar\u000000", 257, "binary");
    header.write("root", 265);
    header.write("root", 297);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, "binary");
    blocks.push(header, content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** The content of the first regular file in a tar archive (what getArchive returns for one file). */
export function firstFileOf(archive: Buffer): Buffer | null {
  for (let offset = 0; offset + 512 <= archive.length; ) {
    const header = archive.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) return null;
    const size = parseInt(header.subarray(124, 136).toString("binary").replace(/\0.*$/, "").trim() || "0", 8);
    const type = String.fromCharCode(header[156]!);
    if (type === "0" || type === "\0") return archive.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return null;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\u0000`;
}
