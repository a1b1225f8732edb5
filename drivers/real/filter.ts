// The real kernel filter and VIP of one farm module on one node (FilterPort): nftables
// through libnftables, the VIP through rtnetlink, ARP through an AF_PACKET socket, all in
// the native addon (native/). docs/farm.md ("The real filter on Linux") has the ruleset
// and the reasons for its shape.
//
// What it guarantees:
// - Every change is ONE nftables transaction: the kernel never sees half a filter.
// - Lease: the filter accepts nothing for the VIP once leaseMs passed without apply() or
//   renew(): the VIP is an element, with a timeout, of the set `lease`, and a rule ahead
//   of every accepting one drops VIP traffic whose address is not in it. A failed apply()
//   stops renewals, so a filter the core no longer asked for lapses within one lease.
// - The tables carry `flags owner`: they belong to this object's netlink socket, and the
//   kernel deletes them when the process dies. The virtual MAC marking goes with them, so
//   frames to the virtual MAC no longer reach the IP stack of a dead service's node; the
//   ARP responder is a thread of the process and dies with it too. Only the VIP address on
//   `lo` survives a crash, and without ARP answers or marking nothing is sent to it; the
//   next start removes it.
// - Never throws after construction: a failure of apply/renew/setVip is logged, and the
//   lease turns it into "accept nothing".

import { readFileSync, writeFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import { assert } from "../../core/assert.ts";
import { BucketSet } from "../../core/bucket-set.ts";
import type { VipSection } from "../../core/config/module-config.ts";
import type { FarmConfig, FarmRule } from "../../core/farm-config.ts";
import type { FilterPort, FilterSettings, VipState } from "../../core/ports.ts";
import { nativeBinding, type ArpResponder, type NativeBinding, type NativeError, type NftContext } from "../../native/index.ts";

export interface RealFilterOptions {
  /** The farm module; the tables are named `tandem_<module>`. */
  readonly module: string;
  /** The module's virtual IPv4 addresses, put on `lo` while the VIP is up or draining. */
  readonly vips: readonly string[];
  /** The interface clients reach the VIP through: ARP is answered and the virtual MAC
   *  accepted there. */
  readonly interfaceName: string;
  /** vmac_invisible's virtual MAC: in ARP answers' payload, and accepted by every node.
   *  null: ARP answers carry the interface's own MAC (vmac_directed). */
  readonly virtualMac: string | null;
  readonly bucketCount: number;
  readonly hashSeed: number;
  readonly rules: readonly FarmRule[];
  /** Receives one line per event (a failed transaction, the VIP going up). */
  readonly log?: (line: string) => void;
}

/** A filter that cannot be set up: the module cannot run on this node. */
export class FilterSetupError extends Error {
  readonly code: "FILTER_INVALID_OPTIONS" | "FILTER_TABLE_BUSY" | "FILTER_SETUP_FAILED";
  readonly module: string;
  constructor(code: FilterSetupError["code"], module: string, message: string) {
    super(message);
    this.name = "FilterSetupError";
    this.code = code;
    this.module = module;
  }
}

/** nftables chain priority of the filter: after conntrack (-200), which `ct state` needs,
 *  and before the usual `filter` chains (0). */
export const filterPriority = -150;
/** The netdev ingress chain runs before anything else looks at the frame. */
export const ingressPriority = -500;
const modulePattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$/;
const interfacePattern = /^[A-Za-z0-9_.:@-]{1,15}$/;
const macPattern = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function tableName(module: string): string {
  return `tandem_${module}`;
}

/** SafeKit's virtual MAC for a VIP when the config gives none: 5a:fe + the IPv4 address in hex. */
export function derivedVirtualMac(vip: string): string {
  assert(isIPv4(vip), `derivedVirtualMac: ${vip} is not IPv4`);
  return ["5a", "fe", ...vip.split(".").map((octet) => Number(octet).toString(16).padStart(2, "0"))].join(":");
}

/** The driver's options from the module's FarmConfig and <vip>: every virtual address of
 *  every virtual interface, and vmac_invisible's MAC (derived from the first address when
 *  the config leaves it out). */
export function realFilterOptions(config: FarmConfig, vip: VipSection, interfaceName: string, log?: (line: string) => void): RealFilterOptions {
  const virtualInterfaces = vip.interfaces.flatMap((entry) => (entry.virtualInterface === null ? [] : [entry.virtualInterface]));
  const vips = [...new Set(virtualInterfaces.flatMap((entry) => entry.virtualAddrs.map((addr) => addr.addr)))];
  const invisible = virtualInterfaces.find((entry) => entry.type === "vmac_invisible");
  const virtualMac = invisible === undefined ? null : (invisible.mac ?? (vips[0] === undefined || !isIPv4(vips[0]) ? null : derivedVirtualMac(vips[0])));
  return {
    module: config.module,
    vips,
    interfaceName,
    virtualMac,
    bucketCount: config.bucketCount,
    hashSeed: config.hashSeed,
    rules: config.rules,
    ...(log === undefined ? {} : { log }),
  };
}

/** What is wrong with the options, or null. */
export function invalidOptions(options: RealFilterOptions): string | null {
  if (!modulePattern.test(options.module)) return `module name '${options.module}' cannot name an nftables table: use letters, digits, '_', '.' and '-'`;
  if (!interfacePattern.test(options.interfaceName)) return `interface name '${options.interfaceName}' is not a Linux interface name`;
  if (options.vips.length === 0) return `module ${options.module} has no virtual address`;
  const notIpv4 = options.vips.find((vip) => !isIPv4(vip));
  if (notIpv4 !== undefined) return `virtual address ${notIpv4} is not IPv4: the real filter balances IPv4 only`;
  if (options.virtualMac !== null && !macPattern.test(options.virtualMac)) return `virtual MAC '${options.virtualMac}' is not six lower-case hex pairs`;
  if (!Number.isInteger(options.bucketCount) || options.bucketCount < 1 || options.bucketCount > 65_536) return `bucketCount ${options.bucketCount} out of 1..65536`;
  if (!Number.isInteger(options.hashSeed) || options.hashSeed < 0 || options.hashSeed > 0xffff_ffff) return `hashSeed ${options.hashSeed} is not a 32-bit unsigned integer`;
  const badRule = options.rules.find((rule) => !Number.isInteger(rule.port) || rule.port < 1 || rule.port > 65_535);
  if (badRule !== undefined) return `rule port ${badRule.port} out of 1..65535`;
  return null;
}

// ---- The ruleset, as nft text (pure functions) ----

/** The hash expression of a rule: the bucket of a packet, as the kernel computes it. */
function hashExpression(rule: FarmRule, options: RealFilterOptions): string {
  const key = rule.mode === "srcip+srcport" ? `ip saddr . ${rule.proto} sport` : "ip saddr";
  return `jhash ${key} mod ${options.bucketCount} seed 0x${options.hashSeed.toString(16).padStart(8, "0")}`;
}

type BucketClass = "owned" | "owned_reset" | "lingering";

/** Runs of consecutive buckets of one class, as vmap elements `first-last : jump class`. */
export function bucketVerdicts(settings: Pick<FilterSettings, "owned" | "lingering" | "reset">): string[] {
  const classOf = (bucketIndex: number): BucketClass | null => {
    if (settings.reset.has(bucketIndex)) return "owned_reset";
    if (settings.owned.has(bucketIndex)) return "owned";
    if (settings.lingering.has(bucketIndex)) return "lingering";
    return null;
  };
  const elements: string[] = [];
  const bucketCount = settings.owned.bucketCount;
  let first = 0;
  for (let bucketIndex = 1; bucketIndex <= bucketCount; bucketIndex++) {
    const current = classOf(first);
    if (bucketIndex < bucketCount && classOf(bucketIndex) === current) continue;
    if (current !== null) elements.push(`${first === bucketIndex - 1 ? first : `${first}-${bucketIndex - 1}`} : jump ${current}`);
    first = bucketIndex;
  }
  return elements;
}

/** The tables created once: the chains per bucket class and the netdev marking. The
 *  leading add+delete removes a leftover table of the same name (made by hand: an owned
 *  one of a live process makes the whole transaction fail with EPERM instead). */
export function setupCommands(options: RealFilterOptions): string {
  const table = tableName(options.module);
  const accepted = [
    "ct state established,related accept",
    "tcp flags & (fin|syn|rst|ack) == syn ct state new accept",
    "meta l4proto udp ct state new accept",
  ];
  const lines = [
    `add table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    "\tflags owner",
    "\tset lease {",
    "\t\ttype ipv4_addr",
    "\t\tflags timeout",
    "\t}",
    "\tchain owned {",
    ...accepted.map((line) => `\t\t${line}`),
    "\t\tdrop",
    "\t}",
    "\tchain owned_reset {",
    ...accepted.map((line) => `\t\t${line}`),
    "\t\ttcp flags & rst == rst drop",
    "\t\tmeta l4proto tcp reject with tcp reset",
    "\t\tdrop",
    "\t}",
    "\tchain lingering {",
    "\t\tct state established,related accept",
    "\t\tdrop",
    "\t}",
    "\tchain prerouting {",
    `\t\ttype filter hook prerouting priority ${filterPriority}; policy accept;`,
    "\t}",
    "}",
  ];
  if (options.virtualMac !== null) {
    lines.push(
      `add table netdev ${table}`,
      `delete table netdev ${table}`,
      `table netdev ${table} {`,
      "\tflags owner",
      "\tchain ingress {",
      `\t\ttype filter hook ingress device "${options.interfaceName}" priority ${ingressPriority}; policy accept;`,
      `\t\tether daddr ${options.virtualMac} meta pkttype set host`,
      "\t}",
      "}",
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Replaces the prerouting rules and starts a lease (leaseMs null: no lease, nothing accepted). */
export function applyCommands(options: RealFilterOptions, settings: Pick<FilterSettings, "owned" | "lingering" | "reset">, leaseMs: number | null): string {
  const table = tableName(options.module);
  const rule = (text: string) => `add rule ip ${table} prerouting ${text}`;
  const verdicts = bucketVerdicts(settings);
  const lines = [
    `flush chain ip ${table} prerouting`,
    rule(`ip daddr != { ${options.vips.join(", ")} } accept`),
    rule(`iif "lo" accept`),
    rule(`ip daddr != @lease drop`),
    // Replies to connections this node opened from the VIP are nobody else's.
    rule(`ct direction reply accept`),
    rule(`meta l4proto icmp ct state related accept`),
    ...(verdicts.length === 0 ? [] : options.rules.map((farmRule) => rule(`${farmRule.proto} dport ${farmRule.port} ${hashExpression(farmRule, options)} vmap { ${verdicts.join(", ")} }`))),
    rule("drop"),
    ...(leaseMs === null ? [`flush set ip ${table} lease`] : leaseCommandLines(options, leaseMs)),
  ];
  return `${lines.join("\n")}\n`;
}

/** Restarts the lease: leaseMs from now. */
export function leaseCommands(options: RealFilterOptions, leaseMs: number): string {
  return `${leaseCommandLines(options, leaseMs).join("\n")}\n`;
}

function leaseCommandLines(options: RealFilterOptions, leaseMs: number): string[] {
  assert(Number.isInteger(leaseMs) && leaseMs >= 1, `leaseMs ${leaseMs} must be a positive integer`);
  const table = tableName(options.module);
  // An element's timeout cannot be extended in place on this kernel; flush and re-add in
  // the same transaction, which also works after the element expired.
  return [`flush set ip ${table} lease`, `add element ip ${table} lease { ${options.vips.map((vip) => `${vip} timeout ${leaseMs}ms`).join(", ")} }`];
}

export function teardownCommands(options: RealFilterOptions): string {
  const table = tableName(options.module);
  return [`delete table ip ${table}`, ...(options.virtualMac === null ? [] : [`delete table netdev ${table}`])].join("\n") + "\n";
}

// ---- The kernel's hash, for tools and tests ----

function rotl32(value: number, shift: number): number {
  return ((value << shift) | (value >>> (32 - shift))) >>> 0;
}

/** Linux's jhash (lookup3, include/linux/jhash.h) over `key`. */
export function jhash(key: Uint8Array, seed: number): number {
  let a = (0xdeadbeef + key.length + seed) >>> 0;
  let b = a;
  let c = a;
  const word = (offset: number, count: number) => {
    let value = 0;
    for (let index = 0; index < count; index++) value |= key[offset + index]! << (8 * index);
    return value >>> 0;
  };
  let offset = 0;
  let length = key.length;
  while (length > 12) {
    a = (a + word(offset, 4)) >>> 0;
    b = (b + word(offset + 4, 4)) >>> 0;
    c = (c + word(offset + 8, 4)) >>> 0;
    a = (a - c) >>> 0; a = (a ^ rotl32(c, 4)) >>> 0; c = (c + b) >>> 0;
    b = (b - a) >>> 0; b = (b ^ rotl32(a, 6)) >>> 0; a = (a + c) >>> 0;
    c = (c - b) >>> 0; c = (c ^ rotl32(b, 8)) >>> 0; b = (b + a) >>> 0;
    a = (a - c) >>> 0; a = (a ^ rotl32(c, 16)) >>> 0; c = (c + b) >>> 0;
    b = (b - a) >>> 0; b = (b ^ rotl32(a, 19)) >>> 0; a = (a + c) >>> 0;
    c = (c - b) >>> 0; c = (c ^ rotl32(b, 4)) >>> 0; b = (b + a) >>> 0;
    length -= 12;
    offset += 12;
  }
  if (length === 0) return c;
  a = (a + word(offset, Math.min(length, 4))) >>> 0;
  if (length > 4) b = (b + word(offset + 4, Math.min(length - 4, 4))) >>> 0;
  if (length > 8) c = (c + word(offset + 8, length - 8)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rotl32(b, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rotl32(c, 11)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rotl32(a, 25)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rotl32(b, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rotl32(c, 4)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rotl32(a, 14)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rotl32(b, 24)) >>> 0;
  return c;
}

/** The bucket nftables puts a client in: `jhash ip saddr [. sport] mod N seed S`. The
 *  kernel hashes its registers: the address (4 bytes, network order) and, for
 *  srcip+srcport, the port (2 bytes, network order, padded with zeros to 4), and scales
 *  the 32-bit hash into [0, N) with (hash × N) >> 32 rather than a remainder. */
export function kernelBucket(sourceIp: string, sourcePort: number | null, bucketCount: number, hashSeed: number): number {
  assert(isIPv4(sourceIp), `kernelBucket: ${sourceIp} is not IPv4`);
  const key = new Uint8Array(sourcePort === null ? 4 : 8);
  sourceIp.split(".").forEach((octet, index) => (key[index] = Number(octet)));
  if (sourcePort !== null) {
    key[4] = sourcePort >>> 8;
    key[5] = sourcePort & 0xff;
  }
  return Number((BigInt(jhash(key, hashSeed)) * BigInt(bucketCount)) >> 32n);
}

// ---- The driver ----

export class RealFilterPort implements FilterPort {
  readonly options: RealFilterOptions;
  readonly #native: NativeBinding;
  readonly #nft: NftContext;
  readonly #log: (line: string) => void;
  #responder: ArpResponder | null = null;
  /** False after a failed apply(): renewals stop, so the stale filter lapses. */
  #renewable = false;
  #closed = false;

  /** Creates the module's tables (nothing accepted yet) and removes a VIP left on `lo` by
   *  a previous process. Throws FilterSetupError when that is impossible. */
  constructor(options: RealFilterOptions) {
    const problem = invalidOptions(options);
    if (problem !== null) throw new FilterSetupError("FILTER_INVALID_OPTIONS", options.module, problem);
    this.options = options;
    this.#log = options.log ?? (() => {});
    this.#native = nativeBinding();
    this.#nft = new this.#native.NftContext();
    try {
      this.#nft.run(setupCommands(options) + applyCommands(options, emptySettings(options.bucketCount), null));
    } catch (error) {
      this.#nft.close();
      const message = (error as Error).message;
      const busy = /Operation not permitted/.test(message);
      throw new FilterSetupError(
        busy ? "FILTER_TABLE_BUSY" : "FILTER_SETUP_FAILED",
        options.module,
        busy
          ? `the nftables tables ${tableName(options.module)} belong to another running process (is a second node service running?): stop it first. ${message}`
          : `cannot create the nftables tables of module ${options.module}: ${message}`,
      );
    }
    for (const vip of options.vips) this.#deleteAddress(vip);
  }

  apply(settings: FilterSettings): void {
    assert(settings.owned.bucketCount === this.options.bucketCount, "apply: bucket sets of another size");
    if (this.#closed) return;
    try {
      this.#nft.run(applyCommands(this.options, settings, settings.leaseMs));
      this.#renewable = true;
    } catch (error) {
      // The kernel keeps the previous filter, which the core no longer wants: let it lapse.
      this.#renewable = false;
      this.#log(`filter apply failed for module ${this.options.module}, its lease will lapse: ${(error as Error).message}`);
    }
  }

  renew(leaseMs: number): void {
    if (this.#closed || !this.#renewable) return;
    try {
      this.#nft.run(leaseCommands(this.options, leaseMs));
    } catch (error) {
      this.#log(`filter lease renewal failed for module ${this.options.module}: ${(error as Error).message}`);
    }
  }

  /** "draining" keeps the addresses on lo (sockets of connections accepted earlier can
   *  still send their answers) and stops answering ARP. */
  setVip(state: VipState): void {
    if (this.#closed) return;
    if (state === "up") this.#vipUp();
    else if (state === "draining") this.#vipDrain();
    else this.#vipDown();
  }

  /** Removes the VIP and the tables, and frees the netlink socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#vipDown();
    try {
      this.#nft.run(teardownCommands(this.options));
    } catch (error) {
      this.#log(`filter teardown of module ${this.options.module}: ${(error as Error).message}; closing the socket removes the tables anyway`);
    }
    this.#nft.close();
    this.#closed = true;
  }

  /** The module's tables as nft prints them (for `tandem state` and tests). */
  listTables(): string {
    assert(!this.#closed, "listTables after close");
    const table = tableName(this.options.module);
    // One command per run: libnftables 1.0.6 builds its cache for the first list only.
    const families = this.options.virtualMac === null ? ["ip"] : ["ip", "netdev"];
    return families.map((family) => this.#nft.run(`list table ${family} ${table}`)).join("");
  }

  arpStats(): ReturnType<ArpResponder["stats"]> | null {
    return this.#responder?.stats() ?? null;
  }

  #vipUp(): void {
    const { interfaceName, vips } = this.options;
    try {
      // VIP on lo: the kernel must never answer ARP for it itself (arp_ignore=1), nor use
      // it as the sender of its own ARP requests (arp_announce=2); the responder answers.
      setSysctl(`net/ipv4/conf/${interfaceName}/arp_ignore`, "1");
      setSysctl(`net/ipv4/conf/${interfaceName}/arp_announce`, "2");
      const ownMac = this.#native.interfaceMac(interfaceName);
      const senderMac = this.options.virtualMac ?? ownMac;
      for (const vip of vips) this.#addAddress(vip);
      this.#responder?.close();
      this.#responder = new this.#native.ArpResponder(interfaceName, vips, senderMac);
      for (const vip of vips) this.#native.sendArp(gratuitousArp(interfaceName, ownMac, senderMac, vip));
      this.#log(`VIP ${vips.join(" ")} up on lo, ARP on ${interfaceName} answered with ${senderMac}`);
    } catch (error) {
      this.#log(`VIP up failed for module ${this.options.module}: ${(error as Error).message}`);
    }
  }

  #vipDrain(): void {
    this.#responder?.close();
    this.#responder = null;
    this.#log(`VIP ${this.options.vips.join(" ")} draining: kept on lo for the application's open connections, ARP no longer answered`);
  }

  #vipDown(): void {
    this.#responder?.close();
    this.#responder = null;
    for (const vip of this.options.vips) this.#deleteAddress(vip);
  }

  #addAddress(vip: string): void {
    try {
      this.#native.addressAdd("lo", vip, 32);
    } catch (error) {
      if ((error as NativeError).code !== "EEXIST") throw error;
    }
  }

  #deleteAddress(vip: string): void {
    try {
      this.#native.addressDelete("lo", vip, 32);
    } catch (error) {
      if ((error as NativeError).code !== "EADDRNOTAVAIL") this.#log(`cannot remove VIP ${vip} from lo: ${(error as Error).message}`);
    }
  }
}

function emptySettings(bucketCount: number): Pick<FilterSettings, "owned" | "lingering" | "reset"> {
  const empty = BucketSet.empty(bucketCount);
  return { owned: empty, lingering: empty, reset: empty };
}

/** A gratuitous ARP request announcing `vip` at `senderMac`, sent from the node's own MAC. */
export function gratuitousArp(interfaceName: string, ownMac: string, senderMac: string, vip: string) {
  return {
    interface: interfaceName,
    operation: "request" as const,
    frameSource: ownMac,
    frameDestination: "ff:ff:ff:ff:ff:ff",
    senderMac,
    senderIp: vip,
    targetMac: "00:00:00:00:00:00",
    targetIp: vip,
  };
}

function setSysctl(path: string, value: string): void {
  const file = `/proc/sys/${path}`;
  if (readFileSync(file, "utf8").trim() !== value) writeFileSync(file, value);
}
