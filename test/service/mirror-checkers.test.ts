// A mirror module's checkers and errd (service/mirror-checkers.ts) over fake probe and
// process ports, in fake time: what runs in which role, what a failure asks of the core,
// custom checkers' programs and `tandem set`, results that come back too late.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ResourceState } from "../../core/config/failover-rules.ts";
import type { ModuleConfig } from "../../core/config/module-config.ts";
import { formatProblem } from "../../core/config/problems.ts";
import { readUserconfig } from "../../core/config/userconfig.ts";
import type { MirrorReadiness, MirrorRole } from "../../core/mirror/messages.ts";
import type { Probe, ProbePort, ProbeResult, ProcessPort, ProcessQuery, ScriptOutcome, ScriptRun } from "../../core/ports.ts";
import type { LogEntry } from "../../core/types.ts";
import { mirrorClasses, startMirrorCheckers, type MirrorCheckers } from "../../service/mirror-checkers.ts";

function moduleOf(inside: string): ModuleConfig {
  const text = `<safe><service mode="mirror"><heart><heartbeat name="default"/></heart><rfs><replicated dir="/data"/></rfs>${inside}</service></safe>`;
  const result = readUserconfig({ moduleName: "db", file: "userconfig.xml", text, environment: {} });
  expect(result.problems.filter((problem) => problem.severity === "error").map(formatProblem)).toEqual([]);
  return result.module!;
}

class FakeProbes implements ProbePort {
  readonly asked: { probe: Probe; done: (result: ProbeResult) => void }[] = [];
  probe(probe: Probe, _timeoutMs: number, done: (result: ProbeResult) => void): void {
    this.asked.push({ probe, done });
  }
}

class FakeProcesses implements ProcessPort {
  readonly runs: { run: ScriptRun; done: (outcome: ScriptOutcome) => void }[] = [];
  readonly killed: number[] = [];
  readonly counts: { query: ProcessQuery; done: (count: number | null) => void }[] = [];
  run(run: ScriptRun, done: (outcome: ScriptOutcome) => void): void {
    this.runs.push({ run, done });
  }
  kill(id: number): void {
    this.killed.push(id);
  }
  count(query: ProcessQuery, done: (count: number | null) => void): void {
    this.counts.push({ query, done });
  }
}

interface Rig {
  readonly probes: FakeProbes;
  readonly processes: FakeProcesses;
  readonly failed: { why: string; action: string }[];
  readonly stopped: string[];
  readonly swapped: string[];
  readonly held: (string | null)[];
  /** What the hook was told each time (name=state, sorted). */
  readonly told: string[];
  /** The peer's resources the rules see. */
  readonly remote: Map<string, ResourceState>;
  readonly logs: LogEntry[];
  readonly checkers: MirrorCheckers;
  set(role: MirrorRole, readiness?: MirrorReadiness): void;
}

function rig(module: ModuleConfig): Rig {
  const probes = new FakeProbes();
  const processes = new FakeProcesses();
  const failed: { why: string; action: string }[] = [];
  const stopped: string[] = [];
  const swapped: string[] = [];
  const held: (string | null)[] = [];
  const told: string[] = [];
  const remote = new Map<string, ResourceState>();
  const logs: LogEntry[] = [];
  let state = { role: "STOP" as MirrorRole, readiness: "NotReady" as MirrorReadiness };
  const checkers = startMirrorCheckers(module, probes, processes, { env: { SAFEMODULE: "db" }, handlerTimeoutMs: 60_000 }, {
    state: () => state,
    appFailed: (why, action) => failed.push({ why, action }),
    stop: (why) => stopped.push(why),
    swap: (why) => swapped.push(why),
    hold: (why) => held.push(why),
    resources: (entries) => told.push(entries.map(([name, state]) => `${name}=${state}`).join(" ")),
    remote: () => remote,
    log: (entry) => logs.push(entry),
  });
  return {
    probes,
    processes,
    failed,
    stopped,
    swapped,
    held,
    told,
    remote,
    logs,
    checkers,
    set(role, readiness = "Ready") {
      state = { role, readiness };
      checkers.update();
    },
  };
}

const up: ProbeResult = { up: true, detail: "" };
const down: ProbeResult = { up: false, detail: "ECONNREFUSED" };

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("mirror checker classes", () => {
  it("follow the role: pre once started, both in a role, prim on a Ready primary, second on the secondary, sec on either side alone", () => {
    const classes = (role: MirrorRole, readiness: MirrorReadiness) => [...mirrorClasses(role, readiness)].sort();
    expect(classes("STOP", "Transient")).toEqual([]);
    expect(classes("WAIT", "NotReady")).toEqual(["pre"]);
    expect(classes("PRIM", "Transient")).toEqual(["both", "pre"]);
    expect(classes("PRIM", "Ready")).toEqual(["both", "pre", "prim"]);
    expect(classes("ALONE", "Ready")).toEqual(["both", "pre", "prim", "sec"]);
    expect(classes("SECOND", "Transient")).toEqual(["both", "pre", "sec", "second"]);
  });
});

describe("a tcp checker of the primary", () => {
  const module = moduleOf(`<check><tcp ident="pg" when="prim" action="restart"><to addr="127.0.0.1" port="5432" interval="10s" timeout="5s"/></tcp></check>`);

  it("probes at once when the primary is Ready, then every interval; a failure restarts the application", async () => {
    const r = rig(module);
    r.set("SECOND");
    await vi.advanceTimersByTimeAsync(30_000);
    expect(r.probes.asked).toHaveLength(0);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    expect(r.probes.asked.map((each) => each.probe)).toEqual([{ kind: "tcp", addr: "127.0.0.1", port: 5432 }]);
    r.probes.asked[0]!.done(up);
    expect(r.checkers.resources()).toEqual({ "tcp.pg": "up" });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(r.probes.asked).toHaveLength(2);
    r.probes.asked[1]!.done(down);
    expect(r.failed).toEqual([{ why: "checker tcp.pg failed: ECONNREFUSED", action: "restart" }]);
    expect(r.checkers.resources()).toEqual({ "tcp.pg": "down" });
    r.checkers.close();
  });

  it("drops a result that comes back after the primary stopped being Ready, and stops probing", async () => {
    const r = rig(module);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    r.set("PRIM", "Transient"); // restarting its application
    r.probes.asked[0]!.done(down);
    expect(r.failed).toEqual([]);
    expect(r.checkers.resources()).toEqual({});
    await vi.advanceTimersByTimeAsync(60_000);
    expect(r.probes.asked).toHaveLength(1);
    r.checkers.close();
  });

  it("action stop stops the module; stopstart asks the core for it", async () => {
    const stopping = rig(moduleOf(`<check><tcp ident="pg" when="prim" action="stop"><to addr="127.0.0.1" port="5432"/></tcp></check>`));
    stopping.set("ALONE");
    await vi.advanceTimersByTimeAsync(0);
    stopping.probes.asked[0]!.done(down);
    expect(stopping.stopped).toEqual(["checker tcp.pg failed: ECONNREFUSED"]);
    const stopstart = rig(moduleOf(`<check><tcp ident="pg" when="prim" action="stopstart"><to addr="127.0.0.1" port="5432"/></tcp></check>`));
    stopstart.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    stopstart.probes.asked[0]!.done(down);
    expect(stopstart.failed.map((each) => each.action)).toEqual(["stopstart"]);
    stopping.checkers.close();
    stopstart.checkers.close();
  });
});

describe("errd on a mirror", () => {
  const module = moduleOf(`<errd polltimer="10s">
    <proc name="postgres" atleast="1" action="restart" class="prim"/>
    <proc name="agent" atleast="1" atmax="1" action="stopstart" class="sec" start_after="2"/>
    <proc name="mine" atleast="1" action="stop" class="custom_class"/>
    <proc name="hook" atleast="1" action="on_failure" class="second"/>
  </errd>`);

  it("counts the primary's processes every polltimer; too few restarts the application; not knowing does nothing", async () => {
    const r = rig(module);
    expect(r.logs.filter((entry) => entry.event === "mirror.errd_not_run").map((entry) => entry.fields["process"])).toEqual(["mine"]);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(10_000);
    expect(r.processes.counts.map((each) => each.query.name)).toEqual(["postgres"]);
    r.processes.counts[0]!.done(null);
    expect(r.failed).toEqual([]);
    expect(r.logs.some((entry) => entry.event === "mirror.errd_count_failed")).toBe(true);
    await vi.advanceTimersByTimeAsync(10_000);
    r.processes.counts[1]!.done(1);
    expect(r.failed).toEqual([]);
    await vi.advanceTimersByTimeAsync(10_000);
    r.processes.counts[2]!.done(0);
    expect(r.failed).toEqual([{ why: "errd postgres failed: 0 running, expected at least 1", action: "restart" }]);
    r.checkers.close();
  });

  it("asks no count again while one is outstanding, and drops it once the class is disabled", async () => {
    const r = rig(module);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(30_000);
    expect(r.processes.counts).toHaveLength(1);
    r.set("PRIM", "Transient");
    r.processes.counts[0]!.done(0);
    expect(r.failed).toEqual([]);
    r.checkers.close();
  });

  it("watches class sec on the secondary after start_after polls, with atmax; a handler runs from bin with the process and its count", async () => {
    const r = rig(module);
    r.set("SECOND");
    await vi.advanceTimersByTimeAsync(10_000);
    // hook (class second) is counted from the first poll; agent's first two are skipped.
    expect(r.processes.counts.map((each) => each.query.name)).toEqual(["hook"]);
    r.processes.counts[0]!.done(0);
    expect(r.processes.runs.map((each) => [each.run.script, ...each.run.args])).toEqual([["on_failure", "hook", "0"]]);
    expect(r.processes.runs[0]!.run.env).toEqual({ SAFEMODULE: "db" });
    await vi.advanceTimersByTimeAsync(20_000);
    expect(r.processes.counts.map((each) => each.query.name)).toEqual(["hook", "hook", "agent"]);
    r.processes.counts[1]!.done(1);
    r.processes.counts[2]!.done(2);
    expect(r.failed).toEqual([{ why: "errd agent failed: 2 running, expected 1 to 1", action: "stopstart" }]);
    r.checkers.close();
  });
});

describe("a custom checker on a mirror", () => {
  const module = moduleOf(`<check><custom ident="app" when="prim" exec="/opt/check-app" arg="--deep  fast" action="restart"/></check>`);

  it("runs its program while the primary is Ready, kills it when not; set down restarts the application", async () => {
    const r = rig(module);
    expect(() => r.checkers.setResource("custom.app", "down")).toThrow(/custom\.app is not watched now \(its class, prim/);
    expect(() => r.checkers.setResource("custom.other", "down")).toThrow("module db has no custom checker custom.other (its custom checkers: custom.app)");
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    expect(r.processes.runs.map((each) => [each.run.script, ...each.run.args])).toEqual([["/opt/check-app", "--deep", "fast"]]);
    expect(r.processes.runs[0]!.run.env["TANDEM_RESOURCE"]).toBe("custom.app");
    expect(r.checkers.resources()).toEqual({ "custom.app": "init" });
    r.checkers.setResource("custom.app", "up");
    r.checkers.setResource("custom.app", "down");
    r.checkers.setResource("custom.app", "down");
    expect(r.failed).toEqual([{ why: "checker custom.app failed: set down by its program", action: "restart" }]);
    // Not started twice while it runs.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(r.processes.runs).toHaveLength(1);
    r.set("PRIM", "Transient");
    expect(r.processes.killed).toEqual([r.processes.runs[0]!.run.id]);
    expect(r.checkers.resources()).toEqual({});
    r.checkers.close();
  });

  it("a program that ends while watched leaves its resource down and acts; it is started again on the next interval", async () => {
    const r = rig(module);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    r.checkers.setResource("custom.app", "up");
    r.processes.runs[0]!.done({ kind: "exited", code: 1 });
    expect(r.checkers.resources()).toEqual({ "custom.app": "down" });
    expect(r.failed).toEqual([{ why: "checker custom.app failed: its program ended (exit 1)", action: "restart" }]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(r.processes.runs).toHaveLength(2);
    r.checkers.close();
    expect(r.processes.killed).toEqual([r.processes.runs[1]!.run.id]);
  });
});

describe("<failover> rules on a mirror", () => {
  const module = moduleOf(`<check><custom ident="app" when="prim" exec="/opt/check-app" action="noaction"/></check>
    <failover period="1000ms" handle_time="3000ms"><![CDATA[
      app_down: if (custom.app == down) then swap();
      gone: if (custom.app == down && custom.app != up) then stop();
      flaky: if (custom.nothing == down) then restart();
    ]]></failover>`);

  it("act once a condition has held for handle_time, the most severe first, then wait a whole handle_time again", async () => {
    const r = rig(module);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    r.checkers.setResource("custom.app", "down");
    expect(r.failed).toEqual([]); // noaction: the checker itself does nothing
    await vi.advanceTimersByTimeAsync(2_000);
    expect([r.stopped, r.swapped]).toEqual([[], []]);
    await vi.advanceTimersByTimeAsync(2_000);
    // Both hold; stop is the more severe.
    expect(r.stopped).toEqual(["rule gone"]);
    expect(r.swapped).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(r.swapped).toEqual(["rule app_down"]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(r.stopped).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(r.stopped).toHaveLength(2);
    r.checkers.close();
  });

  it("a condition that stops holding starts its wait again; nothing is evaluated while the module is stopped", async () => {
    const r = rig(module);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    r.checkers.setResource("custom.app", "down");
    await vi.advanceTimersByTimeAsync(2_000);
    r.checkers.setResource("custom.app", "up");
    await vi.advanceTimersByTimeAsync(1_000);
    r.checkers.setResource("custom.app", "down");
    await vi.advanceTimersByTimeAsync(2_000);
    expect([r.stopped, r.swapped]).toEqual([[], []]);
    r.set("STOP", "NotReady");
    await vi.advanceTimersByTimeAsync(10_000);
    expect([r.stopped, r.swapped]).toEqual([[], []]);
    r.checkers.close();
  });
});

describe("remote resources on a mirror", () => {
  const module = moduleOf(`<check><custom ident="app" when="both" exec="/opt/check-app" action="noaction"/></check>
    <failover period="1000ms" handle_time="2000ms"><![CDATA[ peer_app: if (remote.custom.app == down && local.custom.app == up) then swap(); ]]></failover>`);

  it("tells the core this node's resources as they change, for the peer", async () => {
    const r = rig(module);
    r.set("SECOND");
    r.checkers.setResource("custom.app", "up");
    r.set("STOP", "NotReady");
    expect(r.told).toEqual(["custom.app=init", "custom.app=up", ""]);
    r.checkers.close();
  });

  it("a rule over the peer's resources acts once it has held for handle_time; unknown while the peer is not heard", async () => {
    const r = rig(module);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    r.checkers.setResource("custom.app", "up");
    await vi.advanceTimersByTimeAsync(5_000);
    expect(r.swapped).toEqual([]);
    r.remote.set("custom.app", "down");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(r.swapped).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(r.swapped).toEqual(["rule peer_app"]);
    r.remote.clear();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(r.swapped).toEqual(["rule peer_app"]);
    r.checkers.close();
  });
});

describe("action wait on a mirror", () => {
  const module = moduleOf(`<check><ping ident="gw" when="pre" action="wait"><to addr="10.0.0.1" interval="1s"/></ping></check>
    <failover period="1000ms" handle_time="3000ms"><![CDATA[ mine: if (custom.nothing == down) then wait(); ]]></failover>`);

  it("a checker's: holds the node once down for handle_time, until it answers again", async () => {
    const r = rig(module);
    r.set("PRIM");
    await vi.advanceTimersByTimeAsync(0);
    for (let second = 0; second < 5; second++) {
      r.probes.asked.at(-1)!.done(down);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(r.failed).toEqual([]);
    expect(r.held).toEqual(["rule checker:ping.gw"]);
    // The node waits (pre stays enabled): held while the probe fails, one hold asked.
    r.set("WAIT", "NotReady");
    for (let second = 0; second < 5; second++) {
      r.probes.asked.at(-1)!.done(down);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(r.held).toEqual(["rule checker:ping.gw"]);
    r.probes.asked.at(-1)!.done(up);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(r.held).toEqual(["rule checker:ping.gw", null]);
    expect(r.logs.filter((entry) => entry.event === "mirror.wait_over").map((entry) => entry.fields["rule"])).toEqual(["checker:ping.gw"]);
    r.checkers.close();
  });

  it("a probe that recovers before handle_time holds nothing; a stop releases a hold", async () => {
    const r = rig(module);
    r.set("SECOND");
    await vi.advanceTimersByTimeAsync(0);
    r.probes.asked.at(-1)!.done(down);
    await vi.advanceTimersByTimeAsync(2_000);
    r.probes.asked.at(-1)!.done(up);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(r.held).toEqual([]);
    for (let second = 0; second < 5; second++) {
      r.probes.asked.at(-1)!.done(down);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(r.held).toEqual(["rule checker:ping.gw"]);
    r.set("STOP", "NotReady");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(r.held).toEqual(["rule checker:ping.gw", null]);
    r.checkers.close();
  });
});
