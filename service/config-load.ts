// Reads a configuration directory (cluster.xml and modules/NAME/conf/userconfig.xml) or
// one module's directory, with every problem located. Used by `tandem config check`,
// `tandem module`, and the node service when it starts or reloads.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { checkCluster, type ModuleFile } from "../core/config/cluster-checks.ts";
import { readClusterXml } from "../core/config/cluster-xml.ts";
import type { ClusterConfig, ModuleConfig } from "../core/config/module-config.ts";
import type { ConfigProblem } from "../core/config/problems.ts";
import { readUserconfig } from "../core/config/userconfig.ts";

/** A module's name is its directory's: letters, digits, `_` and `-`, at most 64. Other
 *  entries (`web.previous` kept by `module install --force`, `.web.install-…` staging)
 *  are not modules. */
export const moduleNamePattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export interface LoadedModule {
  readonly name: string;
  /** The module's directory (absolute). */
  readonly dir: string;
  /** Null when its userconfig.xml has errors. */
  readonly config: ModuleConfig | null;
}

export interface LoadedConfig {
  readonly cluster: ClusterConfig | null;
  readonly modules: readonly LoadedModule[];
  /** Sorted by file, line, column; file names relative to the directory read. */
  readonly problems: readonly ConfigProblem[];
  readonly errors: number;
  readonly warnings: number;
}

/** Reads and checks a configuration or module directory; file names in problems are relative to `dir`. */
export function loadConfigDir(dir: string, clusterPath?: string): LoadedConfig {
  const single = existsSync(join(dir, "conf", "userconfig.xml"));
  const moduleDirs = single ? [dir] : listModuleDirs(join(dir, "modules"));
  const clusterFile = clusterPath ?? (single ? findUp(dir, "cluster.xml") : join(dir, "cluster.xml"));
  const name = (path: string) => relative(dir, path) || basename(path);
  const problems: ConfigProblem[] = [];
  let cluster: ClusterConfig | null = null;
  if (clusterFile !== undefined && existsSync(clusterFile)) {
    const result = readClusterXml(name(clusterFile), readFileSync(clusterFile, "utf8"), process.env);
    problems.push(...result.problems);
    cluster = result.cluster;
  } else {
    problems.push({ severity: single ? "warning" : "error", code: "CONFIG_NO_CLUSTER", file: name(clusterFile ?? join(dir, "cluster.xml")), line: 0, column: 0, path: "", message: single ? "no cluster.xml found (give --cluster FILE): node and lan names are not checked" : "cluster.xml is missing: it names the cluster's nodes and networks" });
  }
  const files: ModuleFile[] = [];
  const modules: LoadedModule[] = [];
  for (const moduleDir of moduleDirs) {
    const path = join(moduleDir, "conf", "userconfig.xml");
    const result = readUserconfig({ moduleName: basename(moduleDir), file: name(path), text: readFileSync(path, "utf8"), environment: process.env });
    problems.push(...result.problems);
    if (result.module !== null && result.root !== null) files.push({ module: result.module, file: name(path), root: result.root });
    modules.push({ name: basename(moduleDir), dir: resolve(moduleDir), config: result.module });
  }
  problems.push(...checkCluster(cluster, name(clusterFile ?? "cluster.xml"), files));
  problems.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
  return {
    cluster,
    modules,
    problems,
    errors: problems.filter((problem) => problem.severity === "error").length,
    warnings: problems.filter((problem) => problem.severity === "warning").length,
  };
}

function listModuleDirs(modulesDir: string): string[] {
  if (!existsSync(modulesDir)) return [];
  return readdirSync(modulesDir)
    .filter((entry) => moduleNamePattern.test(entry))
    .sort()
    .map((entry) => join(modulesDir, entry))
    .filter((path) => existsSync(join(path, "conf", "userconfig.xml")));
}

/** cluster.xml in the module's directory or above it (a module inside DIR/modules/). */
function findUp(dir: string, file: string): string | undefined {
  for (let current = dir, depth = 0; depth < 4; current = resolve(current, ".."), depth++) {
    if (existsSync(join(current, file))) return join(current, file);
  }
  return undefined;
}
