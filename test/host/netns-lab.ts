// Network namespaces for host tests and benchmarks: a "switch" namespace holding a bridge,
// a client namespace and N node namespaces, each joined to the bridge by a veth pair
// (eth0 inside). Addresses are in 198.18.0.0/15, the range the project keeps for lab
// traffic: 198.18.X.0/24 with the client at .10, nodes at .1, .2, ... and the VIP at .100.
//
// Names carry the creating process's pid (`tdmh<pid>x<n>...`), so a run never touches
// another live run's namespaces, and removeStaleLabs() can delete what a crashed run left
// (its pid no longer exists): the processes still running in those namespaces are killed
// by id first, then the namespaces are deleted, and the run's temporary directories
// (named `tdmh<pid>x<n>-...` by farm-lab.ts) removed.

import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nativeAddonPath, nativeBinding } from "../../native/index.ts";

export const labNamePrefix = "tdmh";
const labNamePattern = /^tdmh(\d+)x\d+/;

export function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs `command` inside namespace `ns`. */
export function inNs(ns: string, command: string, ...args: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, command, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Throws, saying what is missing and what to do, when this host cannot run the host
 *  tests: they must fail, not skip, where CI should have what they need. */
export function requireHost(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root (network namespaces, nftables): run it as root, as .ci/run does`);
  try {
    ip("-V");
  } catch {
    throw new Error(`${what} needs the \`ip\` command (iproute2): apt-get install iproute2`);
  }
  if (!existsSync(nativeAddonPath)) throw new Error(`${what} needs the native addon (${nativeAddonPath}): run \`npm ci\`, which builds native/ (needs libnftables-dev, libmnl-dev, g++, make, python3)`);
  try {
    // A context of our own, read-only: does the kernel speak nftables to libnftables?
    const context = new (nativeBinding().NftContext)();
    try {
      context.run("list tables");
    } finally {
      context.close();
    }
  } catch (error) {
    throw new Error(`${what} needs nftables in the kernel (CONFIG_NF_TABLES) and libnftables: ${(error as Error).message}`);
  }
}

export interface Lab {
  readonly prefix: string;
  readonly switchNs: string;
  readonly clientNs: string;
  readonly clientIp: string;
  readonly nodeNs: readonly string[];
  readonly nodeIps: readonly string[];
  readonly vip: string;
  /** 198.18.X: the lab's /24. */
  readonly subnet: string;
}

let labCount = 0;

/** Every namespace name of the host. */
function namespaces(): string[] {
  return ip("netns", "list")
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((name) => name !== "");
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Kills (SIGKILL, by id) every process left in `ns` and deletes it; quiet when it is gone. */
export function removeNamespace(ns: string): void {
  let pids: number[] = [];
  try {
    pids = ip("netns", "pids", ns).split("\n").filter((line) => /^\d+$/.test(line.trim())).map(Number);
  } catch {
    // Gone already.
  }
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }
  try {
    ip("netns", "delete", ns);
  } catch {
    // Never created, or already gone.
  }
}

/** Whether `name` (a namespace, or a temporary directory named after one) belongs to a
 *  run whose process is gone. */
export function isStale(name: string): boolean {
  const match = labNamePattern.exec(name);
  return match !== null && Number(match[1]) !== process.pid && !alive(Number(match[1]));
}

/** Deletes the namespaces of earlier runs that died without cleaning up (their pid is
 *  gone), killing what still runs in them, and their temporary directories. */
export function removeStaleLabs(): string[] {
  const stale = namespaces().filter(isStale);
  for (const ns of stale) removeNamespace(ns);
  for (const entry of readdirSync(tmpdir()).filter(isStale)) {
    // A crashed run may have left file systems mounted below its directory (a test's tmpfs).
    const dir = join(tmpdir(), entry);
    const mounts = readFileSync("/proc/mounts", "utf8").split("\n").map((line) => line.split(" ")[1] ?? "").filter((point) => point === dir || point.startsWith(`${dir}/`));
    for (const point of mounts.reverse()) execFileSync("umount", ["-l", point], { stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
  }
  return stale;
}

export function buildLab(nodeCount: number): Lab {
  const prefix = `${labNamePrefix}${process.pid}x${labCount++}`;
  const subnet = `198.18.${1 + ((process.pid + labCount) % 250)}`;
  const lab: Lab = {
    prefix,
    switchNs: `${prefix}sw`,
    clientNs: `${prefix}c`,
    clientIp: `${subnet}.10`,
    nodeNs: Array.from({ length: nodeCount }, (_, index) => `${prefix}n${index + 1}`),
    nodeIps: Array.from({ length: nodeCount }, (_, index) => `${subnet}.${index + 1}`),
    vip: `${subnet}.100`,
    subnet,
  };
  try {
    ip("netns", "add", lab.switchNs);
  } catch (error) {
    throw new Error(`cannot create a network namespace (\`ip netns add\`): the host tests need them. ${(error as Error).message}`);
  }
  try {
    ip("-n", lab.switchNs, "link", "add", "br0", "type", "bridge");
    ip("-n", lab.switchNs, "link", "set", "br0", "up");
    const hosts = [{ ns: lab.clientNs, address: lab.clientIp }, ...lab.nodeNs.map((ns, index) => ({ ns, address: lab.nodeIps[index]! }))];
    hosts.forEach(({ ns, address }, index) => {
      ip("netns", "add", ns);
      ip("-n", lab.switchNs, "link", "add", `p${index}`, "type", "veth", "peer", "name", "eth0", "netns", ns);
      ip("-n", lab.switchNs, "link", "set", `p${index}`, "master", "br0", "up");
      ip("-n", ns, "address", "add", `${address}/24`, "dev", "eth0");
      ip("-n", ns, "link", "set", "eth0", "up");
      ip("-n", ns, "link", "set", "lo", "up");
    });
  } catch (error) {
    destroyLab(lab);
    throw error;
  }
  return lab;
}

/** Kills whatever still runs in the lab's namespaces and deletes them. Never throws. */
export function destroyLab(lab: Lab): void {
  for (const ns of [lab.clientNs, ...lab.nodeNs, lab.switchNs]) removeNamespace(ns);
}
