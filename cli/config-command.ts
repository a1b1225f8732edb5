// `tandem config check [DIR]`: reads cluster.xml and every module's userconfig.xml, and
// prints every problem located as file:line:column. Exit 0: no error (warnings allowed);
// 1: errors; 2: nothing to check.
//
// DIR is a configuration directory (cluster.xml and modules/NAME/conf/userconfig.xml;
// default $TANDEM_CONFIG_DIR or /etc/tandem) or one module's directory (conf/userconfig.xml),
// checked alone, against --cluster FILE if given.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { checkCluster, type ModuleFile } from "../core/config/cluster-checks.ts";
import { readClusterXml } from "../core/config/cluster-xml.ts";
import type { ClusterConfig } from "../core/config/module-config.ts";
import { formatProblem, type ConfigProblem } from "../core/config/problems.ts";
import { readUserconfig } from "../core/config/userconfig.ts";

export interface CheckReport {
  readonly modules: readonly string[];
  readonly problems: readonly ConfigProblem[];
  readonly errors: number;
  readonly warnings: number;
}

const usage = `usage: tandem config check [DIR] [--cluster FILE] [--json]
  DIR   a configuration directory (cluster.xml, modules/NAME/conf/userconfig.xml)
        or one module's directory (conf/userconfig.xml); default $TANDEM_CONFIG_DIR or /etc/tandem`;

export async function configCommand(argv: readonly string[], print: (line: string) => void): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb !== "check") {
    print(verb === undefined || verb === "--help" || verb === "-h" ? usage : `tandem config: unknown verb "${verb}"\n${usage}`);
    return verb === "--help" || verb === "-h" ? 0 : 2;
  }
  const { values, positionals } = parseArgs({ args: rest, options: { cluster: { type: "string" }, json: { type: "boolean", default: false } }, allowPositionals: true, strict: true });
  const dir = resolve(positionals[0] ?? process.env["TANDEM_CONFIG_DIR"] ?? "/etc/tandem");
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    print(`tandem config check: ${dir} is not a directory; give a configuration directory or a module's directory`);
    return 2;
  }
  const report = checkConfigDir(dir, values.cluster === undefined ? undefined : resolve(values.cluster));
  if (report.modules.length === 0) {
    print(`tandem config check: no module in ${dir} (looked for conf/userconfig.xml and modules/*/conf/userconfig.xml)`);
    return 2;
  }
  if (values.json) print(JSON.stringify(report));
  else {
    for (const problem of report.problems) print(formatProblem(problem));
    print(`${report.modules.length} module${report.modules.length === 1 ? "" : "s"} (${report.modules.join(", ")}): ${report.errors} error${report.errors === 1 ? "" : "s"}, ${report.warnings} warning${report.warnings === 1 ? "" : "s"}`);
  }
  return report.errors > 0 ? 1 : 0;
}

/** Reads and checks a configuration or module directory; file names in problems are relative to `dir`. */
export function checkConfigDir(dir: string, clusterPath?: string): CheckReport {
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
  for (const moduleDir of moduleDirs) {
    const path = join(moduleDir, "conf", "userconfig.xml");
    const result = readUserconfig({ moduleName: basename(moduleDir), file: name(path), text: readFileSync(path, "utf8"), environment: process.env });
    problems.push(...result.problems);
    if (result.module !== null && result.root !== null) files.push({ module: result.module, file: name(path), root: result.root });
  }
  problems.push(...checkCluster(cluster, name(clusterFile ?? "cluster.xml"), files));
  problems.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
  return {
    modules: moduleDirs.map((moduleDir) => basename(moduleDir)),
    problems,
    errors: problems.filter((problem) => problem.severity === "error").length,
    warnings: problems.filter((problem) => problem.severity === "warning").length,
  };
}

/** A module's name is its directory's: letters, digits, `_` and `-`, at most 64. Other
 *  entries (`web.previous` kept by `module install --force`, `.web.install-…` staging)
 *  are not modules. */
export const moduleNamePattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

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
