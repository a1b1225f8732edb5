// The module life cycle: scripts at SafeKit's moments with its arguments, nice then forced
// stops, checkers and errd enabled by class, failover rules with handle_time, maxloop.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ScriptOutcome } from "../../core/ports.ts";
import { configOf, Harness } from "./lifecycle-harness.ts";

const user = `<user nicestoptimeout="10s" forcestoptimeout="5s"><var name="DOCROOT" value="/srv/www"/></user>`;
const failed: ScriptOutcome = { kind: "exited", code: 1 };

describe("scripts", () => {
  it("start runs transition, prestart, then transition and start_both, with SafeKit's three arguments", () => {
    const harness = new Harness(configOf(user)).deliver({ kind: "command", command: "start" });
    expect(harness.scripts()).toEqual(["transition STOP WAIT start", "prestart STOP WAIT start", "transition WAIT UP start", "start_both WAIT UP start"]);
    expect([harness.node.state, harness.node.readiness]).toEqual(["UP", "Ready"]);
    expect(harness.readyChanges).toEqual([{ atMs: 0, ready: true }]);
  });

  it("scripts get SAFEMODULE, the directories and the <var> values", () => {
    const harness = new Harness(configOf(user)).deliver({ kind: "command", command: "start" });
    expect(harness.runs[0]?.run.env).toMatchObject({ SAFEMODULE: "web", SAFEUSERBIN: "/etc/tandem/modules/web/bin", TANDEM_MODULE_LOG: "/var/log/tandem/web", TANDEM_NODE: "node1", DOCROOT: "/srv/www" });
  });

  it("stop runs transition, stop_both and poststop; the node is no longer ready before they run, and the application counts as running until they are done", () => {
    const harness = new Harness(configOf(user)).deliver({ kind: "command", command: "start" });
    harness.runs.length = 0;
    harness.deliver({ kind: "command", command: "stop" });
    expect(harness.scripts()).toEqual(["transition UP STOP stop", "stop_both UP STOP stop", "poststop UP STOP stop"]);
    expect(harness.node.state).toBe("STOP");
    expect(harness.trail).toEqual(["running", "transition", "prestart", "transition", "start_both", "ready", "not ready", "transition", "stop_both", "poststop", "stopped"]);
  });

  it("a stop script that outlives nicestoptimeout runs again with force, with forcestoptimeout", () => {
    const harness = new Harness(configOf(user), { script: (run) => (run.script === "stop_both" && !run.args.includes("force") ? { kind: "timed-out" } : { kind: "exited", code: 0 }) });
    harness.deliver({ kind: "command", command: "start" }).deliver({ kind: "command", command: "stop" });
    const stops = harness.runs.filter(({ run }) => run.script === "stop_both").map(({ run }) => [run.args.join(" "), run.timeoutMs]);
    expect(stops).toEqual([["UP STOP stop", 10_000], ["UP STOP stop force", 5_000]]);
    expect(harness.scripts().at(-1)).toBe("poststop UP STOP stop");
  });

  it("no <user> element: no script runs, and the module still goes UP and back", () => {
    const harness = new Harness(configOf("")).deliver({ kind: "command", command: "start" });
    expect(harness.node.state).toBe("UP");
    harness.deliver({ kind: "command", command: "stop" });
    expect([harness.runs.length, harness.node.state]).toEqual([0, "STOP"]);
  });

  it("a missing script counts as one that did nothing", () => {
    const harness = new Harness(configOf(user), { script: () => ({ kind: "missing" }) }).deliver({ kind: "command", command: "start" });
    expect(harness.node.state).toBe("UP");
  });

  it("a stop asked for while start_both runs stops once start_both has finished", () => {
    const harness = new Harness(configOf(user), { script: (run) => (run.script === "start_both" ? "pending" : { kind: "exited", code: 0 }) });
    harness.deliver({ kind: "command", command: "start" }).deliver({ kind: "command", command: "stop" });
    expect(harness.node.readiness).toBe("Transient");
    harness.finish([...harness.pending.keys()][0]!, { kind: "exited", code: 0 });
    expect(harness.node.state).toBe("STOP");
    expect(harness.scripts().slice(-3)).toEqual(["transition UP STOP stop", "stop_both UP STOP stop", "poststop UP STOP stop"]);
  });

  it("a start asked for while the module stops starts it again once stopped", () => {
    const harness = new Harness(configOf(user), { script: (run) => (run.script === "stop_both" ? "pending" : { kind: "exited", code: 0 }) });
    harness.deliver({ kind: "command", command: "start" }).deliver({ kind: "command", command: "stop" }).deliver({ kind: "command", command: "start" });
    harness.finish([...harness.pending.keys()][0]!, { kind: "exited", code: 0 });
    expect(harness.node.state).toBe("UP");
    expect(harness.scripts().slice(-5)).toEqual(["poststop UP STOP stop", "transition STOP WAIT start", "prestart STOP WAIT start", "transition WAIT UP start", "start_both WAIT UP start"]);
  });
});

describe("maxloop", () => {
  it("a start_both that always fails is retried by stopstart maxloop times, then the module stops", () => {
    const harness = new Harness(configOf(user, ' maxloop="3"'), { script: (run) => (run.script === "start_both" ? failed : { kind: "exited", code: 0 }) });
    harness.deliver({ kind: "command", command: "start" });
    expect(harness.runs.filter(({ run }) => run.script === "start_both")).toHaveLength(4);
    expect(harness.node.state).toBe("STOP");
    expect(harness.node.goal).toBe("stopped");
    expect(harness.events("module.maxloop")).toHaveLength(1);
    // A failed start_both may have started part of the application: stop_both cleans it up.
    expect(harness.scripts().slice(-2)).toEqual(["stop_both WAIT STOP stop", "poststop WAIT STOP stop"]);
  });

  it("actions further apart than loop_interval do not add up", () => {
    // Each fault makes one probe answer down.
    let faults = 0;
    const harness = new Harness(configOf(`${user}<check><tcp ident="web"><to addr="127.0.0.1" port="80"/></tcp></check><failover handle_time="0"/>`, ' maxloop="1" loop_interval="1h"'), { probe: () => (faults > 0 ? (faults--, false) : true) });
    harness.deliver({ kind: "command", command: "start" });
    for (let round = 0; round < 3; round++) {
      faults = 1;
      harness.advance(2 * 3_600_000);
    }
    expect(harness.events("module.action")).toHaveLength(3);
    expect(harness.node.state).toBe("UP");
  });
});

describe("checkers and failover rules", () => {
  const tcp = `${user}<check><tcp ident="web"><to addr="127.0.0.1" port="80" interval="1s" timeout="500ms"/></tcp></check>`;

  it("a tcp checker down restarts the application only after handle_time, and not while it flickers", () => {
    let downFromMs = Number.POSITIVE_INFINITY;
    let flicker = false;
    const harness = new Harness(configOf(tcp + `<failover period="1s" handle_time="5s"/>`), { probe: (_, __, nowMs) => !(nowMs >= downFromMs && (!flicker || Math.floor(nowMs / 1000) % 2 === 0)) });
    harness.deliver({ kind: "command", command: "start" });
    flicker = true;
    downFromMs = 1_000;
    harness.advance(30_000);
    expect(harness.events("module.action")).toEqual([]);
    flicker = false;
    downFromMs = harness.nowMs;
    const runsBefore = harness.runs.length;
    harness.advance(4_000);
    expect(harness.runs.length).toBe(runsBefore);
    harness.advance(3_000);
    expect(harness.scripts().slice(runsBefore)).toEqual(["transition UP UP stopstart", "stop_both UP UP stopstart", "start_both UP UP stopstart"]);
  });

  it("the tcp checker is not probed before start_both nor after stop_both", () => {
    const probedIn: string[] = [];
    const harness: Harness = new Harness(configOf(tcp), { probe: () => (probedIn.push(harness.node.state), true) });
    harness.deliver({ kind: "command", command: "start" }).advance(5_000).deliver({ kind: "command", command: "stop" }).advance(5_000);
    expect(new Set(probedIn)).toEqual(new Set(["UP"]));
    expect(probedIn.length).toBeGreaterThanOrEqual(5);
  });

  it("a ping checker down keeps the module in WAIT; it goes UP once the address answers", () => {
    let reachable = false;
    const harness = new Harness(configOf(`${user}<check><ping ident="gw"><to addr="192.0.2.1" interval="1s" timeout="500ms"/></ping></check>`), { probe: () => reachable });
    harness.deliver({ kind: "command", command: "start" }).advance(10_000);
    expect([harness.node.state, harness.runs.some(({ run }) => run.script === "start_both")]).toEqual(["WAIT", false]);
    reachable = true;
    harness.advance(1_000);
    expect(harness.node.state).toBe("UP");
  });

  it("a wait rule on an UP module stops the application and waits, then starts it again", () => {
    let reachable = true;
    const harness = new Harness(configOf(`${user}<check><ping ident="gw"><to addr="192.0.2.1" interval="1s" timeout="500ms"/></ping></check><failover period="1s" handle_time="2s"/>`), { probe: () => reachable });
    harness.deliver({ kind: "command", command: "start" }).advance(5_000);
    reachable = false;
    harness.advance(5_000);
    expect(harness.node.state).toBe("WAIT");
    expect(harness.scripts()).toContain("stop_both UP WAIT stopwait");
    reachable = true;
    harness.advance(1_000);
    expect(harness.node.state).toBe("UP");
    expect(harness.readyChanges.map((change) => change.ready)).toEqual([true, false, true]);
  });

  it("a custom checker's program runs while its class is enabled and sets its resource", () => {
    const harness = new Harness(configOf(`${user}<check><custom ident="db" exec="checkdb" arg="-q 3"/></check><failover handle_time="0" period="1s"/>`), { script: (run) => (run.script === "checkdb" ? "pending" : { kind: "exited", code: 0 }) });
    harness.deliver({ kind: "command", command: "start" }).advance(0);
    const program = harness.runs.find(({ run }) => run.script === "checkdb")?.run;
    expect(program?.args).toEqual(["-q", "3"]);
    expect(program?.env["TANDEM_RESOURCE"]).toBe("custom.db");
    harness.deliver({ kind: "resource-set", resource: "custom.db", state: "down" }).advance(1_000);
    expect(harness.events("module.action")[0]?.fields["action"]).toBe("restart");
    // stop_both disabled the class: the program was killed, and restarted after start_both.
    expect(harness.runs.filter(({ run }) => run.script === "checkdb")).toHaveLength(2);
    expect(harness.pending.size).toBe(1);
  });

  it("a module checker keeps this module waiting until the module it depends on is Ready", () => {
    let databaseReady = false;
    const harness = new Harness(configOf(`${user}<check><module name="db"/></check>`), { probe: (_, probe) => probe.kind === "module" && probe.module === "db" && databaseReady });
    harness.deliver({ kind: "command", command: "start" }).advance(30_000);
    expect(harness.node.state).toBe("WAIT");
    databaseReady = true;
    harness.advance(10_000);
    expect(harness.node.state).toBe("UP");
  });

  it("swap is a mirror action: a farm logs it and does nothing", () => {
    const harness = new Harness(configOf(`${user}<check><tcp ident="web" action="noaction"><to addr="127.0.0.1" port="80"/></tcp></check><failover handle_time="0" period="1s"><![CDATA[s: if (tcp.web == down) then swap();]]></failover>`), { probe: () => false });
    harness.deliver({ kind: "command", command: "start" }).advance(3_000);
    expect(harness.events("failover.swap-ignored").length).toBeGreaterThan(0);
    expect(harness.node.state).toBe("UP");
  });
});

describe("errd", () => {
  const errd = (attributes: string) => `${user}<errd polltimer="1s"><proc name="nginx" ${attributes}/></errd>`;

  it("too few processes restart the application; start_after skips the first polls", () => {
    let count = 1;
    const harness = new Harness(configOf(errd('atleast="1" action="restart" start_after="2"')), { count: () => count });
    harness.deliver({ kind: "command", command: "start" });
    count = 0;
    harness.advance(2_000);
    expect(harness.events("module.action")).toEqual([]);
    harness.advance(1_000);
    expect(harness.events("module.action")[0]?.fields).toMatchObject({ action: "restart", reason: "nginx: 0 running, expected at least 1" });
  });

  it("more than atmax stops the module with action stop, counted apart from maxloop", () => {
    const harness = new Harness(configOf(errd('atleast="1" atmax="2" action="stop"')), { count: () => 3 });
    harness.deliver({ kind: "command", command: "start" }).advance(1_000);
    expect([harness.node.state, harness.node.goal]).toEqual(["STOP", "stopped"]);
    expect(harness.events("module.maxloop")).toEqual([]);
  });

  it("a count that could not be made is skipped, not taken for a dead application", () => {
    const harness = new Harness(configOf(errd('atleast="1" action="restart"')), { count: () => null });
    harness.deliver({ kind: "command", command: "start" }).advance(3_000);
    expect(harness.events("errd.count-failed")).toHaveLength(3);
    expect(harness.events("module.action")).toEqual([]);
  });

  it("noaction only logs", () => {
    const harness = new Harness(configOf(errd('action="noaction"')), { count: () => 0 });
    harness.deliver({ kind: "command", command: "start" }).advance(3_000);
    expect(harness.events("errd.noaction")).toHaveLength(3);
    expect(harness.node.state).toBe("UP");
  });

  it("processes are not counted while the module is stopped", () => {
    const counted: string[] = [];
    const harness: Harness = new Harness(configOf(errd("")), { count: () => (counted.push(harness.node.state), 1) });
    harness.deliver({ kind: "command", command: "start" }).advance(3_000).deliver({ kind: "command", command: "stop" }).advance(3_000);
    expect(new Set(counted)).toEqual(new Set(["UP"]));
  });
});

describe("any sequence of events", () => {
  const config = configOf(`${user}<check><tcp ident="web"><to addr="127.0.0.1" port="80" interval="1s" timeout="500ms"/></tcp><ping ident="gw"><to addr="192.0.2.1" interval="1s" timeout="500ms"/></ping></check><errd polltimer="1s"><proc name="nginx"/></errd><failover period="1s" handle_time="2s"/>`, ' maxloop="2" loop_interval="1h"');
  const event = fc.oneof(
    fc.constantFrom("start", "stop", "restart", "stopstart").map((command) => ({ kind: "command" as const, command })),
    fc.integer({ min: 0, max: 5_000 }).map((ms) => ({ kind: "advance" as const, ms })),
    fc.record({ kind: fc.constant("world" as const), web: fc.boolean(), gw: fc.boolean(), procs: fc.integer({ min: 0, max: 2 }), failScripts: fc.boolean(), hangScripts: fc.boolean() }),
    fc.constant({ kind: "finish" as const }),
  );

  it("keeps the core's invariants, and a stop with working scripts always ends in STOP with nothing watched", () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (events) => {
        const world = { web: true, gw: true, procs: 1, failScripts: false, hangScripts: false };
        const harness = new Harness(config, {
          script: () => (world.hangScripts ? "pending" : world.failScripts ? failed : { kind: "exited", code: 0 }),
          probe: (resource) => (resource === "tcp.web" ? world.web : world.gw),
          count: () => world.procs,
        });
        for (const each of events) {
          if (each.kind === "command") harness.deliver(each);
          else if (each.kind === "advance") harness.advance(each.ms);
          else if (each.kind === "world") Object.assign(world, each);
          else for (const id of [...harness.pending.keys()]) harness.finish(id, { kind: "exited", code: 0 });
        }
        Object.assign(world, { failScripts: false, hangScripts: false });
        for (const id of [...harness.pending.keys()]) harness.finish(id, { kind: "timed-out" });
        harness.deliver({ kind: "command", command: "stop" }).advance(1_000);
        for (const id of [...harness.pending.keys()]) harness.finish(id, { kind: "exited", code: 0 });
        expect(harness.node.state).toBe("STOP");
        expect(harness.node.enabled.size).toBe(0);
        expect(harness.readyChanges.at(-1)?.ready ?? false).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
