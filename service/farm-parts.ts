// A farm module's protocol on a real node: the farm core over authenticated UDP
// heartbeats on the module's lans and the module's nftables filter and VIP, its health
// given by the module's life cycle (UP and Ready). The node service owns one per farm module.

import { networkInterfaces } from "node:os";
import { formatProblem } from "../core/config/problems.ts";
import { toFarmConfig } from "../core/config/to-farm.ts";
import type { ClusterConfig, ModuleConfig } from "../core/config/module-config.ts";
import { hashString32 } from "../core/hash.ts";
import { createFarmNode, type FarmState } from "../core/farm.ts";
import type { FarmConfig } from "../core/farm-config.ts";
import type { FilterPort } from "../core/ports.ts";
import type { LogEntry, NodeId } from "../core/types.ts";
import { RealClockPort } from "../drivers/real/clock.ts";
import { datagramRingsOf, RealDatagramPort, type DatagramStats } from "../drivers/real/datagrams.ts";
import { farmHeartbeatCodec } from "../drivers/real/farm-codec.ts";
import { RealFilterPort, realFilterOptions } from "../drivers/real/filter.ts";
import type { WireKey } from "../drivers/real/wire.ts";
import { createFarmRuntime, type FarmRuntime } from "../runtime/farm-runtime.ts";

export interface FarmView {
  readonly state: FarmState;
  readonly members: readonly NodeId[];
  readonly ownedBuckets: number;
  readonly bucketCount: number;
  readonly heartbeats: DatagramStats;
}

export interface FarmParts {
  readonly runtime: FarmRuntime;
  /** The module's life cycle says whether the application is UP and Ready. */
  setReady(ready: boolean): void;
  /** ... and whether it may be running (from its start scripts until its stop is done). */
  setRunning(running: boolean): void;
  view(): FarmView;
  /** Removes the filter and the VIP and closes the sockets. */
  close(): Promise<void>;
}

export interface RealFarmOptions {
  readonly module: ModuleConfig;
  readonly cluster: ClusterConfig;
  readonly node: NodeId;
  readonly key: WireKey;
  readonly incarnation: number;
  readonly log: (entry: LogEntry) => void;
}

/** Without `<farm port>`, every node derives the same port from the module's name. */
export function defaultFarmPort(module: string): number {
  return 9_000 + (hashString32(`tandem farm port ${module}`) % 1_000);
}

export async function createRealFarm(options: RealFarmOptions): Promise<FarmParts> {
  const { module, cluster, node } = options;
  const bridged = toFarmConfig(module, cluster, `modules/${module.name}/conf/userconfig.xml`);
  if (bridged.config === null) throw new Error(bridged.problems.map(formatProblem).join("; "));
  const config = bridged.config;
  const rings = datagramRingsOf(cluster, node).filter((ring) => config.rings.includes(ring.ring));
  if (rings.length === 0) throw new Error(`node ${node} is on none of the module's lans (${config.rings.join(", ")})`);
  const log = (entry: LogEntry) => options.log({ ...entry, fields: { module: module.name, ...entry.fields } });
  const clock = new RealClockPort();
  const datagrams = new RealDatagramPort({ self: node, incarnation: options.incarnation, key: options.key, port: module.farm?.port ?? defaultFarmPort(module.name), rings, codec: farmHeartbeatCodec(module.name, config.bucketCount), channel: `farm:${module.name}`, clock, log });
  await datagrams.open();
  let filter: FilterPort & { close(): void };
  try {
    filter = createFilter(module, config, rings[0]!.localAddr, (line) => log({ level: "info", event: "filter.driver", fields: { detail: line } }));
  } catch (error) {
    await datagrams.close();
    throw error;
  }
  let report: (healthy: boolean) => void = () => {};
  let reportRunning: (running: boolean) => void = () => {};
  const runtime = createFarmRuntime(createFarmNode(config, node, options.incarnation), {
    clock,
    network: datagrams,
    filter,
    // The life cycle restarts the application by the module's own rules; the farm core only leaves the farm.
    application: { restart: () => {}, watchHealth: (receiver) => (report = receiver), watchRunning: (receiver) => (reportRunning = receiver) },
    log: { write: log },
  });
  // Not healthy until the life cycle reports UP and Ready: a node whose application does
  // not listen yet must not take buckets (the kernel would reset their new connections).
  report(false);
  return {
    runtime,
    setReady: (ready) => report(ready),
    setRunning: (running) => reportRunning(running),
    view: () => ({ state: runtime.state.state, members: runtime.state.members.map((member) => member.id), ownedBuckets: runtime.state.owned.size(), bucketCount: config.bucketCount, heartbeats: datagrams.stats() }),
    close: async () => {
      clock.cancelAll();
      filter.close();
      await datagrams.close();
    },
  };
}

/** The module's filter, or one that does nothing for a farm without a VIP (a load balancer
 *  then asks each node's health URL instead). */
function createFilter(module: ModuleConfig, config: FarmConfig, localAddr: string, log: (line: string) => void): FilterPort & { close(): void } {
  const virtual = (module.vip?.interfaces ?? []).flatMap((each) => (each.virtualInterface === null ? [] : [each.virtualInterface]));
  const vips = virtual.flatMap((each) => each.virtualAddrs.map((addr) => addr.addr));
  if (module.vip === null || vips.length === 0) return { apply: () => {}, renew: () => {}, setVip: () => {}, close: () => {} };
  const interfaceName = Object.entries(networkInterfaces()).find(([, addresses]) => (addresses ?? []).some((address) => address.address === localAddr))?.[0];
  if (interfaceName === undefined) throw new Error(`no interface of this host holds ${localAddr}, this node's address in cluster.xml`);
  // realFilterOptions derives vmac_invisible's MAC from the VIP when the file leaves `addr`
  // out (as SafeKit does). Taking `mac` as written would give null there, i.e. ARP answered
  // with each node's own MAC (vmac_directed): the client would then send everything to
  // whichever node answered last, and the other nodes' buckets would never be served.
  return new RealFilterPort(realFilterOptions(config, module.vip, interfaceName, log));
}
