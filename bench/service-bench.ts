// The node service's resident memory and CPU use with three modules configured, idle and
// under load, each against a baseline run alongside: an idle Node process (the floor any
// Node service pays), measured the same way from /proc.

import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { requestControl } from "../service/control.ts";

// The service as it runs in production: the JavaScript that npm ci builds into dist/.
const cli = fileURLToPath(new URL("../dist/cli/tandem.js", import.meta.url));
const clockTicksPerSecond = 100;

export interface ResourceUse {
  readonly rssMb: number;
  /** Percent of one core over the window. */
  readonly cpuPercent: number;
}

export interface ServiceFigures {
  readonly idle: ResourceUse;
  readonly loaded: ResourceUse;
  readonly baseline: ResourceUse;
  readonly requestsPerSecond: number;
}

/** Three light modules, each with a tcp checker and an errd watch; `intervalMs` sets how often they probe. */
function writeConfig(root: string, intervalMs: number): string {
  const config = join(root, "config");
  writeFileSync(join(mkdirSync(config, { recursive: true }) ?? config, "cluster.xml"), `<cluster><lans><lan name="default"><node name="n1" addr="127.0.0.1"/></lan></lans></cluster>`);
  for (const name of ["web", "api", "jobs"]) {
    const dir = join(config, "modules", name);
    mkdirSync(join(dir, "conf"), { recursive: true });
    mkdirSync(join(dir, "bin"), { recursive: true });
    writeFileSync(
      join(dir, "conf", "userconfig.xml"),
      `<safe><service mode="light"><user/><errd polltimer="${intervalMs}ms"><proc name="sleep" atleast="0"/></errd><check><tcp ident="self"><to addr="127.0.0.1" port="9" interval="${intervalMs}ms" timeout="${Math.floor(intervalMs / 2)}ms"/></tcp></check><failover period="${intervalMs}ms"/></service></safe>`,
    );
    writeFileSync(join(dir, "bin", "start_both"), "#!/bin/sh\nexit 0\n");
    chmodSync(join(dir, "bin", "start_both"), 0o755);
  }
  return config;
}

function sample(pid: number): { rssKb: number; ticks: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0");
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { rssKb, ticks: Number(fields[11]) + Number(fields[12]) };
}

async function measure(pid: number, windowMs: number, during?: () => Promise<void>): Promise<ResourceUse> {
  const before = sample(pid);
  const startMs = performance.now();
  let peakKb = before.rssKb;
  const timer = setInterval(() => (peakKb = Math.max(peakKb, sample(pid).rssKb)), 200);
  await Promise.all([new Promise((resolve) => setTimeout(resolve, windowMs)), during?.()]);
  clearInterval(timer);
  const after = sample(pid);
  const seconds = (performance.now() - startMs) / 1000;
  return { rssMb: Math.max(peakKb, after.rssKb) / 1024, cpuPercent: ((after.ticks - before.ticks) / clockTicksPerSecond / seconds) * 100 };
}

async function waitForSocket(socket: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      await requestControl(socket, "state", {}, 1_000);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`the node service did not answer on ${socket}`);
}

/** Starts a node service with the three modules probing every `intervalMs`, starts them,
 *  and measures it over `windowMs`, under `load` if given. */
async function measureService(intervalMs: number, windowMs: number, load?: (socket: string) => Promise<void>): Promise<ResourceUse> {
  const root = mkdtempSync(join(tmpdir(), "tandem-bench-"));
  const socket = join(root, "tandem.sock");
  const config = writeConfig(root, intervalMs);
  const daemon = spawn(process.execPath, [cli, "daemon", "--config", config, "--state", join(root, "state"), "--log-dir", join(root, "log"), "--socket", socket, "--node", "n1"], { stdio: "ignore" });
  try {
    await waitForSocket(socket);
    for (const module of ["web", "api", "jobs"]) await requestControl(socket, "start", { module, wait: true }, 10_000);
    return await measure(daemon.pid!, windowMs, load === undefined ? undefined : () => load(socket));
  } finally {
    daemon.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  }
}

export async function serviceFigures(windowMs: number): Promise<ServiceFigures> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build (npm ci does)`);
  const baselineProcess = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  try {
    // Idle: SafeKit's default intervals (checkers every 10 s, errd every 30 s).
    const [idle, baseline] = await Promise.all([measureService(10_000, windowMs), measure(baselineProcess.pid!, windowMs)]);
    let requests = 0;
    const load = async (socket: string) => {
      const endMs = performance.now() + windowMs;
      while (performance.now() < endMs) {
        await requestControl(socket, "state", {}, 5_000);
        requests++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    // Loaded: every checker and errd watch each second, and operators asking for the state.
    const loaded = await measureService(1_000, windowMs, load);
    return { idle, loaded, baseline, requestsPerSecond: requests / (windowMs / 1000) };
  } finally {
    baselineProcess.kill("SIGKILL");
  }
}
