// The real process driver (drivers/real/process.ts): the ProcessPort contract over `#!/bin/sh`
// scripts written into a temporary bin/, whose applications are copies of sleep named
// after the harness; then what only a real host has: the per-script log with its header
// and footer, scripts that cannot be started, a script whose output would fill a pipe,
// absolute checker paths, a group that ignores SIGTERM, and systemd services.

import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ProcessQuery } from "../../core/ports.ts";
import { matchingPids, RealProcessPort } from "../../drivers/real/process.ts";
import { countEventually, countOf, ended, processPortContract, query, runToEnd, scriptRun, start, type ProcessHarness, type ScriptSpec } from "./process-contract.ts";

const killGraceMs = 100;
let harnessCount = 0;

interface RealHarness extends ProcessHarness {
  readonly port: RealProcessPort;
  readonly binDir: string;
  readonly logDir: string;
  /** The driver's own log lines. */
  readonly logLines: string[];
  /** Writes an executable `#!/bin/sh` script with this body into bin/. */
  writeScript(script: string, body: string): Promise<string>;
}

async function makeRealHarness(): Promise<RealHarness> {
  const root = await mkdtemp(join(tmpdir(), "tandem-process-"));
  const binDir = join(root, "bin");
  const logDir = join(root, "log");
  const seenDir = join(root, "seen");
  await mkdir(binDir);
  await mkdir(seenDir);
  // Unique per test process and harness, so that counts see only this test's applications.
  const appName = `tdm${process.pid}x${harnessCount++}`;
  const appPath = join(binDir, appName);
  await copyFile("/bin/sleep", appPath);
  await chmod(appPath, 0o755);
  const logLines: string[] = [];
  const port = new RealProcessPort({ binDir, logDir, killGraceMs, log: (line) => logLines.push(line) });

  const writeScript = async (script: string, body: string): Promise<string> => {
    const path = join(binDir, script);
    await writeFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return path;
  };
  const define = async (script: string, spec: ScriptSpec): Promise<void> => {
    const lines = [
      `printf '%s\\0' "$@" > '${seenDir}/${script}.args'`,
      `env -0 > '${seenDir}/${script}.env'`,
      ...(spec.apps ?? []).map((args) => `'${appPath}' ${args.join(" ")} &`),
      spec.durationMs === undefined ? "" : `sleep ${spec.durationMs / 1000}`,
      spec.hang === true ? "sleep 30" : "",
      spec.signalled === true ? "kill -USR1 $$" : "",
      `exit ${spec.exitCode ?? 0}`,
    ];
    await writeScript(script, lines.join("\n"));
  };
  const seen = async (script: string) => {
    const args = nulSeparated(await readFile(join(seenDir, `${script}.args`), "utf8"));
    const env = Object.fromEntries(nulSeparated(await readFile(join(seenDir, `${script}.env`), "utf8")).map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]));
    // The driver adds PATH; the shell exports the PWD it sets.
    delete env.PATH;
    delete env.PWD;
    return { args, env };
  };
  const waitFor = async (condition: () => boolean, limitMs: number): Promise<boolean> => {
    const deadlineMs = performance.now() + limitMs;
    while (!condition()) {
      if (performance.now() >= deadlineMs) return false;
      await sleep(5);
    }
    return true;
  };
  const dispose = async (): Promise<void> => {
    for (const pid of await matchingPids(query({ name: appName }))) process.kill(pid, "SIGKILL");
    await rm(root, { recursive: true, force: true });
  };
  return { port, appName, binDir, logDir, logLines, writeScript, define, seen, nowMs: () => performance.now(), advance: (ms) => sleep(ms), waitFor, dispose };
}

function nulSeparated(text: string): string[] {
  return text.split("\0").slice(0, -1);
}

processPortContract("real", makeRealHarness);

describe("RealProcessPort on a real host", () => {
  let harness: RealHarness;
  let app: ProcessQuery;
  beforeEach(async () => {
    harness = await makeRealHarness();
    app = query({ name: harness.appName });
  });
  afterEach(async () => {
    await harness.dispose();
  });

  it("appends each run's output to the script's log between a header and a footer", async () => {
    await harness.writeScript("stop_both", 'echo "stopping $3"\necho "warning" >&2\nexit 4');
    const first = scriptRun("stop_both", { args: ["UP", "STOP", "stop", "force"] });
    expect(await runToEnd(harness, first)).toEqual({ kind: "exited", code: 4 });
    await runToEnd(harness, scriptRun("stop_both"));
    const lines = (await readFile(join(harness.logDir, "stop_both.log"), "utf8")).split("\n");
    expect(lines[0]).toMatch(new RegExp(`^--- \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z stop_both UP STOP stop force \\(run ${first.id}\\)$`));
    expect(lines.slice(1, 3)).toEqual(["stopping stop", "warning"]);
    expect(lines[3]).toMatch(/^--- exit 4 after \d+ ms$/);
    expect(lines[4]).toMatch(/^--- .* stop_both UP STOP stop \(run \d+\)$/);
    expect(lines).toHaveLength(9);
  });

  it("passes the service's PATH and runs scripts in bin/", async () => {
    await harness.writeScript("where", `printf '%s\\n' "$PATH" "$(pwd)" > '${harness.logDir}/where.txt'`);
    await runToEnd(harness, scriptRun("where"));
    expect(await readFile(join(harness.logDir, "where.txt"), "utf8")).toBe(`${process.env.PATH}\n${harness.binDir}\n`);
  });

  it("runs a checker given by absolute path", async () => {
    const path = await harness.writeScript("checker", "exit 5");
    expect(await runToEnd(harness, scriptRun(path))).toEqual({ kind: "exited", code: 5 });
  });

  it("reports a script that is not executable as not started, and logs it", async () => {
    const path = await harness.writeScript("start_both", "exit 0");
    await chmod(path, 0o644);
    const outcome = await runToEnd(harness, scriptRun("start_both"));
    expect(outcome).toMatchObject({ kind: "not-started", reason: expect.stringContaining("not executable") });
    expect(await readFile(join(harness.logDir, "start_both.log"), "utf8")).toMatch(/\n--- not started: it is not executable .* after \d+ ms\n$/);
  });

  it("reports a script whose interpreter does not exist as not started", async () => {
    await writeFile(join(harness.binDir, "start_both"), "#!/no/such/shell\nexit 0\n", { mode: 0o755 });
    expect(await runToEnd(harness, scriptRun("start_both"))).toMatchObject({ kind: "not-started", reason: expect.stringContaining("interpreter") });
  });

  it("runs a script without a #! line under /bin/sh, as execvp does", async () => {
    await writeFile(join(harness.binDir, "start_both"), "exit 6\n", { mode: 0o755 });
    expect(await runToEnd(harness, scriptRun("start_both"))).toEqual({ kind: "exited", code: 6 });
  });

  it("does not block a script that writes more than a pipe holds", async () => {
    await harness.writeScript("chatty", "head -c 4000000 /dev/zero | tr '\\0' x");
    expect(await runToEnd(harness, scriptRun("chatty", { timeoutMs: 3_000 }))).toEqual({ kind: "exited", code: 0 });
    expect((await readFile(join(harness.logDir, "chatty.log"), "utf8")).length).toBeGreaterThan(4_000_000);
  });

  it("SIGKILLs a timed-out group that ignores SIGTERM after the grace period, then reports", async () => {
    await harness.writeScript("stop_both", `trap '' TERM\n'${join(harness.binDir, harness.appName)}' 30 &\nsleep 30`);
    const startMs = performance.now();
    const outcomes = start(harness, scriptRun("stop_both", { timeoutMs: 200 }));
    expect(await countEventually(harness, app, 1)).toBe(1);
    expect(await harness.waitFor(() => outcomes.length > 0, 5_000)).toBe(true);
    expect(performance.now() - startMs).toBeGreaterThanOrEqual(200 + killGraceMs);
    expect(await ended(harness, outcomes)).toEqual({ kind: "timed-out" });
    expect(await countOf(harness, app)).toBe(0);
  });

  describe("systemd services, through a stand-in systemctl", () => {
    const serviceCount = async (systemctl: string | null): Promise<number | null> => {
      const path = systemctl === null ? join(harness.binDir, "no-systemctl") : await harness.writeScript("systemctl", systemctl);
      const port = new RealProcessPort({ binDir: harness.binDir, logDir: join(harness.binDir, "..", "log"), systemctlPath: path });
      return new Promise((resolve) => port.count(query({ name: "nginx", service: true }), resolve));
    };

    it("an active service counts 1, and systemctl is asked about that very service", async () => {
      expect(await serviceCount(`[ "$*" = "is-active --quiet -- nginx" ] && exit 0; exit 9`)).toBe(1);
    });

    it("an inactive or unknown service counts 0", async () => {
      expect(await serviceCount("exit 3")).toBe(0);
      expect(await serviceCount("exit 4")).toBe(0);
    });

    it("no systemctl gives no count, not 0: errd must not restart on what it cannot see", async () => {
      expect(await serviceCount(null)).toBeNull();
    });
  });
});
