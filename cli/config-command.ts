// `tandem config check [DIR]`: reads cluster.xml and every module's userconfig.xml, and
// prints every problem located as file:line:column. Exit 0: no error (warnings allowed);
// 1: errors; 2: nothing to check.
//
// DIR is a configuration directory (cluster.xml and modules/NAME/conf/userconfig.xml;
// default $TANDEM_CONFIG_DIR or /etc/tandem) or one module's directory (conf/userconfig.xml),
// checked alone, against --cluster FILE if given.

import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { formatProblem, type ConfigProblem } from "../core/config/problems.ts";
import { loadConfigDir } from "../service/config-load.ts";

export { moduleNamePattern } from "../service/config-load.ts";

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
  const loaded = loadConfigDir(dir, clusterPath);
  return { modules: loaded.modules.map((module) => module.name), problems: loaded.problems, errors: loaded.errors, warnings: loaded.warnings };
}
