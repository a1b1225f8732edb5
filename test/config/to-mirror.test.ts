// core/config/to-mirror.ts: a mirror module and its cluster.xml give the MirrorConfig the
// mirror core runs on, on either of its two nodes: tandem's timings unless the file wrote
// SafeKit's, async mapped to the ack, the witness of <splitbrain>, the <rfs> extensions;
// modules that cannot run as a mirror on this node are refused with located problems.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readClusterXml } from "../../core/config/cluster-xml.ts";
import type { ModuleConfig } from "../../core/config/module-config.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { mirrorTimingsOf, toMirrorConfig, type ToMirrorOptions, type ToMirrorResult } from "../../core/config/to-mirror.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";
import type { MirrorConfig } from "../../core/mirror/mirror.ts";

const clusterXml = `<cluster><lans>
  <lan name="default"><node name="s1" addr="10.0.0.10"/><node name="s2" addr="10.0.0.11"/></lan>
  <lan name="private"><node name="s1" addr="10.1.0.10"/><node name="s2" addr="10.1.0.11"/></lan>
</lans></cluster>`;

const threeNodes = `<cluster><lans>
  <lan name="default"><node name="s1" addr="10.0.0.10"/><node name="s2" addr="10.0.0.11"/><node name="s3" addr="10.0.0.12"/></lan>
  <lan name="private"><node name="s1" addr="10.1.0.10"/><node name="s2" addr="10.1.0.11"/></lan>
</lans></cluster>`;

/** A module as SafeKit's User's Guide writes one: macros, two heartbeat networks, a VIP,
 *  replication, scripts with variables, process and TCP checks, a witness. */
const safekitMirror = `<?xml version="1.0" encoding="utf-8"?>
<safe>
  <macro name="VIRTUAL_IP" value="192.168.1.222"/>
  <macro name="WITNESS" value="192.168.1.1"/>
  <service mode="mirror" defaultprim="s1" failover="off" maxloop="5" loop_interval="12h">
    <heart>
      <heartbeat name="default" ident="flow"/>
      <heartbeat name="private"/>
    </heart>
    <vip>
      <interface_list>
        <interface check="on">
          <real_interface>
            <virtual_addr addr="%VIRTUAL_IP%" where="one_side_alias" check="on"/>
          </real_interface>
        </interface>
      </interface_list>
    </vip>
    <rfs async="second" nbrei="4" reiallowedbw="20000" locktimeout="100s" sendtimeout="30s">
      <replicated dir="/var/lib/app" mode="read_only">
        <tocheck path="VERSION"/>
        <notreplicated path="tmp"/>
      </replicated>
    </rfs>
    <user nicestoptimeout="120s" forcestoptimeout="60s" logging="userlog">
      <var name="APP_HOME" value="/opt/app"/>
      <var name="APP_PORT" value="8080"/>
    </user>
    <errd polltimer="10s">
      <proc name="app" atleast="1" action="restart" class="prim"/>
    </errd>
    <check>
      <tcp ident="app" when="prim" action="restart"><to addr="127.0.0.1" port="8080"/></tcp>
      <splitbrain ident="witness" exec="ping" arg="%WITNESS%"/>
    </check>
  </service>
</safe>`;

const safekitExpected: MirrorConfig = {
  module: "app",
  self: "s1",
  peer: "s2",
  rings: ["default", "private"],
  pulseMs: 50,
  timeoutMs: 250,
  joinMs: 600,
  blockSize: 4_096,
  ack: "received",
  failover: false,
  defaultPrim: { kind: "node", node: "s1" },
  witnesses: ["192.168.1.1"],
  witnessTimeoutMs: 250,
  splitBrain: "changes",
  maxLoop: 5,
  loopIntervalMs: 12 * 3_600_000,
  scripts: true,
  scriptEnv: { SAFEMODULE: "app", APP_HOME: "/opt/app", APP_PORT: "8080" },
  scriptTimeoutMs: 120_000,
  forceStopTimeoutMs: 60_000,
  resyncWorkers: 4,
  resyncChunkBytes: 1024 * 1024,
  hotExtentBlocks: 16,
  checkpointMs: 500,
  retryMs: 1_000,
  lane: false,
  notReplicated: [{ path: "tmp", regex: null, inverted: false }],
  toCheck: ["VERSION"],
};

/** A minimal mirror module `app` with `heart`, `rfs` and `more` (checks, user) inside its service. */
function mirrorModule({ heart = `<heart><heartbeat name="default"/></heart>`, rfs = `<rfs><replicated dir="/data"/></rfs>`, more = "", service = "" } = {}): string {
  return `<safe><service mode="mirror"${service}>${heart}${rfs}${more}</service></safe>`;
}

function read(userconfig: string, moduleName = "app"): ModuleConfig {
  const result = readUserconfig({ moduleName, file: "userconfig.xml", text: userconfig, environment: {} });
  expect(result.problems.map(formatProblem)).toEqual([]);
  return result.module!;
}

function bridge(userconfig: string | ModuleConfig, { cluster = clusterXml, node = "s1", options = {} as ToMirrorOptions, moduleName = "app" } = {}): ToMirrorResult & { messages: string[] } {
  const module = typeof userconfig === "string" ? read(userconfig, moduleName) : userconfig;
  const { cluster: clusterConfig, problems } = readClusterXml("cluster.xml", cluster);
  expect(problems.map(formatProblem)).toEqual([]);
  const result = toMirrorConfig(module, clusterConfig!, node, options);
  return { ...result, messages: result.problems.map((problem) => `${problem.severity} ${problem.code} ${problem.path}`) };
}

/** The config of the minimal module on s1, with `fields` changed. */
const minimal = (fields: Partial<MirrorConfig> = {}): MirrorConfig => ({
  ...safekitExpected,
  rings: ["default"],
  failover: true,
  defaultPrim: { kind: "alone" },
  witnesses: [],
  maxLoop: 3,
  loopIntervalMs: 24 * 3_600_000,
  scripts: false,
  scriptEnv: { SAFEMODULE: "app" },
  scriptTimeoutMs: 300_000,
  forceStopTimeoutMs: 300_000,
  resyncWorkers: 6,
  notReplicated: [],
  toCheck: [],
  ...fields,
});

describe("toMirrorConfig: a SafeKit mirror module", () => {
  it("maps to the expected MirrorConfig on s1", () => {
    const result = bridge(safekitMirror);
    expect(result.messages).toEqual([]);
    expect(result.config).toEqual(safekitExpected);
  });

  it("maps to the same config with self and peer exchanged on s2", () => {
    expect(bridge(safekitMirror, { node: "s2" }).config).toEqual({ ...safekitExpected, self: "s2", peer: "s1" });
  });

  it("adds the caller's script variables last, so that they win", () => {
    const options = { scriptEnv: { SAFEBIN: "/etc/tandem/modules/app/bin", APP_PORT: "9090" } };
    expect(bridge(safekitMirror, { options }).config?.scriptEnv).toEqual({ SAFEMODULE: "app", APP_HOME: "/opt/app", APP_PORT: "9090", SAFEBIN: "/etc/tandem/modules/app/bin" });
  });

  it("names the caller's file in problems, modules/NAME/conf/userconfig.xml by default", () => {
    const module = read(mirrorModule());
    expect(bridge(module, { node: "s9" }).problems[0]?.file).toBe("modules/app/conf/userconfig.xml");
    expect(bridge(module, { node: "s9", options: { file: "web.xml" } }).problems[0]?.file).toBe("web.xml");
  });
});

describe("toMirrorConfig: timings", () => {
  const timings = (pulseMs: number, timeoutMs: number, joinMs: number, witnessTimeoutMs: number) => ({ pulseMs, timeoutMs, joinMs, witnessTimeoutMs });
  it.each<[string, string, ReturnType<typeof timings>, string[]]>([
    ["neither pulse nor timeout: tandem's 50 ms and 250 ms", `<heart><heartbeat name="default"/></heart>`, timings(50, 250, 600, 250), []],
    ["SafeKit's defaults written out: 700 ms and 30 s", `<heart pulse="700ms" timeout="30000ms"><heartbeat name="default"/></heart>`, timings(700, 30_000, 60_000, 1_000), []],
    ["pulse alone: SafeKit's 30 s timeout", `<heart pulse="100"><heartbeat name="default"/></heart>`, timings(100, 30_000, 60_000, 1_000), []],
    ["timeout alone: SafeKit's 700 ms pulse", `<heart timeout="2s"><heartbeat name="default"/></heart>`, timings(700, 2_000, 4_000, 1_000), []],
    ["a fast written timing: join and witness floors", `<heart pulse="10" timeout="30"><heartbeat name="default"/></heart>`, timings(10, 30, 600, 250), []],
    ["a timeout between the witness bounds", `<heart pulse="200" timeout="600"><heartbeat name="default"/></heart>`, timings(200, 600, 1_200, 600), []],
    ["a heartbeat's own timing counts as written", `<heart><heartbeat name="default" pulse="100" timeout="1s"/></heart>`, timings(100, 1_000, 2_000, 1_000), []],
    [
      "heartbeats with their own timings: the fastest pulse and the longest timeout, with a warning",
      `<heart pulse="1s" timeout="10s"><heartbeat name="default" pulse="100" timeout="1s"/><heartbeat name="private"/></heart>`,
      timings(100, 10_000, 20_000, 1_000),
      ["warning CONFIG_APPROXIMATED safe/service/heart/heartbeat"],
    ],
  ])("%s", (_, heart, expected, messages) => {
    const result = bridge(mirrorModule({ heart }));
    expect(result.messages).toEqual(messages);
    expect(result.config).toMatchObject(expected);
  });

  it("keeps the timeout above two pulses for every timing the heart reader accepts", () => {
    for (const pulseMs of [1, 7, 50, 700, 60_000]) {
      for (const factor of [2.001, 3, 10, 1_000]) {
        const timeoutMs = Math.floor(pulseMs * factor) + 1;
        const heart = { port: null, pulseMs, timeoutMs, permanentArp: true, heartbeats: [{ name: "a", ident: null, flow: false, pulseMs, timeoutMs }], timingWritten: true };
        const derived = mirrorTimingsOf(heart);
        expect(derived.timeoutMs).toBeGreaterThan(2 * derived.pulseMs);
        expect(derived.joinMs).toBeGreaterThanOrEqual(derived.timeoutMs);
        expect(derived.witnessTimeoutMs).toBeGreaterThanOrEqual(250);
        expect(derived.witnessTimeoutMs).toBeLessThanOrEqual(1_000);
      }
    }
  });

  it("without heartbeats, rings are the cluster's lans and the heart's own timing applies", () => {
    const module = read(mirrorModule({ heart: `<heart pulse="100" timeout="1s"><heartbeat name="default"/></heart>` }));
    const result = bridge({ ...module, heart: { ...module.heart!, heartbeats: [] } });
    expect(result.messages).toEqual([]);
    expect(result.config).toMatchObject({ rings: ["default", "private"], pulseMs: 100, timeoutMs: 1_000 });
  });
});

describe("toMirrorConfig: replication settings", () => {
  it.each<[string, string, Partial<MirrorConfig>]>([
    ["async absent: SafeKit's second, acknowledged on receipt", `<rfs><replicated dir="/data"/></rfs>`, { ack: "received" }],
    ["async second: acknowledged on receipt", `<rfs async="second"><replicated dir="/data"/></rfs>`, { ack: "received" }],
    ["async none: acknowledged once applied on both", `<rfs async="none"><replicated dir="/data"/></rfs>`, { ack: "applied" }],
    ["nbrei: the resync workers", `<rfs nbrei="1"><replicated dir="/data"/></rfs>`, { resyncWorkers: 1 }],
    ["blocksize and splitbrain", `<rfs blocksize="65536" splitbrain="operator"><replicated dir="/data"/></rfs>`, { blockSize: 65_536, splitBrain: "operator", hotExtentBlocks: 1 }],
    ["the smallest block size, splitbrain primary", `<rfs blocksize="512" splitbrain="primary"><replicated dir="/data"/></rfs>`, { blockSize: 512, splitBrain: "primary", hotExtentBlocks: 128 }],
    [
      "one directory: its <tocheck> and <notreplicated> relative to it",
      `<rfs><replicated dir="/data"><tocheck path="VERSION"/><notreplicated path="tmp"/></replicated></rfs>`,
      { toCheck: ["VERSION"], notReplicated: [{ path: "tmp", regex: null, inverted: false }] },
    ],
    [
      "several directories: each one's <tocheck> and <notreplicated> below its name in the module's tree",
      `<rfs><replicated dir="/data"><tocheck path="VERSION"/><notreplicated regexpath="^tmp/"/></replicated><replicated dir="/var/log/app"><notreplicated path="old"/></replicated></rfs>`,
      {
        layout: ["1-data", "2-app"],
        toCheck: ["1-data/VERSION"],
        notReplicated: [
          { path: null, regex: "^tmp/", inverted: false, within: "1-data" },
          { path: "old", regex: null, inverted: false, within: "2-app" },
        ],
      },
    ],
  ])("%s", (_, rfs, expected) => {
    const result = bridge(mirrorModule({ rfs }));
    expect(result.messages).toEqual([]);
    expect(result.config).toEqual(minimal(expected));
  });

  it.each<[string, string]>([
    ["3000", "not a power of two"],
    ["256", "below 512"],
    ["2097152", "above 1 MiB"],
    ["4k", "with a unit"],
  ])("refuses blocksize %s (%s), naming the attribute and its value", (size) => {
    const result = readUserconfig({ moduleName: "app", file: "userconfig.xml", text: mirrorModule({ rfs: `<rfs blocksize="${size}"><replicated dir="/data"/></rfs>` }), environment: {} });
    expect(result.module).toBeNull();
    expect(result.problems.map(formatProblem)).toEqual([
      `userconfig.xml:1:77 <rfs blocksize="${size}">: expected a block size in bytes, a power of two from 512 to 1048576 (1 MiB), such as 4096: the unit in which writes are tracked and a resync copies files`,
    ]);
  });

  it("refuses a splitbrain policy it does not know, naming the attribute and its value", () => {
    const result = readUserconfig({ moduleName: "app", file: "userconfig.xml", text: mirrorModule({ rfs: `<rfs splitbrain="newest"><replicated dir="/data"/></rfs>` }), environment: {} });
    expect(result.module).toBeNull();
    expect(result.problems.map(formatProblem)).toEqual(['userconfig.xml:1:77 <rfs splitbrain="newest">: expected one of changes, primary, operator']);
  });

  it("warns that syncdelta is not acted on", () => {
    const result = bridge(mirrorModule({ rfs: `<rfs syncdelta="10"><replicated dir="/data"/></rfs>` }));
    expect(result.messages).toEqual(["warning CONFIG_IGNORED safe/service/rfs"]);
    expect(result.config).toEqual(minimal());
  });
});

describe("toMirrorConfig: scripts and witnesses", () => {
  it("runs no scripts without <user>, with SafeKit's 300 s stop timeout", () => {
    expect(bridge(mirrorModule()).config).toMatchObject({ scripts: false, scriptEnv: { SAFEMODULE: "app" }, scriptTimeoutMs: 300_000 });
  });

  it("runs scripts with an empty <user>, with its default timeout", () => {
    expect(bridge(mirrorModule({ more: `<user/>` })).config).toMatchObject({ scripts: true, scriptEnv: { SAFEMODULE: "app" }, scriptTimeoutMs: 300_000 });
  });

  it.each<[string, string, readonly string[], string[]]>([
    ["no checker: no witness", `<check><tcp ident="app"><to addr="127.0.0.1" port="80"/></tcp></check>`, [], []],
    ["the <splitbrain> checker's address", `<check><splitbrain arg="10.0.0.1"/></check>`, ["10.0.0.1"], []],
    ["several witnesses: kept, with a warning that only the first is pinged", `<check><splitbrain ident="w" arg="10.0.0.1 10.0.0.2"/></check>`, ["10.0.0.1", "10.0.0.2"], ["warning CONFIG_APPROXIMATED safe/service/check/splitbrain"]],
  ])("%s", (_, check, witnesses, messages) => {
    const result = bridge(mirrorModule({ more: check }));
    expect(result.messages).toEqual(messages);
    expect(result.config?.witnesses).toEqual(witnesses);
  });
});

describe("toMirrorConfig: modules it refuses", () => {
  it.each<[string, string, { cluster?: string; node?: string }, string[]]>([
    ["heartbeat lans that hold three nodes", mirrorModule({ heart: `<heart><heartbeat name="default"/><heartbeat name="private"/></heart>` }), { cluster: threeNodes }, ["error CONFIG_MIRROR_NODES safe/service/heart"]],
    ["a node that is not one of the module's two", mirrorModule(), { node: "s3" }, ["error CONFIG_UNKNOWN_NODE safe/service/heart"]],
    ["a lan that is not in cluster.xml", mirrorModule({ heart: `<heart><heartbeat name="default"/><heartbeat name="backup"/></heart>` }), {}, ["error CONFIG_UNKNOWN_LAN safe/service/heart/heartbeat"]],
    ["defaultprim naming another node", mirrorModule({ service: ` defaultprim="s3"` }), {}, ["error CONFIG_UNKNOWN_NODE safe/service"]],
    ["a split-brain checker that runs a program", mirrorModule({ more: `<check><splitbrain exec="/opt/witness" arg="--quorum"/></check>` }), {}, ["error CONFIG_UNSUPPORTED safe/service/check/splitbrain"]],
  ])("%s", (_, userconfig, where, messages) => {
    const result = bridge(userconfig, where);
    expect(result.messages).toEqual(messages);
    expect(result.config).toBeNull();
  });

  it("names the lans and their nodes when they hold three", () => {
    const [problem] = bridge(mirrorModule({ heart: `<heart><heartbeat name="default"/><heartbeat name="private"/></heart>` }), { cluster: threeNodes }).problems;
    expect(problem?.message).toBe(
      "a mirror module runs on exactly two nodes, but its heartbeat lans (default, private) in cluster.xml hold 3 (s1, s2, s3); list in <heart> only lans that hold this module's two nodes",
    );
  });

  it("names the node and the module's nodes when the node is not one of them", () => {
    const [problem] = bridge(mirrorModule(), { node: "s3" }).problems;
    expect(problem?.message).toBe("this node, s3, is not one of the module's two nodes in its heartbeat lans (default) in cluster.xml (s1, s2); run the module on those nodes, or correct the node's name in cluster.xml");
  });
});

describe("the postgresql template", () => {
  it("gives its MirrorConfig: SafeKit's timings as written, acknowledged on receipt, the witness", () => {
    const template = (path: string) => readFileSync(fileURLToPath(new URL(`../../templates/${path}`, import.meta.url)), "utf8");
    const result = bridge(template("modules/postgresql-mirror/conf/userconfig.xml"), { cluster: template("cluster.xml"), node: "node2", moduleName: "postgresql-mirror" });
    expect(result.messages).toEqual([]);
    expect(result.config).toEqual({
      module: "postgresql-mirror",
      self: "node2",
      peer: "node1",
      rings: ["default", "private"],
      pulseMs: 700,
      timeoutMs: 30_000,
      joinMs: 60_000,
      blockSize: 4_096,
      ack: "received",
      failover: true,
      defaultPrim: { kind: "alone" },
      witnesses: ["192.168.1.1"],
      witnessTimeoutMs: 1_000,
      splitBrain: "changes",
      maxLoop: 3,
      loopIntervalMs: 24 * 3_600_000,
      scripts: true,
      scriptEnv: { SAFEMODULE: "postgresql-mirror", PG_VERSION: "15" },
      scriptTimeoutMs: 120_000,
      forceStopTimeoutMs: 60_000,
      resyncWorkers: 6,
      resyncChunkBytes: 1024 * 1024,
      hotExtentBlocks: 16,
  checkpointMs: 500,
      retryMs: 1_000,
      lane: false,
      notReplicated: [{ path: null, regex: ".*/pg_stat_tmp/.*", inverted: false }],
      toCheck: ["15/main/PG_VERSION"],
    } satisfies MirrorConfig);
  });
});
