// The checkers' probes on a real Linux host: SafeKit's <tcp>, <ping>, <intf> and <ip>.
//
// Every probe answers through `done` exactly once and never synchronously (the runtime must
// not be re-entered while it executes effects), and never throws: a failure of the host
// (no ping binary, an unreadable sysfs file) is a "down" with a detail for the log.

import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { assert, unreachable } from "../../core/assert.ts";
import type { Probe, ProbePort, ProbeResult } from "../../core/ports.ts";

export interface RealProbeOptions {
  /** The ping program (iputils-ping): a name on PATH or an absolute path. */
  readonly pingPath?: string;
  /** Where the kernel describes network interfaces. */
  readonly sysClassNet?: string;
  /** Whether a module of this node is running and Ready; null when there is no such
   *  module. The node service, which runs every module, answers it. */
  readonly moduleReady?: (module: string) => boolean | null;
}

const up: ProbeResult = Object.freeze({ up: true, detail: "" });
const pingMissing = "ping is not installed (apt install iputils-ping)";
/** IFF_UP in /sys/class/net/<if>/flags: the administrator brought the interface up. */
const interfaceFlagUp = 0x1;

export class RealProbePort implements ProbePort {
  readonly #pingPath: string;
  readonly #sysClassNet: string;
  readonly #moduleReady: (module: string) => boolean | null;

  constructor(options: RealProbeOptions = {}) {
    this.#pingPath = options.pingPath ?? "ping";
    this.#sysClassNet = options.sysClassNet ?? "/sys/class/net";
    this.#moduleReady = options.moduleReady ?? (() => null);
  }

  probe(probe: Probe, timeoutMs: number, done: (result: ProbeResult) => void): void {
    assert(Number.isInteger(timeoutMs), `probe timeout ${timeoutMs} is not whole milliseconds`);
    assert(timeoutMs > 0, `probe timeout ${timeoutMs} is not positive`);
    const answer = once(done);
    switch (probe.kind) {
      case "tcp":
        return probeTcp(probe.addr, probe.port, timeoutMs, answer);
      case "ping":
        return this.#probePing(probe.addr, timeoutMs, answer);
      case "intf":
        this.#probeInterface(probe.localAddr).then(answer, (error: unknown) => answer(down(`cannot read the interface state: ${messageOf(error)}`)));
        return;
      case "ip": {
        const holder = interfaceHolding(probe.addr);
        queueMicrotask(() => answer(holder === null ? down(`${probe.addr} is not configured on this host`) : up));
        return;
      }
      case "module": {
        const result = this.#probeModule(probe.module, probe.addr, probe.port);
        queueMicrotask(() => answer(result));
        return;
      }
      default:
        return unreachable(probe);
    }
  }

  #probeModule(module: string, addr: string | null, port: number | null): ProbeResult {
    if (addr !== null && interfaceHolding(addr) === null) {
      // Asking another node's service needs its API, which arrives with the node service.
      return down(`module ${module} on ${addr}:${port ?? "?"}: asking another node is not supported yet`);
    }
    const ready = this.#moduleReady(module);
    if (ready === null) return down(`no module ${module} on this node`);
    return ready ? up : down(`module ${module} is not running and Ready`);
  }

  #probePing(addr: string, timeoutMs: number, answer: (result: ProbeResult) => void): void {
    // ping's own -W takes whole seconds; the kill at timeoutMs is what honours the timeout.
    const waitSeconds = String(Math.max(1, Math.ceil(timeoutMs / 1_000)));
    // "--": an address is never read as an option.
    execFile(this.#pingPath, ["-n", "-c", "1", "-W", waitSeconds, "--", addr], { timeout: timeoutMs, killSignal: "SIGKILL" }, (error, _stdout, stderr) => {
      if (error === null) answer(up);
      else if (error.code === "ENOENT") answer(down(pingMissing));
      else if (error.killed) answer(down(timedOut(timeoutMs)));
      else if (error.code === 1) answer(down(`no reply from ${addr}`));
      else answer(down(firstLine(stderr) || error.message));
    });
  }

  async #probeInterface(localAddr: string): Promise<ProbeResult> {
    const name = interfaceHolding(localAddr);
    if (name === null) return down(`no interface holds ${localAddr}`);
    const directory = `${this.#sysClassNet}/${name}`;
    const operstate = (await readFile(`${directory}/operstate`, "utf8")).trim();
    // Drivers that do not track an operational state (lo, tun, dummy) say "unknown"; for
    // them the administrative IFF_UP flag is all there is.
    const adminUp = operstate === "unknown" && (Number.parseInt(await readFile(`${directory}/flags`, "utf8"), 16) & interfaceFlagUp) !== 0;
    if (operstate !== "up" && !adminUp) return down(`interface ${name} is ${operstate}`);
    const carrier = await readFile(`${directory}/carrier`, "utf8").catch(() => null);
    if (carrier !== null && carrier.trim() === "0") return down(`interface ${name} has no carrier`);
    return up;
  }
}

function probeTcp(addr: string, port: number, timeoutMs: number, answer: (result: ProbeResult) => void): void {
  // net.connect throws on a bad port; the configuration reader admits only 1..65535.
  assert(Number.isInteger(port) && port >= 1 && port <= 65_535, `tcp probe port ${port} out of range`);
  const socket = connect({ host: addr, port, timeout: timeoutMs });
  socket.once("connect", () => {
    socket.destroy();
    answer(up);
  });
  socket.once("timeout", () => {
    socket.destroy();
    answer(down(timedOut(timeoutMs)));
  });
  socket.once("error", (error: NodeJS.ErrnoException) => {
    socket.destroy();
    answer(down(error.code ?? error.message));
  });
}

/** The name of the interface that holds `addr`, or null. */
function interfaceHolding(addr: string): string | null {
  const wanted = addr.toLowerCase();
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (addresses?.some((each) => each.address.toLowerCase() === wanted)) return name;
  }
  return null;
}

/** Wraps `done` so that only its first call gets through: a socket can report a timeout
 *  and then an error, a child its exit and then a kill. */
function once(done: (result: ProbeResult) => void): (result: ProbeResult) => void {
  let called = false;
  return (result) => {
    if (called) return;
    called = true;
    done(result);
  };
}

function down(detail: string): ProbeResult {
  return { up: false, detail };
}

function timedOut(timeoutMs: number): string {
  return `timed out after ${timeoutMs} ms`;
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.trim();
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
