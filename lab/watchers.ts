// Watching node services in the lab's containers: one `docker exec` per node running
// in-container.ts's watcher (the CLI's `tandem state --json -m MODULE` in a loop, a line
// at each change and at least every 200 ms). Each change of what a node says is told once
// (to a timeline); waiters are woken at every sample. Shared by the farm's LabCluster and
// the mirror's LabMirrorCluster, with their timeline and the `docker exec` sessions.

import { performance } from "node:perf_hooks";
import { PassThrough, type Duplex } from "node:stream";
import type Docker from "dockerode";
import type { NodeId } from "../core/types.ts";
import { watcherScript } from "./in-container.ts";
import { containerPrefix } from "./lab.ts";

/** A lab cluster's timeline: lines stamped in seconds since it began, kept and printed. */
export class Timeline {
  readonly lines: string[] = [];
  readonly #print: (line: string) => void;
  readonly #startedAt = performance.now();

  constructor(print: (line: string) => void) {
    this.#print = print;
  }

  /** Milliseconds since the timeline began. */
  nowMs(): number {
    return performance.now() - this.#startedAt;
  }

  /** A step of the scenario. */
  note(message: string): void {
    this.line(`---- ${message}`);
  }

  line(text: string): void {
    const line = `${(this.nowMs() / 1000).toFixed(3).padStart(8)} s  ${text}`;
    this.lines.push(line);
    this.#print(line);
  }
}

/** One line of a node's watcher, with when it arrived here. */
export interface WatchSample {
  readonly at: number;
  readonly receivedAt: number;
  readonly ok: boolean;
  readonly state?: string;
  readonly readiness?: string;
  readonly problem?: string | null;
  readonly farm?: { readonly state: "STOP" | "WAIT" | "UP"; readonly members: readonly string[]; readonly owned: number; readonly buckets: number } | null;
  readonly mirror?: { readonly gen: string | null; readonly peerRole: string; readonly volume: string | null; readonly why: string; readonly resyncBytes: number } | null;
  readonly error?: string;
}

export interface WatchersOptions {
  readonly module: string;
  readonly periodMs: number;
  /** One phrase for a sample; a line is told when it changes. */
  readonly describe: (sample: WatchSample) => string;
  readonly line: (text: string) => void;
  /** Whether the node should be answering (a watcher that ends then is told). */
  readonly expected: (node: NodeId) => boolean;
  /** Called after each sample is taken in. */
  readonly onSample?: () => void;
}

export class Watchers {
  readonly #docker: Docker;
  readonly #options: WatchersOptions;
  readonly #samples = new Map<NodeId, WatchSample>();
  readonly #sessions = new Map<NodeId, ExecSession>();
  readonly #said = new Map<NodeId, string>();
  #wakers: (() => void)[] = [];
  #closed = false;

  constructor(docker: Docker, options: WatchersOptions) {
    this.#docker = docker;
    this.#options = options;
  }

  /** The node's latest sample (undefined: none since it was last started or forgotten). */
  sample(node: NodeId): WatchSample | undefined {
    return this.#samples.get(node);
  }

  /** Forgets the node's latest sample (what it said before a freeze or a boot is stale). */
  drop(node: NodeId): void {
    this.#samples.delete(node);
  }

  /** Stops watching the node (it lost power) and forgets its sample. */
  forget(node: NodeId): void {
    this.#samples.delete(node);
    this.#sessions.get(node)?.close();
    this.#sessions.delete(node);
  }

  /** Starts (or restarts) the node's watcher. */
  async watch(node: NodeId): Promise<void> {
    this.#sessions.get(node)?.close();
    this.#samples.delete(node);
    const session = await ExecSession.start(
      this.#docker,
      `${containerPrefix}${node}`,
      ["node", "--input-type=module", "-e", watcherScript, this.#options.module, String(this.#options.periodMs)],
      (line) => {
        let sample: WatchSample;
        try {
          sample = { ...(JSON.parse(line) as Omit<WatchSample, "receivedAt">), receivedAt: performance.now() };
        } catch {
          return;
        }
        if (this.#sessions.get(node) !== session) return;
        this.#samples.set(node, sample);
        const said = this.#options.describe(sample);
        if (this.#said.get(node) !== said) {
          this.#said.set(node, said);
          this.#options.line(`${node.padEnd(4)} ${said}`);
        }
        this.#options.onSample?.();
        this.#wake();
      },
      (stderr) => {
        if (this.#sessions.get(node) !== session) return;
        this.#sessions.delete(node);
        this.#samples.delete(node);
        if (!this.#closed && this.#options.expected(node)) this.#options.line(`${node.padEnd(4)} watcher ended${stderr.trim() === "" ? "" : `: ${stderr.trim().split("\n").slice(-2).join(" | ")}`}`);
        this.#wake();
      },
    );
    this.#sessions.set(node, session);
  }

  /** Resolves at the next sample from any watcher, or after `timeoutMs`. */
  nextSample(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(1, timeoutMs));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wakers.push(done);
    });
  }

  close(): void {
    this.#closed = true;
    for (const session of this.#sessions.values()) session.close();
    this.#sessions.clear();
  }

  #wake(): void {
    const wakers = this.#wakers;
    this.#wakers = [];
    for (const wake of wakers) wake();
  }
}

export function withDeadline<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), timeoutMs)))]).finally(() => clearTimeout(timer));
}

/** A program running in a container through `docker exec`: lines in on stdin, lines out on stdout. */
export class ExecSession {
  readonly #stream: Duplex;
  #ended = false;

  private constructor(stream: Duplex) {
    this.#stream = stream;
  }

  static async start(docker: Docker, container: string, cmd: readonly string[], onLine: (line: string) => void, onEnd: (stderr: string) => void): Promise<ExecSession> {
    const exec = await docker.getContainer(container).exec({ Cmd: [...cmd], AttachStdin: true, AttachStdout: true, AttachStderr: true, Tty: false });
    const stream = (await exec.start({ hijack: true, stdin: true })) as unknown as Duplex;
    const session = new ExecSession(stream);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let pending = "";
    let errors = "";
    stdout.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) if (line.trim() !== "") onLine(line);
    });
    stderr.on("data", (chunk: Buffer) => {
      errors = (errors + chunk.toString("utf8")).slice(-4_000);
    });
    docker.modem.demuxStream(stream, stdout, stderr);
    const end = () => {
      if (session.#ended) return;
      session.#ended = true;
      onEnd(errors);
    };
    stream.on("end", end);
    stream.on("close", end);
    stream.on("error", end);
    return session;
  }

  write(line: string): void {
    if (!this.#ended) this.#stream.write(`${line}\n`);
  }

  /** Closes stdin (the program exits), then the connection. */
  close(): void {
    if (this.#ended) return;
    this.#stream.end();
    setTimeout(() => this.#stream.destroy(), 2_000).unref();
  }
}
