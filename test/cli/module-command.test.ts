// `tandem module export|install|list`: templates round-trip through NAME.safe archives,
// exports are byte-identical, unsafe or invalid archives are refused with nothing written,
// --force keeps the replaced module, and archives made by other zip writers install.

import { execFileSync } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { zipSync, type Zippable } from "fflate";
import { afterAll, describe, expect, it } from "vitest";
import { entryCountMax, totalSizeMax } from "../../cli/module-archive.ts";
import { runCli } from "./run-cli.ts";

const templates = fileURLToPath(new URL("../../templates", import.meta.url));
const templateNames = ["generic-farm", "generic-mirror", "nginx-farm", "postgresql-mirror"];
const scratch = mkdtempSync(join(tmpdir(), "tandem-module-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let dirCount = 0;
/** A new, empty directory under the scratch directory. */
function freshDir(): string {
  const dir = join(scratch, `d${++dirCount}`);
  mkdirSync(dir);
  return dir;
}

/** A configuration directory holding only a copy of templates/cluster.xml. */
function freshConfigDir(): string {
  const dir = freshDir();
  cpSync(join(templates, "cluster.xml"), join(dir, "cluster.xml"));
  return dir;
}

/** Every file and symlink under `dir`: its mode and contents (a symlink's target). */
function tree(dir: string, prefix = ""): Record<string, { mode: number; content: string }> {
  const result: Record<string, { mode: number; content: string }> = {};
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const path = prefix === "" ? name : `${prefix}/${name}`;
    const stat = lstatSync(join(dir, path));
    if (stat.isDirectory()) Object.assign(result, tree(dir, path));
    else result[path] = { mode: stat.mode & 0o7777, content: stat.isSymbolicLink() ? `-> ${readlinkSync(join(dir, path))}` : readFileSync(join(dir, path)).toString("base64") };
  }
  return result;
}

const listing = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);
const unixFile = (text: string, mode = 0o644): [Uint8Array, { os: number; attrs: number }] => [new TextEncoder().encode(text), { os: 3, attrs: ((0o100000 | mode) << 16) >>> 0 }];
const symlink = (target: string): [Uint8Array, { os: number; attrs: number }] => [new TextEncoder().encode(target), { os: 3, attrs: (0o120777 << 16) >>> 0 }];
const userconfig = (name: string) => readFileSync(join(templates, "modules", name, "conf", "userconfig.xml"), "utf8");

/** Writes an archive of `files` (plus a valid generic-farm userconfig.xml unless given) and returns its path. */
function archiveOf(files: Zippable, name = "app.safe"): string {
  const path = join(freshDir(), name);
  writeFileSync(path, zipSync({ "conf/userconfig.xml": unixFile(userconfig("generic-farm")), ...files }));
  return path;
}

/** Runs `fn` with one environment variable set, which the CLI's child process inherits. */
function withEnv<T>(name: string, value: string, fn: () => T): T {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

function exportTemplate(name: string, output: string): { code: number; output: string } {
  return runCli(["module", "export", join(templates, "modules", name), "-o", output]);
}

describe("tandem module export and install", () => {
  it.each(templateNames)("%s round-trips: the installed files are byte-identical, with their modes", (name) => {
    const file = join(freshDir(), `${name}.safe`);
    expect(exportTemplate(name, file).code).toBe(0);
    const configDir = freshConfigDir();
    const { code, output } = runCli(["module", "install", file, "--config-dir", configDir]);
    expect(output).toContain(`installed ${name} in ${join(configDir, "modules", name)}`);
    expect(code).toBe(0);
    expect(tree(join(configDir, "modules", name))).toEqual(tree(join(templates, "modules", name)));
    expect(listing(join(configDir, "modules"))).toEqual([name]);
  });

  it("export is deterministic: a copy of the tree with other timestamps, in another time zone, gives the same bytes", () => {
    const copy = join(freshDir(), "nginx-farm");
    cpSync(join(templates, "modules", "nginx-farm"), copy, { recursive: true });
    utimesSync(join(copy, "bin", "start_both"), new Date(2001, 2, 3), new Date(2001, 2, 3));
    const out = freshDir();
    expect(withEnv("TZ", "UTC", () => exportTemplate("nginx-farm", join(out, "a.safe"))).code).toBe(0);
    expect(withEnv("TZ", "Pacific/Auckland", () => runCli(["module", "export", copy, "-o", join(out, "b.safe")])).code).toBe(0);
    expect(readFileSync(join(out, "a.safe")).equals(readFileSync(join(out, "b.safe")))).toBe(true);
  });

  it("export names NAME.safe after the directory and shows the entries and the size", () => {
    const out = freshDir();
    const output = execFileSync(process.execPath, [fileURLToPath(new URL("../../cli/tandem.ts", import.meta.url)), "module", "export", join(templates, "modules", "generic-mirror")], { cwd: out, encoding: "utf8" });
    const size = readFileSync(join(out, "generic-mirror.safe")).length;
    expect(output).toMatch(/-rwxr-xr-x +364 {2}bin\/start_prim/);
    expect(output).toMatch(/-rw-r--r-- +\d+ {2}conf\/userconfig.xml/);
    expect(output).toContain(`wrote ${join(out, "generic-mirror.safe")}: 5 entries, ${size} bytes`);
  });

  it("export refuses a module with an error, printing it located, and writes nothing", () => {
    const module = join(freshDir(), "web");
    cpSync(join(templates, "modules", "nginx-farm"), module, { recursive: true });
    const file = join(module, "conf", "userconfig.xml");
    writeFileSync(file, readFileSync(file, "utf8").replace('filter="on_port"', 'filter="on_ip"'));
    const line = readFileSync(file, "utf8").split("\n").findIndex((text) => text.includes('filter="on_ip"')) + 1;
    const output = join(freshDir(), "web.safe");
    const result = runCli(["module", "export", module, "-o", output]);
    expect(result.code).toBe(1);
    expect(result.output).toMatch(new RegExp(`conf/userconfig.xml:${line}:\\d+ <rule filter="on_ip">`));
    expect(result.output).toContain("does not pass the check (1 error); nothing was written");
    expect(existsSync(output)).toBe(false);
  });

  it("export refuses a symlink that leaves the module", () => {
    const module = join(freshDir(), "web");
    cpSync(join(templates, "modules", "nginx-farm"), module, { recursive: true });
    execFileSync("ln", ["-s", "../../../etc/passwd", join(module, "bin", "passwd")]);
    const result = runCli(["module", "export", module, "-o", join(freshDir(), "web.safe")]);
    expect(result.code).toBe(1);
    expect(result.output).toContain('entry "bin/passwd": a symlink to ../../../etc/passwd, which is not inside the module');
  });

  it("install refuses an invalid module, printing the located error, and installs nothing", () => {
    const broken = userconfig("generic-farm").replace('<lan name="default"/>', '<lan name="nowhere"/>');
    const line = broken.split("\n").findIndex((text) => text.includes("nowhere")) + 1;
    const configDir = freshConfigDir();
    const { code, output } = runCli(["module", "install", archiveOf({ "conf/userconfig.xml": unixFile(broken) }), "--config-dir", configDir]);
    expect(code).toBe(1);
    expect(output).toMatch(new RegExp(`conf/userconfig.xml:${line}:\\d+ <lan name="nowhere">: lan nowhere is not in`));
    expect(output).toContain("nothing was installed");
    expect(listing(join(configDir, "modules"))).toEqual([]);
  });

  it("install refuses an installed module; --force replaces it and keeps it as NAME.previous, replacing an older one", () => {
    const configDir = freshConfigDir();
    const version = (n: number) => archiveOf({ "bin/start_both": unixFile(`#!/bin/sh\n# version ${n}\n`, 0o755) }, "app.safe");
    expect(runCli(["module", "install", version(1), "--config-dir", configDir]).code).toBe(0);
    const refused = runCli(["module", "install", version(2), "--config-dir", configDir]);
    expect(refused.code).toBe(1);
    expect(refused.output).toContain("module app is already installed");
    expect(runCli(["module", "install", version(2), "--config-dir", configDir, "--force"]).output).toContain(`the module it replaces is kept in ${join(configDir, "modules", "app.previous")}`);
    expect(runCli(["module", "install", version(3), "--config-dir", configDir, "--force"]).code).toBe(0);
    const script = (dir: string) => readFileSync(join(configDir, "modules", dir, "bin", "start_both"), "utf8");
    expect([script("app"), script("app.previous")]).toEqual(["#!/bin/sh\n# version 3\n", "#!/bin/sh\n# version 2\n"]);
    expect(listing(join(configDir, "modules"))).toEqual(["app", "app.previous"]);
    // The kept version is not a module: the configuration still checks, with one module.
    const check = runCli(["config", "check", configDir, "--json"]);
    expect([check.code, JSON.parse(check.output).modules]).toEqual([0, ["app"]]);
  });

  it("a refused --force install leaves the installed module and its previous version as they were", () => {
    const configDir = freshConfigDir();
    const good = archiveOf({});
    expect(runCli(["module", "install", good, "--config-dir", configDir]).code).toBe(0);
    expect(runCli(["module", "install", good, "--config-dir", configDir, "--force"]).code).toBe(0);
    const before = tree(join(configDir, "modules"));
    const broken = archiveOf({ "conf/userconfig.xml": unixFile("<safe><service mode='farm'>") }, "app.safe");
    expect(runCli(["module", "install", broken, "--config-dir", configDir, "--force"]).code).toBe(1);
    expect(tree(join(configDir, "modules"))).toEqual(before);
    expect(listing(join(configDir, "modules"))).toEqual(["app", "app.previous"]);
  });

  it("install defaults to $TANDEM_CONFIG_DIR", () => {
    const configDir = freshConfigDir();
    expect(withEnv("TANDEM_CONFIG_DIR", configDir, () => runCli(["module", "install", archiveOf({})])).code).toBe(0);
    expect(listing(join(configDir, "modules"))).toEqual(["app"]);
  });

  it("install takes NAME from --name, and keeps a symlink that stays inside the module", () => {
    const configDir = freshConfigDir();
    const file = archiveOf({ "bin/start_both": unixFile("#!/bin/sh\n", 0o755), "bin/start": symlink("start_both"), "conf/current": symlink("../conf") });
    expect(runCli(["module", "install", file, "--name", "web_1", "--config-dir", configDir]).code).toBe(0);
    expect(readlinkSync(join(configDir, "modules", "web_1", "bin", "start"))).toBe("start_both");
    expect(readlinkSync(join(configDir, "modules", "web_1", "conf", "current"))).toBe("../conf");
  });
});

describe("unsafe archives are refused, naming the file and the entry, with nothing written", () => {
  const refuse = (file: string, expected: string) => {
    const configDir = freshConfigDir();
    const { code, output } = runCli(["module", "install", file, "--config-dir", configDir]);
    expect(output).toContain(`tandem module install: ${file}: ${expected}`);
    expect(code).toBe(1);
    expect(listing(join(configDir, "modules"))).toEqual([]);
    expect(listing(configDir).filter((name) => name !== "modules")).toEqual(["cluster.xml"]);
  };

  it.each([
    ["../evil", "a path that climbs out with '..'"],
    ["bin/../../evil", "a path that climbs out with '..'"],
    ["/tmp/evil", "an absolute path"],
    ["C:/evil", "an absolute path"],
    ["bin\\..\\..\\evil", "a backslash in the path"],
    ["bin//evil", "an empty or '.' part in the path"],
  ])("an entry named %s", (name, reason) => {
    refuse(archiveOf({ [name]: unixFile("x") }), `entry "${name}": ${reason}`);
  });

  it.each([
    ["an absolute symlink", { "bin/passwd": symlink("/etc/passwd") }, "bin/passwd"],
    ["a symlink climbing out", { "bin/up": symlink("../../..") }, "bin/up"],
    ["a symlink escaping through another", { "bin/here": symlink("."), "bin/up": symlink("here/../..") }, "bin/up"],
    ["a dangling symlink", { "bin/nothing": symlink("missing") }, "bin/nothing"],
  ])("%s", (_, files, entry) => {
    refuse(archiveOf(files), `entry "${entry}": a symlink to`);
  });

  it("a file written through a symlink of the archive", () => {
    refuse(archiveOf({ bin: symlink("/tmp"), "bin/evil": unixFile("x") }), `entry "bin/evil": lies inside bin, which the archive also holds as a symlink`);
  });

  it("a name twice", () => {
    const file = archiveOf({ "bin/start_1": unixFile("a"), "bin/start_2": unixFile("b") });
    const bytes = readFileSync(file);
    writeFileSync(file, Buffer.from(bytes.toString("latin1").replaceAll("bin/start_2", "bin/start_1"), "latin1"));
    refuse(file, 'entry "bin/start_1": appears twice in the archive');
  });

  it("more than the size cap, before inflating anything", () => {
    refuse(archiveOf({ "bin/huge": new Uint8Array(totalSizeMax + 1) }), `entry "bin/huge": more than ${totalSizeMax / 1024 / 1024} MiB uncompressed in all`);
  });

  it("more entries than the cap", () => {
    const files: Zippable = {};
    for (let index = 0; index < entryCountMax; index++) files[`bin/f${index}`] = unixFile("");
    refuse(archiveOf(files), `more than ${entryCountMax} entries`);
  });

  it("an entry that inflates beyond its declared size", () => {
    const file = archiveOf({ "bin/bomb": new Uint8Array(100_000) });
    const bytes = readFileSync(file);
    // Forge the uncompressed size in bin/bomb's central directory record: its name is at +46, the size at +24.
    const central = bytes.indexOf("bin/bomb", bytes.indexOf("PK\x01\x02")) - 46;
    bytes.writeUInt32LE(10, central + 24);
    writeFileSync(file, bytes);
    refuse(file, 'entry "bin/bomb": inflates to more than the 10 bytes its header declares');
  });

  it("a file that is not a zip", () => {
    const file = join(freshDir(), "app.safe");
    writeFileSync(file, "not a zip at all, but long enough to search for the end record");
    refuse(file, "not a zip archive");
  });

  it("an archive without conf/userconfig.xml at its root, with a hint when it is one level down", () => {
    const file = join(freshDir(), "app.safe");
    writeFileSync(file, zipSync({ "app/conf/userconfig.xml": unixFile(userconfig("generic-farm")) }));
    refuse(file, "no conf/userconfig.xml at the archive's root; a .safe holds a module directory's contents, conf/ and bin/ (found app/conf/userconfig.xml: make the archive from inside the module's directory)");
  });
});

describe("archives from other zip writers", () => {
  it("fflate's default layout, without unix modes (as made on Windows), installs with executable scripts", () => {
    const module = join(templates, "modules", "generic-farm");
    const read = (path: string) => new Uint8Array(readFileSync(join(module, path)));
    const file = join(freshDir(), "generic-farm.safe");
    writeFileSync(file, zipSync({ conf: { "userconfig.xml": read("conf/userconfig.xml") }, bin: { start_both: read("bin/start_both"), stop_both: read("bin/stop_both") } }));
    const configDir = freshConfigDir();
    expect(runCli(["module", "install", file, "--config-dir", configDir]).code).toBe(0);
    expect(tree(join(configDir, "modules", "generic-farm"))).toEqual(tree(module));
  });

  it("an archive made by zip -r from inside the module's directory installs", () => {
    expect(existsSync("/usr/bin/zip"), "this test needs Debian's zip (apt install zip; .ci/run installs it)").toBe(true);
    const module = join(templates, "modules", "postgresql-mirror");
    const file = join(freshDir(), "postgresql-mirror.safe");
    execFileSync("/usr/bin/zip", ["-r", "-q", file, "."], { cwd: module });
    const configDir = freshConfigDir();
    expect(runCli(["module", "install", file, "--config-dir", configDir]).code).toBe(0);
    expect(tree(join(configDir, "modules", "postgresql-mirror"))).toEqual(tree(module));
  });
});

describe("tandem module list", () => {
  const configDir = freshConfigDir();
  cpSync(join(templates, "modules", "nginx-farm"), join(configDir, "modules", "nginx-farm"), { recursive: true });
  cpSync(join(templates, "modules", "generic-mirror"), join(configDir, "modules", "generic-mirror"), { recursive: true });
  const broken = join(configDir, "modules", "web", "conf");
  mkdirSync(broken, { recursive: true });
  writeFileSync(join(broken, "userconfig.xml"), userconfig("generic-farm").replace('filter="on_port"', 'filter="on_ip"').replace("<tcp ", '<tcp unknown="1" '));

  it("shows each module's mode and what the check finds", () => {
    const { code, output } = runCli(["module", "list", "--config-dir", configDir]);
    expect(code).toBe(0);
    expect(output.trimEnd().split("\n").map((line) => line.trimEnd().split(/ {2,}/))).toEqual([
      ["MODULE", "MODE", "CHECK"],
      ["generic-mirror", "mirror", "ok"],
      ["nginx-farm", "farm", "ok"],
      ["web", "farm", "1 error, 1 warning"],
      ["cluster.xml: ok"],
    ]);
  });

  it("prints JSON with --json", () => {
    const { code, output } = runCli(["module", "list", "--config-dir", configDir, "--json"]);
    expect(code).toBe(0);
    expect(JSON.parse(output)).toEqual({
      configDir,
      modules: [
        { name: "generic-mirror", mode: "mirror", errors: 0, warnings: 0 },
        { name: "nginx-farm", mode: "farm", errors: 0, warnings: 0 },
        { name: "web", mode: "farm", errors: 1, warnings: 1 },
      ],
      cluster: { errors: 0, warnings: 0 },
    });
  });

  it("says when no module is installed", () => {
    const { code, output } = runCli(["module", "list", "--config-dir", freshConfigDir()]);
    expect(code).toBe(0);
    expect(output).toContain("no module installed in");
  });
});

describe("usage errors exit 2", () => {
  it.each([
    [[], "usage: tandem module export"],
    [["pack"], 'unknown verb "pack"'],
    [["export"], "export takes one module directory"],
    [["export", templates], "is not a module directory (no conf/userconfig.xml)"],
    [["install"], "install takes one FILE.safe"],
    [["install", "missing.safe"], "missing.safe is not a file"],
    [["install", "x.safe", "--name", "../web"], '"../web" is not a module name'],
    [["install", "my.module.safe"], '"my.module" is not a module name'],
    [["list", "extra"], "list takes no argument"],
    [["list", "--bogus"], "Unknown option '--bogus'"],
  ])("tandem module %j", (args, expected) => {
    const { code, output } = runCli(["module", ...args]);
    expect(output).toContain(expected);
    expect(code).toBe(2);
  });
});
