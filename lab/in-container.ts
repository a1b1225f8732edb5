// Programs the lab runs inside its containers for the scenarios' Cluster (lab-cluster.ts),
// each with `node -e` through `docker exec`, talking over the exec's stdin and stdout, and
// ending when stdin closes (so that none outlives the process that started it).
//
// - The state watcher, in each node: `tandem state --json -m web` (the CLI's own code,
//   imported from the image's dist/, called in a loop rather than a process spawned each
//   time: a spawn costs ~90 ms of CPU, which three nodes polled every few tens of ms would
//   take from the services being measured). One JSON line per sample that differs from the
//   previous one, and one at least every 200 ms (so that silence means a frozen node).
// - The load, in the client container: clients like the simulator's (drivers/sim/clients.ts),
//   each from its own source address (added to the client's eth0), each opening
//   connections to the VIP in turn, 5 requests per connection with 20 ms between them. It
//   counts who answered each request, resets (RST: ECONNRESET, EPIPE, and ECONNREFUSED,
//   the RST answering a SYN, which the simulator counts as a reset too), connections closed
//   while a request was out, timeouts, and each client's longest time without an answer.
//   Where real TCP differs from the simulated clients: a SYN that nobody answers is
//   retransmitted by the kernel only after 1 s (the simulator's clients retry every
//   100 ms), so the client gives up a connection not established within 200 ms and opens
//   a new one (a new source port); a request unanswered for 1 s is given up the same way.

/** The watcher: argv module, period in ms. Lines: {at, ok, state, readiness, problem, farm: {state, members, owned, buckets}, mirror: {gen, peerRole, volume, why, resyncBytes}} or {at, ok: false, error}. */
export const watcherScript = String.raw`
const { operateCommand } = await import("/opt/tandem/dist/cli/operate-command.js");
const module = process.argv[1];
const periodMs = Number(process.argv[2]);
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
process.stdout.on("error", () => process.exit(0));
let last = "";
let lastAt = 0;
for (;;) {
  const at = Date.now();
  let out = "";
  let record;
  try {
    const code = await operateCommand("state", ["--json", "-m", module], (line) => { out += line + "\n"; });
    if (code !== 0) record = { ok: false, error: out.trim().split("\n").pop() || "tandem state failed (" + code + ")" };
    else {
      const view = JSON.parse(out)[0];
      const farm = view.farm;
      const mirror = view.mirror;
      record = { ok: true, state: view.state, readiness: view.readiness, problem: view.problem, farm: farm === null ? null : { state: farm.state, members: farm.members, owned: farm.ownedBuckets, buckets: farm.bucketCount }, mirror: mirror === null ? null : { gen: mirror.gen, peerRole: mirror.peerRole, volume: mirror.volume, why: mirror.why, resyncBytes: mirror.stats.resyncBlockBytes } };
    }
  } catch (error) {
    record = { ok: false, error: String(error && error.message || error) };
  }
  const text = JSON.stringify(record);
  if (text !== last || at - lastAt >= 200) {
    process.stdout.write(JSON.stringify({ at, ...record }) + "\n");
    last = text;
    lastAt = at;
  }
  await new Promise((resolve) => setTimeout(resolve, Math.max(1, periodMs - (Date.now() - at))));
}
`;

export interface LoadSettings {
  readonly vip: string;
  readonly port: number;
  /** One source address per client. */
  readonly addresses: readonly string[];
  readonly requestsPerConnection: number;
  /** Between the answer and the next request, and before the next connection. */
  readonly thinkMs: number;
  /** A connection not established by then is given up and another opened. */
  readonly connectTimeoutMs: number;
  /** A request not answered by then: its connection is given up and another opened. */
  readonly answerTimeoutMs: number;
}

/** What the load generator reports (LoadStats and more). */
export interface LoadReport {
  /** When the load began, by the clock of the host (containers share its kernel's). */
  readonly startedAtEpochMs: number;
  readonly elapsedMs: number;
  /** The clients' answer timeout (LoadSettings). */
  readonly answerTimeoutMs: number;
  readonly answeredBy: Record<string, number>;
  readonly answered: number;
  /** RSTs: ECONNRESET and EPIPE on a connection, ECONNREFUSED to a SYN. */
  readonly resets: number;
  readonly refused: number;
  /** Connections the server closed while a request was out. */
  readonly closed: number;
  /** Idle keep-alive connections the server closed (not a failure: the client reconnects). */
  readonly closedIdle: number;
  readonly connectTimeouts: number;
  readonly answerTimeouts: number;
  /** Answers other than 200. */
  readonly badAnswers: number;
  readonly otherErrors: Record<string, number>;
  readonly connections: number;
  readonly longestGapMs: number;
  /** The client and the time (ms since the load began) at which the longest gap ended. */
  readonly longestGap: { readonly client: string; readonly endedAtMs: number; readonly node: string } | null;
  /** Answers and failures (anything but an answer or an idle connection closed) per slot of slotMs since the load began. */
  readonly slotMs: number;
  readonly answeredPerSlot: readonly number[];
  readonly failedPerSlot: readonly number[];
}

/** The stretches of time (ms since the load began) in which requests failed, and how many. */
export function failureStretches(report: LoadReport): { fromMs: number; toMs: number; failed: number }[] {
  const stretches: { fromMs: number; toMs: number; failed: number }[] = [];
  report.failedPerSlot.forEach((failed, index) => {
    if (failed === 0) return;
    const last = stretches[stretches.length - 1];
    if (last !== undefined && last.toMs === index * report.slotMs) {
      last.toMs += report.slotMs;
      last.failed += failed;
    } else stretches.push({ fromMs: index * report.slotMs, toMs: (index + 1) * report.slotMs, failed });
  });
  return stretches;
}

/** The load generator: argv one JSON LoadSettings. stdin: "stats ID" → {id, report};
 *  "stop ID" → the load stops, {id, report, final: true}, exit. */
export const loadScript = String.raw`
"use strict";
const net = require("node:net");
const s = JSON.parse(process.argv[1]);
const startedAt = Date.now();
const stats = { answeredBy: {}, answered: 0, resets: 0, refused: 0, closed: 0, closedIdle: 0, connectTimeouts: 0, answerTimeouts: 0, badAnswers: 0, otherErrors: {}, connections: 0, longestGapMs: 0, longestGap: null, slotMs: 100, answeredPerSlot: [], failedPerSlot: [] };
const slot = (series) => {
  const index = Math.floor((Date.now() - startedAt) / stats.slotMs);
  while (series.length <= index) series.push(0);
  series[index]++;
};
let active = true;
const open = new Set();
const request = "GET / HTTP/1.1\r\nHost: " + s.vip + "\r\n\r\n";
const report = () => ({ startedAtEpochMs: startedAt, elapsedMs: Date.now() - startedAt, answerTimeoutMs: s.answerTimeoutMs, ...stats });

function answered(client, node) {
  const now = Date.now();
  const gap = now - client.last;
  if (gap > stats.longestGapMs) {
    stats.longestGapMs = gap;
    stats.longestGap = { client: client.address, endedAtMs: now - startedAt, node };
  }
  client.last = now;
  slot(stats.answeredPerSlot);
  stats.answered++;
  stats.answeredBy[node] = (stats.answeredBy[node] || 0) + 1;
}

function count(outcome) {
  if (outcome !== "ok" && outcome !== "stopped" && outcome !== "closed-idle") slot(stats.failedPerSlot);
  switch (outcome) {
    case "ok": case "stopped": case "closed-idle": if (outcome === "closed-idle") stats.closedIdle++; return;
    case "reset": stats.resets++; return;
    case "refused": stats.resets++; stats.refused++; return;
    case "closed": stats.closed++; return;
    case "connect-timeout": stats.connectTimeouts++; return;
    case "answer-timeout": stats.answerTimeouts++; return;
    case "bad-answer": stats.badAnswers++; return;
    default: stats.otherErrors[outcome] = (stats.otherErrors[outcome] || 0) + 1;
  }
}

function connection(client) {
  return new Promise((resolve) => {
    stats.connections++;
    let left = s.requestsPerConnection;
    let buffer = "";
    let phase = "connecting";
    let timer = null;
    const socket = net.connect({ host: s.vip, port: s.port, localAddress: client.address });
    open.add(socket);
    const finish = (outcome) => {
      if (phase === "done") return;
      phase = "done";
      clearTimeout(timer);
      open.delete(socket);
      if (outcome === "ok") socket.end(); else socket.destroy();
      if (active) count(outcome);
      resolve(outcome);
    };
    const send = () => {
      if (!active) return finish("stopped");
      phase = "waiting";
      buffer = "";
      socket.write(request);
      timer = setTimeout(() => finish("answer-timeout"), s.answerTimeoutMs);
    };
    timer = setTimeout(() => finish("connect-timeout"), s.connectTimeoutMs);
    socket.on("connect", () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      send();
    });
    socket.on("data", (chunk) => {
      if (phase !== "waiting") return;
      buffer += chunk.toString("latin1");
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const match = /content-length: *(\d+)/i.exec(buffer.slice(0, end));
      const length = match === null ? 0 : Number(match[1]);
      if (buffer.length < end + 4 + length) return;
      clearTimeout(timer);
      if (Number(buffer.slice(9, 12)) !== 200) return finish("bad-answer");
      if (active) answered(client, buffer.slice(end + 4, end + 4 + length).trim());
      left--;
      if (left === 0) return finish("ok");
      phase = "thinking";
      timer = setTimeout(send, s.thinkMs);
    });
    socket.on("error", (error) => finish(error.code === "ECONNRESET" || error.code === "EPIPE" ? "reset" : error.code === "ECONNREFUSED" ? "refused" : "error " + error.code));
    socket.on("close", () => finish(phase === "thinking" ? "closed-idle" : "closed"));
  });
}

async function run(client) {
  await new Promise((resolve) => setTimeout(resolve, Math.random() * s.thinkMs));
  while (active) {
    const outcome = await connection(client);
    // After an answer, think; after a failure, reconnect at once (a few ms, not a busy loop).
    await new Promise((resolve) => setTimeout(resolve, outcome === "ok" ? s.thinkMs : 5));
  }
}

const clients = s.addresses.map((address) => ({ address, last: startedAt }));
for (const client of clients) run(client);

let pending = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  const lines = pending.split("\n");
  pending = lines.pop();
  for (const line of lines) {
    const [verb, id] = line.trim().split(" ");
    if (verb === "stats") process.stdout.write(JSON.stringify({ id, report: report() }) + "\n");
    else if (verb === "stop") {
      const final = report();
      active = false;
      for (const socket of open) socket.destroy();
      process.stdout.write(JSON.stringify({ id, report: final, final: true }) + "\n", () => process.exit(0));
    }
  }
});
process.stdin.on("end", () => process.exit(0));
process.stdout.on("error", () => process.exit(0));
`;
