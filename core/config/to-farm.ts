// A farm module's configuration (userconfig.xml read into a ModuleConfig, with the
// cluster.xml it runs on) to the farm core's FarmConfig. A pure module: it performs no I/O.
//
// Decisions:
// - Members are the hosts of the load-balancing groups, with power as weight, each a node
//   of the farm's lans in cluster.xml. FarmConfig balances every rule over one member set,
//   so every group must list the same hosts with the same powers (an error otherwise: a
//   host of one group would take the other group's traffic). A farm without groups (no
//   VIP: a load balancer probes the nodes) has the nodes of its lans as members, power 1.
// - Rings are the farm's lans; the bucket count is the default; the hash seed is derived
//   from the module's name, so that every node agrees on it and two farm modules do not
//   pair the same clients with the same nodes.
// - Rules: on_addr is srcip, on_port srcip+srcport. on_ipid (UDP, each datagram by IP id)
//   is balanced as srcip+srcport, with a warning: each client socket still reaches exactly
//   one node, only less spread out. proto="arp" is an error: tandem never balances ARP
//   (every node answers for the VIP with the virtual MAC and the kernel filter alone
//   decides), and a vmac_directed module that relies on balanced ARP would lose the
//   clients of every node but one. A rule is for a port on every virtual address of the
//   module; a rule naming one address of several warns that it applies to all.
// - Timings: a file that writes neither pulse nor slost_count gets tandem's defaults
//   (detection in 250–300 ms); one that writes either gets SafeKit's meaning, detection
//   after pulse × slost_count (SafeKit's defaults: 100 ms × 10). See docs/configuration.md.
// - FarmConfig's own validation runs last; its problems are passed through as errors.
//   The VIP, the virtual MAC and the heartbeat port are not part of FarmConfig.

import { assert } from "../assert.ts";
import { defaultBucketCount, defaultFarmTimings, validateFarmConfig, type FarmConfig, type FarmNodeConfig, type FarmRule, type FarmTimings } from "../farm-config.ts";
import { hashString32 } from "../hash.ts";
import type { ClusterConfig, FarmSection, LoadBalancingGroup, ModuleConfig } from "./module-config.ts";
import { hasErrors, type ConfigProblem, type Severity } from "./problems.ts";

export interface ToFarmResult {
  /** Null when there is an error; problems say why. */
  readonly config: FarmConfig | null;
  readonly problems: readonly ConfigProblem[];
}

const farmPath = "safe/service/farm";
const hostPath = "safe/service/vip/loadbalancing_list/group/cluster/host";
const rulePath = "safe/service/vip/loadbalancing_list/group/rule";
/** Where a FarmConfig validation problem came from in the file, by its first path segment. */
const elementOfField: Readonly<Record<string, string>> = {
  nodes: hostPath,
  rings: `${farmPath}/lan`,
  rules: rulePath,
  timings: farmPath,
};

/** Builds the FarmConfig of a farm module; `file` names its userconfig.xml in problems. */
export function toFarmConfig(module: ModuleConfig, cluster: ClusterConfig, file: string): ToFarmResult {
  assert(module.mode === "farm", `module ${module.name} is a ${module.mode} module, not a farm`);
  assert(module.farm !== null, "a farm module read without errors has a <farm>");
  const problems: ConfigProblem[] = [];
  const report = (severity: Severity, code: string, path: string, message: string) => problems.push({ severity, code, file, line: 0, column: 0, path, message });
  const known = new Set(cluster.lans.map((lan) => lan.name));
  for (const lan of module.farm.lans.filter((name) => !known.has(name))) {
    report("error", "CONFIG_UNKNOWN_LAN", `${farmPath}/lan`, `lan ${lan} is not in cluster.xml (its lans: ${[...known].join(", ") || "none"})`);
  }
  const onLans = lanNodes(module.farm, cluster);
  const groups = module.vip?.groups ?? [];
  const nodes = groups.length === 0 ? onLans : members(groups, report);
  for (const node of nodes.filter((each) => !onLans.some((other) => other.id === each.id))) {
    report("error", "CONFIG_UNKNOWN_NODE", hostPath, `host ${node.id} is not a node of the farm's lans (${module.farm.lans.join(", ")}) in cluster.xml`);
  }
  const config: FarmConfig = {
    module: module.name,
    nodes,
    rings: module.farm.lans,
    bucketCount: defaultBucketCount,
    hashSeed: hashString32(module.name),
    rules: rules(module, report),
    timings: farmTimingsOf(module.farm),
  };
  for (const problem of validateFarmConfig(config)) {
    report("error", problem.code, elementOfField[problem.path.split(/[.[]/, 1)[0]!] ?? "safe/service", `${problem.message} (in the farm built from this file: ${problem.path})`);
  }
  return { config: hasErrors(problems) ? null : config, problems };
}

/**
 * tandem's own timings unless the file wrote pulse or slost_count; then SafeKit's: a
 * heartbeat every pulse, a peer lost after slost_count silent pulses.
 */
export function farmTimingsOf(farm: FarmSection): FarmTimings {
  if (farm.detectionWritten !== true) return defaultFarmTimings;
  const heartbeatIntervalMs = farm.pulseMs;
  const detectionTimeoutMs = farm.pulseMs * farm.slostCount;
  // One pulse below the detection, as in tandem's defaults (200 = 250 − 50): a hung node's
  // buckets lapse a pulse before its peers take them. With slost_count 2 that would equal
  // the pulse that renews it; 1.5 pulses is then the longest lease the fencing bound of
  // validateFarmConfig allows.
  const leaseMs = Math.max(detectionTimeoutMs - heartbeatIntervalMs, Math.floor(1.5 * heartbeatIntervalMs));
  return { heartbeatIntervalMs, detectionTimeoutMs, leaseMs, handoverWindowMs: defaultFarmTimings.handoverWindowMs };
}

type Report = (severity: Severity, code: string, path: string, message: string) => void;

/** The nodes of the farm's lans in cluster.xml, power 1, in first-seen order. */
function lanNodes(farm: FarmSection, cluster: ClusterConfig): FarmNodeConfig[] {
  const names = cluster.lans.filter((lan) => farm.lans.includes(lan.name)).flatMap((lan) => lan.nodes.map((node) => node.name));
  return [...new Set(names)].map((id) => ({ id, weight: 1 }));
}

/** The first group's hosts; every other group must list the same hosts and powers. */
function members(groups: readonly LoadBalancingGroup[], report: Report): FarmNodeConfig[] {
  const first = groups[0]!;
  const key = (group: LoadBalancingGroup) => group.hosts.map((host) => `${host.name}=${host.power}`).sort().join(", ");
  for (const other of groups.slice(1).filter((group) => key(group) !== key(first))) {
    report(
      "error",
      "CONFIG_UNSUPPORTED",
      hostPath,
      `group ${other.name} balances over ${key(other)} but group ${first.name} over ${key(first)}; tandem balances every rule of a module over one set of hosts, so give every group the same hosts and powers, or split the module`,
    );
  }
  return first.hosts.map((host) => ({ id: host.name, weight: host.power }));
}

function rules(module: ModuleConfig, report: Report): FarmRule[] {
  const vipCount = (module.vip?.interfaces ?? []).reduce((count, each) => count + (each.virtualInterface?.virtualAddrs.length ?? 0), 0);
  const built: FarmRule[] = [];
  for (const rule of (module.vip?.groups ?? []).flatMap((group) => group.rules)) {
    if (rule.proto === "arp") {
      report(
        "error",
        "CONFIG_UNSUPPORTED",
        rulePath,
        `tandem does not balance ARP: every node answers ARP for the virtual address with the virtual MAC and its kernel filter alone decides; remove this rule and use <virtual_interface type="vmac_invisible">`,
      );
      continue;
    }
    if (rule.filter === "on_ipid") {
      report("warning", "CONFIG_APPROXIMATED", rulePath, `tandem balances udp port ${rule.port} on_port instead of on_ipid: each client socket reaches one node, rather than each datagram`);
    }
    if (rule.virtualAddr !== "*" && vipCount > 1) {
      report("warning", "CONFIG_APPROXIMATED", rulePath, `the rule for ${rule.proto} port ${rule.port} names ${rule.virtualAddr}; tandem applies a port's rule to every virtual address of the module`);
    }
    built.push({ port: rule.port, proto: rule.proto, mode: rule.mode ?? "srcip+srcport" });
  }
  return built;
}
