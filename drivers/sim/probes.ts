// Simulated checker probes: the world as one host's <tcp>, <ping>, <intf> and <ip>
// checkers see it, answered on the simulator's event queue in virtual time.
//
// Faults it injects: a host that stops answering (tcp and ping time out), a port nobody
// listens on (refused at once), an interface whose link goes down, an address removed
// from the host, and answers slower than the checker's timeout (the latency). It cannot
// inject: one lost echo among several, a connection accepted then reset, an interface
// that is up without carrier (the real driver reads both; the model has one flag), or a
// stuck read of the kernel's interface state.
//
// Remote hosts and local interfaces are independent: pinging one of the host's own
// addresses answers only if that address was also declared a reachable host.

import { assert, unreachable } from "../../core/assert.ts";
import type { Probe, ProbePort, ProbeResult } from "../../core/ports.ts";
import type { EventQueue } from "./event-queue.ts";

/** Bound on the hosts, listening ports and interfaces of one model. */
export const probeWorldEntryCountMax = 10_000;

interface SimInterface {
  up: boolean;
  readonly addrs: Set<string>;
}

export class SimProbePort implements ProbePort {
  readonly #queue: EventQueue;
  readonly #clockMs: () => number;
  /** How long every probe takes to answer; a probe whose answer would come after its
   *  timeout answers "timed out" at the timeout instead. */
  #latencyMs: number;
  readonly #hosts = new Set<string>();
  /** `addr port` of the endpoints that accept connections. */
  readonly #listening = new Set<string>();
  readonly #interfaces = new Map<string, SimInterface>();
  /** Modules running and Ready, as `name` (this node) or `name@addr`. */
  readonly #modules = new Set<string>();

  constructor(queue: EventQueue, clockMs: () => number, latencyMs: number) {
    this.#queue = queue;
    this.#clockMs = clockMs;
    this.#latencyMs = checkLatency(latencyMs);
  }

  // ---- the world (verbs in pairs) ----

  /** hostUp: `addr` answers pings, and connections to it are refused unless a port listens. */
  hostUp(addr: string): void {
    addBounded(this.#hosts, addr);
  }

  /** hostDown: `addr` answers nothing: pings and connections time out. */
  hostDown(addr: string): void {
    this.#hosts.delete(addr);
  }

  /** listen: connections to addr:port are accepted while the host is up. */
  listen(addr: string, port: number): void {
    addBounded(this.#listening, `${addr} ${port}`);
  }

  /** unlisten: connections to addr:port are refused. */
  unlisten(addr: string, port: number): void {
    this.#listening.delete(`${addr} ${port}`);
  }

  /** addAddress: configures `addr` on interface `name`, creating the interface (up) if new. */
  addAddress(name: string, addr: string): void {
    const existing = this.#interfaces.get(name);
    if (existing !== undefined) return void addBounded(existing.addrs, addr);
    assert(this.#interfaces.size < probeWorldEntryCountMax, `more than ${probeWorldEntryCountMax} interfaces`);
    this.#interfaces.set(name, { up: true, addrs: new Set([addr]) });
  }

  /** removeAddress: `addr` is no longer configured on interface `name`. */
  removeAddress(name: string, addr: string): void {
    this.#interface(name).addrs.delete(addr);
  }

  /** linkDown: interface `name` goes down; its addresses stay configured. */
  linkDown(name: string): void {
    this.#interface(name).up = false;
  }

  /** linkUp: interface `name` comes back up. */
  linkUp(name: string): void {
    this.#interface(name).up = true;
  }

  /** moduleUp: module `name` (on the node at addr, or on this node) is running and Ready. */
  moduleUp(name: string, addr: string | null = null): void {
    addBounded(this.#modules, moduleKey(name, addr));
  }

  /** moduleDown: module `name` is stopped, waiting or not Ready. */
  moduleDown(name: string, addr: string | null = null): void {
    this.#modules.delete(moduleKey(name, addr));
  }

  /** slow: probes answer after `latencyMs` from now on (beyond a timeout, they time out). */
  slow(latencyMs: number): void {
    this.#latencyMs = checkLatency(latencyMs);
  }

  // ---- the port ----

  probe(probe: Probe, timeoutMs: number, done: (result: ProbeResult) => void): void {
    assert(Number.isInteger(timeoutMs), `probe timeout ${timeoutMs} is not whole milliseconds`);
    assert(timeoutMs > 0, `probe timeout ${timeoutMs} is not positive`);
    // The world is observed when the probe starts, as a SYN or an echo request leaves then.
    const result = this.#observe(probe);
    const answersInTime = result !== null && this.#latencyMs <= timeoutMs;
    const atMs = this.#clockMs() + (answersInTime ? this.#latencyMs : timeoutMs);
    this.#queue.push(atMs, () => done(answersInTime ? result : { up: false, detail: `timed out after ${timeoutMs} ms` }));
  }

  /** What the probe finds, or null when nothing answers it. */
  #observe(probe: Probe): ProbeResult | null {
    switch (probe.kind) {
      case "tcp":
        if (!this.#hosts.has(probe.addr)) return null;
        return this.#listening.has(`${probe.addr} ${probe.port}`) ? up : down("ECONNREFUSED");
      case "ping":
        return this.#hosts.has(probe.addr) ? up : null;
      case "intf": {
        const holder = this.#holding(probe.localAddr);
        if (holder === undefined) return down(`no interface holds ${probe.localAddr}`);
        return holder[1].up ? up : down(`interface ${holder[0]} is down`);
      }
      case "ip":
        return this.#holding(probe.addr) === undefined ? down(`${probe.addr} is not configured on this host`) : up;
      case "module":
        if (probe.addr !== null && !this.#hosts.has(probe.addr)) return null;
        return this.#modules.has(moduleKey(probe.module, probe.addr)) ? up : down(`module ${probe.module} is not running and Ready`);
      default:
        return unreachable(probe);
    }
  }

  #holding(addr: string): [string, SimInterface] | undefined {
    return [...this.#interfaces].find(([, each]) => each.addrs.has(addr));
  }

  #interface(name: string): SimInterface {
    const found = this.#interfaces.get(name);
    assert(found !== undefined, `unknown interface ${name}`);
    return found;
  }
}

const up: ProbeResult = Object.freeze({ up: true, detail: "" });

function down(detail: string): ProbeResult {
  return { up: false, detail };
}

function addBounded(set: Set<string>, entry: string): void {
  assert(set.size < probeWorldEntryCountMax || set.has(entry), `more than ${probeWorldEntryCountMax} entries in the probe world`);
  set.add(entry);
}

function checkLatency(latencyMs: number): number {
  assert(Number.isFinite(latencyMs), `probe latency ${latencyMs} is not finite`);
  assert(latencyMs >= 0, `probe latency ${latencyMs} is negative`);
  return latencyMs;
}

function moduleKey(name: string, addr: string | null): string {
  return addr === null ? name : `${name}@${addr}`;
}
