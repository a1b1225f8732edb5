// `npm start` = `tandem lab demo`, run as CI runs it (stdout a pipe, so no colours and a
// bounded run): from no lab, it prints its progress (Docker, images, network, containers,
// the farm coming UP), then plain snapshots in which the three nodes are UP with all three
// members and every node answers the client's new connections; run again on the lab it
// left up, it reuses it within seconds. Where Docker cannot be reached (DOCKER_HOST at a
// socket that does not exist) it says why in one line and runs the simulated demo.
//
// The lab part needs a running Docker engine (dockerd) and root: it FAILS, saying how to
// start dockerd, rather than skip. It removes the lab before and after.

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { dockerClient, requireDocker } from "../../lab/images.ts";
import { Lab, type LabStatus, type NodeStatus } from "../../lab/lab.ts";
import { clip, frame, snapshot, wrap, type Sample } from "../../cli/lab-demo.ts";
import { lockLab } from "./lab-lock.ts";

const cli = fileURLToPath(new URL("../../cli/tandem.ts", import.meta.url));
const root = fileURLToPath(new URL("../..", import.meta.url));

interface Run {
  readonly code: number | null;
  readonly lines: string[];
  readonly stderr: string;
  readonly ms: number;
}

/** Runs `tandem ...` with stdout and stderr piped (not a terminal). */
function tandem(args: readonly string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 600_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [cli, ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tandem ${args.join(" ")} ran longer than ${timeoutMs / 1_000} s; its output:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, lines: stdout.split("\n"), stderr, ms: Math.round(performance.now() - started) });
    });
  });
}

const allUp = /nodes: n1 UP Ready members n1,n2,n3 buckets \d+\/256 \| n2 UP Ready members n1,n2,n3 buckets \d+\/256 \| n3 UP Ready members n1,n2,n3 buckets \d+\/256$/;

/** Snapshots (a nodes line, then an answers line) with every node UP and answering. */
function healthySnapshots(lines: readonly string[]): number {
  let count = 0;
  for (const [index, line] of lines.entries()) {
    if (!allUp.test(line)) continue;
    const answers = lines[index + 1] ?? "";
    if (/answers \(last 5 s, \d+ requests\): /.test(answers) && ["n1", "n2", "n3"].every((node) => new RegExp(`\\b${node} [1-9]\\d* \\(`).test(answers))) count++;
  }
  return count;
}

describe("npm start: tandem lab demo", () => {
  let release: (() => void) | null = null;
  const timings: Record<string, number> = {};

  afterAll(async () => {
    if (release !== null) {
      await new Lab({ docker: dockerClient() }).down().catch(() => {});
      release();
    }
    if (Object.keys(timings).length > 0) console.log(`lab demo timings (ms): ${JSON.stringify(timings)}`);
  }, 120_000);

  it("brings the lab up with progress lines, shows every node UP and answering, and reuses the lab the second time", async () => {
    const docker = dockerClient();
    await requireDocker(docker); // DockerUnavailable: says how to start dockerd
    release = await lockLab("test/lab/demo.test.ts");
    await new Lab({ docker }).down();

    const first = await tandem(["lab", "demo", "--for", "5"]);
    const output = first.lines.join("\n");
    timings["first start (no lab, images cached or built) + 5 s view"] = first.ms;
    expect(first.code, `${output}\n${first.stderr}`).toBe(0);
    expect(output).not.toContain("\x1b[");
    expect(output).toMatch(/Docker \S+ is running: bringing up the lab/);
    expect(output).toMatch(/base image tandem-debian:bookworm-\w+: (cached|built in)/);
    expect(output).toMatch(/node image tandem-node:\w+: (cached|built in)/);
    expect(output).toMatch(/tandem-lab-n3: started/);
    expect(output).toMatch(/farm: .*: ready/);
    expect(output).toMatch(/the lab is up in [\d.]+ s/);
    expect(output).toContain("npm run tandem -- lab kill n2");
    expect(output).toContain("npm run tandem -- lab start n2");
    expect(output).toContain("docker exec tandem-lab-client curl http://198.18.0.100/");
    expect(output).toContain("npm run tandem -- lab down");
    expect(healthySnapshots(first.lines), output).toBeGreaterThanOrEqual(1);
    expect(output).toMatch(/The lab is still running/);

    // The lab stays up: a second start reuses it and shows it within seconds.
    const second = await tandem(["lab", "demo", "--for", "3"]);
    const again = second.lines.join("\n");
    timings["second start (lab up) + 3 s view"] = second.ms;
    expect(second.code, `${again}\n${second.stderr}`).toBe(0);
    expect(again).toContain("the lab was up: reusing it");
    expect(healthySnapshots(second.lines), again).toBeGreaterThanOrEqual(1);
    // 3 s of view; the rest (Docker check, status, client loop) takes seconds.
    expect(second.ms, again).toBeLessThan(15_000);
  }, 900_000);

  it("where Docker cannot be reached, says why in one line and runs the simulated demo", async () => {
    const env = { ...process.env, DOCKER_HOST: "unix:///nonexistent/tandem-test/docker.sock" };
    const run = await tandem(["lab", "demo", "--for", "5", "--no-pace"], env, 60_000);
    const output = run.lines.join("\n");
    expect(run.code, `${output}\n${run.stderr}`).toBe(0);
    expect(run.lines[0]).toBe(
      "tandem: the Docker lab cannot run here: the Docker engine at DOCKER_HOST=unix:///nonexistent/tandem-test/docker.sock does not answer (connect ENOENT /nonexistent/tandem-test/docker.sock). Running the same demo in the simulator instead.",
    );
    expect(run.lines[1]).toMatch(/^tandem demo: a 3-node farm module in the deterministic simulator/);
    expect(output).toMatch(/n3 loses power/);
    expect(output).toMatch(/No invariant broken/);
  }, 60_000);
});

describe("the live view's lines (no Docker needed)", () => {
  const node = (name: string, index: number, up: boolean): NodeStatus =>
    ({
      name,
      container: `tandem-lab-${name}`,
      address: `198.18.0.${index + 1}`,
      state: up ? "running" : "exited",
      partitionedFrom: [],
      farm: up ? { module: "web", mode: "farm", node: name, state: "UP", readiness: "Ready", goal: "UP", resources: {}, problem: null, farm: { state: "UP", members: ["n1", "n3"], ownedBuckets: 128, bucketCount: 256, heartbeats: {} } } : null,
      problem: up ? null : "the container is exited",
    }) as unknown as NodeStatus;
  const status = { up: false, network: true, image: "tandem-node:x", vip: "198.18.0.100", client: { container: "tandem-lab-client", address: "198.18.0.10", state: "running" }, nodes: [node("n1", 0, true), node("n2", 1, false), node("n3", 2, true)] } as LabStatus;
  const now = 100_000;
  const samples: Sample[] = Array.from({ length: 40 }, (_, id) => ({ id, sentAt: now - 4_000 + id * 100, at: now - 4_000 + id * 100 + 5, ms: id === 7 ? 1_020 : 5, answer: id === 3 ? "timeout" : id % 2 === 0 ? "n1" : "n3" }));
  const hints = ["kill a node from another terminal: npm run tandem -- lab kill n2 (power loss) · bring it back: npm run tandem -- lab start n2"];
  const paint = { bold: (text: string) => `\x1b[1m${text}\x1b[0m`, dim: (text: string) => text, red: (text: string) => text, green: (text: string) => text, yellow: (text: string) => text, cyan: (text: string) => text, underline: (text: string) => text, node: [(text: string) => text] };

  it("fits the terminal's width (so that it redraws in place), wraps the hints, shows shares, failures and slow answers", () => {
    const lines = frame({ status, statusAt: now - 200, statusProblem: null, client: { samples, problem: null }, events: ["  3.1 s  n2 OFF"], now, viewStart: now - 10_000, hints, paint, columns: 80, rows: 40 });
    const visible = (line: string) => line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
    for (const line of lines) expect(visible(line).length, line).toBeLessThan(80);
    const text = lines.map(visible).join("\n");
    expect(text).toMatch(/^n1 +ON +UP +Ready +n1,n3 +128\/256 .*█+.* 50 %$/m);
    expect(text).toMatch(/^n2 +OFF +- /m);
    expect(text).toMatch(/last 5 s: 40 answers, failed: timeout 1, 1 slow/);
    expect(text).toContain("n2 OFF");
    expect(text).toContain("npm run tandem -- lab kill n2");
    expect(text).toContain("npm run tandem -- lab start n2");
  });

  it("prints plain snapshots, and cuts and wraps text as asked", () => {
    const [nodes, answers] = snapshot(status, { samples, problem: null }, now);
    expect(nodes).toBe("nodes: n1 UP Ready members n1,n3 buckets 128/256 | n2 OFF | n3 UP Ready members n1,n3 buckets 128/256");
    expect(answers).toMatch(/^answers \(last 5 s, 40 requests\): n1 20 \(50 %\), n3 19 \(48 %\), timeout 1 \(3 %\), 1 slow/);
    expect(clip("\x1b[1mabcdef\x1b[0m", 3)).toBe("\x1b[1mabc\x1b[0m");
    expect(wrap("aaaa bbbb cccc dddd eeee ffff", 12)).toEqual(["aaaa bbbb", "  cccc dddd", "  eeee ffff"]);
  });
});
