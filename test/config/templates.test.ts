// The shipped templates and the examples of ../shared/userconfig.md load clean, to the
// configuration they describe; `tandem config check` reports located errors and exits
// with 0, 1 or 2 as documented.

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { checkConfigDir } from "../../cli/config-command.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";
import { readClusterXml } from "../../core/config/cluster-xml.ts";
import { runCli } from "../cli/run-cli.ts";

const templates = fileURLToPath(new URL("../../templates", import.meta.url));
const load = (name: string) => {
  const file = join(templates, "modules", name, "conf", "userconfig.xml");
  return readUserconfig({ moduleName: name, file, text: readFileSync(file, "utf8"), environment: {} });
};
const scratch = mkdtempSync(join(tmpdir(), "tandem-config-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("templates", () => {
  it("the template directory checks clean: no error, no warning", () => {
    const report = checkConfigDir(templates);
    expect(report.modules).toEqual(["generic-farm", "generic-mirror", "nginx-farm", "postgresql-mirror"]);
    expect(report.problems.map(formatProblem)).toEqual([]);
  });

  it("the nginx farm balances port 80 by connection over both nodes", () => {
    const module = load("nginx-farm").module;
    expect(module?.mode).toBe("farm");
    const rules = module?.vip?.groups.flatMap((group) => group.rules) ?? [];
    expect(rules.some((rule) => rule.port === 80 && rule.mode === "srcip+srcport")).toBe(true);
    expect(module?.vip?.groups[0]?.hosts.map((host) => host.name)).toEqual(["node1", "node2"]);
  });

  it("the PostgreSQL mirror replicates the data directory and checks it is there", () => {
    const module = load("postgresql-mirror").module;
    expect(module?.mode).toBe("mirror");
    expect(module?.rfs?.replicated.length).toBeGreaterThan(0);
    expect(module?.rfs?.replicated[0]?.toCheck.length).toBeGreaterThan(0);
    expect(module?.user).not.toBeNull();
  });

  it("every template script is executable and takes the stop 'force' argument", () => {
    for (const name of ["generic-farm/bin/stop_both", "generic-mirror/bin/stop_prim", "nginx-farm/bin/stop_both", "postgresql-mirror/bin/stop_prim"]) {
      const text = readFileSync(join(templates, "modules", name), "utf8");
      expect(text.startsWith("#!"), name).toBe(true);
      expect(text, name).toContain("force");
    }
  });
});

describe("examples of the SafeKit summary", () => {
  it("the cluster.xml example names two nodes on two networks", () => {
    const result = readClusterXml("cluster.xml", `<cluster>
  <lans>
    <lan name="default"> <node name="s1" addr="10.0.0.10"/> <node name="s2" addr="10.0.0.11"/> </lan>
    <lan name="private"> <node name="s1" addr="10.1.0.10"/> <node name="s2" addr="10.1.0.11"/> </lan>
  </lans>
</cluster>`);
    expect(result.problems).toEqual([]);
    expect(result.cluster?.lans.map((lan) => [lan.name, lan.nodes.map((node) => node.name)])).toEqual([["default", ["s1", "s2"]], ["private", ["s1", "s2"]]]);
  });

  it("the rfs and failover examples load into a mirror module", () => {
    const result = readUserconfig({ moduleName: "pg", file: "userconfig.xml", environment: {}, text: `<safe><service mode="mirror">
<heart><heartbeat name="default"/></heart>
<rfs async="second" nbrei="6" reiallowedbw="20000" locktimeout="100s" sendtimeout="30s">
  <replicated dir="/var/lib/postgresql" mode="read_only">
    <tocheck path="15/main/PG_VERSION"/>
    <notreplicated path="tmp"/>
    <notreplicated regexpath=".*\\.tmp$"/>
  </replicated>
</rfs>
<failover extends="yes" period="5000ms" handle_time="15000ms"><![CDATA[
checkfile_failure: if (custom.checkfile == down) then restart();
]]></failover>
</service></safe>` });
    expect(result.problems.map(formatProblem)).toEqual([]);
    expect(result.module?.rfs?.replicated[0]?.dir).toBe("/var/lib/postgresql");
    expect(result.module?.failover.rules.map((rule) => rule.label)).toContain("checkfile_failure");
  });
});

describe("tandem config check", () => {
  it("exits 0 on the templates and names the modules", () => {
    const { code, output } = runCli(["config", "check", templates]);
    expect(code).toBe(0);
    expect(output).toContain("4 modules (generic-farm, generic-mirror, nginx-farm, postgresql-mirror): 0 errors, 0 warnings");
  });

  it("exits 1 and locates the error in a broken module", () => {
    const dir = join(scratch, "broken");
    cpSync(templates, dir, { recursive: true });
    const file = join(dir, "modules", "nginx-farm", "conf", "userconfig.xml");
    writeFileSync(file, readFileSync(file, "utf8").replace('filter="on_port"', 'filter="on_ip"'));
    const line = readFileSync(file, "utf8").split("\n").findIndex((text) => text.includes('filter="on_ip"')) + 1;
    const { code, output } = runCli(["config", "check", dir]);
    expect(code).toBe(1);
    expect(output).toMatch(new RegExp(`modules/nginx-farm/conf/userconfig.xml:${line}:\\d+ <rule filter="on_ip">: expected .*on_addr.*on_port`));
  });

  it("exits 1 when a module names a node that cluster.xml does not have", () => {
    const dir = join(scratch, "unknown-node");
    cpSync(templates, dir, { recursive: true });
    const file = join(dir, "modules", "generic-farm", "conf", "userconfig.xml");
    writeFileSync(file, readFileSync(file, "utf8").replace('name="node2"', 'name="node9"'));
    const { code, output } = runCli(["config", "check", dir]);
    expect(code).toBe(1);
    expect(output).toContain("node9");
  });

  it("prints JSON with --json", () => {
    const { code, output } = runCli(["config", "check", templates, "--json"]);
    expect(code).toBe(0);
    expect(JSON.parse(output)).toMatchObject({ errors: 0, warnings: 0 });
  });

  it("exits 2 when there is nothing to check", () => {
    const dir = join(scratch, "empty");
    mkdirSync(dir);
    const { code, output } = runCli(["config", "check", dir]);
    expect(code).toBe(2);
    expect(output).toContain("no module in");
  });
});
