// Network namespaces for the host benchmarks: a "switch" namespace holding a bridge, and
// one namespace per host joined to it by a veth pair (`eth0` inside the host). Everything
// is named after one prefix so that two runs never collide, and destroy() removes it all.

import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";

export interface LanHost {
  /** Short name, unique in the LAN: the namespace is `<prefix><name>`. */
  readonly name: string;
  /** IPv4 address with its prefix length, e.g. 198.18.0.1/24. */
  readonly address: string;
}

export interface Lan {
  readonly switchNs: string;
  /** The namespace of each host, by its short name. */
  readonly ns: (name: string) => string;
  /** Kills every process left in the LAN's namespaces and removes them (and so their
   *  interfaces). Idempotent, never throws. */
  destroy(): void;
}

export function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a command inside a namespace and returns its standard output; throws with its
 *  standard error when it fails. */
export function inNs(ns: string, command: string, ...args: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, command, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a command inside a namespace without blocking the event loop. */
export function inNsAsync(ns: string, command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("ip", ["netns", "exec", ns, command, ...args], { encoding: "utf8", timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      else reject(new Error(`${command} ${args.join(" ")} failed in namespace ${ns}: ${error.message.split("\n")[0]} ${stderr.trim()}`));
    });
  });
}

/** Starts a long-running process inside a namespace (`ip netns exec` execs it, so the
 *  child's pid is the program's own). */
export function spawnInNs(ns: string, command: string, args: readonly string[]): ChildProcess {
  return spawn("ip", ["netns", "exec", ns, command, ...args], { stdio: ["pipe", "pipe", "pipe"] });
}

export function writeSysctl(ns: string, path: string, value: string): void {
  inNs(ns, "sh", "-c", `echo '${value}' > /proc/sys/${path}`);
}

export function readSysctl(ns: string, path: string): string {
  return inNs(ns, "cat", `/proc/sys/${path}`).trim();
}

/** Builds the LAN. On failure it removes what it had made and throws. */
export function buildLan(prefix: string, hosts: readonly LanHost[]): Lan {
  const switchNs = `${prefix}sw`;
  const made: string[] = [];
  const lan: Lan = {
    switchNs,
    ns: (name) => `${prefix}${name}`,
    destroy: () => {
      for (const ns of made.splice(0).reverse()) {
        try {
          // Every process still in the namespace was started by this run (its name is
          // unique): an orphan such as an nginx worker would outlive the namespace.
          for (const pid of ip("netns", "pids", ns).split("\n").filter((line) => /^\d+$/.test(line.trim()))) {
            try {
              process.kill(Number(pid), "SIGKILL");
            } catch {
              // Gone meanwhile.
            }
          }
          ip("netns", "delete", ns);
        } catch {
          // Already gone.
        }
      }
    },
  };
  try {
    try {
      ip("netns", "add", switchNs);
    } catch (error) {
      throw new Error(`cannot create a network namespace (\`ip netns add ${switchNs}\`): ${(error as Error).message.trim()}`);
    }
    made.push(switchNs);
    ip("-n", switchNs, "link", "add", "br0", "type", "bridge");
    ip("-n", switchNs, "link", "set", "br0", "up");
    hosts.forEach((host, index) => {
      const ns = lan.ns(host.name);
      ip("netns", "add", ns);
      made.push(ns);
      ip("-n", switchNs, "link", "add", `p${index}`, "type", "veth", "peer", "name", "eth0", "netns", ns);
      ip("-n", switchNs, "link", "set", `p${index}`, "master", "br0", "up");
      ip("-n", ns, "address", "add", host.address, "dev", "eth0");
      ip("-n", ns, "link", "set", "eth0", "up");
      ip("-n", ns, "link", "set", "lo", "up");
    });
  } catch (error) {
    lan.destroy();
    throw error;
  }
  return lan;
}
