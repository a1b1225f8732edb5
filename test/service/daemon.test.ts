// The node service for real: `tandem daemon` in a child process with a light module whose
// scripts are shell scripts, operated through `tandem` commands over its control socket.

import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runCli } from "../cli/run-cli.ts";
import { DaemonHarness, exited, traceOf, until } from "./daemon-harness.ts";

const harness = new DaemonHarness();
afterEach(() => harness.killAll());
afterAll(() => harness.remove());
const setup = (check?: string) => harness.setup(check === undefined ? {} : { check });
const startDaemon = (node: ReturnType<typeof setup>) => harness.start(node);

describe("tandem daemon", () => {
  it("starts and stops a module with SafeKit's scripts, reports its state, and stops it on SIGTERM", async () => {
    const node = setup();
    const { daemon, output } = await startDaemon(node);
    expect(statSync(node.socket).mode & 0o777).toBe(0o600);
    const state = runCli(["state", "--json", "--socket", node.socket]);
    expect([state.code, JSON.parse(state.output)[0]]).toMatchObject([0, { module: "app", state: "STOP", mode: "light", node: "n1" }]);
    const started = runCli(["start", "-m", "app", "--wait", "--socket", node.socket]);
    expect(started.code).toBe(0);
    expect(started.output).toMatch(/app +n1 +light +UP \(Ready\)/);
    expect(traceOf(node)).toEqual(["transition STOP WAIT start module=app", "prestart STOP WAIT start module=app", "transition WAIT UP start module=app", "start_both WAIT UP start module=app"]);
    expect(runCli(["state", "-m", "app", "-q", "--socket", node.socket]).code).toBe(2);
    const log = runCli(["log", "-m", "app", "--socket", node.socket]);
    expect(log.output).toContain("script.run script=start_both args=WAIT UP start");
    const exit = exited(daemon);
    daemon.kill("SIGTERM");
    expect(await exit).toBe(0);
    expect(traceOf(node).slice(-3)).toEqual(["transition UP STOP stop module=app", "stop_both UP STOP stop module=app", "poststop UP STOP stop module=app"]);
    // Every log line is one JSON object naming the node, and the module where there is one.
    const lines = output().trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.every((line) => line["node"] === "n1" && typeof line["event"] === "string")).toBe(true);
    expect(lines.some((line) => line["event"] === "script.run" && line["module"] === "app")).toBe(true);
    expect(existsSync(join(node.dir, "log", "app", "start_both.log"))).toBe(true);
  });

  it("a module the operator left started starts again when the service restarts", async () => {
    const node = setup();
    const first = await startDaemon(node);
    expect(runCli(["start", "-m", "app", "--wait", "--socket", node.socket]).code).toBe(0);
    const exit = exited(first.daemon);
    first.daemon.kill("SIGTERM");
    await exit;
    await startDaemon(node);
    await until(() => traceOf(node).filter((line) => line.startsWith("start_both")).length === 2, 10_000, () => traceOf(node).join("\n"));
    expect(JSON.parse(runCli(["state", "--json", "--socket", node.socket]).output)[0].goal).toBe("running");
  });

  it("a custom checker's report through tandem set restarts the application", async () => {
    const node = setup(`<check><custom ident="probe" exec="checker"/></check><failover period="200ms" handle_time="0"/>`);
    harness.script(node, "checker", "exec sleep 60");
    await startDaemon(node);
    expect(runCli(["start", "-m", "app", "--wait", "--socket", node.socket]).code).toBe(0);
    await until(() => JSON.parse(runCli(["state", "--json", "--socket", node.socket]).output)[0].resources["custom.probe"] === "init", 10_000, () => "the custom checker never started");
    const set = runCli(["set", "-m", "app", "-r", "custom.probe", "-v", "down", "--socket", node.socket]);
    expect(set.code).toBe(0);
    await until(() => traceOf(node).some((line) => line.startsWith("stop_both UP UP stopstart")), 10_000, () => traceOf(node).join("\n"));
    expect(runCli(["set", "-m", "app", "-r", "custom.nope", "-v", "down", "--socket", node.socket]).output).toContain("no resource custom.nope");
  });

  it("errors say what to do: no service, unknown module, a second service on the socket", async () => {
    const node = setup();
    const none = runCli(["state", "--socket", node.socket]);
    expect([none.code, none.output]).toEqual([1, expect.stringContaining("no node service listens on")]);
    await startDaemon(node);
    const unknown = runCli(["start", "-m", "web", "--socket", node.socket]);
    expect([unknown.code, unknown.output]).toEqual([1, expect.stringContaining("no module web on this node (its modules: app)")]);
    expect(runCli(["start", "--socket", node.socket]).code).toBe(2);
    const prim = runCli(["prim", "-m", "app", "--socket", node.socket]);
    expect([prim.code, prim.output]).toEqual([1, expect.stringContaining("prim applies to mirror modules (a primary and a secondary); app is a light module")]);
    const second = runCli(["daemon", ...node.flags]);
    expect([second.code, second.output]).toEqual([2, expect.stringContaining("already listens")]);
  });
});
