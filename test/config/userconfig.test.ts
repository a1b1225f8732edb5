// userconfig.xml as a whole: valid SafeKit files load to the expected typed configuration;
// each invalid case gives its located error; unknown settings warn unless unsafe.

import { describe, expect, it } from "vitest";
import { formatProblem } from "../../core/config/problems.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";

const read = (text: string, environment: Record<string, string> = {}) => readUserconfig({ moduleName: "am", file: "userconfig.xml", text, environment });
const messages = (text: string) => read(text).problems.map(formatProblem);

const farm = (inner: string, attributes = "") => `<safe>
  <service mode="farm"${attributes}>
    <farm><lan name="default"/></farm>
${inner}
  </service>
</safe>`;

describe("a valid farm module", () => {
  const text = `<safe>
  <macro name="VIP" value="192.168.1.223"/>
  <service mode="farm" boot="on" maxloop="5" loop_interval="12">
    <farm pulse="50ms" slost_count="5"><lan name="default"/></farm>
    <vip>
      <interface_list><interface>
        <virtual_interface type="vmac_invisible" addr="5a:fe:c0:a8:01:df"><virtual_addr addr="%VIP%" where="alias"/></virtual_interface>
      </interface></interface_list>
      <loadbalancing_list><group name="g">
        <cluster><host name="s1" power="2"/><host name="s2"/></cluster>
        <rule virtual_addr="*" port="80" proto="tcp" filter="on_port"/>
        <rule virtual_addr="*" port="443" proto="tcp" filter="on_addr"/>
      </group></loadbalancing_list>
    </vip>
    <user><var name="DOCROOT" value="/srv/www"/></user>
    <failover period="2s"><![CDATA[
      web_down: if (tcp.web == down) then restart();
    ]]></failover>
  </service>
</safe>`;
  const result = read(text);

  it("loads without problems", () => {
    expect(result.problems.map(formatProblem)).toEqual([]);
  });

  it("has the service settings, with units and defaults applied", () => {
    expect(result.module?.mode).toBe("farm");
    expect(result.module?.service).toEqual({ boot: "on", bootDelayMs: 0, failover: true, defaultPrim: { kind: "alone" }, maxLoop: 5, loopIntervalMs: 12 * 3_600_000, automaticReboot: false });
  });

  it("expands macros and maps filters to balance modes", () => {
    expect(result.module?.vip?.interfaces[0]?.virtualInterface?.virtualAddrs[0]?.addr).toBe("192.168.1.223");
    expect(result.module?.vip?.groups[0]?.rules.map((rule) => [rule.port, rule.mode])).toEqual([[80, "srcip+srcport"], [443, "srcip"]]);
    expect(result.module?.vip?.groups[0]?.hosts).toEqual([{ name: "s1", power: 2 }, { name: "s2", power: 1 }]);
  });

  it("keeps user variables and failover settings", () => {
    expect(result.module?.user?.vars).toEqual([{ name: "DOCROOT", value: "/srv/www" }]);
    expect(result.module?.failover.periodMs).toBe(2_000);
    expect(result.module?.failover.handleTimeMs).toBe(15_000);
  });

  it("is deeply frozen", () => {
    expect(Object.isFrozen(result.module)).toBe(true);
    expect(Object.isFrozen(result.module?.vip?.groups[0]?.rules)).toBe(true);
  });

  it("no <user> element means no scripts", () => {
    expect(read(farm("")).module?.user).toBeNull();
  });

  it("takes %NAME% from the environment when no macro defines it", () => {
    const module = read(farm(`<user><var name="X" value="%HOME_DIR%"/></user>`), { HOME_DIR: "/home/x" }).module;
    expect(module?.user?.vars[0]?.value).toBe("/home/x");
  });
});

describe("invalid modules give located errors", () => {
  it.each<[string, string, string]>([
    ["the root is not <safe>", `<module/>`, "userconfig.xml:1:1 <module>: the root element of a userconfig.xml is <safe>, not <module>"],
    ["no <service>", `<safe/>`, "userconfig.xml:1:1 <safe>: <safe> must hold exactly one <service>, found 0"],
    ["an unknown mode", `<safe><service mode="cluster"/></safe>`, 'userconfig.xml:1:16 <service mode="cluster">: expected one of mirror, farm, light'],
    ["a farm without <farm>", `<safe><service mode="farm"/></safe>`, "userconfig.xml:1:7 <service>: a farm module needs a <farm> element"],
    ["an undefined macro", farm(`<user><var name="A" value="%NOPE%"/></user>`), 'userconfig.xml:4:21 <var value="%NOPE%">: %NOPE% is neither a <macro> of this module nor an environment variable'],
    ["a bad duration", farm("", ' loop_interval="soon"'), 'userconfig.xml:2:24 <service loop_interval="soon">: expected a duration such as 700ms, 30s or 24h (a bare number is in h)'],
    ["a duration that rounds to 0 in its unit", farm("", ' loop_interval="10m"'), 'userconfig.xml:2:24 <service loop_interval="10m">: expected at least 1h: this attribute counts in h, and 10m rounds to 0'],
    ["a mirror element in a farm", farm(`<rfs/>`), "userconfig.xml:4:1 <rfs>: <rfs> belongs to mirror modules; this module's mode is farm"],
    ["a failover rule with a bad action", farm(`<failover><![CDATA[\nx: if (tcp.a == down) then explode();\n]]></failover>`), ""],
  ])("%s", (_, text, expected) => {
    const found = messages(text);
    if (expected === "") expect(found.some((line) => line.startsWith("userconfig.xml:5:28 <failover>: unknown action \"explode\""))).toBe(true);
    else expect(found).toContain(expected);
    expect(found.filter((line) => line.includes("warning:"))).toEqual([]);
    expect(read(text).module).toBeNull();
  });

  it("reports every problem in one pass", () => {
    const text = farm(`<user><var name="A" value="%NOPE%"/></user>`, ' maxloop="-1" loop_interval="soon"');
    expect(messages(text).length).toBeGreaterThanOrEqual(3);
  });
});

describe("unknown settings", () => {
  it("an unknown attribute is a warning and the module still loads", () => {
    const result = read(farm("", ' colour="blue"'));
    expect(result.problems.map(formatProblem)).toEqual(['userconfig.xml:2:24 <service colour="blue">: warning: attribute colour is not used by tandem; it is ignored']);
    expect(result.module).not.toBeNull();
  });

  it("an unknown element is a warning", () => {
    expect(messages(farm("<vhost/>"))).toEqual(["userconfig.xml:4:1 <vhost>: warning: <vhost> is not used by tandem inside <service>; it is ignored"]);
  });

  it("an unknown checker is an error: the module would not react to that failure", () => {
    const found = messages(farm("<check><http ident='x'/></check>"));
    expect(found.some((line) => line.includes("<http>") && line.includes("tandem has no <http> checker yet"))).toBe(true);
  });
});
