// `tandem module export|install|list`: module packages, the `NAME.safe` archives SafeKit
// ships modules in (a zip of the module directory's contents, conf/ and bin/).
// Exit 0: done; 1: refused (the module does not pass the check, the archive is unsafe, the
// module is already installed); 2: usage errors.
//
// Install never leaves a half-written module: the archive is extracted and checked in a
// hidden directory beside the target, then renamed into place.

import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import { assert } from "../core/assert.ts";
import { formatProblem } from "../core/config/problems.ts";
import { parseXml } from "../core/config/xml-tree.ts";
import { checkConfigDir, moduleNamePattern, type CheckReport } from "./config-command.ts";
import { ArchiveError, checkLimits, comparePaths, readArchive, totalSizeMax, writeArchive, type ArchiveEntry } from "./module-archive.ts";

const usage = `usage: tandem module export DIR [-o FILE] [--cluster FILE]
       tandem module install FILE.safe [--name NAME] [--config-dir DIR] [--force]
       tandem module list [--config-dir DIR] [--json]
  export   check the module in DIR (against the cluster.xml above it, or --cluster FILE),
           then write NAME.safe (a zip of its conf/ and bin/, as SafeKit ships modules)
  install  check FILE.safe, then install it as DIR/modules/NAME (NAME: the file's name without .safe);
           --force replaces an installed module and keeps it as modules/NAME.previous
  list     the installed modules, their mode and what the configuration check finds
  --config-dir DIR   default $TANDEM_CONFIG_DIR or /etc/tandem`;

// Installed scripts run as root: write access for group and others, and the setuid, setgid
// and sticky bits, are dropped from what an archive asks for; the executable bits stay.
const installModeMask = 0o755;

type Verb = "export" | "install";
const nothingDone: Readonly<Record<Verb, string>> = { export: "nothing was written", install: "nothing was installed" };
export async function moduleCommand(argv: readonly string[], print: (line: string) => void): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case "export":
      return exportModule(rest, print);
    case "install":
      return installModule(rest, print);
    case "list":
      return listModules(rest, print);
    case undefined:
    case "--help":
    case "-h":
      print(usage);
      return verb === undefined ? 2 : 0;
    default:
      print(`tandem module: unknown verb "${verb}"\n${usage}`);
      return 2;
  }
}

function exportModule(args: readonly string[], print: (line: string) => void): number {
  const { values, positionals } = parseArgs({ args: [...args], options: { output: { type: "string", short: "o" }, cluster: { type: "string" } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) return usageError(print, "export takes one module directory");
  const dir = resolve(positionals[0] ?? "");
  if (!existsSync(join(dir, "conf", "userconfig.xml"))) return usageError(print, `${dir} is not a module directory (no conf/userconfig.xml)`);
  const name = basename(dir);
  if (!passesCheck(checkConfigDir(dir, values.cluster === undefined ? undefined : resolve(values.cluster)), print, "export", `module ${name} in ${dir}`)) return 1;
  const output = resolve(values.output ?? `${name}.safe`);
  let written: ArchiveEntry[];
  let bytes: Uint8Array;
  try {
    const entries = readTree(dir);
    bytes = writeArchive(entries);
    written = readArchive(bytes);
    assert(sameEntries(written, entries), `the archive of ${dir} reads back as written`);
  } catch (error) {
    return refused(print, "export", dir, error);
  }
  writeFileSync(output, bytes);
  for (const entry of written) print(`  ${modeString(entry)} ${String(entry.data.length).padStart(8)}  ${entry.path}`);
  print(`wrote ${output}: ${written.length} entries, ${bytes.length} bytes`);
  return 0;
}

function installModule(args: readonly string[], print: (line: string) => void): number {
  const { values, positionals } = parseArgs({ args: [...args], options: { name: { type: "string" }, "config-dir": { type: "string" }, force: { type: "boolean", default: false } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) return usageError(print, "install takes one FILE.safe");
  const file = resolve(positionals[0] ?? "");
  const name = values.name ?? basename(file).replace(/\.safe$/, "");
  if (!moduleNamePattern.test(name)) return usageError(print, `"${name}" is not a module name: letters, digits, - and _, at most 64 (give --name NAME)`);
  if (!existsSync(file) || !statSync(file).isFile()) return usageError(print, `${file} is not a file`);
  const modulesDir = join(configDirOf(values["config-dir"]), "modules");
  const target = join(modulesDir, name);
  if (existsSync(target) && !values.force) {
    print(`tandem module install: module ${name} is already installed in ${target}; --force replaces it and keeps it as ${name}.previous`);
    return 1;
  }
  let entries: ArchiveEntry[];
  try {
    if (statSync(file).size > totalSizeMax) throw new ArchiveError("ARCHIVE_TOO_LARGE", null, `larger than ${totalSizeMax / 1024 / 1024} MiB; a module is far smaller`);
    entries = readArchive(readFileSync(file));
  } catch (error) {
    return refused(print, "install", file, error);
  }
  mkdirSync(modulesDir, { recursive: true });
  // Named NAME inside a hidden directory: the check sees the module's own name, and no
  // scan of modules/*/conf/userconfig.xml takes a leftover for a module.
  const staging = mkdtempSync(join(modulesDir, `.${name}.install-`));
  try {
    const staged = join(staging, name);
    extract(entries, staged);
    const clusterPath = join(dirname(modulesDir), "cluster.xml");
    if (!passesCheck(checkConfigDir(staged, existsSync(clusterPath) ? clusterPath : undefined), print, "install", `module ${name} from ${file}`)) return 1;
    const previous = `${target}.previous`;
    const replaced = swapIn(staged, target, previous, join(staging, "older-previous"));
    print(`installed ${name} in ${target} (${entries.length} entries)${replaced ? `; the module it replaces is kept in ${previous}` : ""}`);
    return 0;
  } catch (error) {
    return refused(print, "install", file, error);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

interface ModuleListing {
  readonly name: string;
  /** As its userconfig.xml declares it; null when the file does not say. */
  readonly mode: string | null;
  readonly errors: number;
  readonly warnings: number;
}

function listModules(args: readonly string[], print: (line: string) => void): number {
  const { values, positionals } = parseArgs({ args: [...args], options: { "config-dir": { type: "string" }, json: { type: "boolean", default: false } }, allowPositionals: true, strict: true });
  if (positionals.length !== 0) return usageError(print, "list takes no argument");
  const configDir = configDirOf(values["config-dir"]);
  // The whole directory is checked, as `tandem config check` does, so cross-module problems count too.
  const report = checkConfigDir(configDir);
  const inModule = (file: string, name: string) => file.startsWith(`modules/${name}/`);
  const modules: ModuleListing[] = report.modules.map((name) => ({ name, mode: declaredMode(join(configDir, "modules", name)), ...counts(report, (file) => inModule(file, name)) }));
  const cluster = counts(report, (file) => !report.modules.some((name) => inModule(file, name)));
  if (values.json) {
    print(JSON.stringify({ configDir, modules, cluster }));
    return 0;
  }
  if (modules.length === 0) print(`no module installed in ${join(configDir, "modules")}`);
  const width = Math.max(6, ...modules.map((module) => module.name.length));
  if (modules.length > 0) print(`${"MODULE".padEnd(width)}  MODE    CHECK`);
  for (const module of modules) print(`${module.name.padEnd(width)}  ${(module.mode ?? "?").padEnd(6)}  ${summary(module)}`);
  print(`cluster.xml: ${summary(cluster)}`);
  return 0;
}

function counts(report: CheckReport, owns: (file: string) => boolean): { errors: number; warnings: number } {
  const problems = report.problems.filter((problem) => owns(problem.file));
  return { errors: problems.filter((problem) => problem.severity === "error").length, warnings: problems.filter((problem) => problem.severity === "warning").length };
}

function summary({ errors, warnings }: { errors: number; warnings: number }): string {
  if (errors === 0 && warnings === 0) return "ok";
  return `${errors} error${errors === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}`;
}

/** The mode attribute of <service>, read even when the module has errors. */
function declaredMode(moduleDir: string): string | null {
  const root = parseXml("userconfig.xml", readFileSync(join(moduleDir, "conf", "userconfig.xml"), "utf8")).root;
  return root?.children.find((child) => child.name === "service")?.attributes.find((attribute) => attribute.name === "mode")?.value ?? null;
}

/** Prints the check's problems; false (refused) when there is an error, warnings allowed. */
function passesCheck(report: CheckReport, print: (line: string) => void, verb: Verb, subject: string): boolean {
  for (const problem of report.problems) print(formatProblem(problem));
  if (report.errors > 0) print(`tandem module ${verb}: ${subject} does not pass the check (${report.errors} error${report.errors === 1 ? "" : "s"}); ${nothingDone[verb]}`);
  return report.errors === 0;
}

function refused(print: (line: string) => void, verb: Verb, subject: string, error: unknown): number {
  if (!(error instanceof ArchiveError)) throw error;
  print(`tandem module ${verb}: ${subject}: ${error.message}; ${nothingDone[verb]}`);
  return 1;
}

function usageError(print: (line: string) => void, message: string): number {
  print(`tandem module: ${message}\n${usage}`);
  return 2;
}

function configDirOf(option: string | undefined): string {
  return resolve(option ?? process.env["TANDEM_CONFIG_DIR"] ?? "/etc/tandem");
}

/** The module directory's tree, in path order; refuses what an install would refuse. */
function readTree(dir: string): ArchiveEntry[] {
  const entries: ArchiveEntry[] = [];
  let totalSize = 0;
  const walk = (relativeDir: string) => {
    for (const name of readdirSync(join(dir, relativeDir)).sort(comparePaths)) {
      const entry = treeEntry(dir, relativeDir === "" ? name : `${relativeDir}/${name}`);
      entries.push(entry);
      totalSize += entry.data.length;
      checkLimits(entries.length, totalSize, entry.path);
      if (entry.kind === "directory") walk(entry.path);
    }
  };
  walk("");
  return entries;
}

function treeEntry(dir: string, path: string): ArchiveEntry {
  const full = join(dir, path);
  const stat = lstatSync(full);
  const mode = stat.mode & 0o777;
  if (stat.isDirectory()) return { path, kind: "directory", mode, data: new Uint8Array() };
  if (stat.isFile()) return { path, kind: "file", mode, data: readFileSync(full) };
  if (!stat.isSymbolicLink()) throw new ArchiveError("ARCHIVE_UNSUPPORTED", path, "neither a file, a directory nor a symlink");
  if (!resolvesInside(dir, full)) throw new ArchiveError("ARCHIVE_UNSAFE_SYMLINK", path, `a symlink to ${readlinkSync(full)}, which is not inside the module`);
  return { path, kind: "symlink", mode, data: new TextEncoder().encode(readlinkSync(full)) };
}

function sameEntries(read: readonly ArchiveEntry[], written: readonly ArchiveEntry[]): boolean {
  const byPath = new Map(written.map((entry) => [entry.path, entry]));
  return read.length === written.length && read.every((entry) => {
    const original = byPath.get(entry.path);
    return original !== undefined && original.kind === entry.kind && original.mode === entry.mode && Buffer.compare(original.data, entry.data) === 0;
  });
}

/**
 * Writes the entries under `root`, which must not exist: directories, then files, then
 * symlinks, so that nothing is written through a symlink from the archive; then refuses
 * any symlink that does not resolve inside the module (checked once all exist, since one
 * may point through another).
 */
function extract(entries: readonly ArchiveEntry[], root: string): void {
  assert(!existsSync(root), `extraction target ${root} is new`);
  mkdirSync(root);
  const place = (entry: ArchiveEntry) => {
    const full = join(root, entry.path);
    mkdirSync(entry.kind === "directory" ? full : dirname(full), { recursive: true });
    return full;
  };
  for (const entry of entries.filter((each) => each.kind === "directory")) place(entry);
  for (const entry of entries.filter((each) => each.kind === "file")) {
    const full = place(entry);
    writeFileSync(full, entry.data, { flag: "wx" });
    chmodSync(full, entry.mode & installModeMask);
  }
  const symlinks = entries.filter((each) => each.kind === "symlink");
  for (const entry of symlinks) symlinkSync(new TextDecoder().decode(entry.data), place(entry));
  for (const entry of symlinks) {
    if (!resolvesInside(root, join(root, entry.path))) throw new ArchiveError("ARCHIVE_UNSAFE_SYMLINK", entry.path, `a symlink to ${new TextDecoder().decode(entry.data)}, which does not resolve inside the module`);
  }
}

/** Whether `path`, followed through every symlink, exists inside `root`. */
function resolvesInside(root: string, path: string): boolean {
  try {
    // The native call resolves as the kernel does; the JS one folds `..` before following
    // a symlink, so a link through another (`here/../..`, here -> .) would look inside.
    const real = realpathSync.native(path);
    const realRoot = realpathSync.native(root);
    return real === realRoot || real.startsWith(realRoot + sep);
  } catch {
    return false; // dangling, or a loop
  }
}

/**
 * Moves `staged` to `target`. An installed module moves to `previous` first (an older
 * previous to `trash`, which the caller deletes). If the last rename fails, both moves
 * are undone: nothing is lost. Returns whether a module was replaced.
 */
function swapIn(staged: string, target: string, previous: string, trash: string): boolean {
  const hadPrevious = existsSync(previous);
  const replacing = existsSync(target);
  if (hadPrevious) renameSync(previous, trash);
  if (replacing) renameSync(target, previous);
  try {
    renameSync(staged, target);
  } catch (error) {
    if (replacing) renameSync(previous, target);
    if (hadPrevious) renameSync(trash, previous);
    throw error;
  }
  assert(existsSync(join(target, "conf", "userconfig.xml")), `${target} holds the installed module`);
  return replacing;
}

function modeString(entry: ArchiveEntry): string {
  const type = entry.kind === "directory" ? "d" : entry.kind === "symlink" ? "l" : "-";
  return type + [6, 3, 0].map((shift) => ["r", "w", "x"].map((letter, bit) => ((entry.mode >> (shift + 2 - bit)) & 1 ? letter : "-")).join("")).join("");
}
