// <heart> and <rfs>: valid SafeKit snippets read to the expected typed sections with their
// documented defaults; each invalid snippet gives exactly the expected located problem;
// unknown attributes warn, and `syncat`, unsafe to ignore, is an error.

import { describe, expect, it } from "vitest";
import type { HeartbeatNetwork, HeartSection, ReplicatedDir, RfsSection } from "../../core/config/module-config.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { ElementReader, type ReadContext } from "../../core/config/reader.ts";
import { readHeart } from "../../core/config/sections/heart.ts";
import { parseExclusionRegex, parseRelativePath, parseReplicatedDir, readRfs } from "../../core/config/sections/rfs.ts";
import { parseXml } from "../../core/config/xml-tree.ts";

const syncatReason = "the operator asked for scheduled synchronisation; replicating in real time instead would copy a corruption to the secondary at once";

function readWith<T>(text: string, read: (reader: ElementReader) => T): { value: T; messages: string[] } {
  const document = parseXml("userconfig.xml", text);
  expect(document.problems.map(formatProblem)).toEqual([]);
  const context: ReadContext = {
    file: "userconfig.xml",
    problems: [],
    macros: new Map([["DATA", "/srv/data"]]),
    environment: {},
    unsafeIfIgnored: new Map([["rfs@syncat", syncatReason]]),
  };
  const value = read(new ElementReader(context, document.root!));
  return { value, messages: context.problems.map(formatProblem) };
}

const heart = (text: string) => readWith(text, readHeart);
const rfs = (text: string) => readWith(text, readRfs);

const network = (name: string, fields: Partial<HeartbeatNetwork> = {}): HeartbeatNetwork => ({ name, ident: null, flow: false, pulseMs: 700, timeoutMs: 30_000, ...fields });
const heartSection = (fields: Partial<HeartSection>): HeartSection => ({ port: null, pulseMs: 700, timeoutMs: 30_000, permanentArp: true, heartbeats: [network("default")], timingWritten: false, ...fields });

describe("<heart>: valid snippets", () => {
  it.each<[string, string, HeartSection]>([
    ["defaults: pulse 700 ms, timeout 30 s, permanent_arp on", `<heart><heartbeat name="default"/></heart>`, heartSection({})],
    [
      "the documented example, with a flow network",
      `<heart pulse="700ms" timeout="30000ms" permanent_arp="on"><heartbeat name="default" ident="flow"/><heartbeat name="private"/></heart>`,
      heartSection({ heartbeats: [network("default", { ident: "flow", flow: true }), network("private")], timingWritten: true }),
    ],
    [
      "bare numbers are ms; units are accepted",
      `<heart port="4800" pulse="500" timeout="5s" permanent_arp="off"><heartbeat name="a"/></heart>`,
      { port: 4800, pulseMs: 500, timeoutMs: 5_000, permanentArp: false, heartbeats: [network("a", { pulseMs: 500, timeoutMs: 5_000 })], timingWritten: true },
    ],
    [
      "a heartbeat's own pulse and timeout; the others inherit the heart's",
      `<heart pulse="1s" timeout="10s"><heartbeat name="fast" pulse="100" timeout="1000"/><heartbeat name="slow" timeout="1m"/><heartbeat name="plain"/></heart>`,
      heartSection({
        pulseMs: 1_000,
        timeoutMs: 10_000,
        heartbeats: [network("fast", { pulseMs: 100, timeoutMs: 1_000 }), network("slow", { pulseMs: 1_000, timeoutMs: 60_000 }), network("plain", { pulseMs: 1_000, timeoutMs: 10_000 })],
        timingWritten: true,
      }),
    ],
    ["an ident other than flow is kept", `<heart><heartbeat name="a" ident="backup"/></heart>`, heartSection({ heartbeats: [network("a", { ident: "backup" })] })],
    [
      "a heartbeat's own pulse alone counts as written timing",
      `<heart><heartbeat name="a" pulse="100"/></heart>`,
      heartSection({ heartbeats: [network("a", { pulseMs: 100 })], timingWritten: true }),
    ],
  ])("%s", (_, text, expected) => {
    const { value, messages } = heart(text);
    expect(messages).toEqual([]);
    expect(value).toEqual(expected);
  });

  it("warns about unknown attributes and the pre-7.2 <server> list", () => {
    const { value, messages } = heart(`<heart mode="x"><heartbeat name="a"><server addr="10.0.0.1"/></heartbeat></heart>`);
    expect(messages).toEqual([
      "userconfig.xml:1:37 <server>: warning: <server> under <heartbeat> is the pre-7.2 form; tandem takes a lan's nodes from cluster.xml, so declare them there",
      'userconfig.xml:1:8 <heart mode="x">: warning: attribute mode is not used by tandem; it is ignored',
    ]);
    expect(value.heartbeats).toEqual([network("a")]);
  });
});

describe("<heart>: invalid snippets give located problems", () => {
  const falseFailover = (timeoutMs: number, pulseMs: number) =>
    `the timeout (${timeoutMs}ms) must exceed two pulses (${2 * pulseMs}ms): otherwise one late or lost heartbeat declares the peer down and causes a false failover, with both nodes primary`;
  it.each<[string, string, string[]]>([
    ["no heartbeat", `<heart/>`, ['userconfig.xml:1:1 <heart>: a <heart> needs at least one <heartbeat name="…"/>: the networks of cluster.xml that carry its heartbeats']],
    ["a heartbeat twice", `<heart><heartbeat name="a"/><heartbeat name="a"/></heart>`, ['userconfig.xml:1:40 <heartbeat name="a">: heartbeat a is listed twice in <heart>; each network carries one heartbeat']],
    ["a heartbeat without name", `<heart><heartbeat/></heart>`, ["userconfig.xml:1:8 <heartbeat>: attribute name is required"]],
    ["two flow networks", `<heart><heartbeat name="a" ident="flow"/><heartbeat name="b" ident="flow"/></heart>`, ['userconfig.xml:1:62 <heartbeat ident="flow">: only one heartbeat carries replication (ident="flow"), and a already does']],
    ["a timeout of two pulses", `<heart pulse="700" timeout="1400"><heartbeat name="a"/></heart>`, [`userconfig.xml:1:20 <heart timeout="1400">: ${falseFailover(1_400, 700)}`]],
    ["a pulse too slow for the default timeout", `<heart pulse="20s"><heartbeat name="a"/></heart>`, [`userconfig.xml:1:8 <heart pulse="20s">: ${falseFailover(30_000, 20_000)}`]],
    ["a heartbeat's own timeout of two pulses", `<heart><heartbeat name="a" timeout="1s"/></heart>`, [`userconfig.xml:1:28 <heartbeat timeout="1s">: ${falseFailover(1_000, 700)}`]],
    ["a heartbeat's own pulse too slow for the heart's timeout", `<heart><heartbeat name="a" pulse="15s"/></heart>`, [`userconfig.xml:1:28 <heartbeat pulse="15s">: ${falseFailover(30_000, 15_000)}`]],
    ["port 0", `<heart port="0"><heartbeat name="a"/></heart>`, ['userconfig.xml:1:8 <heart port="0">: expected a whole number from 1 to 65535']],
    ["port 70000", `<heart port="70000"><heartbeat name="a"/></heart>`, ['userconfig.xml:1:8 <heart port="70000">: expected a whole number from 1 to 65535']],
    ["a pulse of 0", `<heart pulse="0"><heartbeat name="a"/></heart>`, ['userconfig.xml:1:8 <heart pulse="0">: expected a whole number of milliseconds from 1ms to 60s: the pulse paces the heartbeats']],
    ["a pulse of 1.5 ms", `<heart pulse="1.5ms"><heartbeat name="a"/></heart>`, ['userconfig.xml:1:8 <heart pulse="1.5ms">: expected a whole number of milliseconds from 1ms to 60s: the pulse paces the heartbeats']],
    ["a timeout over a day", `<heart timeout="2d"><heartbeat name="a"/></heart>`, ['userconfig.xml:1:8 <heart timeout="2d">: expected a whole number of milliseconds from 1ms to 24h']],
    ["a timeout that is not a duration (no second error about pulses)", `<heart pulse="20s" timeout="soon"><heartbeat name="a"/></heart>`, ['userconfig.xml:1:20 <heart timeout="soon">: expected a duration such as 700ms, 30s or 24h (a bare number is in ms)']],
    ["permanent_arp not a boolean", `<heart permanent_arp="maybe"><heartbeat name="a"/></heart>`, ['userconfig.xml:1:8 <heart permanent_arp="maybe">: expected on or off (also yes/no, true/false)']],
  ])("%s", (_, text, expected) => {
    expect(heart(text).messages).toEqual(expected);
  });

  it("refuses more than 8 heartbeats", () => {
    const many = Array.from({ length: 9 }, (_, index) => `<heartbeat name="lan${index}"/>`).join("");
    const { value, messages } = heart(`<heart>${many}</heart>`);
    expect(messages).toEqual([expect.stringMatching(/^userconfig\.xml:1:\d+ <heartbeat>: a <heart> has at most 8 heartbeats; this is heartbeat 9$/)]);
    expect(value.heartbeats).toHaveLength(8);
  });
});

const dir = (path: string, fields: Partial<ReplicatedDir> = {}): ReplicatedDir => ({ dir: path, mode: "read_only", toCheck: [], notReplicated: [], ...fields });
const rfsSection = (fields: Partial<RfsSection>): RfsSection => ({
  async: "second",
  resyncWorkers: 6,
  resyncBandwidthKBps: 20_000,
  lockTimeoutMs: 100_000,
  sendTimeoutMs: 30_000,
  syncDeltaMinutes: 0,
  blockSize: 4_096,
  splitBrain: "changes",
  replicated: [dir("/data")],
  ...fields,
});

describe("<rfs>: valid snippets", () => {
  it.each<[string, string, RfsSection]>([
    ["defaults: async second, 6 workers, 20000 KB/s, 100 s and 30 s timeouts, read_only", `<rfs><replicated dir="/data"/></rfs>`, rfsSection({})],
    [
      "the documented example",
      [
        `<rfs async="second" nbrei="6" reiallowedbw="20000" locktimeout="100s" sendtimeout="30s">`,
        `  <replicated dir="/var/lib/postgresql" mode="read_only">`,
        `    <tocheck path="15/main/PG_VERSION"/>`,
        `    <notreplicated path="tmp"/>`,
        `    <notreplicated regexpath=".*\\.tmp$"/>`,
        `  </replicated>`,
        `</rfs>`,
      ].join("\n"),
      rfsSection({
        replicated: [
          dir("/var/lib/postgresql", {
            toCheck: ["15/main/PG_VERSION"],
            notReplicated: [
              { path: "tmp", regex: null, inverted: false },
              { path: null, regex: ".*\\.tmp$", inverted: false },
            ],
          }),
        ],
      }),
    ],
    [
      "bare numbers: timeouts in s, syncdelta in minutes",
      `<rfs async="none" nbrei="2" reiallowedbw="500" locktimeout="20" sendtimeout="5" syncdelta="10"><replicated dir="/data"/></rfs>`,
      rfsSection({ async: "none", resyncWorkers: 2, resyncBandwidthKBps: 500, lockTimeoutMs: 20_000, sendTimeoutMs: 5_000, syncDeltaMinutes: 10 }),
    ],
    ["syncdelta with a unit", `<rfs syncdelta="2h"><replicated dir="/data"/></rfs>`, rfsSection({ syncDeltaMinutes: 120 })],
    ["tandem's blocksize and splitbrain", `<rfs blocksize="65536" splitbrain="operator"><replicated dir="/data"/></rfs>`, rfsSection({ blockSize: 65_536, splitBrain: "operator" })],
    ["the smallest block size", `<rfs blocksize="512" splitbrain="primary"><replicated dir="/data"/></rfs>`, rfsSection({ blockSize: 512, splitBrain: "primary" })],
    ["the largest block size", `<rfs blocksize="1048576"><replicated dir="/data"/></rfs>`, rfsSection({ blockSize: 1_048_576 })],
    [
      "several disjoint directories (a shared prefix is not nesting), read_write, an inverted regexpath, a trailing / dropped",
      `<rfs><replicated dir="/data" mode="read_write"><notreplicated path="cache/"/></replicated><replicated dir="/data2"><notreplicated regexpath="!^keep/"/></replicated></rfs>`,
      rfsSection({
        replicated: [dir("/data", { mode: "read_write", notReplicated: [{ path: "cache", regex: null, inverted: false }] }), dir("/data2", { notReplicated: [{ path: null, regex: "^keep/", inverted: true }] })],
      }),
    ],
    ["a directory from a macro", `<rfs><replicated dir="%DATA%/db"><tocheck path="PG_VERSION"/></replicated></rfs>`, rfsSection({ replicated: [dir("/srv/data/db", { toCheck: ["PG_VERSION"] })] })],
  ])("%s", (_, text, expected) => {
    const { value, messages } = rfs(text);
    expect(messages).toEqual([]);
    expect(value).toEqual(expected);
  });

  it("warns about unknown attributes and elements", () => {
    const { messages } = rfs(`<rfs iotimeout="1"><replicated dir="/data" owner="x"><mirror/></replicated></rfs>`);
    expect(messages).toEqual([
      'userconfig.xml:1:44 <replicated owner="x">: warning: attribute owner is not used by tandem; it is ignored',
      "userconfig.xml:1:54 <mirror>: warning: <mirror> is not used by tandem inside <replicated>; it is ignored",
      'userconfig.xml:1:6 <rfs iotimeout="1">: warning: attribute iotimeout is not used by tandem; it is ignored',
    ]);
  });
});

describe("<rfs>: invalid snippets give located problems", () => {
  const dirExpected = "expected an absolute, normalised directory such as /var/lib/data (no trailing /, no //, no . or .. parts)";
  const relativeExpected = "expected a path relative to the replicated directory, such as tmp or logs/app.log (no leading /, no //, no . or .. parts)";
  const replicated = (inside: string) => `<rfs><replicated dir="/data">${inside}</replicated></rfs>`;
  const blockSizeExpected = "expected a block size in bytes, a power of two from 512 to 1048576 (1 MiB), such as 4096: the unit in which writes are tracked and a resync copies files";
  it.each<[string, string, string[]]>([
    ["no replicated directory", `<rfs/>`, ['userconfig.xml:1:1 <rfs>: an <rfs> needs at least one <replicated dir="…">: the directories to mirror']],
    [
      "syncat, which cannot be ignored safely",
      `<rfs syncat="02:00"><replicated dir="/data"/></rfs>`,
      [`userconfig.xml:1:6 <rfs syncat="02:00">: tandem does not support syncat yet, and ignoring it would be unsafe: ${syncatReason}`],
    ],
    ["a replicated without dir", `<rfs><replicated/></rfs>`, ["userconfig.xml:1:6 <replicated>: attribute dir is required"]],
    ["a relative dir", `<rfs><replicated dir="data"/></rfs>`, [`userconfig.xml:1:18 <replicated dir="data">: ${dirExpected}`]],
    ["a trailing slash", `<rfs><replicated dir="/data/"/></rfs>`, [`userconfig.xml:1:18 <replicated dir="/data/">: ${dirExpected}`]],
    ["a .. part", `<rfs><replicated dir="/data/../etc"/></rfs>`, [`userconfig.xml:1:18 <replicated dir="/data/../etc">: ${dirExpected}`]],
    ["a double slash", `<rfs><replicated dir="/data//db"/></rfs>`, [`userconfig.xml:1:18 <replicated dir="/data//db">: ${dirExpected}`]],
    ["the root directory", `<rfs><replicated dir="/"/></rfs>`, [`userconfig.xml:1:18 <replicated dir="/">: expected a directory below /: replicating / would overwrite the secondary's whole system`]],
    [
      "a directory inside another",
      `<rfs><replicated dir="/data"/><replicated dir="/data/db"/></rfs>`,
      ['userconfig.xml:1:43 <replicated dir="/data/db">: replicated directory /data/db is inside /data, which this module already replicates; replicate each tree once'],
    ],
    [
      "a directory containing another",
      `<rfs><replicated dir="/data/db"/><replicated dir="/data"/></rfs>`,
      ['userconfig.xml:1:46 <replicated dir="/data">: replicated directory /data contains /data/db, which this module already replicates; replicate each tree once'],
    ],
    ["a directory twice", `<rfs><replicated dir="/data"/><replicated dir="/data"/></rfs>`, ['userconfig.xml:1:43 <replicated dir="/data">: replicated directory /data is replicated twice by this module; replicate each tree once']],
    ["a mode that does not exist", `<rfs><replicated dir="/data" mode="rw"/></rfs>`, ['userconfig.xml:1:30 <replicated mode="rw">: expected read_only or read_write']],
    ["an absolute tocheck", replicated(`<tocheck path="/data/PG_VERSION"/>`), [`userconfig.xml:1:39 <tocheck path="/data/PG_VERSION">: ${relativeExpected}`]],
    ["a tocheck without path", replicated(`<tocheck/>`), ["userconfig.xml:1:30 <tocheck>: attribute path is required"]],
    ["an absolute notreplicated path", replicated(`<notreplicated path="/tmp"/>`), [`userconfig.xml:1:45 <notreplicated path="/tmp">: ${relativeExpected}`]],
    ["a notreplicated path leaving the tree", replicated(`<notreplicated path="../etc"/>`), [`userconfig.xml:1:45 <notreplicated path="../etc">: ${relativeExpected}`]],
    ["a notreplicated path of the whole tree", replicated(`<notreplicated path="."/>`), [`userconfig.xml:1:45 <notreplicated path=".">: ${relativeExpected}`]],
    ["a notreplicated with path and regexpath", replicated(`<notreplicated path="tmp" regexpath="x"/>`), ["userconfig.xml:1:30 <notreplicated>: a <notreplicated> takes path=\"…\" or regexpath=\"…\", not both"]],
    ["a notreplicated with neither", replicated(`<notreplicated/>`), ['userconfig.xml:1:30 <notreplicated>: a <notreplicated> needs path="…" (relative to the replicated directory) or regexpath="…"']],
    [
      "a regexpath that does not compile",
      replicated(`<notreplicated regexpath="(tmp"/>`),
      [
        'userconfig.xml:1:45 <notreplicated regexpath="(tmp">: expected a regular expression (POSIX ERE; tandem compiles it as a JavaScript RegExp, which reads ordinary ERE the same way): Invalid regular expression: /(tmp/: Unterminated group',
      ],
    ],
    [
      "an empty regexpath after !",
      replicated(`<notreplicated regexpath="!"/>`),
      ['userconfig.xml:1:45 <notreplicated regexpath="!">: expected a non-empty regular expression: an empty one matches every path, and would exclude the whole tree from replication'],
    ],
    [
      "a POSIX bracket class",
      replicated(`<notreplicated regexpath="^[[:digit:]]+\\.log$"/>`),
      [
        'userconfig.xml:1:45 <notreplicated regexpath="^[[:digit:]]+\\.log$">: expected a regular expression without POSIX bracket classes such as [:digit:]: tandem compiles the pattern as a JavaScript RegExp, which reads them differently; write [0-9] and the like',
      ],
    ],
    ["async not second or none", `<rfs async="first"><replicated dir="/data"/></rfs>`, ['userconfig.xml:1:6 <rfs async="first">: expected second or none']],
    ["nbrei 0", `<rfs nbrei="0"><replicated dir="/data"/></rfs>`, ['userconfig.xml:1:6 <rfs nbrei="0">: expected a whole number from 1 to 64']],
    ...["3000", "256", "2097152", "4k", "0x1000", ""].map((size): [string, string, string[]] => [
      `blocksize ${JSON.stringify(size)}`,
      `<rfs blocksize="${size}"><replicated dir="/data"/></rfs>`,
      [`userconfig.xml:1:6 <rfs blocksize="${size}">: ${blockSizeExpected}`],
    ]),
    ["splitbrain not changes, primary or operator", `<rfs splitbrain="newest"><replicated dir="/data"/></rfs>`, ['userconfig.xml:1:6 <rfs splitbrain="newest">: expected one of changes, primary, operator']],
    ["reiallowedbw 0", `<rfs reiallowedbw="0"><replicated dir="/data"/></rfs>`, ['userconfig.xml:1:6 <rfs reiallowedbw="0">: expected a whole number from 1 to 10000000']],
    [
      "a lock timeout of 0",
      `<rfs locktimeout="0"><replicated dir="/data"/></rfs>`,
      ['userconfig.xml:1:6 <rfs locktimeout="0">: expected a duration above 0 and at most 1d: past it the primary stops waiting for the secondary and continues ALONE'],
    ],
    ["a send timeout in ms that rounds to 0 s", `<rfs sendtimeout="100ms"><replicated dir="/data"/></rfs>`, ['userconfig.xml:1:6 <rfs sendtimeout="100ms">: expected at least 1s: this attribute counts in s, and 100ms rounds to 0']],
    ["a syncdelta over a year", `<rfs syncdelta="400d"><replicated dir="/data"/></rfs>`, ['userconfig.xml:1:6 <rfs syncdelta="400d">: expected at most 365d: syncdelta is how stale a node may be and still become primary']],
  ])("%s", (_, text, expected) => {
    expect(rfs(text).messages).toEqual(expected);
  });

  it("reads the valid directories when one is refused", () => {
    const { value } = rfs(`<rfs><replicated dir="/data"/><replicated dir="/data/db"/><replicated dir="/logs"/></rfs>`);
    expect(value.replicated.map((each) => each.dir)).toEqual(["/data", "/logs"]);
  });
});

describe("<rfs> path and pattern grammars", () => {
  it.each(["/data", "/var/lib/postgresql", "/a b/c", "/.hidden", "/a/..b"])("accepts the directory %s", (text) => {
    expect(parseReplicatedDir(text)).toEqual({ ok: true, value: text });
  });
  it.each(["", "data", "/", "/a/", "//a", "/a/./b", "/a/..", "C:\\data", "/a\0b"])("refuses the directory %j", (text) => {
    expect(parseReplicatedDir(text).ok).toBe(false);
  });
  it.each([
    ["tmp", "tmp"],
    ["logs/app.log", "logs/app.log"],
    ["cache/", "cache"],
    [".git", ".git"],
  ])("accepts the relative path %s as %s", (text, path) => {
    expect(parseRelativePath(text)).toEqual({ ok: true, value: path });
  });
  it.each(["", "/", "/tmp", "./tmp", "a/../../b", "a//b", ".."])("refuses the relative path %j", (text) => {
    expect(parseRelativePath(text).ok).toBe(false);
  });
  it.each([
    [".*\\.tmp$", { regex: ".*\\.tmp$", inverted: false }],
    ["!^keep/", { regex: "^keep/", inverted: true }],
    ["(a|b){2,3}", { regex: "(a|b){2,3}", inverted: false }],
  ])("accepts the pattern %s", (text, value) => {
    expect(parseExclusionRegex(text)).toEqual({ ok: true, value });
  });
  it.each(["", "!", "[", "a{2,1}", "[[:alpha:]]", "x".repeat(1_025)])("refuses the pattern %j", (text) => {
    expect(parseExclusionRegex(text).ok).toBe(false);
  });
});
