// The real ProbePort (drivers/real/probes.ts) against the ProbePort contract on this
// host, then what the contract cannot reach portably: a missing or hanging ping, and the
// interface states read from sysfs (through a fixture directory).
//
// The endpoint that never answers is a listener whose accept queue is full: its thread
// never accepts, so the kernel drops further SYNs and a connect hangs until the probe's
// timeout. A non-routable address would not do: a sandbox's transparent proxy or an ICMP
// unreachable can answer it at once.

import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Probe } from "../../core/ports.ts";
import { RealProbePort, type RealProbeOptions } from "../../drivers/real/probes.ts";
import { probeContract, runProbe, type Endpoint, type ProbeClock, type ProbeHarness } from "./probe-contract.ts";

const localhost = "127.0.0.1";
/** Filler connections tried before the blackhole's accept queue must be full. */
const fillerCountMax = 16;
/** A loopback handshake that takes longer than this was dropped. */
const fillerConnectMs = 250;

async function listeningServer(): Promise<{ endpoint: Endpoint; close: () => Promise<void> }> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen({ host: localhost, port: 0 }, resolve));
  const { port } = server.address() as { port: number };
  return { endpoint: { addr: localhost, port }, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A port nothing listens on: one the kernel just handed out and that was closed again. */
async function refusedEndpoint(): Promise<Endpoint> {
  const server = await listeningServer();
  await server.close();
  return server.endpoint;
}

/** A listener whose thread is blocked, so it never accepts, with its accept queue filled. */
async function blackholeEndpoint(): Promise<{ endpoint: Endpoint; close: () => Promise<void> }> {
  const release = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { parentPort, workerData } = require("node:worker_threads");
     const server = require("node:net").createServer();
     server.listen({ host: "${localhost}", port: 0, backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(workerData, 0, 0);
     });`,
    { eval: true, workerData: release },
  );
  const port = await new Promise<number>((resolve, reject) => worker.once("message", resolve).once("error", reject));
  const fillers: Socket[] = [];
  const close = async () => {
    for (const filler of fillers) filler.destroy();
    Atomics.store(release, 0, 1);
    Atomics.notify(release, 0);
    await worker.terminate();
  };
  while (await fillerConnects(port, fillers)) {
    if (fillers.length >= fillerCountMax) {
      await close();
      throw new Error(`the blackhole listener accepted ${fillerCountMax} connections without its thread accepting any`);
    }
  }
  return { endpoint: { addr: localhost, port }, close };
}

/** Opens one more filler connection; whether its handshake completed. */
function fillerConnects(port: number, fillers: Socket[]): Promise<boolean> {
  const socket = connect({ host: localhost, port });
  socket.on("error", () => {});
  fillers.push(socket);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), fillerConnectMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Real time: waits by polling every few milliseconds. */
const realClock: ProbeClock = {
  nowMs: () => performance.now(),
  waitUntil: async (condition, deadlineMs) => {
    while (!condition() && performance.now() < deadlineMs) await new Promise((resolve) => setTimeout(resolve, Math.min(5, deadlineMs - performance.now())));
  },
};

async function realHarness(): Promise<ProbeHarness> {
  const listening = await listeningServer();
  const blackhole = await blackholeEndpoint();
  return {
    ...realClock,
    // The node service answers for its modules; here web runs and Ready, db is stopped.
    port: new RealProbePort({ moduleReady: (module) => (module === "web" ? true : module === "db" ? false : null) }),
    readyModule: "web",
    stoppedModule: "db",
    listening: listening.endpoint,
    refused: await refusedEndpoint(),
    blackhole: blackhole.endpoint,
    close: async () => {
      await listening.close();
      await blackhole.close();
    },
  };
}

probeContract("real", realHarness);

describe("RealProbePort beyond the contract", () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(tmpdir(), "tandem-probes-"));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  /** The one answer of `probe` from a driver with `options`. */
  async function answer(options: RealProbeOptions, probe: Probe, timeoutMs = 2_000) {
    const outcome = await runProbe(new RealProbePort(options), realClock, probe, timeoutMs);
    expect(outcome.results).toHaveLength(1);
    return { ...outcome.results[0]!, elapsedMs: outcome.elapsedMs! };
  }

  async function script(name: string, body: string): Promise<string> {
    const file = path.join(directory, name);
    await writeFile(file, `#!/bin/sh\n${body}\n`);
    await chmod(file, 0o755);
    return file;
  }

  it("ping: a missing ping binary is down with how to install it", async () => {
    const result = await answer({ pingPath: path.join(directory, "no-such-ping") }, { kind: "ping", addr: localhost });
    expect(result).toMatchObject({ up: false, detail: "ping is not installed (apt install iputils-ping)" });
  });

  it("ping: no reply is down", async () => {
    const result = await answer({ pingPath: await script("ping-no-reply", "exit 1") }, { kind: "ping", addr: "192.0.2.1" });
    expect(result).toMatchObject({ up: false, detail: "no reply from 192.0.2.1" });
  });

  it("ping: a ping still running at the timeout is killed and down", async () => {
    const result = await answer({ pingPath: await script("ping-hangs", "exec sleep 30") }, { kind: "ping", addr: localhost }, 300);
    expect(result).toMatchObject({ up: false, detail: "timed out after 300 ms" });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(299);
  });

  it.each<[string, Record<string, string>, string]>([
    ["operstate down", { operstate: "down", flags: "0x1003", carrier: "0" }, "interface lo is down"],
    ["up without carrier", { operstate: "up", flags: "0x1003", carrier: "0" }, "interface lo has no carrier"],
    ["unknown and administratively down", { operstate: "unknown", flags: "0x8" }, "interface lo is unknown"],
  ])("intf: %s is down", async (_, files, detail) => {
    // The driver finds lo through the host's own interfaces, then reads this fixture.
    const sysClassNet = await mkdtemp(path.join(directory, "net-"));
    await mkdir(path.join(sysClassNet, "lo"));
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(sysClassNet, "lo", name), `${text}\n`);
    expect(await answer({ sysClassNet }, { kind: "intf", localAddr: localhost })).toMatchObject({ up: false, detail });
  });
});
