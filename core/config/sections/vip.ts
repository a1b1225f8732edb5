// <vip>: the module's virtual addresses and, in a farm, how their traffic is balanced.
// A pure module: it performs no I/O.
//
// A mirror puts its addresses on a `<real_interface>` of the primary; a farm puts them on
// a `<virtual_interface>` of every UP node, and `<loadbalancing_list>` says which node
// accepts which client (../../../../shared/userconfig.md). Defaults are SafeKit's:
// tcpreset, check and arpreroute off, arpinterval 60 s, arpelapse 1200 s (bare numbers in
// s), proto tcp, host power 1.
//
// Decisions where the summary is silent:
// - `where` defaults to one_side_alias in a mirror (the address is set on the primary
//   only) and to alias in a farm (on every UP node).
// - `<virtual_interface type>` defaults to vmac_invisible. Its `addr` (the virtual MAC) may
//   be left out: null, derived later from the address as SafeKit does (5a:fe + the IPv4
//   address in hex). With vmac_directed the nodes answer ARP with their own MACs, so an
//   `addr` there is ignored with a warning.
// - A rule's `filter` defaults to on_addr: client affinity never breaks a session.
//   `proto="arp"` has no port (stored as 0) and can only be balanced on the address.
// - Addresses are parsed strictly (no leading zeros in IPv4, which inet_aton would read as
//   octal; no IPv6 zone) and stored in canonical form (RFC 5952 for IPv6), so the same
//   address written twice compares equal. A virtual address must be one clients can
//   reach: not unspecified, loopback, multicast or broadcast.
// - A farm `<vip>` without `<loadbalancing_list>` balances nothing: a warning.
//
// This file also holds the small helpers every section reader shares (strict IP address
// grammar, locating an attribute read earlier, reading an attribute through a grammar).

import { assert } from "../../assert.ts";
import { farmNodeCountMax, type BalanceMode } from "../../farm-config.ts";
import { weightMax } from "../../ownership.ts";
import type { LoadBalancingGroup, LoadBalancingRule, ModuleMode, VipInterface, VipSection, VirtualAddr } from "../module-config.ts";
import type { ElementReader } from "../reader.ts";
import { expandMacros, type Parsed } from "../values.ts";
import type { XmlAttribute } from "../xml-tree.ts";

export const vipInterfaceCountMax = 16;
export const virtualAddrCountMax = 64;
export const groupCountMax = 16;
export const ruleCountMax = 256;

// ---- Helpers shared by the section readers ----

export interface IpAddress {
  readonly family: 4 | 6;
  /** IPv4 dotted quad as written; IPv6 in RFC 5952 form (lowercase, longest zero run as ::). */
  readonly canonical: string;
  /** 4 octets or 8 16-bit groups. */
  readonly parts: readonly number[];
}

const ipExpected = "an IPv4 address such as 192.168.1.10 (no leading zeros) or an IPv6 address such as fd00::10";

/** A strict IPv4 or IPv6 address: no leading zeros in IPv4, no zone, no brackets, no prefix length. */
export function parseIpAddress(text: string): Parsed<IpAddress> {
  const trimmed = text.trim();
  const v4 = trimmed.includes(":") ? null : parseIpv4(trimmed);
  if (v4 !== null) return { ok: true, value: { family: 4, canonical: v4.join("."), parts: v4 } };
  const v6 = trimmed.includes(":") ? parseIpv6(trimmed) : null;
  if (v6 !== null) return { ok: true, value: { family: 6, canonical: formatIpv6(v6), parts: v6 } };
  return { ok: false, expected: ipExpected };
}

function parseIpv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => /^(0|[1-9][0-9]{0,2})$/.test(part))) return null;
  const octets = parts.map(Number);
  return octets.every((octet) => octet <= 255) ? octets : null;
}

function parseIpv6(text: string): number[] | null {
  if (text.length > 45) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const compressed = halves.length === 2;
  const head = hexGroups(halves[0]!, !compressed);
  const tail = compressed ? hexGroups(halves[1]!, true) : [];
  if (head === null || tail === null) return null;
  const count = head.length + tail.length;
  if (compressed ? count > 7 : count !== 8) return null;
  const groups = [...head, ...new Array<number>(8 - count).fill(0), ...tail];
  assert(groups.length === 8, "an IPv6 address has eight groups");
  return groups;
}

/** Colon-separated groups of 1–4 hex digits; the last may be a dotted IPv4 address (two groups). */
function hexGroups(text: string, ipv4Last: boolean): number[] | null {
  if (text === "") return [];
  const words = text.split(":");
  const groups: number[] = [];
  for (const [index, word] of words.entries()) {
    if (/^[0-9a-fA-F]{1,4}$/.test(word)) groups.push(parseInt(word, 16));
    else if (ipv4Last && index === words.length - 1 && parseIpv4(word) !== null) {
      const [a, b, c, d] = parseIpv4(word)!;
      groups.push(a! * 256 + b!, c! * 256 + d!);
    } else return null;
  }
  return groups;
}

function formatIpv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; start++) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length > bestLength) [bestStart, bestLength] = [start, length];
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/** Why clients could not reach this address, or null when a virtual address may use it. */
export function unreachableReason(ip: IpAddress): string | null {
  const first = ip.parts[0];
  if (ip.family === 4) {
    if (first === 0) return "in 0.0.0.0/8, which means this host, not an address";
    if (first === 127) return "a loopback address";
    if (first! >= 224 && first! <= 239) return "a multicast address";
    if (ip.parts.every((part) => part === 255)) return "the broadcast address";
    return null;
  }
  if (ip.parts.every((part) => part === 0)) return "the unspecified address";
  if (ip.parts.slice(0, 7).every((part) => part === 0) && ip.parts[7] === 1) return "the loopback address";
  if (first! >= 0xff00) return "a multicast address";
  return null;
}

/** The attribute as written with macros expanded, without reporting: to locate a problem
 *  found after the attribute was read through an accessor. */
export function located(reader: ElementReader, name: string): XmlAttribute | undefined {
  const attribute = reader.element.attributes.find((each) => each.name === name);
  if (attribute === undefined) return undefined;
  return { ...attribute, value: expandMacros(attribute.value, reader.context.macros, reader.context.environment).text };
}

/** Reads an attribute through `parse`; reports `expected …` at the attribute, or a missing
 *  required attribute. Undefined when absent or invalid. */
export function readParsed<T>(reader: ElementReader, name: string, parse: (text: string) => Parsed<T>, options: { required?: boolean } = {}): { readonly value: T; readonly attribute: XmlAttribute } | undefined {
  const attribute = reader.raw(name);
  if (attribute === undefined) {
    if (options.required === true) reader.report("error", "CONFIG_MISSING_ATTRIBUTE", `attribute ${name} is required`);
    return undefined;
  }
  const parsed = parse(attribute.value);
  if (parsed.ok) return { value: parsed.value, attribute };
  reader.report("error", "CONFIG_INVALID_VALUE", `expected ${parsed.expected}`, attribute);
  return undefined;
}

/** A virtual MAC: six hex pairs, locally administered and unicast (second hex digit 2, 6, a or e). */
export function parseVirtualMac(text: string): Parsed<string> {
  const mac = text.trim().toLowerCase();
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) return { ok: false, expected: "a MAC address of six hex pairs separated by colons, such as 5a:fe:c0:a8:01:de" };
  const first = parseInt(mac.slice(0, 2), 16);
  const rule = "a virtual MAC must be a locally administered unicast address, whose second hex digit is 2, 6, a or e";
  if ((first & 1) !== 0) return { ok: false, expected: `a unicast MAC: ${mac} is multicast (its first octet is odd), and ${rule}` };
  if ((first & 2) === 0) return { ok: false, expected: `a locally administered MAC: ${mac} is globally administered (a vendor's address, which could clash with a real card), and ${rule}` };
  return { ok: true, value: mac };
}

// ---- <vip> ----

interface VipScope {
  readonly mode: ModuleMode;
  /** Canonical forms of the module's virtual addresses seen so far. */
  readonly addrs: Set<string>;
  /** `proto/port` of the rules seen so far, across groups. */
  readonly rules: Set<string>;
}

/** Reads `<vip>` for a module of `mode`; every problem is recorded in the reader's context. */
export function readVip(vip: ElementReader, mode: ModuleMode): VipSection {
  if (mode === "light") vip.report("error", "CONFIG_WRONG_MODE", "a light module runs on one node and has no virtual address; remove <vip>");
  const scope: VipScope = { mode, addrs: new Set(), rules: new Set() };
  const tcpReset = vip.bool("tcpreset", false);
  const list = vip.child("interface_list");
  const interfaces = list === undefined ? [] : readInterfaceList(list, scope);
  if (interfaces.length === 0) vip.report("warning", "CONFIG_NO_VIP", "<vip> declares no <interface>: the module has no virtual address");
  const groups = readLoadBalancingList(vip, scope);
  vip.finish();
  assert(scope.addrs.size <= virtualAddrCountMax, "readVirtualAddr admits at most virtualAddrCountMax addresses");
  assert(groups.length <= groupCountMax, "readLoadBalancingList keeps at most groupCountMax groups");
  return { tcpReset, interfaces, groups };
}

function readInterfaceList(list: ElementReader, scope: VipScope): VipInterface[] {
  const interfaces: VipInterface[] = [];
  for (const [index, each] of list.children("interface").entries()) {
    if (index >= vipInterfaceCountMax) each.report("error", "CONFIG_TOO_MANY", `a module has at most ${vipInterfaceCountMax} <interface> elements; this is number ${index + 1}`);
    const read = readInterface(each, scope);
    if (index < vipInterfaceCountMax) interfaces.push(read);
  }
  list.finish();
  return interfaces;
}

function readInterface(element: ElementReader, scope: VipScope): VipInterface {
  const check = element.bool("check", false);
  const arpReroute = element.bool("arpreroute", false);
  const arpIntervalMs = element.time("arpinterval", "s", 60_000);
  if (arpIntervalMs === 0) element.report("error", "CONFIG_INVALID_VALUE", "expected at least 1s: gratuitous ARP is repeated every arpinterval", located(element, "arpinterval"));
  const arpElapseMs = element.time("arpelapse", "s", 1_200_000);
  const real = element.child("real_interface");
  const virtual = element.child("virtual_interface");
  if (real !== undefined && scope.mode === "farm") {
    real.report("error", "CONFIG_WRONG_MODE", `<real_interface> is for mirror modules; a farm module needs a <virtual_interface type="vmac_invisible|vmac_directed">, through which every UP node receives the virtual address's traffic`);
  }
  if (virtual !== undefined && scope.mode !== "farm") {
    virtual.report("error", "CONFIG_WRONG_MODE", `<virtual_interface> is for farm modules; a ${scope.mode} module needs a <real_interface>: its virtual address lives on the primary's own interface`);
  }
  if (real === undefined && virtual === undefined) {
    const needed = scope.mode === "farm" ? `<virtual_interface type="vmac_invisible|vmac_directed">` : "<real_interface>";
    element.report("error", "CONFIG_MISSING_ELEMENT", `an <interface> needs a ${needed} holding its <virtual_addr> elements`);
  }
  const realInterface = real === undefined ? null : { virtualAddrs: readVirtualAddrs(real, scope) };
  const virtualInterface = virtual === undefined ? null : readVirtualInterface(virtual, scope);
  real?.finish();
  element.finish();
  return { check, arpReroute, arpIntervalMs, arpElapseMs, realInterface, virtualInterface };
}

function readVirtualInterface(element: ElementReader, scope: VipScope): NonNullable<VipInterface["virtualInterface"]> {
  const type = element.enumeration("type", ["vmac_invisible", "vmac_directed"], "vmac_invisible");
  let mac: string | null = null;
  if (type === "vmac_invisible") mac = readParsed(element, "addr", parseVirtualMac)?.value ?? null;
  else if (located(element, "addr") !== undefined) {
    element.report("warning", "CONFIG_IGNORED", "with vmac_directed every node answers ARP with its own MAC; this virtual MAC is ignored", element.raw("addr"));
  }
  const virtualAddrs = readVirtualAddrs(element, scope);
  element.finish();
  return { type, mac, virtualAddrs };
}

function readVirtualAddrs(parent: ElementReader, scope: VipScope): VirtualAddr[] {
  const elements = parent.children("virtual_addr");
  if (elements.length === 0) parent.report("error", "CONFIG_MISSING_ELEMENT", `<${parent.name}> needs at least one <virtual_addr addr="…"/>`);
  const addrs: VirtualAddr[] = [];
  for (const element of elements) {
    const addr = readVirtualAddr(element, scope);
    if (addr !== null) addrs.push(addr);
    element.finish();
  }
  return addrs;
}

function readVirtualAddr(element: ElementReader, scope: VipScope): VirtualAddr | null {
  const read = readParsed(element, "addr", parseIpAddress, { required: true });
  const where = element.enumeration("where", ["one_side_alias", "alias", "main"], scope.mode === "farm" ? "alias" : "one_side_alias");
  const check = element.bool("check", false);
  if (read === undefined) return null;
  const addr = read.value.canonical;
  const reason = unreachableReason(read.value);
  if (reason !== null) {
    element.report("error", "CONFIG_INVALID_VALUE", `${addr} is ${reason}: a virtual address must be one that clients can reach`, read.attribute);
  } else if (scope.addrs.has(addr)) {
    element.report("error", "CONFIG_DUPLICATE", `virtual address ${addr} is declared twice in this module`, read.attribute);
  } else if (scope.addrs.size >= virtualAddrCountMax) {
    element.report("error", "CONFIG_TOO_MANY", `a module has at most ${virtualAddrCountMax} virtual addresses`, read.attribute);
  } else {
    scope.addrs.add(addr);
  }
  return { addr, where, check };
}

// ---- <loadbalancing_list> ----

function readLoadBalancingList(vip: ElementReader, scope: VipScope): LoadBalancingGroup[] {
  const list = vip.child("loadbalancing_list");
  if (list === undefined) {
    if (scope.mode === "farm" && scope.addrs.size > 0) vip.report("warning", "CONFIG_NO_RULES", "a farm <vip> without <loadbalancing_list> balances no traffic among the nodes");
    return [];
  }
  // Read in full even in the wrong mode, so that one pass reports every problem.
  if (scope.mode !== "farm") {
    list.report("error", "CONFIG_WRONG_MODE", `<loadbalancing_list> is for farm modules: a ${scope.mode} module's virtual address is on one node, so there is nothing to balance`);
  }
  const elements = list.children("group");
  const groups: LoadBalancingGroup[] = [];
  for (const [index, element] of elements.entries()) {
    if (index >= groupCountMax) element.report("error", "CONFIG_TOO_MANY", `a module has at most ${groupCountMax} load-balancing groups; this is group ${index + 1}`);
    const group = readGroup(element, scope);
    if (groups.some((other) => other.name === group.name && group.name !== "")) {
      element.report("error", "CONFIG_DUPLICATE", `group ${group.name} is declared twice`, located(element, "name"));
    }
    if (index < groupCountMax) groups.push(group);
    element.finish();
  }
  list.finish();
  return groups;
}

function readGroup(group: ElementReader, scope: VipScope): LoadBalancingGroup {
  const name = group.string("name", "", { required: true, nonEmpty: true }).trim();
  const hosts = readHosts(group);
  const rules: LoadBalancingRule[] = [];
  const elements = group.children("rule");
  for (const element of elements) {
    const rule = readRule(element, scope);
    if (rule !== null) rules.push(rule);
    element.finish();
  }
  if (elements.length === 0) group.report("warning", "CONFIG_NO_RULES", `group ${name} has no <rule>: it balances no traffic`);
  return { name, hosts, rules };
}

function readHosts(group: ElementReader): { name: string; power: number }[] {
  const cluster = group.child("cluster");
  if (cluster === undefined) {
    group.report("error", "CONFIG_MISSING_ELEMENT", `a <group> needs a <cluster> of <host name="…" power="…"/>: the nodes that share its traffic`);
    return [];
  }
  const hosts: { name: string; power: number }[] = [];
  const elements = cluster.children("host");
  if (elements.length === 0) cluster.report("error", "CONFIG_MISSING_ELEMENT", `<cluster> needs at least one <host name="…"/>`);
  for (const [index, element] of elements.entries()) {
    const name = element.string("name", "", { required: true, nonEmpty: true }).trim();
    const power = element.int("power", 1, 0, weightMax);
    if (hosts.some((host) => host.name === name)) element.report("error", "CONFIG_DUPLICATE", `host ${name} is listed twice in this group`, located(element, "name"));
    else if (index >= farmNodeCountMax) element.report("error", "CONFIG_TOO_MANY", `a farm has at most ${farmNodeCountMax} nodes; this is host ${index + 1}`);
    else if (name !== "") hosts.push({ name, power });
    element.finish();
  }
  if (hosts.length > 0 && hosts.every((host) => host.power === 0)) {
    cluster.report("warning", "CONFIG_NO_TRAFFIC", "every host has power 0: no node of this group takes traffic");
  }
  cluster.finish();
  return hosts;
}

const filterModes: Readonly<Record<LoadBalancingRule["filter"], BalanceMode | null>> = { on_addr: "srcip", on_port: "srcip+srcport", on_ipid: null };

function readRule(rule: ElementReader, scope: VipScope): LoadBalancingRule | null {
  const virtualAddr = readRuleAddr(rule, scope);
  const proto = rule.enumeration("proto", ["tcp", "udp", "arp"], "tcp");
  const port = proto === "arp" ? readArpPort(rule) : rule.int("port", 0, 1, 65_535, { required: true });
  const filter = readFilter(rule, proto);
  if (virtualAddr === null || filter === null || (port === 0 && proto !== "arp")) return null;
  const key = proto === "arp" ? "arp" : `${proto}/${port}`;
  if (scope.rules.has(key)) {
    const what = proto === "arp" ? "ARP" : `${proto} port ${port}`;
    rule.report("error", "CONFIG_DUPLICATE", `a second rule for ${what} in this module: one rule decides which node accepts a packet`, located(rule, proto === "arp" ? "proto" : "port"));
  } else if (scope.rules.size >= ruleCountMax) {
    rule.report("error", "CONFIG_TOO_MANY", `a module has at most ${ruleCountMax} load-balancing rules`);
  }
  scope.rules.add(key);
  return { virtualAddr, port, proto, filter, mode: filterModes[filter] };
}

function readRuleAddr(rule: ElementReader, scope: VipScope): string | null {
  const attribute = rule.raw("virtual_addr");
  if (attribute === undefined || attribute.value.trim() === "*") return "*";
  const parsed = parseIpAddress(attribute.value);
  if (!parsed.ok) {
    rule.report("error", "CONFIG_INVALID_VALUE", `expected * (every virtual address of the module) or ${parsed.expected}`, attribute);
    return null;
  }
  if (!scope.addrs.has(parsed.value.canonical)) {
    const known = [...scope.addrs].join(", ") || "none";
    rule.report("error", "CONFIG_UNKNOWN_VIP", `${parsed.value.canonical} is not a virtual address of this module (its <virtual_addr> elements: ${known})`, attribute);
    return null;
  }
  return parsed.value.canonical;
}

/** ARP has no port: 0, and a port written anyway is ignored with a warning. */
function readArpPort(rule: ElementReader): number {
  const attribute = rule.raw("port");
  if (attribute !== undefined) rule.report("warning", "CONFIG_IGNORED", "ARP has no port; this port is ignored", attribute);
  return 0;
}

function readFilter(rule: ElementReader, proto: LoadBalancingRule["proto"]): LoadBalancingRule["filter"] | null {
  const attribute = rule.raw("filter");
  const filter = attribute === undefined ? "on_addr" : attribute.value.trim();
  if (filter !== "on_addr" && filter !== "on_port" && filter !== "on_ipid") {
    rule.report("error", "CONFIG_INVALID_VALUE", "expected on_addr, on_port or on_ipid", attribute);
    return null;
  }
  if (filter === "on_ipid" && proto !== "udp") {
    rule.report("error", "CONFIG_INVALID_VALUE", `on_ipid balances UDP datagrams by IP id; it needs proto="udp", not ${proto}`, attribute);
    return null;
  }
  if (filter === "on_port" && proto === "arp") {
    rule.report("error", "CONFIG_INVALID_VALUE", "ARP has no port: balance ARP with on_addr", attribute);
    return null;
  }
  return filter;
}
