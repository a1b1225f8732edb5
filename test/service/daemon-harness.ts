// Runs `tandem daemon` in child processes, each with its own configuration, state, logs
// and socket, and a light module `app` whose scripts append their name and arguments to a
// trace file. For tests of the node service and of commands between nodes.

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../../cli/tandem.ts", import.meta.url));

export interface NodeSetup {
  readonly dir: string;
  readonly socket: string;
  readonly trace: string;
  readonly flags: string[];
}

export interface ClusterSetup {
  /** node name → address on the one lan */
  readonly nodes: Readonly<Record<string, string>>;
  /** A cluster key shared by every node, or none. */
  readonly key?: Buffer;
  readonly peerPort?: number;
}

export class DaemonHarness {
  readonly root = mkdtempSync(join(tmpdir(), "tandem-daemon-"));
  readonly #daemons: ChildProcess[] = [];
  #count = 0;

  static key(): Buffer {
    return randomBytes(32);
  }

  /** A node's configuration with one light module `app`; `check` goes inside its <service>. */
  setup(options: { node?: string; cluster?: ClusterSetup; check?: string } = {}): NodeSetup {
    const node = options.node ?? "n1";
    const cluster = options.cluster ?? { nodes: { n1: "127.0.0.1" } };
    const dir = join(this.root, `${node}-${this.#count++}`);
    const trace = join(dir, "trace");
    const config = join(dir, "config");
    const bin = join(config, "modules", "app", "bin");
    mkdirSync(join(config, "modules", "app", "conf"), { recursive: true });
    mkdirSync(bin, { recursive: true });
    const nodes = Object.entries(cluster.nodes).map(([name, addr]) => `<node name="${name}" addr="${addr}"/>`).join("");
    writeFileSync(join(config, "cluster.xml"), `<cluster><lans><lan name="default">${nodes}</lan></lans></cluster>`);
    if (cluster.key !== undefined) writeFileSync(join(config, "cluster.key"), cluster.key, { mode: 0o600 });
    writeFileSync(
      join(config, "modules", "app", "conf", "userconfig.xml"),
      `<safe><service mode="light"><user nicestoptimeout="5s" forcestoptimeout="5s"><var name="TRACE" value="${trace}"/></user>${options.check ?? ""}</service></safe>`,
    );
    for (const script of ["transition", "prestart", "start_both", "stop_both", "poststop"]) this.script({ dir } as NodeSetup, script, `echo "$(basename "$0") $* module=$SAFEMODULE" >> "$TRACE"`);
    const socket = join(dir, "tandem.sock");
    const flags = ["--config", config, "--state", join(dir, "state"), "--log-dir", join(dir, "log"), "--socket", socket, "--node", node];
    if (cluster.peerPort !== undefined) flags.push("--peer-port", String(cluster.peerPort));
    return { dir, socket, trace, flags };
  }

  /** Writes an executable script into the module's bin/. */
  script(node: NodeSetup, name: string, body: string): void {
    const path = join(node.dir, "config", "modules", "app", "bin", name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
  }

  async start(node: NodeSetup): Promise<{ daemon: ChildProcess; output: () => string }> {
    const daemon = spawn(process.execPath, [cli, "daemon", ...node.flags], { stdio: ["ignore", "pipe", "pipe"] });
    this.#daemons.push(daemon);
    let output = "";
    daemon.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    daemon.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await until(() => output.includes('"event":"service.listening"'), 10_000, () => `the daemon did not start listening:\n${output}`);
    return { daemon, output: () => output };
  }

  /** Kills every daemon still running (SIGKILL). */
  killAll(): void {
    for (const daemon of this.#daemons.splice(0)) daemon.kill("SIGKILL");
  }

  remove(): void {
    this.killAll();
    rmSync(this.root, { recursive: true, force: true });
  }
}

export async function until(condition: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(why());
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const traceOf = (node: NodeSetup): string[] => (existsSync(node.trace) ? readFileSync(node.trace, "utf8").trim().split("\n") : []);
export const exited = (daemon: ChildProcess): Promise<number | null> => new Promise((resolve) => daemon.once("exit", (code) => resolve(code)));
