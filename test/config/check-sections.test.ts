// <errd> and <check>: valid SafeKit snippets read to the expected process watches and
// checkers with their documented defaults; each invalid snippet gives exactly the expected
// located problem; unknown attributes warn.

import { describe, expect, it } from "vitest";
import type { Checker, ErrdSection, ModuleMode, ProcWatch } from "../../core/config/module-config.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { ElementReader, type ReadContext } from "../../core/config/reader.ts";
import { readCheck } from "../../core/config/sections/check.ts";
import { readErrd } from "../../core/config/sections/errd.ts";
import { parseXml } from "../../core/config/xml-tree.ts";

function readWith<T>(text: string, read: (reader: ElementReader) => T): { value: T; messages: string[] } {
  const document = parseXml("userconfig.xml", text);
  expect(document.problems.map(formatProblem)).toEqual([]);
  const context: ReadContext = { file: "userconfig.xml", problems: [], macros: new Map([["PORT", "8080"]]), environment: {}, unsafeIfIgnored: new Map() };
  const value = read(new ElementReader(context, document.root!));
  return { value, messages: context.problems.map(formatProblem) };
}

const errd = (text: string, mode?: ModuleMode) => readWith(text, (reader) => readErrd(reader, mode));
const check = (text: string, mode?: ModuleMode) => readWith(text, (reader) => readCheck(reader, mode));

const watch = (fields: Partial<ProcWatch>): ProcWatch => ({
  name: null,
  nameRegex: null,
  argRegex: null,
  service: false,
  atLeast: 1,
  atMost: -1,
  action: "restart",
  className: "prim",
  startAfter: 0,
  ...fields,
});

describe("<errd>: valid snippets", () => {
  it.each<[string, string, ModuleMode | undefined, ErrdSection]>([
    ["defaults in a mirror: class prim, poll every 30 s", `<errd><proc name="nginx"/></errd>`, "mirror", { pollTimerMs: 30_000, procs: [watch({ name: "nginx" })] }],
    ["defaults in a farm: class both", `<errd polltimer="10"><proc name="nginx"/></errd>`, "farm", { pollTimerMs: 10_000, procs: [watch({ name: "nginx", className: "both" })] }],
    ["without a mode, SafeKit's default class prim", `<errd><proc name="nginx"/></errd>`, undefined, { pollTimerMs: 30_000, procs: [watch({ name: "nginx" })] }],
    [
      "every attribute",
      `<errd polltimer="500ms"><proc nameregex="^java$" argregex="-jar app[.]jar" service="no" atleast="2" atmax="4" action="stopstart" class="pre" start_after="3"/></errd>`,
      "mirror",
      { pollTimerMs: 500, procs: [watch({ nameRegex: "^java$", argRegex: "-jar app[.]jar", atLeast: 2, atMost: 4, action: "stopstart", className: "pre", startAfter: 3 })] },
    ],
    [
      "a service, a handler, a class of one's own, atleast 0",
      `<errd><proc name="postgresql" service="yes" atleast="0" action="on_pg_failure.sh" class="db-watch"/></errd>`,
      "mirror",
      { pollTimerMs: 30_000, procs: [watch({ name: "postgresql", service: true, atLeast: 0, action: { handler: "on_pg_failure.sh" }, className: "db-watch" })] },
    ],
    ["atmax equal to atleast", `<errd><proc name="a" atleast="3" atmax="3" action="noaction" class="second"/></errd>`, "mirror", { pollTimerMs: 30_000, procs: [watch({ name: "a", atLeast: 3, atMost: 3, action: "noaction", className: "second" })] }],
  ])("%s", (_, text, mode, expected) => {
    const { value, messages } = errd(text, mode);
    expect(messages).toEqual([]);
    expect(value).toEqual(expected);
  });
});

describe("<errd>: invalid snippets give located problems", () => {
  it.each<[string, string, ModuleMode, string[]]>([
    ["neither name nor nameregex", `<errd><proc atleast="1"/></errd>`, "mirror", ["userconfig.xml:1:7 <proc>: a <proc> needs name (the exact process or service name) or nameregex (a regular expression on it)"]],
    ["both name and nameregex", `<errd><proc name="a" nameregex="a.*"/></errd>`, "mirror", ['userconfig.xml:1:22 <proc nameregex="a.*">: give name or nameregex, not both: it would be unclear which processes count']],
    ["a service by regex", `<errd><proc nameregex="ngin.*" service="yes"/></errd>`, "mirror", ['userconfig.xml:1:13 <proc nameregex="ngin.*">: service="yes" watches one systemd service by its name: give name, not nameregex']],
    ["an empty name", `<errd><proc name=" "/></errd>`, "mirror", ['userconfig.xml:1:13 <proc name=" ">: expected the name of the process or service to watch']],
    [
      "a regex that does not compile",
      `<errd><proc nameregex="java("/></errd>`,
      "mirror",
      ['userconfig.xml:1:13 <proc nameregex="java(">: expected a regular expression that compiles (tandem matches with JavaScript regular expressions): Invalid regular expression: /java(/: Unterminated group'],
    ],
    ["atmax below atleast", `<errd><proc name="a" atleast="2" atmax="1"/></errd>`, "mirror", ['userconfig.xml:1:34 <proc atmax="1">: atmax (1) is below atleast (2): no number of processes satisfies both; use -1 for no maximum']],
    ["atmax below -1", `<errd><proc name="a" atmax="-2"/></errd>`, "mirror", ['userconfig.xml:1:22 <proc atmax="-2">: expected a whole number from -1 to 100000']],
    ["a negative atleast", `<errd><proc name="a" atleast="-1"/></errd>`, "mirror", ['userconfig.xml:1:22 <proc atleast="-1">: expected a whole number from 0 to 100000']],
    [
      "wait is not an errd action",
      `<errd><proc name="a" action="wait"/></errd>`,
      "mirror",
      ['userconfig.xml:1:22 <proc action="wait">: expected restart, stopstart, stop, noaction or a handler\'s name: wait is a failover rule action, not a process monitoring one'],
    ],
    [
      "a handler name that could leave bin/",
      `<errd><proc name="a" action="../x"/></errd>`,
      "mirror",
      ['userconfig.xml:1:22 <proc action="../x">: expected restart, stopstart, stop, noaction or the name of a handler program in the module\'s bin/ (letters, digits, _, - and ., not starting with . or -)'],
    ],
    ["a bad class", `<errd><proc name="a" class="my class"/></errd>`, "mirror", ['userconfig.xml:1:22 <proc class="my class">: expected prim, second, both, pre, sec or a class name of your own (letters, digits, _ and -)']],
    ["a bad service", `<errd><proc name="a" service="maybe"/></errd>`, "mirror", ['userconfig.xml:1:22 <proc service="maybe">: expected on or off (also yes/no, true/false)']],
    ["a polltimer of 0", `<errd polltimer="0"/>`, "mirror", ['userconfig.xml:1:7 <errd polltimer="0">: expected at least 1s: processes are counted every polltimer']],
    ["class prim in a farm is never enabled", `<errd><proc name="a" class="prim"/></errd>`, "farm", ['userconfig.xml:1:22 <proc class="prim">: warning: a farm node is UP, never PRIM or SECOND, so class prim is never enabled; use both (while UP) or pre']],
  ])("%s", (_, text, mode, expected) => {
    expect(errd(text, mode).messages).toEqual(expected);
  });

  it("unknown attributes and elements warn", () => {
    expect(errd(`<errd colour="x"><proc name="a" user="root"/><watch/></errd>`, "mirror").messages).toEqual([
      'userconfig.xml:1:33 <proc user="root">: warning: attribute user is not used by tandem; it is ignored',
      'userconfig.xml:1:7 <errd colour="x">: warning: attribute colour is not used by tandem; it is ignored',
      "userconfig.xml:1:46 <watch>: warning: <watch> is not used by tandem inside <errd>; it is ignored",
    ]);
  });
});

describe("<check>: valid snippets", () => {
  it("every kind, in file order, with the documented defaults (mirror)", () => {
    const text = `<check>
  <tcp ident="web"><to addr="127.0.0.1" port="%PORT%"/></tcp>
  <ping><to addr="192.168.1.1"/></ping>
  <intf><to local_addr="192.168.1.10"/></intf>
  <ip ident="vip"><to addr="192.168.1.222"/></ip>
  <custom ident="checkfile" exec="checkfile.sh" arg="/data/flag"/>
  <module name="db"><to addr="10.0.0.2" port="9010"/></module>
  <module name="cache"/>
  <splitbrain exec="ping" arg="192.168.1.1  192.168.1.2"/>
</check>`;
    const timing = { intervalMs: 10_000, timeoutMs: 5_000 };
    const { value, messages } = check(text, "mirror");
    expect(messages).toEqual([]);
    expect(value).toEqual<Checker[]>([
      { kind: "tcp", ident: "web", when: "prim", action: "restart", ...timing, addr: "127.0.0.1", port: 8080 },
      { kind: "ping", ident: "192.168.1.1", when: "pre", action: "wait", ...timing, addr: "192.168.1.1" },
      { kind: "intf", ident: "192.168.1.10", when: "pre", action: "wait", ...timing, localAddr: "192.168.1.10" },
      { kind: "ip", ident: "vip", when: "prim", action: "stopstart", ...timing, addr: "192.168.1.222" },
      { kind: "custom", ident: "checkfile", when: "prim", action: "restart", ...timing, exec: "checkfile.sh", arg: "/data/flag" },
      { kind: "module", ident: "db", when: "pre", action: "wait", ...timing, module: "db", addr: "10.0.0.2", port: 9010 },
      { kind: "module", ident: "cache", when: "pre", action: "wait", ...timing, module: "cache", addr: null, port: null },
      { kind: "splitbrain", ident: "witness", when: "pre", action: "wait", ...timing, exec: "ping", witnesses: ["192.168.1.1", "192.168.1.2"] },
    ]);
  });

  it.each<[string, string, ModuleMode | undefined, Checker]>([
    [
      "tcp in a farm defaults to when=both; units on interval and timeout",
      `<check><tcp ident="app"><to addr="::1" port="80" interval="30" timeout="2500ms"/></tcp></check>`,
      "farm",
      { kind: "tcp", ident: "app", when: "both", action: "restart", intervalMs: 30_000, timeoutMs: 2_500, addr: "::1", port: 80 },
    ],
    [
      "a short interval halves the default timeout",
      `<check><tcp ident="app" when="pre" action="stopstart"><to addr="127.0.0.1" port="80" interval="4"/></tcp></check>`,
      "mirror",
      { kind: "tcp", ident: "app", when: "pre", action: "stopstart", intervalMs: 4_000, timeoutMs: 2_000, addr: "127.0.0.1", port: 80 },
    ],
    [
      "ping with its own when, action and ident",
      `<check><ping ident="router" when="both" action="stop"><to addr="192.168.1.1"/></ping></check>`,
      "mirror",
      { kind: "ping", ident: "router", when: "both", action: "stop", intervalMs: 10_000, timeoutMs: 5_000, addr: "192.168.1.1" },
    ],
    [
      "without a mode, the application checkers default to when=prim",
      `<check><custom ident="x" exec="/opt/check" action="noaction"/></check>`,
      undefined,
      { kind: "custom", ident: "x", when: "prim", action: "noaction", intervalMs: 10_000, timeoutMs: 5_000, exec: "/opt/check", arg: "" },
    ],
    [
      "ip in a farm defaults to when=both",
      `<check><ip><to addr="192.168.1.223"/></ip></check>`,
      "farm",
      { kind: "ip", ident: "192.168.1.223", when: "both", action: "stopstart", intervalMs: 10_000, timeoutMs: 5_000, addr: "192.168.1.223" },
    ],
    [
      "a splitbrain program's arguments are kept as they are",
      `<check><splitbrain ident="arbiter" exec="/usr/local/bin/arbiter" arg="--site a"/></check>`,
      "mirror",
      { kind: "splitbrain", ident: "arbiter", when: "pre", action: "wait", intervalMs: 10_000, timeoutMs: 5_000, exec: "/usr/local/bin/arbiter", witnesses: ["--site", "a"] },
    ],
  ])("%s", (_, text, mode, expected) => {
    const { value, messages } = check(text, mode);
    expect(messages).toEqual([]);
    expect(value).toEqual([expected]);
  });
});

describe("<check>: invalid snippets give located problems", () => {
  it.each<[string, string, string[]]>([
    ["tcp without ident", `<check><tcp><to addr="127.0.0.1" port="80"/></tcp></check>`, ["userconfig.xml:1:8 <tcp>: a <tcp> checker needs ident: its resource is named tcp.IDENT in failover rules and logs"]],
    ["custom without ident", `<check><custom exec="x"/></check>`, ["userconfig.xml:1:8 <custom>: a <custom> checker needs ident: its resource is named custom.IDENT in failover rules and logs"]],
    ["an ident failover rules cannot name", `<check><tcp ident="my web"><to addr="127.0.0.1" port="80"/></tcp></check>`, ['userconfig.xml:1:13 <tcp ident="my web">: expected letters, digits, _ and - (in parts separated by dots): failover rules name this checker tcp.IDENT']],
    [
      "two tcp checkers with one ident",
      `<check><tcp ident="web"><to addr="127.0.0.1" port="80"/></tcp><tcp ident="web"><to addr="127.0.0.1" port="81"/></tcp></check>`,
      ['userconfig.xml:1:68 <tcp ident="web">: a second tcp checker named web: its resource tcp.web must be unique'],
    ],
    ["two pings defaulting to one address", `<check><ping><to addr="10.0.0.1"/></ping><ping><to addr="10.0.0.1"/></ping></check>`, ["userconfig.xml:1:42 <ping>: a second ping checker named 10.0.0.1: its resource ping.10.0.0.1 must be unique"]],
    ["tcp without <to>", `<check><tcp ident="web"/></check>`, ['userconfig.xml:1:8 <tcp>: a <tcp> checker needs a <to addr="…" port="…"/>: what it tests']],
    ["tcp without port", `<check><tcp ident="web"><to addr="127.0.0.1"/></tcp></check>`, ["userconfig.xml:1:25 <to>: attribute port is required"]],
    ["a bad address", `<check><ping><to addr="localhost"/></ping></check>`, ['userconfig.xml:1:18 <to addr="localhost">: expected an IPv4 address such as 192.168.1.10 (no leading zeros) or an IPv6 address such as fd00::10']],
    ["intf without local_addr", `<check><intf><to addr="10.0.0.1"/></intf></check>`, ["userconfig.xml:1:14 <to>: attribute local_addr is required", 'userconfig.xml:1:18 <to addr="10.0.0.1">: warning: attribute addr is not used by tandem; it is ignored']],
    [
      "a timeout not below the interval",
      `<check><tcp ident="web"><to addr="127.0.0.1" port="80" interval="5s" timeout="5s"/></tcp></check>`,
      ['userconfig.xml:1:70 <to timeout="5s">: expected a timeout above 0 and below the interval: at 5s with an interval of 5s, a probe would overlap the next'],
    ],
    ["an interval of 0", `<check><tcp ident="web"><to addr="127.0.0.1" port="80" interval="0"/></tcp></check>`, ['userconfig.xml:1:56 <to interval="0">: expected a duration above 0 and at most 24h: the checker tests once every interval']],
    ["a bad when", `<check><tcp ident="web" when="always"><to addr="127.0.0.1" port="80"/></tcp></check>`, ['userconfig.xml:1:25 <tcp when="always">: expected one of pre, prim, second, both']],
    ["a bad action", `<check><ping action="swap"><to addr="10.0.0.1"/></ping></check>`, ['userconfig.xml:1:14 <ping action="swap">: expected one of restart, stopstart, stop, wait, noaction']],
    [
      "a custom exec with a path that is not absolute",
      `<check><custom ident="c" exec="bin/check"/></check>`,
      ['userconfig.xml:1:26 <custom exec="bin/check">: expected a program in the module\'s bin/ (a file name: letters, digits, _, - and ., not starting with . or -) or an absolute path'],
    ],
    ["a splitbrain exec that is neither ping nor absolute", `<check><splitbrain exec="arping" arg="10.0.0.1"/></check>`, ['userconfig.xml:1:20 <splitbrain exec="arping">: expected ping or the absolute path of a program']],
    [
      "a witness that is not an address",
      `<check><splitbrain arg="10.0.0.1 gateway"/></check>`,
      ['userconfig.xml:1:20 <splitbrain arg="10.0.0.1 gateway">: expected witness IP addresses separated by spaces: gateway is not an IPv4 address such as 192.168.1.10 (no leading zeros) or an IPv6 address such as fd00::10'],
    ],
    ["a splitbrain without arg", `<check><splitbrain/></check>`, ["userconfig.xml:1:8 <splitbrain>: attribute arg is required: the witness addresses, separated by spaces"]],
    ["two splitbrain checkers", `<check><splitbrain arg="10.0.0.1"/><splitbrain ident="b" arg="10.0.0.2"/></check>`, ["userconfig.xml:1:36 <splitbrain>: a module has at most one <splitbrain> checker: one witness test decides which node may become primary"]],
    ["a module checker without name", `<check><module/></check>`, ["userconfig.xml:1:8 <module>: attribute name is required"]],
    ["a module name with a space", `<check><module name="my db"/></check>`, ['userconfig.xml:1:16 <module name="my db">: expected a module\'s name (letters, digits, _ and -): the checker\'s resource is module.NAME']],
  ])("%s", (_, text, expected) => {
    expect(check(text, "mirror").messages).toEqual(expected);
  });

  it.each<[string, string, string[]]>([
    ["when=prim in a farm never runs", `<check><tcp ident="web" when="prim"><to addr="127.0.0.1" port="80"/></tcp></check>`, ['userconfig.xml:1:25 <tcp when="prim">: warning: a farm node is UP, never PRIM or SECOND, so when="prim" never runs this checker; use both (while UP) or pre']],
    ["splitbrain in a farm has no effect", `<check><splitbrain arg="10.0.0.1"/></check>`, ["userconfig.xml:1:8 <splitbrain>: warning: <splitbrain> decides which node of a mirror may become primary; a farm module has no primary, so it has no effect"]],
  ])("farm: %s", (_, text, expected) => {
    expect(check(text, "farm").messages).toEqual(expected);
  });

  it("unknown attributes warn, including when/action where the checker has none", () => {
    expect(check(`<check><ip action="wait"><to addr="10.0.0.1" ttl="3"/></ip></check>`, "mirror").messages).toEqual([
      'userconfig.xml:1:46 <to ttl="3">: warning: attribute ttl is not used by tandem; it is ignored',
      'userconfig.xml:1:12 <ip action="wait">: warning: attribute action is not used by tandem; it is ignored',
    ]);
  });

  it("an unknown checker is left to finish(): a warning here, which the caller makes an error", () => {
    expect(check(`<check><http ident="x"/></check>`, "mirror").messages).toEqual(["userconfig.xml:1:8 <http>: warning: <http> is not used by tandem inside <check>; it is ignored"]);
  });
});
