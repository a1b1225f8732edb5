// `tandem lab demo` (npm start): the Docker lab, shown working. It checks that Docker can
// run here (starting dockerd when it is installed but not running and we are root); when
// it cannot, it says why in one line and runs the simulated demo (`tandem demo`) instead.
// Otherwise it builds the images (progress lines; cached afterwards), brings the lab up
// (or reuses the one that is up), and shows a live view: each node's state from
// `tandem state --json` in its container, and which node answers a client loop in the
// client container that opens a new connection to the VIP every 100 ms. The user kills
// and restarts nodes from another terminal and watches the farm rebalance.
//
// On a terminal the view redraws in place about every half second, in colour, until
// Ctrl-C (or --for SECONDS); the lab stays up. Elsewhere (CI, pipes) it prints plain
// progress lines, the node changes as they happen and a snapshot every 2 s, for --for
// seconds (default 10).

import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { PassThrough } from "node:stream";
import { parseArgs } from "node:util";
import type Docker from "dockerode";
import { baseImage, dockerClient, imageId, withTimeout } from "../lab/images.ts";
import { clientAddress, clientContainer, labVip, Lab, type LabStatus, type NodeStatus } from "../lab/lab.ts";

const usage = `usage: tandem lab demo [--for SECONDS] [--nodes N] [--sim] [--speed X] [--no-pace]
  Brings the Docker lab up (building its images when they are not cached) or reuses the
  one that is up, then shows each node's state and which node answers a client that opens
  a new connection to the VIP every 100 ms. Kill a node from another terminal to watch the
  farm rebalance. Ctrl-C ends the view and leaves the lab running (tandem lab down removes it).
  --for SECONDS   end the view after SECONDS (default: Ctrl-C on a terminal, 10 s otherwise)
  --nodes N       nodes of a lab brought up now (default 3)
  --sim           run the simulated demo (tandem demo) without looking for Docker
  --speed, --no-pace   passed to the simulated demo when it runs instead of the lab
  Where Docker cannot run (not installed, engine not reachable and not startable, not
  root) it says why and runs the simulated demo.`;

/** A request every `requestEveryMs`, each on a new connection; its answer counts in the
 *  shares over the last `windowMs`. */
const requestEveryMs = 100;
const requestTimeoutMs = 1_500;
const windowMs = 5_000;
/** An answer slower than this came after a retransmitted SYN (the first went to a node
 *  that was gone, before the others took its buckets over). */
const slowMs = 500;
const refreshMs = 500;
const snapshotEveryMs = 2_000;
const dockerdLog = "/var/log/dockerd.log";

export interface DemoIo {
  readonly write: (text: string) => void;
  readonly isTTY: boolean;
  readonly columns: () => number;
  readonly rows: () => number;
}

const stdoutIo: DemoIo = {
  write: (text) => void process.stdout.write(text),
  isTTY: process.stdout.isTTY === true,
  columns: () => process.stdout.columns ?? 100,
  rows: () => process.stdout.rows ?? 40,
};

export async function labDemoCommand(argv: readonly string[], print: (line: string) => void, io: DemoIo = stdoutIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      for: { type: "string" },
      nodes: { type: "string", default: "3" },
      sim: { type: "boolean", default: false },
      speed: { type: "string" },
      "no-pace": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    print(usage);
    return 0;
  }
  const forMs = values.for === undefined ? (io.isTTY ? Infinity : 10_000) : Number(values.for) * 1_000;
  if (!(forMs > 0)) throw new Error(`tandem lab demo: --for ${values.for}: expected a number of seconds`);
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) throw new Error(`tandem lab demo: --nodes ${values.nodes}: expected 1 to 9`);
  const simArgs = [...(values.speed === undefined ? [] : ["--speed", values.speed]), ...(values["no-pace"] ? ["--no-pace"] : [])];
  const simulate = async () => (await import("./demo-command.ts")).demoCommand(simArgs, print);
  if (values.sim) return simulate();

  const paint = colours(io.isTTY && process.env["NO_COLOR"] === undefined);
  const started = Date.now();
  const say = (line: string) => print(`${paint.dim(`[${seconds(Date.now() - started).padStart(7)}]`)} ${line}`);

  const check = await checkDocker(say);
  if (!check.ok) {
    print(`tandem: the Docker lab cannot run here: ${check.why}. Running the same demo in the simulator instead.`);
    return simulate();
  }
  say(`Docker ${check.version} is running: bringing up the lab (${nodes} node services in containers, farm module web behind VIP ${labVip})`);
  const lab = new Lab({ docker: check.docker, progress: (line) => say(line) });
  try {
    const result = await lab.up({ nodes });
    const images = result.images === null ? "" : ` (images ${result.images.builtBase || result.images.builtNode ? "built" : "cached"})`;
    say(result.already ? "the lab was up: reusing it" : `the lab is up in ${seconds(Date.now() - started)}${images}`);
  } catch (error) {
    print(`tandem: the Docker lab did not come up: ${error instanceof Error ? error.message : String(error)}`);
    print("Running the same demo in the simulator instead.");
    const code = await simulate();
    return code === 0 ? 1 : code;
  }
  await liveView(lab, { forMs, io, print, say, paint });
  return 0;
}

// ---- Can Docker run here? ----

export type DockerCheck = { readonly ok: true; readonly docker: Docker; readonly version: string } | { readonly ok: false; readonly why: string };

/** Whether the lab can run: an engine answers (DOCKER_HOST when set, else the local
 *  socket; a local dockerd that is installed but not running is started when we are root),
 *  and the base image is there or can be built (debootstrap, as root). */
export async function checkDocker(say: (line: string) => void, pingTimeoutMs = 3_000): Promise<DockerCheck> {
  const dockerHost = process.env["DOCKER_HOST"];
  const where = dockerHost === undefined || dockerHost === "" ? "/var/run/docker.sock" : `DOCKER_HOST=${dockerHost}`;
  const root = process.getuid?.() === 0;
  let docker: Docker;
  try {
    docker = dockerClient();
  } catch (error) {
    return { ok: false, why: `no Docker client for ${where} (${(error as Error).message})` };
  }
  const ping = async (): Promise<string | null> => {
    try {
      await withTimeout(docker.ping(), pingTimeoutMs, `no answer within ${pingTimeoutMs} ms`);
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  };
  let failure = await ping();
  if (failure !== null) {
    const dockerd = ["/usr/bin/dockerd", "/usr/sbin/dockerd", "/usr/local/bin/dockerd"].find((path) => existsSync(path));
    const denied = /EACCES|permission denied/i.test(failure);
    if (dockerHost !== undefined && dockerHost !== "" && dockerHost !== "unix:///var/run/docker.sock") return { ok: false, why: `the Docker engine at ${where} does not answer (${failure})` };
    if (dockerd === undefined) return { ok: false, why: "Docker is not installed (no dockerd; on Debian 12: apt-get install docker.io, as root)" };
    if (denied) return { ok: false, why: `the Docker engine at ${where} refuses this user (${failure}): run as root, or as a member of the docker group` };
    if (!root) return { ok: false, why: `the Docker engine is not running (${where}: ${failure}) and only root can start it (the lab needs root)` };
    const startFailure = await startDockerd(dockerd, say, ping);
    if (startFailure !== null) return { ok: false, why: startFailure };
    failure = null;
  }
  let version = "";
  try {
    version = (await docker.version()).Version;
  } catch (error) {
    return { ok: false, why: `the Docker engine at ${where} answers a ping but not a version query (${(error as Error).message})` };
  }
  try {
    if ((await imageId(docker, baseImage)) === null) {
      const debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"].find((path) => existsSync(path));
      if (!root) return { ok: false, why: `the lab's base image ${baseImage} is not built yet and building it (debootstrap) needs root` };
      if (debootstrap === undefined) return { ok: false, why: `the lab's base image ${baseImage} is not built yet and building it needs debootstrap (apt-get install debootstrap)` };
    }
  } catch (error) {
    return { ok: false, why: `the Docker engine at ${where} cannot list images (${(error as Error).message})` };
  }
  return { ok: true, docker, version };
}

/** Starts dockerd in the background (it outlives this command, as a service would);
 *  null once the engine answers, else why it did not. */
async function startDockerd(dockerd: string, say: (line: string) => void, ping: () => Promise<string | null>): Promise<string | null> {
  say(`the Docker engine is not running: starting ${dockerd} (log: ${dockerdLog})`);
  let log: number;
  try {
    log = openSync(dockerdLog, "a");
  } catch (error) {
    return `the Docker engine is not running and its log ${dockerdLog} cannot be opened (${(error as Error).message})`;
  }
  let exited: string | null = null;
  try {
    const child = spawn(dockerd, [], { detached: true, stdio: ["ignore", log, log] });
    child.once("error", (error) => (exited = `cannot run ${dockerd}: ${error.message}`));
    child.once("exit", (code, signal) => (exited = `${dockerd} stopped at once (${signal ?? `exit ${code}`}; see ${dockerdLog})`));
    child.unref();
  } finally {
    closeSync(log);
  }
  const deadline = Date.now() + 30_000;
  let failure: string | null = "not started";
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (exited !== null) return `the Docker engine is not running and would not start: ${exited}`;
    failure = await ping();
    if (failure === null) {
      say("dockerd is running");
      return null;
    }
  }
  return `the Docker engine is not running and ${dockerd} did not answer within 30 s (${failure}; see ${dockerdLog})`;
}

// ---- The client loop ----

/** One request's outcome: the node that answered, or what went wrong. */
export interface Sample {
  readonly id: number;
  /** When it was sent, in the client container's clock (ms). */
  readonly sentAt: number;
  /** When this process received the answer (ms). */
  readonly at: number;
  readonly ms: number;
  readonly answer: string;
}

/** Runs in the client container: a new connection to the VIP every `every` ms, each
 *  answer one JSON line on stdout. It ends when its stdin closes (this command ended,
 *  however it ended), so no loop outlives the view. */
const clientLoop = `
const http = require("node:http");
const [host, every, timeoutMs] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
process.stdout.on("error", () => process.exit(0));
console.log(JSON.stringify({ pid: process.pid }));
let id = 0;
setInterval(() => {
  const mine = id++;
  const sent = Date.now();
  let done = false;
  const finish = (answer) => {
    if (done) return;
    done = true;
    process.stdout.write(JSON.stringify([mine, sent, Date.now() - sent, answer]) + "\\n");
  };
  const request = http.get({ host, port: 80, path: "/", agent: false, timeout: timeoutMs }, (response) => {
    let body = "";
    response.setEncoding("utf8");
    response.on("data", (chunk) => (body += chunk));
    response.on("end", () => finish(body.trim().slice(0, 20) || "empty"));
    response.on("error", () => finish("reset"));
  });
  request.on("timeout", () => { request.destroy(); finish("timeout"); });
  request.on("error", (error) => finish(error.code === "ECONNRESET" ? "reset" : error.code === "ECONNREFUSED" ? "refused" : error.code === "EHOSTUNREACH" ? "unreachable" : "error"));
}, every);
`;

class ClientLoop {
  readonly samples: Sample[] = [];
  problem: string | null = null;
  #stream: (NodeJS.ReadWriteStream & { destroy(): void }) | null = null;
  #pid: number | null = null;
  #running = false;
  /** Request ids go on across restarts of the loop (each loop counts from 0). */
  #offset = 0;
  #nextId = 0;
  readonly lab: Lab;

  constructor(lab: Lab) {
    this.lab = lab;
  }

  get running(): boolean {
    return this.#running;
  }

  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#offset = this.#nextId;
    try {
      const exec = await this.lab.docker.getContainer(clientContainer).exec({
        Cmd: ["node", "-e", clientLoop, labVip, String(requestEveryMs), String(requestTimeoutMs)],
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
      });
      const stream = (await exec.start({ hijack: true, stdin: true })) as NodeJS.ReadWriteStream & { destroy(): void };
      this.#stream = stream;
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      this.lab.docker.modem.demuxStream(stream, stdout, stderr);
      let pending = "";
      stdout.on("data", (chunk: Buffer) => {
        pending += chunk.toString();
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) this.#take(line);
      });
      let errors = "";
      stderr.on("data", (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-500)));
      const ended = () => {
        if (this.#stream !== stream) return;
        this.#stream = null;
        this.#running = false;
        this.problem = `the client loop ended${errors.trim() === "" ? "" : `: ${errors.trim().split("\n").slice(-1)[0]}`}`;
      };
      stream.on("end", ended);
      stream.on("close", ended);
      stream.on("error", ended);
      this.problem = null;
    } catch (error) {
      this.#running = false;
      this.problem = `cannot start the client loop in ${clientContainer}: ${(error as Error).message}`;
    }
  }

  #take(line: string): void {
    try {
      const parsed = JSON.parse(line) as [number, number, number, string] | { pid: number };
      if (!Array.isArray(parsed)) {
        this.#pid = parsed.pid;
        return;
      }
      const id = this.#offset + parsed[0];
      const [, sentAt, ms, answer] = parsed;
      this.#nextId = Math.max(this.#nextId, id + 1);
      this.samples.push({ id, sentAt, ms, answer, at: Date.now() });
      if (this.samples.length > 2_000) this.samples.splice(0, this.samples.length - 1_000);
    } catch {
      // Not one of ours (a warning): ignored.
    }
  }

  /** Ends the loop: its stdin closes (it exits), and its pid is killed to be sure. */
  async stop(): Promise<void> {
    const stream = this.#stream;
    this.#stream = null;
    this.#running = false;
    if (stream !== null) {
      stream.end();
      stream.destroy();
    }
    if (this.#pid !== null) await this.lab.exec(clientContainer, ["sh", "-c", `kill ${this.#pid} 2>/dev/null; true`], 5_000).catch(() => {});
  }
}

// ---- The view ----

export interface NodeRow {
  readonly name: string;
  readonly address: string;
  /** ON, OFF (killed or stopped), HUNG (paused), or the container's state. */
  readonly power: string;
  /** The module's state on the node: UP, WAIT, STOP, or "?" when its service does not answer. */
  readonly state: string;
  readonly readiness: string;
  readonly members: readonly string[];
  readonly buckets: string;
  readonly problem: string | null;
}

export function nodeRow(node: NodeStatus): NodeRow {
  // A container killed between the listing and the exec: "... is not running".
  const stopping = node.state === "running" && node.farm === null && /is not running/.test(node.problem ?? "");
  const power = node.state === "running" && !stopping ? "ON" : node.state === "exited" || node.state === "created" || node.state === "dead" || stopping ? "OFF" : node.state === "paused" ? "HUNG" : node.state.toUpperCase();
  const farm = node.farm;
  return {
    name: node.name,
    address: node.address,
    power,
    state: farm?.state ?? (power === "ON" ? "?" : "-"),
    readiness: farm?.readiness ?? "-",
    members: farm?.farm === null || farm?.farm === undefined ? [] : [...farm.farm.members].sort(),
    buckets: farm?.farm === null || farm?.farm === undefined ? "-" : `${farm.farm.ownedBuckets}/${farm.farm.bucketCount}`,
    problem: power === "ON" ? shorten(node.farm === null ? node.problem : node.farm.problem) : null,
  };
}

/** Docker's long messages made short: "(HTTP code 409) container stopped/paused - Container
 *  <64 hex> is not running" → "container stopped/paused - container is not running". */
function shorten(problem: string | null): string | null {
  if (problem === null) return null;
  const short = problem.replace(/\(HTTP code \d+\) /g, "").replace(/Container [0-9a-f]{12,64} /g, "container ").trim();
  return short.length > 80 ? `${short.slice(0, 77)}...` : short;
}

/** "n1 UP Ready members n1,n2,n3 buckets 86/256": what the snapshots and events print. */
export function describeRow(row: NodeRow): string {
  if (row.power !== "ON") return `${row.name} ${row.power}`;
  if (row.state === "?") return `${row.name} ? (${row.problem ?? "no answer"})`;
  return `${row.name} ${row.state} ${row.readiness} members ${row.members.join(",") || "-"} buckets ${row.buckets}`;
}

export interface Shares {
  readonly total: number;
  readonly byAnswer: ReadonlyMap<string, number>;
  /** Answers from a node that took longer than slowMs. */
  readonly slow: number;
}

/** Answers received in the last `windowMs` (by arrival), counted per answer. */
export function shares(samples: readonly Sample[], now: number, window = windowMs): Shares {
  const byAnswer = new Map<string, number>();
  let total = 0;
  let slow = 0;
  for (const sample of samples) {
    if (now - sample.at > window) continue;
    total++;
    byAnswer.set(sample.answer, (byAnswer.get(sample.answer) ?? 0) + 1);
    if (!failures.has(sample.answer) && sample.ms > slowMs) slow++;
  }
  return { total, byAnswer, slow };
}

/** The last `count` answers, in the order the requests were sent. */
export function lastAnswers(samples: readonly Sample[], count: number): Sample[] {
  return [...samples.slice(-count * 3)].sort((a, b) => a.id - b.id).slice(-count);
}

const failures = new Set(["timeout", "reset", "refused", "unreachable", "error", "empty"]);
const failureMark: Readonly<Record<string, string>> = { timeout: "××", reset: "RS", refused: "RF", unreachable: "UR", error: "!!", empty: "??" };

interface ViewOptions {
  readonly forMs: number;
  readonly io: DemoIo;
  readonly print: (line: string) => void;
  readonly say: (line: string) => void;
  readonly paint: Paint;
}

async function liveView(lab: Lab, options: ViewOptions): Promise<void> {
  const { io, print, say, paint } = options;
  const tty = io.isTTY;
  const hints = [
    `kill a node from another terminal: npm run tandem -- lab kill n2 (power loss) · bring it back: npm run tandem -- lab start n2`,
    `point a client at the VIP, from inside the lab network: docker exec ${clientContainer} curl http://${labVip}/`,
    `Ctrl-C ends this view and leaves the lab running; npm run tandem -- lab down removes it`,
  ];
  const client = new ClientLoop(lab);
  await client.start();
  let status: LabStatus | null = null;
  let statusAt = 0;
  let statusProblem: string | null = null;
  const events: string[] = [];
  let previous = new Map<string, string>();
  const viewStart = Date.now();
  let stopped = false;
  let wake: () => void = () => {};
  const stop = () => {
    stopped = true;
    wake();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const note = (line: string) => {
    const stamped = `${seconds(Date.now() - viewStart).padStart(6)}  ${line}`;
    events.push(stamped);
    if (events.length > 50) events.shift();
    if (!tty) say(line);
  };

  // The nodes' states: one `lab status` after another, at most every refreshMs.
  const poll = async () => {
    while (!stopped) {
      const began = Date.now();
      try {
        const next = await lab.status();
        status = next;
        statusAt = Date.now();
        statusProblem = next.nodes.length === 0 ? "no lab is there (removed from another terminal?): npm run tandem -- lab up" : null;
        const now = new Map(next.nodes.map((node) => [node.name, describeRow(nodeRow(node))]));
        for (const [name, line] of now) if (previous.size > 0 && previous.get(name) !== line) note(line);
        previous = now;
        if (!client.running && next.client.state === "running") await client.start();
      } catch (error) {
        statusProblem = `cannot read the lab's state: ${(error as Error).message}`;
      }
      const left = refreshMs - (Date.now() - began);
      if (left > 0) await pause(left, () => stopped);
    }
  };
  const polling = poll();

  if (!tty) for (const hint of hints) say(hint);
  let drawn = 0;
  let lastSnapshot = Date.now();
  if (tty) io.write("\x1b[?25l");
  try {
    while (!stopped) {
      const now = Date.now();
      if (now - viewStart >= options.forMs) break;
      if (tty) {
        const lines = frame({ status, statusAt, statusProblem, client, events, now, viewStart, hints, paint, columns: io.columns(), rows: io.rows() });
        io.write(`${drawn > 0 ? `\x1b[${drawn}F` : ""}${lines.map((line) => `${line}\x1b[K\n`).join("")}\x1b[J`);
        drawn = lines.length;
      } else if (now - lastSnapshot >= snapshotEveryMs) {
        lastSnapshot = now;
        for (const line of snapshot(status, client, now)) say(line);
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(refreshMs, options.forMs - (now - viewStart)));
      });
    }
  } finally {
    stopped = true;
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    if (tty) io.write("\x1b[?25h");
    await polling;
    await client.stop();
  }
  if (!tty) for (const line of snapshot(status, client, Date.now())) say(line);
  if (tty) print("");
  print(`The lab is still running (${(status as LabStatus | null)?.nodes.map((node) => node.name).join(" ") ?? "its nodes"}, VIP ${labVip}): docker exec ${clientContainer} curl http://${labVip}/ ; npm run tandem -- lab status ; npm run tandem -- lab down removes it.`);
}

/** Plain lines for logs: each node, then the answers of the last seconds. */
export function snapshot(status: LabStatus | null, client: { samples: readonly Sample[]; problem: string | null }, now: number): string[] {
  const nodes = status === null ? "not read yet" : status.nodes.map((node) => describeRow(nodeRow(node))).join(" | ");
  const share = shares(client.samples, now);
  const counts = [...share.byAnswer].sort(([a], [b]) => a.localeCompare(b)).map(([answer, count]) => `${answer} ${count} (${Math.round((100 * count) / share.total)} %)`);
  const last = lastAnswers(client.samples, 20).map((sample) => (!failures.has(sample.answer) && sample.ms > slowMs ? `${sample.answer}*` : sample.answer));
  const slow = share.slow === 0 ? "" : `, ${share.slow} slow (* over ${slowMs / 1_000} s: a retransmitted SYN)`;
  return [
    `nodes: ${nodes}`,
    `answers (last ${windowMs / 1_000} s, ${share.total} requests): ${counts.join(", ") || "none"}${slow}${client.problem === null ? "" : ` — ${client.problem}`}; last ${last.length}: ${last.join(" ")}`,
  ];
}

interface FrameInput {
  readonly status: LabStatus | null;
  readonly statusAt: number;
  readonly statusProblem: string | null;
  readonly client: { samples: readonly Sample[]; problem: string | null };
  readonly events: readonly string[];
  readonly now: number;
  readonly viewStart: number;
  readonly hints: readonly string[];
  readonly paint: Paint;
  readonly columns: number;
  readonly rows: number;
}

/** The live view's lines, each at most `columns` wide (so that redrawing in place works). */
export function frame(input: FrameInput): string[] {
  const { status, client, paint, now } = input;
  const width = input.columns - 1;
  const share = shares(client.samples, now);
  const nodes = (status?.nodes ?? []).map(nodeRow);
  const nodeNames = nodes.map((row) => row.name);
  const colourOf = (answer: string) => (failures.has(answer) ? paint.red : (paint.node[nodeNames.indexOf(answer) % paint.node.length] ?? paint.bold));
  const lines: string[] = [];
  const addresses = nodes.length === 0 ? "" : ` · nodes ${nodes[0]!.address}${nodes.length > 1 ? `-${nodes[nodes.length - 1]!.address.split(".").pop()}` : ""}`;
  lines.push(`${paint.bold("tandem lab")} · farm module web · VIP ${labVip}${addresses}  ${paint.dim(seconds(now - input.viewStart))}${input.statusAt === 0 ? paint.dim(" · state not read yet") : now - input.statusAt > 2_000 ? paint.yellow(` · state read ${seconds(now - input.statusAt)} ago`) : ""}`);
  lines.push("");
  // Columns: node, power, module state, readiness, members, buckets, then the share bar.
  const membersWidth = Math.max(7, ...nodes.map((row) => row.members.join(",").length));
  const fixed = 4 + 1 + 4 + 1 + 5 + 1 + 9 + 1 + membersWidth + 1 + 7 + 1 + 5;
  const barWidth = Math.max(5, Math.min(20, width - fixed - 1));
  lines.push(paint.dim(`${"node".padEnd(4)} ${"pwr".padEnd(4)} ${"state".padEnd(5)} ${"ready".padEnd(9)} ${"members".padEnd(membersWidth)} ${"buckets".padEnd(7)} answers, last ${windowMs / 1_000} s`));
  for (const row of nodes) {
    const stateColour = row.power !== "ON" ? paint.red : row.state === "UP" ? paint.green : row.state === "WAIT" ? paint.yellow : paint.red;
    const count = share.byAnswer.get(row.name) ?? 0;
    const fraction = share.total === 0 ? 0 : count / share.total;
    const filled = Math.round(fraction * barWidth);
    const bar = colourOf(row.name)("█".repeat(filled)) + paint.dim("·".repeat(barWidth - filled));
    lines.push(
      `${colourOf(row.name)(row.name.padEnd(4))} ${(row.power === "ON" ? paint.green : paint.red)(row.power.padEnd(4))} ${stateColour(row.state.padEnd(5))} ${row.readiness.padEnd(9)} ${(row.members.join(",") || "-").padEnd(membersWidth)} ${row.buckets.padEnd(7)} ${bar} ${String(Math.round(fraction * 100)).padStart(3)} %${row.problem === null ? "" : paint.dim(`  ${row.problem}`)}`,
    );
  }
  if (input.statusProblem !== null) lines.push(paint.yellow(input.statusProblem));
  const failed = [...share.byAnswer].filter(([answer]) => failures.has(answer));
  lines.push("");
  lines.push(`client ${clientAddress}: a new connection to the VIP every ${requestEveryMs} ms`);
  const slow = share.slow === 0 ? "" : `, ${paint.yellow(`${share.slow} slow`)} (over ${slowMs / 1_000} s: SYN retransmitted)`;
  lines.push(`last ${windowMs / 1_000} s: ${share.total} answers${failed.length === 0 ? ", none failed" : `, failed: ${failed.map(([answer, count]) => paint.red(`${answer} ${count}`)).join(", ")}`}${slow}`);
  const legend = share.slow === 0 ? "" : "  (underlined: slow)";
  const fit = Math.max(5, Math.floor((width - 9 - legend.length) / 3));
  const last = lastAnswers(client.samples, fit);
  const token = (answer: string) => (failures.has(answer) ? failureMark[answer]! : answer.slice(0, 2));
  const shown = (sample: Sample) => colourOf(sample.answer)(!failures.has(sample.answer) && sample.ms > slowMs ? paint.underline(token(sample.answer)) : token(sample.answer));
  lines.push(`last ${String(last.length).padEnd(3)} ${last.map(shown).join(" ")}${paint.dim(legend)}`);
  if (client.problem !== null) lines.push(paint.yellow(client.problem));
  lines.push("");
  const hints = input.hints.flatMap((hint) => wrap(hint, width));
  const room = Math.max(0, input.rows - lines.length - hints.length - 3);
  const recent = input.events.slice(-Math.min(6, room));
  if (recent.length > 0) {
    lines.push(paint.dim("changes:"));
    for (const event of recent) lines.push(`  ${event}`);
    lines.push("");
  }
  // The hints are wrapped, not cut: they are what the user has to type.
  return [...lines.map((line) => clip(line, width)), ...hints.map((piece) => paint.cyan(piece))];
}

// ---- Helpers ----

interface Paint {
  readonly bold: (text: string) => string;
  readonly dim: (text: string) => string;
  readonly red: (text: string) => string;
  readonly green: (text: string) => string;
  readonly yellow: (text: string) => string;
  readonly cyan: (text: string) => string;
  readonly underline: (text: string) => string;
  readonly node: readonly ((text: string) => string)[];
}

function colours(on: boolean): Paint {
  const sgr = (code: string) => (on ? (text: string) => `\x1b[${code}m${text}\x1b[0m` : (text: string) => text);
  return { bold: sgr("1"), dim: sgr("2"), red: sgr("31"), green: sgr("32"), yellow: sgr("33"), cyan: sgr("36"), underline: sgr("4"), node: [sgr("96"), sgr("95"), sgr("93"), sgr("94"), sgr("92"), sgr("91")] };
}

/** Cuts a line to `width` visible characters, keeping its colours (ANSI sequences take no room). */
export function clip(line: string, width: number): string {
  let visible = 0;
  let out = "";
  for (let index = 0; index < line.length; ) {
    const escape = /^\x1b\[[0-9;?]*[A-Za-z]/.exec(line.slice(index));
    if (escape !== null) {
      out += escape[0];
      index += escape[0].length;
      continue;
    }
    if (visible >= width) {
      index++;
      continue;
    }
    out += line[index];
    visible++;
    index++;
  }
  return out;
}

/** Plain text in lines of at most `width` characters, cut at spaces where it can be;
 *  continuation lines indented by two spaces. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let rest = text;
  for (let room = width; rest.length > room && width > 10; room = width - 2) {
    let cut = rest.lastIndexOf(" ", room);
    if (cut <= room / 2) cut = room;
    lines.push(`${lines.length === 0 ? "" : "  "}${rest.slice(0, cut).trimEnd()}`);
    rest = rest.slice(cut).trimStart();
  }
  lines.push(`${lines.length === 0 ? "" : "  "}${rest}`);
  return lines;
}

function seconds(ms: number): string {
  return `${(ms / 1_000).toFixed(1)} s`;
}

async function pause(ms: number, stopped: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!stopped() && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, Math.min(100, until - Date.now())));
}
