// `tandem daemon`: the node service in the foreground (systemd runs it so: packaging/
// tandem.service). Logs are JSON lines on stdout, one per event, with module and node.
// SIGTERM or SIGINT stops every module (their stop scripts run) and exits 0.

import { networkInterfaces } from "node:os";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import pino from "pino";
import { formatProblem } from "../core/config/problems.ts";
import type { ResourceState } from "../core/config/failover-rules.ts";
import type { LogEntry } from "../core/types.ts";
import { RealClockPort } from "../drivers/real/clock.ts";
import { RealProbePort } from "../drivers/real/probes.ts";
import { RealProcessPort } from "../drivers/real/process.ts";
import { clusterKeyProblem, WireKey } from "../drivers/real/wire.ts";
import { loadConfigDir } from "../service/config-load.ts";
import { createRealFarm } from "../service/farm-parts.ts";
import { createRealMirror } from "../service/mirror-parts.ts";
import { adminCodec, PeerAdmin, type AdminMessage } from "../service/peer-admin.ts";
import { RealStreamPort, streamTopologyOf } from "../drivers/real/streams.ts";
import { listenControl, type ControlRequest } from "../service/control.ts";
import { NodeService, type ModuleCommand } from "../service/node-service.ts";
import { servicePaths } from "./service-paths.ts";

const peerPortDefault = 9_452;
const usage = `usage: tandem daemon [--config DIR] [--state DIR] [--log-dir DIR] [--socket PATH] [--node NAME] [--peer-port N]
  runs the node service in the foreground; systemd's unit is packaging/tandem.service
  --node NAME     this node's name in cluster.xml (default: the node whose address is on this host)
  --peer-port N   the TCP port node services talk on, the same on every node (default ${peerPortDefault})`;

export async function daemonCommand(argv: readonly string[], print: (line: string) => void): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { config: { type: "string" }, state: { type: "string" }, "log-dir": { type: "string" }, socket: { type: "string" }, node: { type: "string" }, "peer-port": { type: "string" }, help: { type: "boolean", short: "h", default: false } },
    strict: true,
  });
  if (values.help) {
    print(usage);
    return 0;
  }
  const paths = servicePaths({ config: values.config, state: values.state, logDir: values["log-dir"], socket: values.socket });
  const node = values.node ?? process.env["TANDEM_NODE"] ?? localNode(paths.configDir);
  if (node === null) {
    print(`tandem daemon: no node of ${join(paths.configDir, "cluster.xml")} has an address on this host; give --node NAME`);
    return 2;
  }
  const logger = pino({ base: { node }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } });
  mkdirSync(paths.stateDir, { recursive: true, mode: 0o700 });
  const incarnation = nextIncarnation(paths.stateDir);
  const key = readClusterKey(join(paths.configDir, "cluster.key"));
  if (typeof key === "string") logger.warn({ event: "service.no-cluster-key", detail: key });
  const cluster = loadConfigDir(paths.configDir).cluster;
  const log = (entry: LogEntry) => logger[entry.level]({ event: entry.event, ...entry.fields });
  const service = new NodeService({
    configDir: paths.configDir,
    stateDir: paths.stateDir,
    logDir: paths.logDir,
    node,
    log,
    drivers: {
      ...(typeof key === "string" || cluster === null
        ? { farmUnavailable: typeof key === "string" ? key : "cluster.xml does not load" }
        : {
            farm: (module) => createRealFarm({ module, cluster, node, key, incarnation, log }),
            mirror: (module, context) => createRealMirror({ module, cluster, node, key, incarnation, ...context }),
          }),
      ...(typeof key === "string" || cluster === null ? { mirrorUnavailable: typeof key === "string" ? key : "cluster.xml does not load" } : {}),
      clock: new RealClockPort(),
      processes: (module, logDir) => new RealProcessPort({ binDir: join(module.dir, "bin"), logDir, log: (line) => logger.warn({ event: "process.driver", module: module.name, detail: line }) }),
      probes: (moduleReady) => new RealProbePort({ moduleReady }),
    },
  });
  const config = await service.start();
  const handle = (request: ControlRequest) => handleRequest(service, request);
  // Other nodes' services: commands with -H travel on the authenticated control stream.
  let peers: { admin: PeerAdmin; nodes: readonly string[]; close: () => Promise<void> } | null = null;
  if (typeof key !== "string" && cluster !== null) {
    const peerPort = Number(values["peer-port"] ?? process.env["TANDEM_PEER_PORT"] ?? peerPortDefault);
    if (!Number.isInteger(peerPort) || peerPort < 1 || peerPort > 65_535) {
      print(`tandem daemon: --peer-port ${values["peer-port"] ?? process.env["TANDEM_PEER_PORT"]}: expected a TCP port, 1 to 65535`);
      await service.stop();
      return 2;
    }
    const topology = streamTopologyOf(cluster, node);
    const stream = new RealStreamPort<AdminMessage>({ self: node, incarnation, key, port: peerPort, listen: topology.listen, peers: topology.peers, codec: adminCodec, log });
    await stream.open();
    peers = { admin: new PeerAdmin(node, stream, handle), nodes: cluster.nodeNames, close: () => stream.close() };
  }
  for (const problem of config.problems) logger[problem.severity === "error" ? "error" : "warn"]({ event: "config.problem", detail: formatProblem(problem) });
  mkdirSync(dirname(paths.socket), { recursive: true, mode: 0o700 });
  const server = await listenControl(paths.socket, (request) => (request.verb === "relay" ? relay(peers, request, handle) : handle(request)));
  logger.info({ event: "service.listening", socket: paths.socket });
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      logger.info({ event: "service.signal", signal });
      server.close();
      void service
        .stop()
        .then(() => peers?.close())
        .then(done);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  logger.flush();
  return 0;
}

const commands = new Set<string>(["start", "stop", "restart", "stopstart"]);

/** `tandem -H n1,n2 VERB`: asks each named node (`*`: every node of cluster.xml). */
async function relay(peers: { admin: PeerAdmin; nodes: readonly string[] } | null, request: ControlRequest, handle: (request: ControlRequest) => Promise<unknown>): Promise<unknown> {
  if (peers === null) throw new Error("-H needs the cluster key (cluster.key) and cluster.xml: this service talks to no other node");
  const inner = request["request"] as ControlRequest | undefined;
  const named = request["nodes"];
  if (inner === undefined || typeof inner.verb !== "string" || !(named === "*" || (Array.isArray(named) && named.every((each) => typeof each === "string")))) throw new Error("relay needs nodes and a request");
  const nodes = named === "*" ? peers.nodes : (named as string[]);
  const unknown = nodes.filter((each) => !peers.nodes.includes(each));
  if (unknown.length > 0) throw new Error(`no node ${unknown.join(", ")} in cluster.xml (its nodes: ${peers.nodes.join(", ")})`);
  return peers.admin.ask(nodes, inner, handle, typeof request["timeoutMs"] === "number" ? request["timeoutMs"] : 10_000);
}
const states = new Set<string>(["up", "down", "init", "unknown"]);

async function handleRequest(service: NodeService, request: ControlRequest): Promise<unknown> {
  const module = typeof request.module === "string" ? request.module : undefined;
  if (commands.has(request.verb)) {
    if (module === undefined) throw new Error(`${request.verb} needs a module (-m NAME)`);
    const view = service.command(module, request.verb as ModuleCommand);
    if (request["wait"] !== true) return view;
    const target = request.verb === "stop" ? "STOP" : "UP";
    return service.waitFor(module, target, typeof request["timeoutMs"] === "number" ? request["timeoutMs"] : 600_000);
  }
  switch (request.verb) {
    case "state":
      return service.views(module);
    case "set": {
      const resource = request["resource"];
      const value = request["value"];
      if (module === undefined || typeof resource !== "string" || typeof value !== "string" || !states.has(value)) throw new Error("set needs -m MODULE -r CLASS.IDENT -v up|down");
      return service.setResource(module, resource, value as ResourceState);
    }
    case "prim":
    case "second":
    case "swap":
    case "primforce": {
      if (module === undefined) throw new Error(`${request.verb} needs a module (-m NAME)`);
      const view = service.mirrorCommand(module, request.verb, request["fullsync"] === true);
      if (request["wait"] !== true || (request.verb !== "prim" && request.verb !== "second")) return view;
      return service.waitFor(module, request.verb === "prim" ? "PRIM" : "SECOND", typeof request["timeoutMs"] === "number" ? request["timeoutMs"] : 600_000);
    }
    case "log":
      if (module === undefined) throw new Error("log needs a module (-m NAME)");
      return service.logs(module, typeof request["count"] === "number" ? request["count"] : 50);
    default:
      throw new Error(`unknown request ${request.verb}`);
  }
}

/** Grows at every start, also across a wiped state directory or a clock set back: peers
 *  refuse messages of an older incarnation. */
function nextIncarnation(stateDir: string): number {
  const file = join(stateDir, "incarnation");
  const stored = existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : 0;
  const incarnation = Math.max(Number.isSafeInteger(stored) ? stored + 1 : 0, Date.now());
  writeFileSync(`${file}.tmp`, `${incarnation}\n`);
  renameSync(`${file}.tmp`, file);
  return incarnation;
}

/** The cluster key, or why there is none: every node holds the same secret file. */
function readClusterKey(file: string): WireKey | string {
  const howTo = `create it once (head -c 32 /dev/urandom > ${file}; chmod 600 ${file}) and copy it to every node`;
  if (!existsSync(file)) return `no cluster key at ${file}: farm and mirror modules need one to authenticate their heartbeats and streams; ${howTo}`;
  if ((statSync(file).mode & 0o077) !== 0) return `${file} can be read by other users than root: chmod 600 ${file}`;
  const bytes = readFileSync(file);
  const problem = clusterKeyProblem(bytes);
  return problem === null ? new WireKey(bytes) : `${file}: ${problem}`;
}

/** The node of cluster.xml with an address configured on this host, if exactly one. */
function localNode(configDir: string): string | null {
  const cluster = loadConfigDir(resolve(configDir)).cluster;
  if (cluster === null) return null;
  const local = new Set(Object.values(networkInterfaces()).flatMap((addresses) => (addresses ?? []).map((address) => address.address)));
  const nodes = new Set(cluster.lans.flatMap((lan) => lan.nodes.filter((node) => local.has(node.addr)).map((node) => node.name)));
  return nodes.size === 1 ? [...nodes][0]! : null;
}
