// <farm> and <vip>: valid SafeKit snippets read to the expected typed sections; each
// invalid snippet gives exactly the expected located problem; unknown attributes warn;
// the strict IP and virtual MAC grammars accept and refuse what they document.

import { describe, expect, it } from "vitest";
import type { FarmSection, ModuleMode, VipSection } from "../../core/config/module-config.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { ElementReader, type ReadContext } from "../../core/config/reader.ts";
import { readFarm } from "../../core/config/sections/farm.ts";
import { parseIpAddress, parseVirtualMac, readVip } from "../../core/config/sections/vip.ts";
import { parseXml } from "../../core/config/xml-tree.ts";

function readWith<T>(text: string, read: (reader: ElementReader) => T, macros: Record<string, string> = {}): { value: T; messages: string[] } {
  const document = parseXml("userconfig.xml", text);
  expect(document.problems.map(formatProblem)).toEqual([]);
  const context: ReadContext = { file: "userconfig.xml", problems: [], macros: new Map(Object.entries(macros)), environment: {}, unsafeIfIgnored: new Map() };
  const value = read(new ElementReader(context, document.root!));
  return { value, messages: context.problems.map(formatProblem) };
}

const farm = (text: string) => readWith(text, readFarm);
const vip = (mode: ModuleMode) => (text: string) => readWith(text, (reader) => readVip(reader, mode));

/** A farm <vip> whose lines 1–5 declare 192.168.1.223 and whose load balancing starts on line 6. */
const farmVip = (groups: string, addr = "192.168.1.223") =>
  [
    `<vip>`,
    `  <interface_list><interface>`,
    `    <virtual_interface type="vmac_invisible" addr="5a:fe:c0:a8:01:df"><virtual_addr addr="${addr}"/></virtual_interface>`,
    `  </interface></interface_list>`,
    `  <loadbalancing_list>`,
    groups,
    `  </loadbalancing_list>`,
    `</vip>`,
  ].join("\n");

const hosts = `<cluster><host name="s1"/></cluster>`;

describe("<farm>: valid snippets", () => {
  it.each<[string, string, FarmSection]>([
    ["defaults", `<farm><lan name="default"/></farm>`, { port: null, pulseMs: 100, mlostCount: 20, slostCount: 10, detectionWritten: false, lans: ["default"] }],
    [
      "every attribute, bare pulse in ms",
      `<farm port="9453" pulse="50" mlost_count="4" slost_count="2"><lan name="default"/><lan name="private"/></farm>`,
      { port: 9453, pulseMs: 50, mlostCount: 4, slostCount: 2, detectionWritten: true, lans: ["default", "private"] },
    ],
    ["a pulse with a unit", `<farm pulse="1s"><lan name="a"/></farm>`, { port: null, pulseMs: 1_000, mlostCount: 20, slostCount: 10, detectionWritten: true, lans: ["a"] }],
    ["slost_count alone", `<farm slost_count="5"><lan name="a"/></farm>`, { port: null, pulseMs: 100, mlostCount: 20, slostCount: 5, detectionWritten: true, lans: ["a"] }],
    ["mlost_count alone does not set the detection", `<farm mlost_count="5"><lan name="a"/></farm>`, { port: null, pulseMs: 100, mlostCount: 5, slostCount: 10, detectionWritten: false, lans: ["a"] }],
  ])("%s", (_, text, expected) => {
    const { value, messages } = farm(text);
    expect(messages).toEqual([]);
    expect(value).toEqual(expected);
  });
});

describe("<farm>: invalid snippets give located problems", () => {
  it.each<[string, string, string[]]>([
    [
      "slost_count 1: one lost pulse would move buckets",
      `<farm slost_count="1"><lan name="a"/></farm>`,
      [
        'userconfig.xml:1:7 <farm slost_count="1">: expected at least 2: with 1, a single lost heartbeat declares a follower lost, and no bucket lease can expire between one pulse and the detection, so a hung follower and its successor could serve the same clients',
      ],
    ],
    ["mlost_count 0", `<farm mlost_count="0"><lan name="a"/></farm>`, ['userconfig.xml:1:7 <farm mlost_count="0">: expected a whole number from 1 to 10000']],
    ["a port out of range", `<farm port="70000"><lan name="a"/></farm>`, ['userconfig.xml:1:7 <farm port="70000">: expected a whole number from 1 to 65535']],
    [
      "a pulse that is not whole milliseconds",
      `<farm pulse="1.5ms"><lan name="a"/></farm>`,
      ['userconfig.xml:1:7 <farm pulse="1.5ms">: expected a whole number of milliseconds from 1ms to 60s: the pulse paces every heartbeat and the failure detector'],
    ],
    ["a pulse of 0", `<farm pulse="0"><lan name="a"/></farm>`, ['userconfig.xml:1:7 <farm pulse="0">: expected a whole number of milliseconds from 1ms to 60s: the pulse paces every heartbeat and the failure detector']],
    ["no lan", `<farm/>`, ['userconfig.xml:1:1 <farm>: a <farm> needs at least one <lan name="…"/>: the networks of cluster.xml that carry its heartbeats']],
    ["a lan twice", `<farm><lan name="a"/><lan name="a"/></farm>`, ['userconfig.xml:1:27 <lan name="a">: lan a is listed twice in <farm>; each network carries one heartbeat']],
    ["a lan without name", `<farm><lan/></farm>`, ["userconfig.xml:1:7 <lan>: attribute name is required"]],
  ])("%s", (_, text, expected) => {
    expect(farm(text).messages).toEqual(expected);
  });

  it("reports every problem in one pass", () => {
    expect(farm(`<farm port="0" mlost_count="x" slost_count="1"/>`).messages).toHaveLength(4);
  });
});

describe("<farm>: unknown settings warn", () => {
  it("an unknown attribute, on <farm> and on <lan>", () => {
    expect(farm(`<farm colour="blue"><lan name="a" speed="10"/></farm>`).messages).toEqual([
      'userconfig.xml:1:35 <lan speed="10">: warning: attribute speed is not used by tandem; it is ignored',
      'userconfig.xml:1:7 <farm colour="blue">: warning: attribute colour is not used by tandem; it is ignored',
    ]);
  });

  it("pre-7.2 <node> under <lan> is named as the legacy form", () => {
    expect(farm(`<farm><lan name="a"><node name="s1" addr="10.0.0.1"/></lan></farm>`).messages).toEqual([
      "userconfig.xml:1:21 <node>: warning: <node> under the farm <lan> is the pre-7.2 form; tandem takes a lan's nodes from cluster.xml, so declare them there",
    ]);
  });
});

describe("<vip>: valid snippets", () => {
  it("a mirror <vip> on a real interface, with units and defaults", () => {
    const text = `<vip tcpreset="on">
  <interface_list>
    <interface check="on" arpreroute="on" arpinterval="30" arpelapse="10m">
      <real_interface>
        <virtual_addr addr="192.168.1.222" where="main" check="on"/>
        <virtual_addr addr="FD00:0:0::0A"/>
      </real_interface>
    </interface>
  </interface_list>
</vip>`;
    const { value, messages } = vip("mirror")(text);
    expect(messages).toEqual([]);
    expect(value).toEqual<VipSection>({
      tcpReset: true,
      interfaces: [
        {
          check: true,
          arpReroute: true,
          arpIntervalMs: 30_000,
          arpElapseMs: 600_000,
          realInterface: { virtualAddrs: [{ addr: "192.168.1.222", where: "main", check: true }, { addr: "fd00::a", where: "one_side_alias", check: false }] },
          virtualInterface: null,
        },
      ],
      groups: [],
    });
  });

  it("the farm example of the SafeKit guide, with a macro", () => {
    const text = `<vip>
  <interface_list>
    <interface>
      <virtual_interface type="vmac_invisible" addr="5A:FE:C0:A8:01:DF">
        <virtual_addr addr="%VIP%" where="alias" check="on"/>
      </virtual_interface>
    </interface>
  </interface_list>
  <loadbalancing_list>
    <group name="FarmProto">
      <cluster> <host name="s1" power="2"/> <host name="s2"/> <host name="s3" power="0"/> </cluster>
      <rule virtual_addr="*" port="80" proto="tcp" filter="on_port"/>
      <rule virtual_addr="192.168.1.223" port="443" filter="on_addr"/>
      <rule port="53" proto="udp" filter="on_ipid"/>
      <rule port="53" proto="tcp"/>
    </group>
  </loadbalancing_list>
</vip>`;
    const { value, messages } = readWith(text, (reader) => readVip(reader, "farm"), { VIP: "192.168.1.223" });
    expect(messages).toEqual([]);
    expect(value).toEqual<VipSection>({
      tcpReset: false,
      interfaces: [
        {
          check: false,
          arpReroute: false,
          arpIntervalMs: 60_000,
          arpElapseMs: 1_200_000,
          realInterface: null,
          virtualInterface: { type: "vmac_invisible", mac: "5a:fe:c0:a8:01:df", virtualAddrs: [{ addr: "192.168.1.223", where: "alias", check: true }] },
        },
      ],
      groups: [
        {
          name: "FarmProto",
          hosts: [
            { name: "s1", power: 2 },
            { name: "s2", power: 1 },
            { name: "s3", power: 0 },
          ],
          rules: [
            { virtualAddr: "*", port: 80, proto: "tcp", filter: "on_port", mode: "srcip+srcport" },
            { virtualAddr: "192.168.1.223", port: 443, proto: "tcp", filter: "on_addr", mode: "srcip" },
            { virtualAddr: "*", port: 53, proto: "udp", filter: "on_ipid", mode: null },
            { virtualAddr: "*", port: 53, proto: "tcp", filter: "on_addr", mode: "srcip" },
          ],
        },
      ],
    });
  });

  it("vmac_directed with ARP balancing; a farm address defaults to alias and a missing MAC to null", () => {
    const text = `<vip><interface_list><interface><virtual_interface type="vmac_directed"><virtual_addr addr="10.0.0.50"/></virtual_interface></interface></interface_list>
<loadbalancing_list><group name="g"><cluster><host name="s1"/></cluster><rule proto="arp" filter="on_addr"/></group></loadbalancing_list></vip>`;
    const { value, messages } = vip("farm")(text);
    expect(messages).toEqual([]);
    expect(value.interfaces[0]?.virtualInterface).toEqual({ type: "vmac_directed", mac: null, virtualAddrs: [{ addr: "10.0.0.50", where: "alias", check: false }] });
    expect(value.groups[0]?.rules).toEqual([{ virtualAddr: "*", port: 0, proto: "arp", filter: "on_addr", mode: "srcip" }]);
  });
});

describe("<vip>: invalid snippets give located problems", () => {
  it.each<[string, ModuleMode, string, string[]]>([
    [
      "a bad filter",
      "farm",
      farmVip(`    <group name="g">${hosts}\n      <rule port="80" filter="on_ip"/></group>`),
      ['userconfig.xml:7:23 <rule filter="on_ip">: expected on_addr, on_port or on_ipid'],
    ],
    [
      "on_ipid with tcp",
      "farm",
      farmVip(`    <group name="g">${hosts}<rule port="80" proto="tcp" filter="on_ipid"/></group>`),
      ['userconfig.xml:6:85 <rule filter="on_ipid">: on_ipid balances UDP datagrams by IP id; it needs proto="udp", not tcp'],
    ],
    [
      "on_port with arp",
      "farm",
      farmVip(`    <group name="g">${hosts}<rule proto="arp" filter="on_port"/></group>`),
      ['userconfig.xml:6:75 <rule filter="on_port">: ARP has no port: balance ARP with on_addr'],
    ],
    [
      "a tcp rule without port",
      "farm",
      farmVip(`    <group name="g">${hosts}<rule filter="on_addr"/></group>`),
      ["userconfig.xml:6:57 <rule>: attribute port is required"],
    ],
    [
      "two rules for one port, across groups",
      "farm",
      farmVip(`    <group name="a">${hosts}<rule port="80"/></group>\n    <group name="b">${hosts}<rule port="80" filter="on_port"/></group>`),
      ["userconfig.xml:7:63 <rule port=\"80\">: a second rule for tcp port 80 in this module: one rule decides which node accepts a packet"],
    ],
    [
      "a rule for an address the module does not have",
      "farm",
      farmVip(`    <group name="g">${hosts}<rule virtual_addr="10.9.9.9" port="80"/></group>`),
      ['userconfig.xml:6:63 <rule virtual_addr="10.9.9.9">: 10.9.9.9 is not a virtual address of this module (its <virtual_addr> elements: 192.168.1.223)'],
    ],
    [
      "a power above 100",
      "farm",
      farmVip(`    <group name="g"><cluster><host name="s1" power="101"/></cluster><rule port="80"/></group>`),
      ['userconfig.xml:6:46 <host power="101">: expected a whole number from 0 to 100'],
    ],
    [
      "a host twice",
      "farm",
      farmVip(`    <group name="g"><cluster><host name="s1"/><host name="s1"/></cluster><rule port="80"/></group>`),
      ['userconfig.xml:6:53 <host name="s1">: host s1 is listed twice in this group'],
    ],
    [
      "a group without <cluster>",
      "farm",
      farmVip(`    <group name="g"><rule port="80"/></group>`),
      ['userconfig.xml:6:5 <group>: a <group> needs a <cluster> of <host name="…" power="…"/>: the nodes that share its traffic'],
    ],
    [
      "a globally administered MAC",
      "farm",
      `<vip><interface_list><interface><virtual_interface addr="00:11:22:33:44:55"><virtual_addr addr="10.0.0.5"/></virtual_interface></interface></interface_list></vip>`,
      [
        'userconfig.xml:1:52 <virtual_interface addr="00:11:22:33:44:55">: expected a locally administered MAC: 00:11:22:33:44:55 is globally administered (a vendor\'s address, which could clash with a real card), and a virtual MAC must be a locally administered unicast address, whose second hex digit is 2, 6, a or e',
        "userconfig.xml:1:1 <vip>: warning: a farm <vip> without <loadbalancing_list> balances no traffic among the nodes",
      ],
    ],
    [
      "a multicast MAC",
      "farm",
      `<vip><interface_list><interface><virtual_interface addr="5b:fe:00:00:00:01"><virtual_addr addr="10.0.0.5"/></virtual_interface></interface></interface_list><loadbalancing_list/></vip>`,
      [
        'userconfig.xml:1:52 <virtual_interface addr="5b:fe:00:00:00:01">: expected a unicast MAC: 5b:fe:00:00:00:01 is multicast (its first octet is odd), and a virtual MAC must be a locally administered unicast address, whose second hex digit is 2, 6, a or e',
      ],
    ],
    [
      "a MAC of five pairs",
      "farm",
      `<vip><interface_list><interface><virtual_interface addr="5a:fe:00:00:01"><virtual_addr addr="10.0.0.5"/></virtual_interface></interface></interface_list><loadbalancing_list/></vip>`,
      ['userconfig.xml:1:52 <virtual_interface addr="5a:fe:00:00:01">: expected a MAC address of six hex pairs separated by colons, such as 5a:fe:c0:a8:01:de'],
    ],
    [
      "a real_interface in a farm",
      "farm",
      `<vip><interface_list><interface><real_interface><virtual_addr addr="10.0.0.5"/></real_interface></interface></interface_list><loadbalancing_list/></vip>`,
      [
        'userconfig.xml:1:33 <real_interface>: <real_interface> is for mirror modules; a farm module needs a <virtual_interface type="vmac_invisible|vmac_directed">, through which every UP node receives the virtual address\'s traffic',
      ],
    ],
    [
      "a virtual_interface in a mirror",
      "mirror",
      `<vip><interface_list><interface><virtual_interface><virtual_addr addr="10.0.0.5"/></virtual_interface></interface></interface_list></vip>`,
      ["userconfig.xml:1:33 <virtual_interface>: <virtual_interface> is for farm modules; a mirror module needs a <real_interface>: its virtual address lives on the primary's own interface"],
    ],
    [
      "load balancing in a mirror",
      "mirror",
      `<vip><interface_list><interface><real_interface><virtual_addr addr="10.0.0.5"/></real_interface></interface></interface_list>\n<loadbalancing_list/></vip>`,
      ["userconfig.xml:2:1 <loadbalancing_list>: <loadbalancing_list> is for farm modules: a mirror module's virtual address is on one node, so there is nothing to balance"],
    ],
    [
      "an interface with no address holder",
      "mirror",
      `<vip><interface_list><interface/></interface_list></vip>`,
      ["userconfig.xml:1:22 <interface>: an <interface> needs a <real_interface> holding its <virtual_addr> elements"],
    ],
    [
      "a real_interface without virtual_addr",
      "mirror",
      `<vip><interface_list><interface><real_interface/></interface></interface_list></vip>`,
      ['userconfig.xml:1:33 <real_interface>: <real_interface> needs at least one <virtual_addr addr="…"/>'],
    ],
    [
      "an address with an octet above 255",
      "mirror",
      `<vip><interface_list><interface><real_interface><virtual_addr addr="192.168.1.256"/></real_interface></interface></interface_list></vip>`,
      ['userconfig.xml:1:63 <virtual_addr addr="192.168.1.256">: expected an IPv4 address such as 192.168.1.10 (no leading zeros) or an IPv6 address such as fd00::10'],
    ],
    [
      "a loopback address",
      "mirror",
      `<vip><interface_list><interface><real_interface><virtual_addr addr="127.0.0.2"/></real_interface></interface></interface_list></vip>`,
      ['userconfig.xml:1:63 <virtual_addr addr="127.0.0.2">: 127.0.0.2 is a loopback address: a virtual address must be one that clients can reach'],
    ],
    [
      "the same address twice, written differently",
      "mirror",
      `<vip><interface_list><interface><real_interface><virtual_addr addr="fd00::1"/><virtual_addr addr="FD00:0::0:1"/></real_interface></interface></interface_list></vip>`,
      ['userconfig.xml:1:93 <virtual_addr addr="FD00:0::0:1">: virtual address fd00::1 is declared twice in this module'],
    ],
    [
      "a bad where",
      "mirror",
      `<vip><interface_list><interface><real_interface><virtual_addr addr="10.0.0.5" where="both"/></real_interface></interface></interface_list></vip>`,
      ['userconfig.xml:1:79 <virtual_addr where="both">: expected one of one_side_alias, alias, main'],
    ],
    [
      "an arpinterval of 0",
      "mirror",
      `<vip><interface_list><interface arpinterval="0"><real_interface><virtual_addr addr="10.0.0.5"/></real_interface></interface></interface_list></vip>`,
      ['userconfig.xml:1:33 <interface arpinterval="0">: expected at least 1s: gratuitous ARP is repeated every arpinterval'],
    ],
  ])("%s", (_, mode, text, expected) => {
    expect(vip(mode)(text).messages).toEqual(expected);
  });

  it("unknown attributes and elements warn", () => {
    const text = `<vip colour="red"><interface_list><interface name="eth0"><real_interface><virtual_addr addr="10.0.0.5" mask="24"/></real_interface></interface></interface_list><route/></vip>`;
    expect(vip("mirror")(text).messages).toEqual([
      'userconfig.xml:1:104 <virtual_addr mask="24">: warning: attribute mask is not used by tandem; it is ignored',
      'userconfig.xml:1:46 <interface name="eth0">: warning: attribute name is not used by tandem; it is ignored',
      'userconfig.xml:1:6 <vip colour="red">: warning: attribute colour is not used by tandem; it is ignored',
      "userconfig.xml:1:161 <route>: warning: <route> is not used by tandem inside <vip>; it is ignored",
    ]);
  });
});

describe("IP address grammar", () => {
  it.each<[string, string]>([
    ["192.168.1.10", "192.168.1.10"],
    ["0.0.0.0", "0.0.0.0"],
    [" 10.0.0.1 ", "10.0.0.1"],
    ["::", "::"],
    ["::1", "::1"],
    ["FD00::0010", "fd00::10"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8::0:1", "2001:db8::1"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
    ["::ffff:192.168.1.1", "::ffff:c0a8:101"],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
  ])("%s is %s", (text, canonical) => {
    const parsed = parseIpAddress(text);
    expect(parsed.ok && parsed.value.canonical).toBe(canonical);
  });

  it.each(["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.-1", "a.b.c.d", "1::2::3", ":1::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "fe80::1%eth0", "[::1]", "10.0.0.0/8", "1.2.3.4::", "::1.2.3", "g::1"])(
    "%j is refused",
    (text) => {
      expect(parseIpAddress(text).ok).toBe(false);
    },
  );
});

describe("virtual MAC grammar", () => {
  it.each(["02:00:00:00:00:01", "5a:fe:c0:a8:01:df", "06:AA:BB:CC:DD:EE", "0e:00:00:00:00:00", "fa:00:00:00:00:00"])("%s is accepted", (text) => {
    expect(parseVirtualMac(text)).toEqual({ ok: true, value: text.toLowerCase() });
  });

  it.each(["00:11:22:33:44:55", "01:00:5e:00:00:01", "03:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "5a-fe-c0-a8-01-df", "5afe.c0a8.01df", "5a:fe:c0:a8:01:df:00"])("%s is refused", (text) => {
    expect(parseVirtualMac(text).ok).toBe(false);
  });
});
