// cluster.xml: valid files read to the expected frozen ClusterConfig; each invalid file gives
// exactly the expected located problems; the pre-7.2 form reads to the same config, and a
// file mixing both forms is refused with a problem that says so.

import { describe, expect, it } from "vitest";
import { clusterNodeCountMax, lanCountMax, readClusterXml } from "../../core/config/cluster-xml.ts";
import type { ClusterConfig } from "../../core/config/module-config.ts";
import { formatProblem } from "../../core/config/problems.ts";

function read(text: string, environment: Record<string, string> = {}): { cluster: ClusterConfig | null; messages: string[] } {
  const result = readClusterXml("cluster.xml", text, environment);
  return { cluster: result.cluster, messages: result.problems.map(formatProblem) };
}

/** A 7.2 cluster.xml with one lan per entry, its nodes given as `name=addr`. */
const lans = (...entries: [string, ...string[]][]) =>
  `<cluster><lans>${entries.map(([lan, ...nodes]) => `<lan name="${lan}">${nodes.map((node) => `<node name="${node.split("=")[0]}" addr="${node.split("=")[1]}"/>`).join("")}</lan>`).join("")}</lans></cluster>`;

const template = [
  `<?xml version="1.0" encoding="utf-8"?>`,
  `<cluster>`,
  `  <lans>`,
  `    <lan name="default"> <node name="s1" addr="10.0.0.10"/> <node name="s2" addr="10.0.0.11"/> </lan>`,
  `    <lan name="private"> <node name="s1" addr="10.1.0.10"/> <node name="s2" addr="10.1.0.11"/> </lan>`,
  `  </lans>`,
  `</cluster>`,
].join("\n");

const twoLans: ClusterConfig = {
  lans: [
    { name: "default", nodes: [{ name: "s1", addr: "10.0.0.10" }, { name: "s2", addr: "10.0.0.11" }] },
    { name: "private", nodes: [{ name: "s1", addr: "10.1.0.10" }, { name: "s2", addr: "10.1.0.11" }] },
  ],
  nodeNames: ["s1", "s2"],
};

describe("cluster.xml: valid files", () => {
  it.each<[string, string, ClusterConfig]>([
    ["the documented example: two lans, two nodes", template, twoLans],
    [
      "IPv6 addresses are stored in canonical form",
      lans(["v6", "s1=FD00:0:0:0::10", "s2=fd00::0:11", "s3=::ffff:10.0.0.1"]),
      { lans: [{ name: "v6", nodes: [{ name: "s1", addr: "fd00::10" }, { name: "s2", addr: "fd00::11" }, { name: "s3", addr: "::ffff:a00:1" }] }], nodeNames: ["s1", "s2", "s3"] },
    ],
    [
      "a node may be on some lans only; node names in first-seen order",
      lans(["a", "s2=10.0.0.2", "s1=10.0.0.1"], ["b", "s1=10.1.0.1", "s3=10.1.0.3"]),
      {
        lans: [
          { name: "a", nodes: [{ name: "s2", addr: "10.0.0.2" }, { name: "s1", addr: "10.0.0.1" }] },
          { name: "b", nodes: [{ name: "s1", addr: "10.1.0.1" }, { name: "s3", addr: "10.1.0.3" }] },
        ],
        nodeNames: ["s2", "s1", "s3"],
      },
    ],
    ["loopback addresses, for a cluster on one host", lans(["lo", "n1=127.0.0.1", "n2=127.0.0.2"]), { lans: [{ name: "lo", nodes: [{ name: "n1", addr: "127.0.0.1" }, { name: "n2", addr: "127.0.0.2" }] }], nodeNames: ["n1", "n2"] }],
    ["names and addresses are trimmed", `<cluster><lans><lan name=" a "><node name=" s1 " addr=" 10.0.0.1 "/></lan></lans></cluster>`, { lans: [{ name: "a", nodes: [{ name: "s1", addr: "10.0.0.1" }] }], nodeNames: ["s1"] }],
  ])("%s", (_, text, expected) => {
    const { cluster, messages } = read(text);
    expect(messages).toEqual([]);
    expect(cluster).toEqual(expected);
  });

  it("expands %NAME% from the environment", () => {
    const { cluster, messages } = read(lans(["a", "s1=%S1_ADDR%"]), { S1_ADDR: "10.0.0.1" });
    expect(messages).toEqual([]);
    expect(cluster?.lans[0]?.nodes[0]?.addr).toBe("10.0.0.1");
  });

  it("returns a deeply frozen config", () => {
    const { cluster } = read(template);
    expect(Object.isFrozen(cluster)).toBe(true);
    expect(Object.isFrozen(cluster?.lans)).toBe(true);
    expect(Object.isFrozen(cluster?.lans[1]?.nodes[0])).toBe(true);
    expect(Object.isFrozen(cluster?.nodeNames)).toBe(true);
  });

  it("warns about what it does not use, and still reads the file", () => {
    const { cluster, messages } = read(`<cluster><lans><lan name="a" console="on"><node name="s1" addr="10.0.0.1"/><switch/></lan><lan name="empty"/></lans></cluster>`);
    expect(messages).toEqual([
      'cluster.xml:1:30 <lan console="on">: warning: attribute console is not used by tandem; it is ignored',
      "cluster.xml:1:76 <switch>: warning: <switch> is not used by tandem inside <lan>; it is ignored",
      "cluster.xml:1:91 <lan>: warning: lan empty lists no node; no module can use it",
    ]);
    expect(cluster?.nodeNames).toEqual(["s1"]);
  });
});

describe("cluster.xml: invalid files give located problems and no config", () => {
  it.each<[string, string, string[]]>([
    ["an address out of range", template.replace("10.0.0.11", "10.0.0.300"), ['cluster.xml:4:77 <node addr="10.0.0.300">: expected an IPv4 or IPv6 address']],
    [
      "a host name",
      lans(["a", "s1=db1.example.com"]),
      ['cluster.xml:1:46 <node addr="db1.example.com">: expected an IPv4 or IPv6 address, not a host name: tandem does not resolve names, so that a DNS answer cannot change who is in the cluster'],
    ],
    ["an IPv4 address with a leading zero (octal to inet_aton)", lans(["a", "s1=10.0.0.010"]), ['cluster.xml:1:46 <node addr="10.0.0.010">: expected an IPv4 or IPv6 address']],
    ["an IPv6 address with two ::", lans(["a", "s1=fd00::1::2"]), ['cluster.xml:1:46 <node addr="fd00::1::2">: expected an IPv4 or IPv6 address']],
    ["an address with a prefix length", lans(["a", "s1=10.0.0.1/24"]), ['cluster.xml:1:46 <node addr="10.0.0.1/24">: expected an IPv4 or IPv6 address']],
    ["the unspecified address", lans(["a", "s1=0.0.0.0"]), ['cluster.xml:1:46 <node addr="0.0.0.0">: expected a node\'s own address: 0.0.0.0 is in 0.0.0.0/8, which means this host, not an address']],
    ["a multicast address", lans(["a", "s1=ff02::1"]), ['cluster.xml:1:46 <node addr="ff02::1">: expected a node\'s own address: ff02::1 is a multicast address']],
    ["a node without addr", `<cluster><lans><lan name="a"><node name="s1"/></lan></lans></cluster>`, ["cluster.xml:1:30 <node>: attribute addr is required"]],
    ["a node without name", `<cluster><lans><lan name="a"><node addr="10.0.0.1"/></lan></lans></cluster>`, ["cluster.xml:1:30 <node>: attribute name is required"]],
    ["an empty node name", lans(["a", " =10.0.0.1"]), ['cluster.xml:1:36 <node name=" ">: expected a non-empty value']],
    ["a node name with a comma", lans(["a", "s1,s2=10.0.0.1"]), ['cluster.xml:1:36 <node name="s1,s2">: expected a node name without spaces or commas: commands name nodes in lists such as -H "s1,s2"']],
    ["a lan without name", `<cluster><lans><lan><node name="s1" addr="10.0.0.1"/></lan></lans></cluster>`, ["cluster.xml:1:16 <lan>: attribute name is required"]],
    ["an empty lan name", lans(["", "s1=10.0.0.1"]), ['cluster.xml:1:21 <lan name="">: expected a non-empty value']],
    ["a lan declared twice", lans(["a", "s1=10.0.0.1"], ["a", "s2=10.0.0.2"]), ['cluster.xml:1:74 <lan name="a">: lan a is declared twice; list all of its nodes in one <lan>']],
    ["a node twice in one lan", lans(["a", "s1=10.0.0.1", "s1=10.0.0.2"]), ['cluster.xml:1:69 <node name="s1">: node s1 is listed twice in lan a; a node has one address per lan']],
    [
      "one address for two nodes of a lan (and a third reported against the one kept)",
      lans(["a", "s1=10.0.0.1", "s2=10.0.0.1", "s3=10.0.0.1"]),
      [
        "cluster.xml:1:79 <node addr=\"10.0.0.1\">: address 10.0.0.1 is already node s1's in lan a; each node needs its own address",
        "cluster.xml:1:112 <node addr=\"10.0.0.1\">: address 10.0.0.1 is already node s1's in lan a; each node needs its own address",
      ],
    ],
    [
      "one address for two nodes on different lans",
      lans(["a", "s1=10.0.0.1"], ["b", "s2=10.0.0.1"]),
      ["cluster.xml:1:99 <node addr=\"10.0.0.1\">: address 10.0.0.1 is node s1's in lan a; one address cannot be two nodes"],
    ],
    ["no lans", `<cluster/>`, ['cluster.xml:1:1 <cluster>: <cluster> needs <lans>, with one <lan name="…"> per network listing its <node name="…" addr="…"/>']],
    ["an empty <lans>", `<cluster><lans/></cluster>`, ['cluster.xml:1:10 <lans>: <lans> needs at least one <lan name="…">, listing the nodes on that network']],
    ["two <lans>", `<cluster>${lans(["a", "s1=10.0.0.1"]).slice(9, -10)}<lans/></cluster>`, ["cluster.xml:1:76 <lans>: <lans> may appear only once in <cluster>"]],
    ["a module file given as cluster.xml", `<safe><service mode="farm"/></safe>`, ["cluster.xml:1:1 <safe>: the root element of cluster.xml is <cluster>, not <safe> (a <safe> root is a module's userconfig.xml)"]],
    ["an undefined macro", lans(["a", "s1=%S1_ADDR%"]), ['cluster.xml:1:46 <node addr="%S1_ADDR%">: %S1_ADDR% is neither a <macro> of this module nor an environment variable', 'cluster.xml:1:46 <node addr="%S1_ADDR%">: expected an IPv4 or IPv6 address']],
    ["not well-formed XML", `<cluster><lans></cluster>`, ["cluster.xml:1:16: not well-formed XML: Expected closing tag 'lans' (opened in line 1, col 10) instead of closing tag 'cluster'."]],
  ])("%s", (_, text, expected) => {
    const { cluster, messages } = read(text);
    expect(messages).toEqual(expected);
    expect(cluster).toBeNull();
  });

  it(`refuses more than ${lanCountMax} lans`, () => {
    const many = Array.from({ length: lanCountMax + 1 }, (_, index): [string, string] => [`lan${index}`, `s1=10.${index}.0.1`]);
    const { cluster, messages } = read(lans(...many));
    expect(messages).toEqual([expect.stringMatching(/^cluster\.xml:1:\d+ <lan>: a cluster has at most 16 lans; this is lan 17$/)]);
    expect(cluster).toBeNull();
  });

  it(`refuses more than ${clusterNodeCountMax} nodes`, () => {
    const nodes = Array.from({ length: clusterNodeCountMax + 1 }, (_, index) => `n${index}=10.0.${index}.1`);
    const { cluster, messages } = read(lans(["a", ...nodes]));
    expect(messages).toEqual([expect.stringMatching(/^cluster\.xml:1:\d+ <node>: a cluster has at most 64 nodes; n64 is node 65$/)]);
    expect(cluster).toBeNull();
  });
});

describe("cluster.xml: the form before SafeKit 7.2", () => {
  const legacyMirror = [
    `<cluster>`,
    `  <heart>`,
    `    <heartbeat name="default"> <server name="s1" addr="10.0.0.10"/> <server name="s2" addr="10.0.0.11"/> </heartbeat>`,
    `    <heartbeat name="private"> <server name="s1" addr="10.1.0.10"/> <server name="s2" addr="10.1.0.11"/> </heartbeat>`,
    `  </heart>`,
    `</cluster>`,
  ].join("\n");

  it.each<[string, string, ClusterConfig]>([
    ["<server name addr> under <heartbeat> reads as the same config as <lans>", legacyMirror, twoLans],
    [
      "unnamed servers are matched by position and named by their address on the first heartbeat",
      `<cluster><heart><heartbeat name="default"><server addr="10.0.0.10"/><server addr="10.0.0.11"/></heartbeat><heartbeat name="private"><server addr="10.1.0.10"/><server addr="10.1.0.11"/></heartbeat></heart></cluster>`,
      {
        lans: [
          { name: "default", nodes: [{ name: "10.0.0.10", addr: "10.0.0.10" }, { name: "10.0.0.11", addr: "10.0.0.11" }] },
          { name: "private", nodes: [{ name: "10.0.0.10", addr: "10.1.0.10" }, { name: "10.0.0.11", addr: "10.1.0.11" }] },
        ],
        nodeNames: ["10.0.0.10", "10.0.0.11"],
      },
    ],
    [
      "a name on the first heartbeat names the unnamed servers at its position",
      `<cluster><heart><heartbeat name="a"><server name="s1" addr="10.0.0.1"/><server addr="10.0.0.2"/></heartbeat><heartbeat name="b"><server addr="10.1.0.1"/><server addr="10.1.0.2"/></heartbeat></heart></cluster>`,
      {
        lans: [
          { name: "a", nodes: [{ name: "s1", addr: "10.0.0.1" }, { name: "10.0.0.2", addr: "10.0.0.2" }] },
          { name: "b", nodes: [{ name: "s1", addr: "10.1.0.1" }, { name: "10.0.0.2", addr: "10.1.0.2" }] },
        ],
        nodeNames: ["s1", "10.0.0.2"],
      },
    ],
    [
      "<node name addr> under the farm <lan>",
      `<cluster><farm><lan name="default"><node name="f1" addr="10.0.0.21"/><node name="f2" addr="10.0.0.22"/><node name="f3" addr="10.0.0.23"/></lan></farm></cluster>`,
      { lans: [{ name: "default", nodes: [{ name: "f1", addr: "10.0.0.21" }, { name: "f2", addr: "10.0.0.22" }, { name: "f3", addr: "10.0.0.23" }] }], nodeNames: ["f1", "f2", "f3"] },
    ],
    [
      "a heartbeat and a farm lan of the same name are one network",
      `<cluster><heart><heartbeat name="default"><server name="s1" addr="10.0.0.1"/><server name="s2" addr="10.0.0.2"/></heartbeat></heart><farm><lan name="default"><node name="s2" addr="10.0.0.2"/><node name="s3" addr="10.0.0.3"/></lan></farm></cluster>`,
      { lans: [{ name: "default", nodes: [{ name: "s1", addr: "10.0.0.1" }, { name: "s2", addr: "10.0.0.2" }, { name: "s3", addr: "10.0.0.3" }] }], nodeNames: ["s1", "s2", "s3"] },
    ],
  ])("%s", (_, text, expected) => {
    const { cluster, messages } = read(text);
    expect(messages).toEqual([]);
    expect(cluster).toEqual(expected);
  });

  it("warns about the module settings copied along with the nodes", () => {
    const { cluster, messages } = read(`<cluster><heart pulse="700ms"><heartbeat name="a" ident="flow"><server name="s1" addr="10.0.0.1"/></heartbeat></heart></cluster>`);
    expect(messages).toEqual([
      'cluster.xml:1:51 <heartbeat ident="flow">: warning: attribute ident is not used by tandem; it is ignored',
      'cluster.xml:1:17 <heart pulse="700ms">: warning: attribute pulse is not used by tandem; it is ignored',
    ]);
    expect(cluster?.nodeNames).toEqual(["s1"]);
  });

  it.each<[string, string, string[]]>([
    [
      "unnamed servers on a heartbeat whose server count differs from the first's",
      `<cluster><heart><heartbeat name="a"><server addr="10.0.0.1"/><server addr="10.0.0.2"/></heartbeat><heartbeat name="b"><server addr="10.1.0.1"/></heartbeat></heart></cluster>`,
      ['cluster.xml:1:99 <heartbeat>: this <heartbeat> lists 1 server and the first one lists 2, so its servers cannot be matched to nodes by position; give each <server> a name="…"'],
    ],
    ["a heartbeat declared twice", `<cluster><heart><heartbeat name="a"><server addr="10.0.0.1"/></heartbeat><heartbeat name="a"><server addr="10.0.0.1"/></heartbeat></heart></cluster>`, ['cluster.xml:1:85 <heartbeat name="a">: lan a is declared twice; list all of its nodes in one <heartbeat>']],
    ["a server with a host name", `<cluster><heart><heartbeat name="a"><server addr="peer"/></heartbeat></heart></cluster>`, ['cluster.xml:1:45 <server addr="peer">: expected an IPv4 or IPv6 address, not a host name: tandem does not resolve names, so that a DNS answer cannot change who is in the cluster']],
    ["an empty server name", `<cluster><heart><heartbeat name="a"><server name="" addr="10.0.0.1"/></heartbeat></heart></cluster>`, ['cluster.xml:1:45 <server name="">: expected a non-empty value']],
    [
      "a heartbeat and a farm lan that give one node two addresses",
      `<cluster><heart><heartbeat name="a"><server name="s1" addr="10.0.0.1"/></heartbeat></heart><farm><lan name="a"><node name="s1" addr="10.0.0.9"/></lan></farm></cluster>`,
      ['cluster.xml:1:118 <node name="s1">: node s1 is listed twice in lan a; a node has one address per lan'],
    ],
    ["an empty <heart>", `<cluster><heart/></cluster>`, ['cluster.xml:1:10 <heart>: a pre-7.2 <heart> lists each network as <heartbeat name="…"> holding one <server addr="…"/> per node']],
    ["an empty <farm>", `<cluster><farm/></cluster>`, ['cluster.xml:1:10 <farm>: a pre-7.2 <farm> lists each network as <lan name="…"> holding one <node name="…" addr="…"/> per node']],
  ])("%s", (_, text, expected) => {
    const { cluster, messages } = read(text);
    expect(messages).toEqual(expected);
    expect(cluster).toBeNull();
  });
});

describe("cluster.xml: a file mixing both forms", () => {
  it.each<[string, string, string[]]>([
    [
      "<lans> and <heart>",
      `<cluster>\n<lans><lan name="a"><node name="s1" addr="10.0.0.1"/></lan></lans>\n<heart><heartbeat name="a"><server addr="10.0.0.1"/></heartbeat></heart>\n</cluster>`,
      ["cluster.xml:3:1 <heart>: this file mixes two forms of cluster.xml: <lans> (SafeKit 7.2 and later) and <heart> (before 7.2); use one form per file, preferably by moving these nodes into <lans>"],
    ],
    [
      "<lans> and <farm>, whose own problems are reported too",
      `<cluster>\n<farm><lan name="b"><node name="f1" addr="bad"/></lan></farm>\n<lans><lan name="a"><node name="s1" addr="10.0.0.1"/></lan></lans>\n</cluster>`,
      [
        'cluster.xml:2:37 <node addr="bad">: expected an IPv4 or IPv6 address, not a host name: tandem does not resolve names, so that a DNS answer cannot change who is in the cluster',
        "cluster.xml:2:1 <farm>: this file mixes two forms of cluster.xml: <lans> (SafeKit 7.2 and later) and <farm> (before 7.2); use one form per file, preferably by moving these nodes into <lans>",
      ],
    ],
  ])("%s is refused", (_, text, expected) => {
    const { cluster, messages } = read(text);
    expect(messages).toEqual(expected);
    expect(cluster).toBeNull();
  });
});
