// core/config/to-farm.ts: a farm module and its cluster.xml give the FarmConfig the farm
// core runs on (members, rings, rules, timings), with the documented warnings and errors;
// the nginx template gives exactly its expected FarmConfig.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readClusterXml } from "../../core/config/cluster-xml.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { farmTimingsOf, toFarmConfig, type ToFarmResult } from "../../core/config/to-farm.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";
import { defaultFarmTimings, validateFarmConfig, type FarmConfig } from "../../core/farm-config.ts";
import { hashString32 } from "../../core/hash.ts";

const clusterXml = `<cluster><lans>
  <lan name="default"><node name="s1" addr="10.0.0.10"/><node name="s2" addr="10.0.0.11"/><node name="s3" addr="10.0.0.12"/></lan>
  <lan name="private"><node name="s1" addr="10.1.0.10"/><node name="s2" addr="10.1.0.11"/></lan>
</lans></cluster>`;

const twoHosts = `<cluster><host name="s1"/><host name="s2"/></cluster>`;
const httpRule = `<rule port="80" filter="on_port"/>`;

/** A farm module `web` with `farm`, a VIP (or `addrs`) and `groups` as its loadbalancing_list. */
function farmModule({ farm = `<farm><lan name="default"/></farm>`, groups = `<group name="g">${twoHosts}${httpRule}</group>`, addrs = `<virtual_addr addr="192.168.1.223"/>` } = {}): string {
  const vip = `<vip><interface_list><interface><virtual_interface addr="5a:fe:c0:a8:01:df">${addrs}</virtual_interface></interface></interface_list><loadbalancing_list>${groups}</loadbalancing_list></vip>`;
  return `<safe><service mode="farm">${farm}${vip}</service></safe>`;
}

function bridge(userconfig: string, cluster = clusterXml, moduleName = "web"): ToFarmResult & { messages: string[] } {
  const read = readUserconfig({ moduleName, file: "userconfig.xml", text: userconfig, environment: {} });
  expect(read.problems.map(formatProblem)).toEqual([]);
  const { cluster: clusterConfig, problems } = readClusterXml("cluster.xml", cluster);
  expect(problems.map(formatProblem)).toEqual([]);
  const result = toFarmConfig(read.module!, clusterConfig!, "userconfig.xml");
  return { ...result, messages: result.problems.map((problem) => `${problem.severity} ${problem.code} ${problem.path}`) };
}

const base: FarmConfig = {
  module: "web",
  nodes: [
    { id: "s1", weight: 1 },
    { id: "s2", weight: 1 },
  ],
  rings: ["default"],
  bucketCount: 256,
  hashSeed: hashString32("web"),
  rules: [{ port: 80, proto: "tcp", mode: "srcip+srcport" }],
  timings: defaultFarmTimings,
};
const handoverWindowMs = defaultFarmTimings.handoverWindowMs;
const rule = "safe/service/vip/loadbalancing_list/group/rule";

describe("toFarmConfig: valid modules", () => {
  it.each<[string, string, Partial<FarmConfig>, string[]]>([
    ["neither pulse nor slost_count: tandem's defaults", farmModule(), {}, []],
    [
      "SafeKit's defaults written out: detection after 1 s",
      farmModule({ farm: `<farm pulse="100ms" slost_count="10"><lan name="default"/></farm>` }),
      { timings: { heartbeatIntervalMs: 100, detectionTimeoutMs: 1_000, leaseMs: 900, handoverWindowMs } },
      [],
    ],
    [
      "pulse alone: times SafeKit's slost_count of 10",
      farmModule({ farm: `<farm pulse="50"><lan name="default"/></farm>` }),
      { timings: { heartbeatIntervalMs: 50, detectionTimeoutMs: 500, leaseMs: 450, handoverWindowMs } },
      [],
    ],
    [
      "slost_count alone: times SafeKit's pulse of 100 ms",
      farmModule({ farm: `<farm slost_count="3"><lan name="default"/></farm>` }),
      { timings: { heartbeatIntervalMs: 100, detectionTimeoutMs: 300, leaseMs: 200, handoverWindowMs } },
      [],
    ],
    [
      "slost_count 2: a lease of 1.5 pulses, the longest the fencing bound allows",
      farmModule({ farm: `<farm pulse="100ms" slost_count="2"><lan name="default"/></farm>` }),
      { timings: { heartbeatIntervalMs: 100, detectionTimeoutMs: 200, leaseMs: 150, handoverWindowMs } },
      [],
    ],
    [
      "power is the weight, each lan a ring",
      farmModule({ farm: `<farm><lan name="default"/><lan name="private"/></farm>`, groups: `<group name="g"><cluster><host name="s2" power="3"/><host name="s1" power="0"/></cluster>${httpRule}</group>` }),
      { nodes: [{ id: "s2", weight: 3 }, { id: "s1", weight: 0 }], rings: ["default", "private"] },
      [],
    ],
    [
      "on_addr is srcip, on_port srcip+srcport, for tcp and udp",
      farmModule({ groups: `<group name="g">${twoHosts}<rule port="443" filter="on_addr"/><rule port="53" proto="udp" filter="on_port"/><rule port="8080"/></group>` }),
      {
        rules: [
          { port: 443, proto: "tcp", mode: "srcip" },
          { port: 53, proto: "udp", mode: "srcip+srcport" },
          { port: 8080, proto: "tcp", mode: "srcip" },
        ],
      },
      [],
    ],
    [
      "on_ipid: balanced per client socket, with a warning",
      farmModule({ groups: `<group name="g">${twoHosts}<rule port="514" proto="udp" filter="on_ipid"/></group>` }),
      { rules: [{ port: 514, proto: "udp", mode: "srcip+srcport" }] },
      [`warning CONFIG_APPROXIMATED ${rule}`],
    ],
    [
      "groups with the same hosts and powers: one member set, every group's rules",
      farmModule({ groups: `<group name="a">${twoHosts}${httpRule}</group><group name="b"><cluster><host name="s2"/><host name="s1"/></cluster><rule port="443"/></group>` }),
      { rules: [{ port: 80, proto: "tcp", mode: "srcip+srcport" }, { port: 443, proto: "tcp", mode: "srcip" }] },
      [],
    ],
    [
      "a rule naming one of two virtual addresses applies to both, with a warning",
      farmModule({ addrs: `<virtual_addr addr="192.168.1.223"/><virtual_addr addr="192.168.1.224"/>`, groups: `<group name="g">${twoHosts}<rule virtual_addr="192.168.1.224" port="80" filter="on_port"/></group>` }),
      {},
      [`warning CONFIG_APPROXIMATED ${rule}`],
    ],
    [
      "no load balancing (no VIP): every node of the farm's lans, power 1, no rule",
      `<safe><service mode="farm"><farm><lan name="default"/></farm></service></safe>`,
      { nodes: ["s1", "s2", "s3"].map((id) => ({ id, weight: 1 })), rules: [] },
      [],
    ],
  ])("%s", (_, userconfig, expected, messages) => {
    const result = bridge(userconfig);
    expect(result.messages).toEqual(messages);
    expect(result.config).toEqual({ ...base, ...expected });
  });
});

describe("toFarmConfig: modules it refuses", () => {
  it.each<[string, string, string[]]>([
    ["an ARP rule", farmModule({ groups: `<group name="g">${twoHosts}<rule proto="arp"/></group>` }), [`error CONFIG_UNSUPPORTED ${rule}`]],
    [
      "groups over different hosts",
      farmModule({ groups: `<group name="a">${twoHosts}${httpRule}</group><group name="b"><cluster><host name="s1"/></cluster><rule port="443"/></group>` }),
      ["error CONFIG_UNSUPPORTED safe/service/vip/loadbalancing_list/group/cluster/host"],
    ],
    [
      "groups over the same hosts with other powers",
      farmModule({ groups: `<group name="a">${twoHosts}${httpRule}</group><group name="b"><cluster><host name="s1" power="2"/><host name="s2"/></cluster><rule port="443"/></group>` }),
      ["error CONFIG_UNSUPPORTED safe/service/vip/loadbalancing_list/group/cluster/host"],
    ],
    [
      "a host that is not on the farm's lans",
      farmModule({ farm: `<farm><lan name="private"/></farm>`, groups: `<group name="g"><cluster><host name="s1"/><host name="s3"/></cluster>${httpRule}</group>` }),
      ["error CONFIG_UNKNOWN_NODE safe/service/vip/loadbalancing_list/group/cluster/host"],
    ],
    ["a lan that is not in cluster.xml", farmModule({ farm: `<farm><lan name="default"/><lan name="backup"/></farm>` }), ["error CONFIG_UNKNOWN_LAN safe/service/farm/lan"]],
    [
      "timings FarmConfig finds unsafe: a 1 ms pulse lost after 2",
      farmModule({ farm: `<farm pulse="1ms" slost_count="2"><lan name="default"/></farm>` }),
      ["error CONFIG_UNSAFE safe/service/farm"],
    ],
  ])("%s", (_, userconfig, messages) => {
    const result = bridge(userconfig);
    expect(result.messages).toEqual(messages);
    expect(result.config).toBeNull();
  });

  it("says where FarmConfig's own problem lies in the farm it built", () => {
    const [problem] = bridge(farmModule({ farm: `<farm pulse="1ms" slost_count="2"><lan name="default"/></farm>` })).problems;
    expect(problem?.message).toMatch(/\(in the farm built from this file: timings\.leaseMs\)$/);
  });
});

describe("farmTimingsOf", () => {
  it("detects after pulse × slost_count, with timings FarmConfig accepts, for every slost_count the reader accepts and a pulse of 2 ms or more", () => {
    for (const pulseMs of [2, 3, 7, 50, 100, 999, 60_000]) {
      for (const slostCount of [2, 3, 4, 10, 100]) {
        const timings = farmTimingsOf({ port: null, pulseMs, mlostCount: 20, slostCount, detectionWritten: true, lans: ["default"] });
        expect(timings.detectionTimeoutMs).toBe(pulseMs * slostCount);
        expect(validateFarmConfig({ ...base, timings }), `pulse ${pulseMs} ms, slost_count ${slostCount}`).toEqual([]);
      }
    }
  });
});

describe("the nginx template", () => {
  it("gives its FarmConfig: both nodes on both lans, HTTP per connection, HTTPS per client, SafeKit's 1 s detection as written", () => {
    const read = (path: string) => readFileSync(fileURLToPath(new URL(`../../templates/${path}`, import.meta.url)), "utf8");
    const result = bridge(read("modules/nginx-farm/conf/userconfig.xml"), read("cluster.xml"), "nginx-farm");
    expect(result.messages).toEqual([]);
    expect(result.config).toEqual({
      module: "nginx-farm",
      nodes: [
        { id: "node1", weight: 1 },
        { id: "node2", weight: 1 },
      ],
      rings: ["default", "private"],
      bucketCount: 256,
      hashSeed: hashString32("nginx-farm"),
      rules: [
        { port: 80, proto: "tcp", mode: "srcip+srcport" },
        { port: 443, proto: "tcp", mode: "srcip" },
      ],
      // The template leaves pulse and slost_count out, so tandem's faster defaults apply.
      timings: defaultFarmTimings,
    } satisfies FarmConfig);
  });
});
