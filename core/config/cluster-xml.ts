// cluster.xml to a typed, frozen ClusterConfig: the cluster's nodes and their address on
// each network, with every problem located. A pure module: the file's text and the
// environment come in as arguments.
//
// The form of SafeKit 7.2 and later (../../shared/userconfig.md):
//   <cluster><lans><lan name="default"><node name="s1" addr="10.0.0.10"/>…</lan>…</lans></cluster>
// Before 7.2 a module listed its own nodes: `<server addr>` under each `<heartbeat>` of
// `<heart>` (mirror) and `<node name addr>` under each `<lan>` of `<farm>` (farm). A
// cluster.xml holding those elements (`<cluster><heart>…</heart><farm>…</farm></cluster>`,
// as copied from such a module) is read into the same ClusterConfig. A file with both
// `<lans>` and `<heart>`/`<farm>` is an error: which list would be the truth is unclear.
//
// Decisions:
// - An address is an IPv4 or IPv6 literal, never a host name: tandem does not resolve
//   names, so that a DNS answer cannot change who is in the cluster. Addresses are stored
//   in canonical form (RFC 5952 for IPv6), so one address written two ways compares equal.
//   Loopback addresses are allowed (a demonstration cluster on one host); unspecified,
//   multicast and broadcast addresses are not a node's own address and are refused.
// - A node may be on some lans only (SafeKit allows it). Within a lan, node names and
//   addresses are unique; across lans, one address cannot belong to two nodes.
// - Node names have no spaces or commas: commands name nodes in lists (`-H "s1,s2"`).
// - Pre-7.2 `<server>` elements may carry no name. They are matched by position: the
//   i-th `<server>` of every `<heartbeat>` is the same node, named by the i-th `<server>`
//   of the first `<heartbeat>` (its `name`, else its address there). A heartbeat whose
//   server count differs from the first's cannot be matched that way: unnamed servers in
//   it are an error asking for names. A heartbeat and a farm lan with the same name are
//   one network: their node lists are merged.
// - Any error makes the result null: a cluster whose membership is in doubt is not run.

import { assert } from "../assert.ts";
import { farmNodeCountMax } from "../farm-config.ts";
import type { ClusterConfig, ClusterLan } from "./module-config.ts";
import { hasErrors, type ConfigProblem } from "./problems.ts";
import { ElementReader, type ReadContext } from "./reader.ts";
import { located, parseIpAddress, type IpAddress } from "./sections/vip.ts";
import { parseXml } from "./xml-tree.ts";

export const lanCountMax = 16;
/** Distinct nodes in a cluster: as many as a farm may have. */
export const clusterNodeCountMax = farmNodeCountMax;

export interface ClusterXmlResult {
  /** Null when the file has an error; problems say why. */
  readonly cluster: ClusterConfig | null;
  readonly problems: ConfigProblem[];
}

interface NodeDraft {
  readonly name: string;
  /** Canonical address, or null when it was missing or invalid (already reported). */
  readonly addr: string | null;
  readonly reader: ElementReader;
}

interface LanDraft {
  readonly name: string;
  readonly reader: ElementReader;
  readonly nodes: NodeDraft[];
}

export function readClusterXml(file: string, text: string, environment: Readonly<Record<string, string | undefined>> = {}): ClusterXmlResult {
  const document = parseXml(file, text);
  const problems: ConfigProblem[] = [...document.problems];
  if (document.root === null) return { cluster: null, problems };
  const context: ReadContext = { file, problems, macros: new Map(), environment, unsafeIfIgnored: new Map() };
  const root = new ElementReader(context, document.root);
  if (root.name !== "cluster") {
    const hint = root.name === "safe" ? " (a <safe> root is a module's userconfig.xml)" : "";
    root.report("error", "CONFIG_WRONG_ROOT", `the root element of cluster.xml is <cluster>, not <${root.name}>${hint}`);
    return { cluster: null, problems };
  }
  const lans = readForms(root);
  root.finish();
  checkLans(lans);
  if (hasErrors(problems)) return { cluster: null, problems };
  return { cluster: deepFreeze(build(lans)), problems };
}

/** Reads whichever form the file uses; both forms in one file are an error. */
function readForms(root: ElementReader): LanDraft[] {
  const lans = root.child("lans");
  const heart = root.child("heart");
  const farm = root.child("farm");
  const current = lans === undefined ? [] : readLans(lans);
  const legacy = mergeLegacy([...(heart === undefined ? [] : readLegacyHeart(heart)), ...(farm === undefined ? [] : readLegacyFarm(farm))]);
  for (const old of [heart, farm]) {
    if (old === undefined || lans === undefined) continue;
    old.report(
      "error",
      "CONFIG_MIXED_FORMS",
      `this file mixes two forms of cluster.xml: <lans> (SafeKit 7.2 and later) and <${old.name}> (before 7.2); use one form per file, preferably by moving these nodes into <lans>`,
    );
  }
  if (lans === undefined && heart === undefined && farm === undefined) {
    root.report("error", "CONFIG_MISSING_ELEMENT", `<cluster> needs <lans>, with one <lan name="…"> per network listing its <node name="…" addr="…"/>`);
  }
  return lans === undefined ? legacy : current;
}

// ---- The form of SafeKit 7.2 and later ----

function readLans(lans: ElementReader): LanDraft[] {
  const readers = lans.children("lan");
  if (readers.length === 0) lans.report("error", "CONFIG_MISSING_ELEMENT", `<lans> needs at least one <lan name="…">, listing the nodes on that network`);
  const drafts = readers.map((lan) => {
    const name = lan.string("name", "", { required: true, nonEmpty: true }).trim();
    const nodes = lan.children("node").map(readNode);
    lan.finish();
    return { name, reader: lan, nodes };
  });
  for (const [index, draft] of drafts.entries()) {
    const first = drafts.findIndex((other) => other.name === draft.name);
    if (draft.name !== "" && first < index) draft.reader.report("error", "CONFIG_DUPLICATE", `lan ${draft.name} is declared twice; list all of its nodes in one <lan>`, located(draft.reader, "name"));
  }
  return drafts;
}

/** `<node name addr/>`, in `<lan>` (7.2 form) or in the farm `<lan>` (pre-7.2 form). */
function readNode(node: ElementReader): NodeDraft {
  const written = node.string("name", "", { required: true });
  const name = located(node, "name") === undefined ? "" : readNodeName(node, written);
  const addr = readAddress(node);
  node.finish();
  return { name, addr, reader: node };
}

/** A node name as written, trimmed; "" (reported) when it cannot name a node. */
function readNodeName(reader: ElementReader, written: string): string {
  const name = written.trim();
  if (name === "") reader.report("error", "CONFIG_INVALID_VALUE", "expected a non-empty value", located(reader, "name"));
  if (!/[\s,]/.test(name)) return name;
  reader.report("error", "CONFIG_INVALID_VALUE", `expected a node name without spaces or commas: commands name nodes in lists such as -H "s1,s2"`, located(reader, "name"));
  return "";
}

/** The required `addr`, canonical; null (reported) when missing or not a node's IP address. */
function readAddress(reader: ElementReader): string | null {
  const attribute = reader.raw("addr");
  if (attribute === undefined) {
    reader.report("error", "CONFIG_MISSING_ATTRIBUTE", "attribute addr is required");
    return null;
  }
  const parsed = parseIpAddress(attribute.value);
  if (!parsed.ok) {
    const hostName = /[A-Za-z]/.test(attribute.value) && /^\s*[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?\s*$/.test(attribute.value);
    const why = hostName ? ", not a host name: tandem does not resolve names, so that a DNS answer cannot change who is in the cluster" : "";
    reader.report("error", "CONFIG_INVALID_VALUE", `expected an IPv4 or IPv6 address${why}`, attribute);
    return null;
  }
  const reason = notNodeAddress(parsed.value);
  if (reason === null) return parsed.value.canonical;
  reader.report("error", "CONFIG_INVALID_VALUE", `expected a node's own address: ${parsed.value.canonical} is ${reason}`, attribute);
  return null;
}

/** Why no node can have this address, or null. Loopback is allowed for one-host clusters. */
function notNodeAddress(ip: IpAddress): string | null {
  const first = ip.parts[0]!;
  if (ip.family === 4) {
    if (first === 0) return "in 0.0.0.0/8, which means this host, not an address";
    if (first >= 224 && first <= 239) return "a multicast address";
    if (ip.parts.every((part) => part === 255)) return "the broadcast address";
    return null;
  }
  if (ip.parts.every((part) => part === 0)) return "the unspecified address";
  if (first >= 0xff00) return "a multicast address";
  return null;
}

// ---- The form before SafeKit 7.2 ----

/** `<heart><heartbeat name><server addr [name]/>…</heartbeat>…</heart>`. */
function readLegacyHeart(heart: ElementReader): LanDraft[] {
  const heartbeats = heart.children("heartbeat");
  if (heartbeats.length === 0) heart.report("error", "CONFIG_MISSING_ELEMENT", `a pre-7.2 <heart> lists each network as <heartbeat name="…"> holding one <server addr="…"/> per node`);
  let firstNames: string[] | null = null;
  const drafts: LanDraft[] = [];
  for (const heartbeat of heartbeats) {
    const name = heartbeat.string("name", "", { required: true, nonEmpty: true }).trim();
    const servers = heartbeat.children("server").map((server) => {
      const written = server.optionalString("name");
      const explicit = written === undefined ? undefined : readNodeName(server, written);
      return { server, explicit, addr: readAddress(server) };
    });
    firstNames ??= servers.map((each) => each.explicit ?? each.addr ?? "");
    const positional = servers.length === firstNames.length;
    if (!positional && servers.some((each) => each.explicit === undefined)) {
      heartbeat.report(
        "error",
        "CONFIG_AMBIGUOUS_NODE",
        `this <heartbeat> lists ${servers.length} ${servers.length === 1 ? "server" : "servers"} and the first one lists ${firstNames.length}, so its servers cannot be matched to nodes by position; give each <server> a name="…"`,
      );
    }
    const nodes = servers.map(({ server, explicit, addr }, index) => ({ name: explicit ?? (positional ? firstNames![index]! : ""), addr, reader: server }));
    for (const each of servers) each.server.finish();
    heartbeat.finish();
    drafts.push({ name, reader: heartbeat, nodes });
  }
  heart.finish();
  return withoutDuplicateLans(drafts, "<heartbeat>");
}

/** `<farm><lan name><node name addr/>…</lan>…</farm>`. */
function readLegacyFarm(farm: ElementReader): LanDraft[] {
  const lans = farm.children("lan");
  if (lans.length === 0) farm.report("error", "CONFIG_MISSING_ELEMENT", `a pre-7.2 <farm> lists each network as <lan name="…"> holding one <node name="…" addr="…"/> per node`);
  const drafts = lans.map((lan) => {
    const name = lan.string("name", "", { required: true, nonEmpty: true }).trim();
    const nodes = lan.children("node").map(readNode);
    lan.finish();
    return { name, reader: lan, nodes };
  });
  farm.finish();
  return withoutDuplicateLans(drafts, "<lan>");
}

function withoutDuplicateLans(drafts: readonly LanDraft[], element: string): LanDraft[] {
  const kept: LanDraft[] = [];
  for (const draft of drafts) {
    if (draft.name !== "" && kept.some((other) => other.name === draft.name)) {
      draft.reader.report("error", "CONFIG_DUPLICATE", `lan ${draft.name} is declared twice; list all of its nodes in one ${element}`, located(draft.reader, "name"));
    } else kept.push(draft);
  }
  return kept;
}

/** A heartbeat and a farm lan of the same name are one network: one list of nodes. */
function mergeLegacy(drafts: readonly LanDraft[]): LanDraft[] {
  const merged: LanDraft[] = [];
  for (const draft of drafts) {
    const same = merged.find((other) => other.name === draft.name);
    if (same === undefined) merged.push({ ...draft, nodes: [...draft.nodes] });
    else for (const node of draft.nodes) if (!same.nodes.some((other) => other.name === node.name && other.addr === node.addr)) same.nodes.push(node);
  }
  return merged;
}

// ---- Checks over the lans read, whichever the form ----

function checkLans(lans: readonly LanDraft[]): void {
  const owners = new Map<string, { node: string; lan: string }>();
  const names = new Set<string>();
  for (const [index, lan] of lans.entries()) {
    if (index === lanCountMax) lan.reader.report("error", "CONFIG_TOO_MANY", `a cluster has at most ${lanCountMax} lans; this is lan ${index + 1}`);
    if (lan.nodes.length === 0) lan.reader.report("warning", "CONFIG_EMPTY_LAN", `lan ${lan.name} lists no node; no module can use it`);
    const accepted: NodeDraft[] = [];
    for (const node of lan.nodes) {
      if (checkNode(node, lan, accepted, owners)) accepted.push(node);
      if (node.name !== "" && !names.has(node.name)) {
        names.add(node.name);
        if (names.size === clusterNodeCountMax + 1) node.reader.report("error", "CONFIG_TOO_MANY", `a cluster has at most ${clusterNodeCountMax} nodes; ${node.name} is node ${names.size}`);
      }
    }
  }
}

/** Whether a node's name and address are new in its lan and its address is no other
 *  node's (reported when not); `accepted` holds the lan's nodes that passed. */
function checkNode(node: NodeDraft, lan: LanDraft, accepted: readonly NodeDraft[], owners: Map<string, { node: string; lan: string }>): boolean {
  const addrAttribute = located(node.reader, "addr");
  if (node.name !== "" && accepted.some((other) => other.name === node.name)) {
    node.reader.report("error", "CONFIG_DUPLICATE", `node ${node.name} is listed twice in lan ${lan.name}; a node has one address per lan`, located(node.reader, "name"));
    return false;
  }
  if (node.addr === null || node.name === "") return false;
  const twin = accepted.find((other) => other.addr === node.addr);
  if (twin !== undefined) {
    node.reader.report("error", "CONFIG_DUPLICATE_ADDRESS", `address ${node.addr} is already node ${twin.name}'s in lan ${lan.name}; each node needs its own address`, addrAttribute);
    return false;
  }
  const owner = owners.get(node.addr);
  if (owner === undefined) owners.set(node.addr, { node: node.name, lan: lan.name });
  else if (owner.node !== node.name) {
    node.reader.report("error", "CONFIG_DUPLICATE_ADDRESS", `address ${node.addr} is node ${owner.node}'s in lan ${owner.lan}; one address cannot be two nodes`, addrAttribute);
    return false;
  }
  return true;
}

function build(lans: readonly LanDraft[]): ClusterConfig {
  const built: ClusterLan[] = lans.map((lan) => ({
    name: lan.name,
    nodes: lan.nodes.map((node) => {
      assert(node.addr !== null, "a node without a valid address was reported as an error");
      assert(node.name !== "", "a node without a valid name was reported as an error");
      return { name: node.name, addr: node.addr };
    }),
  }));
  const nodeNames = [...new Set(built.flatMap((lan) => lan.nodes.map((node) => node.name)))];
  assert(nodeNames.length <= clusterNodeCountMax, "checkLans reports more than clusterNodeCountMax nodes as an error");
  return { lans: built, nodeNames };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}
