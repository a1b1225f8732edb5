// The typed, frozen configuration of one module, as read from its userconfig.xml, and of
// the cluster, as read from cluster.xml. A pure module: types only.
// Durations are in milliseconds whatever unit the file used. Names follow SafeKit's
// attributes (../shared/userconfig.md) so that a SafeKit user recognises them.

import type { BalanceMode } from "../farm-config.ts";
import type { FailoverRule } from "./failover-rules.ts";

export type ModuleMode = "mirror" | "farm" | "light";

// ---- cluster.xml ----

export interface ClusterNode {
  readonly name: string;
  readonly addr: string;
}

export interface ClusterLan {
  readonly name: string;
  readonly nodes: readonly ClusterNode[];
}

export interface ClusterConfig {
  readonly lans: readonly ClusterLan[];
  /** Every node named in any lan, in first-seen order. */
  readonly nodeNames: readonly string[];
}

// ---- userconfig.xml ----

export type DefaultPrim = { readonly kind: "alone" } | { readonly kind: "lastprim" } | { readonly kind: "node"; readonly node: string };

export interface ServiceSettings {
  readonly boot: "off" | "on" | "auto" | "ignore";
  readonly bootDelayMs: number;
  /** Mirror: whether the secondary takes over by itself (false: it waits for an operator). */
  readonly failover: boolean;
  readonly defaultPrim: DefaultPrim;
  readonly maxLoop: number;
  /** 0 disables the loop count. */
  readonly loopIntervalMs: number;
  readonly automaticReboot: boolean;
}

export interface HeartbeatNetwork {
  /** A lan of cluster.xml. */
  readonly name: string;
  readonly ident: string | null;
  /** ident="flow": this network also carries replication. */
  readonly flow: boolean;
  readonly pulseMs: number;
  readonly timeoutMs: number;
}

export interface HeartSection {
  readonly port: number | null;
  readonly pulseMs: number;
  readonly timeoutMs: number;
  readonly permanentArp: boolean;
  readonly heartbeats: readonly HeartbeatNetwork[];
  /** Whether the file wrote pulse or timeout, on <heart> or on any <heartbeat>: when it did
   *  not, the mirror runs on tandem's faster detection instead of SafeKit's
   *  (core/config/to-mirror.ts). */
  readonly timingWritten?: boolean;
}

export interface FarmSection {
  readonly port: number | null;
  readonly pulseMs: number;
  readonly mlostCount: number;
  readonly slostCount: number;
  /** Whether the file wrote pulse or slost_count: when it did not, the farm runs on
   *  tandem's faster detection instead of SafeKit's (core/config/to-farm.ts). */
  readonly detectionWritten?: boolean;
  /** Lans of cluster.xml that carry the farm's heartbeats. */
  readonly lans: readonly string[];
}

export interface VirtualAddr {
  readonly addr: string;
  readonly where: "one_side_alias" | "alias" | "main";
  readonly check: boolean;
}

export interface VipInterface {
  readonly check: boolean;
  readonly arpReroute: boolean;
  readonly arpIntervalMs: number;
  readonly arpElapseMs: number;
  /** Mirror: addresses on the real interface. */
  readonly realInterface: { readonly virtualAddrs: readonly VirtualAddr[] } | null;
  /** Farm: a virtual interface with its virtual MAC. */
  readonly virtualInterface: { readonly type: "vmac_invisible" | "vmac_directed"; readonly mac: string | null; readonly virtualAddrs: readonly VirtualAddr[] } | null;
}

export interface LoadBalancingRule {
  /** "*" for every virtual address of the module. */
  readonly virtualAddr: string;
  readonly port: number;
  readonly proto: "tcp" | "udp" | "arp";
  readonly filter: "on_addr" | "on_port" | "on_ipid";
  /** The core's name for the filter: on_addr is srcip, on_port is srcip+srcport; null for on_ipid. */
  readonly mode: BalanceMode | null;
}

export interface LoadBalancingGroup {
  readonly name: string;
  readonly hosts: readonly { readonly name: string; readonly power: number }[];
  readonly rules: readonly LoadBalancingRule[];
}

export interface VipSection {
  readonly tcpReset: boolean;
  readonly interfaces: readonly VipInterface[];
  readonly groups: readonly LoadBalancingGroup[];
}

export interface NotReplicated {
  /** A path relative to the replicated directory, or a POSIX ERE over relative paths. */
  readonly path: string | null;
  readonly regex: string | null;
  /** A leading `!` on regexpath inverts it. */
  readonly inverted: boolean;
}

export interface ReplicatedDir {
  readonly dir: string;
  readonly mode: "read_only" | "read_write";
  readonly toCheck: readonly string[];
  readonly notReplicated: readonly NotReplicated[];
}

export interface RfsSection {
  /** second: the secondary acknowledges on receipt; none: once on disk. */
  readonly async: "second" | "none";
  readonly resyncWorkers: number;
  /** Resync bandwidth cap in KB/s. */
  readonly resyncBandwidthKBps: number;
  readonly lockTimeoutMs: number;
  readonly sendTimeoutMs: number;
  /** Minutes within which a not-up-to-date node may still become primary (0: never). */
  readonly syncDeltaMinutes: number;
  /** tandem extension `blocksize`: the unit, in bytes, in which writes are marked dirty and
   *  a resync copies a file (a power of two from 512 to 1 MiB). */
  readonly blockSize: number;
  /** tandem extension `splitbrain`: which side is kept when both nodes wrote while apart. */
  readonly splitBrain: "changes" | "primary" | "operator";
  readonly replicated: readonly ReplicatedDir[];
}

export interface UserSection {
  readonly niceStopTimeoutMs: number;
  readonly forceStopTimeoutMs: number;
  readonly logging: string;
  /** Exported to scripts, in file order. */
  readonly vars: readonly { readonly name: string; readonly value: string }[];
}

export type ProcAction = "restart" | "stopstart" | "stop" | "noaction" | { readonly handler: string };

export interface ProcWatch {
  readonly name: string | null;
  readonly nameRegex: string | null;
  readonly argRegex: string | null;
  /** A systemd service (by its unit name) rather than a running program. */
  readonly service: boolean;
  readonly atLeast: number;
  /** -1: no maximum. */
  readonly atMost: number;
  readonly action: ProcAction;
  readonly className: string;
  readonly startAfter: number;
}

export interface ErrdSection {
  readonly pollTimerMs: number;
  readonly procs: readonly ProcWatch[];
}

export type CheckerWhen = "pre" | "prim" | "second" | "both";
export type CheckerAction = "restart" | "stopstart" | "stop" | "wait" | "noaction";

interface CheckerBase {
  readonly ident: string;
  readonly when: CheckerWhen;
  readonly action: CheckerAction;
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

export type Checker =
  | (CheckerBase & { readonly kind: "tcp"; readonly addr: string; readonly port: number })
  | (CheckerBase & { readonly kind: "ping"; readonly addr: string })
  | (CheckerBase & { readonly kind: "intf"; readonly localAddr: string })
  | (CheckerBase & { readonly kind: "ip"; readonly addr: string })
  | (CheckerBase & { readonly kind: "custom"; readonly exec: string; readonly arg: string })
  | (CheckerBase & { readonly kind: "module"; readonly module: string; readonly addr: string | null; readonly port: number | null })
  | (CheckerBase & { readonly kind: "splitbrain"; readonly exec: string; readonly witnesses: readonly string[] });

export interface FailoverSection {
  /** Whether the default rules apply besides the user's. */
  readonly extends: boolean;
  readonly periodMs: number;
  readonly handleTimeMs: number;
  /** The rule text as written (CDATA). */
  readonly text: string;
  /** The rules in force: the defaults (when extends) then the user's; a user rule with a
   *  default's label replaces it. */
  readonly rules: readonly FailoverRule[];
}

export interface ModuleConfig {
  readonly name: string;
  readonly mode: ModuleMode;
  readonly service: ServiceSettings;
  readonly macros: readonly { readonly name: string; readonly value: string }[];
  readonly heart: HeartSection | null;
  readonly farm: FarmSection | null;
  readonly vip: VipSection | null;
  readonly rfs: RfsSection | null;
  /** Null when there is no <user> element: no scripts are run, as in SafeKit. */
  readonly user: UserSection | null;
  readonly errd: ErrdSection | null;
  readonly checkers: readonly Checker[];
  readonly failover: FailoverSection;
}
