// Checks that need the whole cluster: cluster.xml and every module together.
// A pure module: it performs no I/O.

import type { ClusterConfig, ModuleConfig } from "./module-config.ts";
import type { ConfigProblem } from "./problems.ts";
import type { XmlElement } from "./xml-tree.ts";

export const moduleCountMax = 32;

export interface ModuleFile {
  readonly module: ModuleConfig;
  readonly file: string;
  readonly root: XmlElement;
}

export function checkCluster(cluster: ClusterConfig | null, clusterFile: string, modules: readonly ModuleFile[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (modules.length > moduleCountMax) {
    for (const extra of modules.slice(moduleCountMax)) {
      problems.push(at(extra, null, "CONFIG_TOO_MANY_MODULES", `a cluster runs at most ${moduleCountMax} modules; this is module ${modules.indexOf(extra) + 1}`));
    }
  }
  if (cluster !== null) for (const each of modules) problems.push(...checkNodes(cluster, clusterFile, each));
  problems.push(...checkVipsUnique(modules), ...checkReplicatedDisjoint(modules));
  return problems;
}

/** Lans and nodes a module names exist in cluster.xml; a mirror has exactly two nodes. */
function checkNodes(cluster: ClusterConfig, clusterFile: string, file: ModuleFile): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const { module } = file;
  const lanNames = module.mode === "mirror" ? (module.heart?.heartbeats.map((heartbeat) => heartbeat.name) ?? []) : (module.farm?.lans ?? []);
  const lanPath = module.mode === "mirror" ? "safe/service/heart/heartbeat" : "safe/service/farm/lan";
  const known = new Map(cluster.lans.map((lan) => [lan.name, lan]));
  for (const name of lanNames) {
    if (!known.has(name)) problems.push(at(file, find(file.root, lanPath, "name", name), "CONFIG_UNKNOWN_LAN", `lan ${name} is not in ${clusterFile} (its lans: ${[...known.keys()].join(", ") || "none"})`, "name", name));
  }
  const nodes = new Set(lanNames.flatMap((name) => known.get(name)?.nodes.map((node) => node.name) ?? []));
  if (module.mode === "mirror" && module.heart !== null && lanNames.every((name) => known.has(name)) && nodes.size !== 2) {
    problems.push(at(file, find(file.root, "safe/service/heart"), "CONFIG_MIRROR_NODES", `a mirror module runs on exactly two nodes; its heartbeat lans in ${clusterFile} hold ${nodes.size} (${[...nodes].join(", ")})`));
  }
  if (module.service.defaultPrim.kind === "node" && !nodes.has(module.service.defaultPrim.node)) {
    const name = module.service.defaultPrim.node;
    problems.push(at(file, find(file.root, "safe/service"), "CONFIG_UNKNOWN_NODE", `defaultprim names ${name}, which is not one of this module's nodes (${[...nodes].join(", ")}); use alone, lastprim or a node name`, "defaultprim", name));
  }
  for (const group of module.vip?.groups ?? []) {
    for (const host of group.hosts) {
      if (!nodes.has(host.name)) {
        problems.push(at(file, find(file.root, "safe/service/vip/loadbalancing_list/group/cluster/host", "name", host.name), "CONFIG_UNKNOWN_NODE", `host ${host.name} is not a node of this module's lans in ${clusterFile} (${[...nodes].join(", ")})`, "name", host.name));
      }
    }
  }
  return problems;
}

function checkVipsUnique(modules: readonly ModuleFile[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const owner = new Map<string, string>();
  for (const file of modules) {
    for (const vipInterface of file.module.vip?.interfaces ?? []) {
      const addrs = [...(vipInterface.realInterface?.virtualAddrs ?? []), ...(vipInterface.virtualInterface?.virtualAddrs ?? [])];
      for (const { addr } of addrs) {
        const first = owner.get(addr);
        if (first !== undefined && first !== file.module.name) {
          problems.push(at(file, find(file.root, "", "addr", addr, "virtual_addr"), "CONFIG_DUPLICATE_VIP", `virtual address ${addr} is already used by module ${first}; two modules cannot share a VIP`, "addr", addr));
        }
        if (first === undefined) owner.set(addr, file.module.name);
      }
    }
  }
  return problems;
}

function checkReplicatedDisjoint(modules: readonly ModuleFile[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen: { dir: string; module: string }[] = [];
  for (const file of modules) {
    for (const { dir } of file.module.rfs?.replicated ?? []) {
      const clash = seen.find((other) => other.module !== file.module.name && (inside(dir, other.dir) || inside(other.dir, dir)));
      if (clash !== undefined) {
        problems.push(at(file, find(file.root, "safe/service/rfs/replicated", "dir", dir), "CONFIG_OVERLAPPING_DIRS", `${dir} overlaps ${clash.dir}, replicated by module ${clash.module}; a file can be replicated by one module only`, "dir", dir));
      }
      seen.push({ dir, module: file.module.name });
    }
  }
  return problems;
}

function inside(dir: string, parent: string): boolean {
  return dir === parent || dir.startsWith(parent.endsWith("/") ? parent : `${parent}/`);
}

/** The first element at `path` (or named `name` anywhere when path is "") whose attribute has `value`. */
function find(root: XmlElement, path: string, attribute?: string, value?: string, name?: string): XmlElement | null {
  const matches = (element: XmlElement) =>
    (path === "" ? element.name === name : element.path === path) && (attribute === undefined || element.attributes.some((each) => each.name === attribute && each.value.trim() === value));
  const stack = [root];
  while (stack.length > 0) {
    const element = stack.pop()!;
    if (matches(element)) return element;
    stack.push(...[...element.children].reverse());
  }
  return null;
}

function at(file: ModuleFile, element: XmlElement | null, code: string, message: string, attribute?: string, value?: string): ConfigProblem {
  const located = attribute === undefined ? undefined : element?.attributes.find((each) => each.name === attribute);
  return {
    severity: "error",
    code,
    file: file.file,
    line: located?.line ?? element?.line ?? 0,
    column: located?.column ?? element?.column ?? 0,
    path: element?.path ?? "safe/service",
    ...(attribute === undefined ? {} : { attribute, value: value ?? "" }),
    message,
  };
}
