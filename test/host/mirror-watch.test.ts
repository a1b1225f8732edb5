// A mirror module's <errd> and custom checker on this host (mirror-lab.ts): start_prim
// starts an application process (a copy of sleep named twatchapp), which errd watches on
// the primary; killing it makes errd restart the application (stop_prim, start_prim) on
// the same node. A custom checker's program runs on the primary; `tandem set -r
// custom.probe -v down` on it, with action stopstart, stops the module there and starts it
// again: the secondary takes over and the old primary comes back as its secondary. The
// `transition` script runs at every change of role, with the role before and after. A
// custom checker with action wait set down on the primary holds it in WAIT (the secondary
// takes over) until it is set up again; then it comes back as secondary.
//
// Needs root, `ip`, nsenter, nft, /dev/fuse and both native addons; fails saying which is
// missing.

import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuseUnavailable } from "../../native/fuse.ts";
import { until } from "./farm-lab.ts";
import { MirrorLab, mirrorModule, notingModule } from "./mirror-lab.ts";
import { requireHost } from "./netns-lab.ts";

const what = "the mirror errd and custom checker test (test/host/mirror-watch.test.ts)";
const app = "twatchapp";

const note = `echo "$(basename "$0") $*" >> "$SCRIPT_LOG"\n`;
const spec = {
  ...notingModule,
  scripts: {
    ...notingModule.scripts,
    start_prim: `#!/bin/sh\n${note}setsid "$APP" 1000 > /dev/null 2>&1 < /dev/null &\n`,
    stop_prim: `#!/bin/sh\n${note}pkill -x ${app}\ntrue\n`,
    customcheck: `#!/bin/sh\nexec sleep 1000\n`,
    gatecheck: `#!/bin/sh\nexec sleep 1001\n`,
    // SafeKit's, at every change of role (docs/mirror.md, States).
    transition: `#!/bin/sh\n${note}`,
  },
  vars: (node: { readonly dir: string }) => ({ APP: join(node.dir, app) }),
  checks: `<custom ident="probe" when="prim" exec="customcheck" action="stopstart"/><custom ident="gate" when="pre" exec="gatecheck" action="wait"/>`,
  failover: `<failover period="500ms" handle_time="1000ms"/>`,
  errd: `<errd polltimer="1s"><proc name="${app}" atleast="1" action="restart" class="prim"/></errd>`,
};

let mirror: MirrorLab;

function running(): number[] {
  try {
    return execFileSync("pgrep", ["-x", app], { encoding: "utf8" }).trim().split("\n").map(Number);
  } catch {
    return [];
  }
}

/** The nodes whose custom checker program runs (customcheck execs `sleep 1000` with the
 *  scripts' environment, TANDEM_NODE included), sorted. */
function customPrograms(): string[] {
  let pids: string[];
  try {
    pids = execFileSync("pgrep", ["-f", "^sleep 1000$"], { encoding: "utf8" }).trim().split("\n");
  } catch {
    return [];
  }
  return pids
    .map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((entry) => entry.startsWith("TANDEM_NODE="))?.slice("TANDEM_NODE=".length) ?? "?";
      } catch {
        return null; // gone meanwhile
      }
    })
    .filter((node) => node !== null)
    .sort();
}

function starts(index: number): number {
  try {
    return readFileSync(mirror.nodes[index]!.scriptLog, "utf8").split("\n").filter((line) => line.startsWith("start_prim")).length;
  } catch {
    return 0;
  }
}

beforeAll(() => {
  requireHost(what);
  const unavailable = fuseUnavailable();
  if (unavailable !== null) throw new Error(`${what}: ${unavailable.message}`);
  mirror = MirrorLab.create(spec);
  for (const node of mirror.nodes) copyFileSync("/bin/sleep", join(node.dir, app));
}, 60_000);

afterAll(async () => {
  await Promise.all((mirror?.daemons ?? []).map((daemon) => daemon?.stop()));
  try {
    execFileSync("pkill", ["-x", app]);
  } catch {
    // none left
  }
  await mirror?.destroy();
}, 60_000);

describe("a mirror module's errd and custom checker", () => {
  it("errd restarts the primary's application when its process dies", async () => {
    await mirror.begin();
    await until(async () => running().length === 1, 10_000, () => `start_prim did not start ${app}`);
    const first = running()[0]!;
    expect(starts(0)).toBe(1);
    expect((await mirror.view(0))?.resources).toEqual({ "custom.probe": "init", "custom.gate": "init" });
    await until(async () => customPrograms().join() === "n1", 10_000, () => `n1's custom checker program did not start: ${customPrograms().join()}`);
    process.kill(first, "SIGKILL");
    await until(async () => starts(0) === 2 && running().length === 1, 20_000, () => `errd did not restart the application (start_prim ran ${starts(0)} times, ${app} running: ${running().join(", ")})`);
    expect(running()[0]).not.toBe(first);
    const view = await mirror.view(0);
    expect([view?.state, view?.readiness]).toEqual(["PRIM", "Ready"]);
    expect(readFileSync(mirror.nodes[0]!.scriptLog, "utf8")).toMatch(/stop_prim[^\n]*\nstart_prim/);
    // Each transition starts where the one before ended, from STOP to the primary's role.
    const transitions = readFileSync(mirror.nodes[0]!.scriptLog, "utf8").split("\n").filter((line) => line.startsWith("transition ")).map((line) => line.split(" "));
    expect(transitions[0]?.[1]).toBe("STOP");
    for (let index = 1; index < transitions.length; index++) expect(transitions[index]![1], transitions.map((line) => line.join(" ")).join("; ")).toBe(transitions[index - 1]![2]);
    expect(transitions.at(-1)?.[2]).toBe("PRIM");
  }, 240_000);

  it("a custom checker set down, action stopstart: the secondary takes over, the old primary comes back as its secondary", async () => {
    const set = await mirror.tandem(0, ["set", "-m", mirrorModule, "-r", "custom.probe", "-v", "down"]);
    expect(set.code, set.output).toBe(0);
    await mirror.untilRoles(["SECOND", "PRIM"], 60_000);
    expect(starts(1)).toBe(1);
    await until(async () => running().length === 1, 10_000, () => `${app} should run on n2 alone: ${running().join(", ")}`);
    // n1 is secondary: its custom checker's class (prim) is not enabled there, its program
    // was killed; n2's runs.
    expect((await mirror.view(0))?.resources).toEqual({ "custom.gate": "init" });
    await until(async () => customPrograms().join() === "n2", 10_000, () => `custom checker programs run on ${customPrograms().join()}, not on n2 alone`);
    const again = await mirror.tandem(0, ["set", "-m", mirrorModule, "-r", "custom.probe", "-v", "up"]);
    expect(again.code).not.toBe(0);
    expect(again.output).toMatch(/custom\.probe is not watched now/);
    expect((await mirror.view(1))?.resources).toEqual({ "custom.probe": "init", "custom.gate": "init" });
  }, 120_000);

  it("a custom checker with action wait set down on the primary: WAIT there, the secondary takes over; set up, it comes back as secondary", async () => {
    const before = starts(0);
    const down = await mirror.tandem(1, ["set", "-m", mirrorModule, "-r", "custom.gate", "-v", "down"]);
    expect(down.code, down.output).toBe(0);
    // n2 hands over and waits: n1 goes on alone (n2 cannot be attached while held).
    await mirror.untilRoles(["ALONE", null], 60_000);
    await until(async () => (await mirror.view(1))?.state === "WAIT", 10_000, () => "n2 is not in WAIT");
    expect(starts(0)).toBe(before + 1);
    await until(async () => running().length === 1, 10_000, () => `${app} should run on n1 alone: ${running().join(", ")}`);
    const held = await mirror.view(1);
    expect(held?.state).toBe("WAIT");
    expect(held?.resources).toEqual({ "custom.gate": "down" });
    // Held as long as the resource is down.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect((await mirror.view(1))?.state).toBe("WAIT");
    const up = await mirror.tandem(1, ["set", "-m", mirrorModule, "-r", "custom.gate", "-v", "up"]);
    expect(up.code, up.output).toBe(0);
    await mirror.untilRoles(["PRIM", "SECOND"], 60_000);
    expect(mirror.daemons[1]!.output).toMatch(/"event":"mirror\.hold".*"why":"rule checker:custom\.gate"/);
    expect(mirror.daemons[1]!.output).toMatch(/"event":"mirror\.wait_over"/);
  }, 120_000);
});
