// A mirror module on a real node: the mirror core (core/mirror/mirror.ts) over the FUSE
// replicator's volume, the real disk port, authenticated UDP heartbeats and a TCP stream
// to the peer, the module's scripts and split-brain probes, and its VIP on the real
// interface. The node service owns one per mirror module; the core decides roles,
// generations and resyncs, this file only wires.
//
// The data path: while the secondary is attached and up to date, writes and fsyncs take
// the native lane (native/src/fuse-lane.h, on TCP port <heart port> + 1) without entering
// JavaScript; everything else is a step of the core, applied by the real disk port and
// shipped on the stream as JSON (docs/replicator.md). TANDEM_MIRROR_LANE=off turns the
// lane off (every operation through the core, as before it existed).

import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { networkInterfaces } from "node:os";
import { assert } from "../core/assert.ts";
import { formatProblem } from "../core/config/problems.ts";
import { toMirrorConfig } from "../core/config/to-mirror.ts";
import type { ResourceState } from "../core/config/failover-rules.ts";
import type { ClusterConfig, ModuleConfig } from "../core/config/module-config.ts";
import { hashString32 } from "../core/hash.ts";
import { excluderOf, type Exclusion } from "../core/mirror/exclude.ts";
import type { MirrorReadiness, MirrorRole } from "../core/mirror/messages.ts";
import type { Gen } from "../core/mirror/meta.ts";
import { initMirror, roleOf, type MirrorCommand, type MirrorStats } from "../core/mirror/mirror.ts";
import { composeDisks, opInVolume } from "../core/mirror/volumes.ts";
import type { ProbePort, ProcessPort } from "../core/ports.ts";
import type { LanePort } from "../core/mirror/lane.ts";
import type { LogEntry, NodeId } from "../core/types.ts";
import { RealClockPort } from "../drivers/real/clock.ts";
import { datagramRingsOf, RealDatagramPort } from "../drivers/real/datagrams.ts";
import { RealDisk } from "../drivers/real/disk.ts";
import { isResourceName, mirrorBeatCodec, mirrorMessageCodec, mirrorMetaCodec, resourceCountMax } from "../drivers/real/mirror-codec.ts";
import { MirrorVolume, volumeDirState, type VolumeMode } from "../drivers/real/mirror-volume.ts";
import { CompositeLane, RealLane } from "../drivers/real/lane.ts";
import { fuseBinding, type FuseLane } from "../native/fuse.ts";
import { RealStreamPort, streamTopologyOf } from "../drivers/real/streams.ts";
import { RealVip } from "../drivers/real/vip.ts";
import { envelopeSizeMaxLimit, type WireKey } from "../drivers/real/wire.ts";
import { createMirrorRuntime, type MirrorRuntime } from "../runtime/mirror-runtime.ts";
import { startMirrorCheckers, type MirrorCheckers } from "./mirror-checkers.ts";

export interface MirrorView {
  readonly role: MirrorRole;
  readonly readiness: MirrorReadiness;
  readonly gen: Gen | null;
  readonly peer: NodeId;
  readonly peerRole: MirrorRole;
  readonly peerConnected: boolean;
  /** Whether this node's tree is a whole copy (false during a resync into it, or outdated). */
  readonly consistent: boolean;
  readonly dir: string;
  readonly volume: VolumeMode | null;
  readonly stats: Readonly<MirrorStats>;
  /** What the replicator intercepted and what waits for the core now (since the mount). */
  readonly intercepted: number;
  readonly waiting: number;
  /** Changes of paths left out of replication that the mount applied itself (since the mount). */
  readonly excludedLocal: number;
  /** Writes and fsyncs the lane completed here as primary, and applied here as secondary;
   *  of those completed, writes made durable on both before completing and fsyncs that had
   *  nothing left to wait for (docs/replicator.md, "Commits"). */
  readonly lane: { readonly on: boolean; readonly alone: boolean; readonly completed: number; readonly applied: number; readonly durableWrites: number; readonly sparedFsyncs: number };
  /** Why the module is not Ready (the core's last reason); empty when it is. */
  readonly why: string;
  /** The checkers' resources watched now (`tcp.pg`, `custom.x`) and their states. */
  readonly resources: Readonly<Record<string, ResourceState>>;
  /** The resync this primary is sending now, or null: paths still planned (a large file
   *  counts once however many chunks it has left), bytes of blocks sent, time since it began. */
  readonly resync: { readonly full: boolean; readonly pathsLeft: number; readonly sentBytes: number; readonly elapsedMs: number } | null;
}

export interface MirrorParts {
  readonly runtime: MirrorRuntime;
  command(command: MirrorCommand, fullsync?: boolean): void;
  /** `tandem set -r custom.X -v up|down`: a custom checker's program reporting. */
  setResource(resource: string, state: "up" | "down"): void;
  view(): MirrorView;
  /** Unmounts the volume, removes the VIP and closes the sockets (the module is STOP). */
  close(): Promise<void>;
}

export interface RealMirrorOptions {
  readonly module: ModuleConfig;
  readonly cluster: ClusterConfig;
  readonly node: NodeId;
  readonly key: WireKey;
  readonly incarnation: number;
  /** The module's state directory; its metadata and preserved copies go under `mirror/`. */
  readonly stateDir: string;
  readonly scriptEnv: Readonly<Record<string, string>>;
  readonly processes: ProcessPort;
  readonly probes: ProbePort;
  readonly log: (entry: LogEntry) => void;
  /** Called after every step of the core (the service's waiters). */
  readonly observe?: () => void;
}

/** Without `<heart port>`, every node derives the same port from the module's name (UDP
 *  for heartbeats, TCP for the replication stream). */
export function defaultMirrorPort(module: string): number {
  return 10_000 + (hashString32(`tandem mirror port ${module}`) % 1_000);
}

/** The replication stream sends a resync chunk (1 MiB, base64) or a 1 MiB write per frame. */
const mirrorFrameSizeMax = envelopeSizeMaxLimit;
const mirrorSendBufferSizeMax = 4 * envelopeSizeMaxLimit;

/** What one replicated directory leaves out of replication, its paths relative to it (the
 *  volume `name` of a module with several, or null): the `<notreplicated path>` rules as
 *  prefixes the mount tests itself, and the core's whole test; undefined without rules. */
function excludedIn(rules: readonly Exclusion[] | undefined, name: string | null): { readonly prefixes: readonly string[]; readonly excludes: (path: string) => boolean } | undefined {
  if (rules === undefined) return undefined;
  const own = rules.filter((rule) => rule.within === (name ?? undefined));
  // Nothing of this directory's: no test on each of its operations.
  if (own.length === 0) return undefined;
  const excludes = excluderOf(rules);
  return {
    prefixes: own.flatMap((rule) => (rule.path !== null && !rule.inverted ? [rule.path] : [])),
    excludes: name === null ? excludes : (path) => excludes(path === "" ? name : `${name}/${path}`),
  };
}

export async function createRealMirror(options: RealMirrorOptions): Promise<MirrorParts> {
  const { module, cluster, node } = options;
  const bridged = toMirrorConfig(module, cluster, node, { scriptEnv: options.scriptEnv });
  if (bridged.config === null) throw new Error(bridged.problems.map(formatProblem).join("; "));
  const dirs = replicatedDirs(module);
  // With several directories the module's tree is a virtual root over them
  // (core/mirror/volumes.ts), each with a lane of its own (on ports <heart port> + 1, + 2…).
  const several = dirs.length > 1;
  const laneWanted = process.env["TANDEM_MIRROR_LANE"] !== "off";
  const config = { ...bridged.config, lane: laneWanted };
  assert((config.layout?.length ?? 0) === (several ? dirs.length : 0), "toMirrorConfig names every directory of a module with several");
  const log = (entry: LogEntry) => options.log({ ...entry, fields: { module: module.name, ...entry.fields } });
  const rings = datagramRingsOf(cluster, node).filter((ring) => config.rings.includes(ring.ring));
  if (rings.length === 0) throw new Error(`node ${node} is on none of the module's heartbeat lans (${config.rings.join(", ")})`);
  const mirrorState = join(options.stateDir, "mirror");
  mkdirSync(join(mirrorState, "preserved"), { recursive: true, mode: 0o700 });

  let runtime: MirrorRuntime | null = null;
  const nativeLanes: FuseLane[] = [];
  let lastId = 0;
  const volumes = dirs.map((dir, index) => {
    const name = several ? config.layout![index]! : "";
    const excluded = excludedIn(config.notReplicated, several ? name : null);
    const volume = new MirrorVolume({
      dir,
      intercept: (id, op) => runtime!.deliver({ kind: "intercepted", id, op: several ? opInVolume(name, op) : op }),
      ...(excluded === undefined ? {} : { excluded }),
      log: (event, fields) => log({ level: "info", event, fields }),
      lane: () => nativeLanes[index] ?? null,
      nextId: () => ++lastId,
    });
    return { dir, name, volume, excluded };
  });
  const closers: (() => Promise<void> | void)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close();
  };
  try {
    for (const { volume } of volumes) {
      volume.open();
      closers.push(() => volume.close());
    }
    // One port per directory; the metadata is the first one's (the others never touch it).
    const disks = volumes.map(({ volume, excluded }, index) => {
      const disk = new RealDisk({
        ...(excluded === undefined ? {} : { excludes: excluded.excludes }),
        root: volume.root,
        metaFile: join(mirrorState, "meta.json"),
        preserveDir: join(mirrorState, "preserved"),
        codec: mirrorMetaCodec,
        problem: (what, error) => log({ level: "error", event: "mirror.disk_error", fields: { what, error: String(error) } }),
        // What this directory's lane wrote: a checkpoint's (or a promotion's) flush covers it.
        writtenElsewhere: () => nativeLanes[index]?.takeWritten() ?? [],
      });
      closers.push(() => disk.close());
      return disk;
    });
    await disks[0]!.checkMeta();
    const disk = several ? composeDisks(disks.map((each, index) => ({ name: volumes[index]!.name, disk: each })), setImmediate) : disks[0]!;
    const clock = new RealClockPort();
    closers.push(() => clock.cancelAll());
    const port = module.heart?.port ?? defaultMirrorPort(module.name);
    const channel = `mirror:${module.name}`;
    const topology = streamTopologyOf(cluster, node);
    let lane: LanePort | null = null;
    if (laneWanted) {
      const peerAddr = topology.peers.find((peer) => peer.id === config.peer)?.routes.find((route) => route.ring === rings[0]!.ring)?.addr;
      if (peerAddr === undefined) throw new Error(`node ${config.peer} has no address on heartbeat lan ${rings[0]!.ring}, where the lane connects`);
      const lanes = volumes.map(({ volume: each, name }, index) => {
        // Each directory's lane its own key: a connection to another's port fails its handshake.
        const made = new (fuseBinding().FuseLane)(each.handle, options.key.mac(Buffer.from(`tandem mirror lane v1 ${module.name}${several ? ` ${name}` : ""}`)), config.blockSize, config.hotExtentBlocks * config.blockSize);
        closers.push(() => made.close());
        made.listen(rings[0]!.localAddr, port + 1 + index);
        nativeLanes.push(made);
        return new RealLane({ native: made, peer: { host: peerAddr, port: port + 1 + index }, adopt: (nativeId) => each.adopt(nativeId), ...(several ? { volume: name } : {}) });
      });
      lane = several ? new CompositeLane(lanes.map((each, index) => ({ volume: volumes[index]!.name, lane: each }))) : lanes[0]!;
    }
    const datagrams = new RealDatagramPort({ self: node, incarnation: options.incarnation, key: options.key, port, rings, codec: mirrorBeatCodec(module.name), channel, clock, log });
    await datagrams.open();
    closers.push(() => datagrams.close());
    const stream = new RealStreamPort({
      self: node,
      incarnation: options.incarnation,
      key: options.key,
      port,
      listen: topology.listen.filter((each) => config.rings.includes(each.ring)),
      peers: topology.peers.filter((peer) => peer.id === config.peer).map((peer) => ({ ...peer, routes: peer.routes.filter((route) => config.rings.includes(route.ring)) })),
      codec: mirrorMessageCodec(module.name),
      channel,
      clock,
      log,
      frameSizeMax: mirrorFrameSizeMax,
      sendBufferSizeMax: mirrorSendBufferSizeMax,
    });
    await stream.open();
    closers.push(() => stream.close());
    const vip = createVip(module, rings[0]!.localAddr, (line) => log({ level: "info", event: "mirror.vip", fields: { detail: line } }));
    closers.push(() => vip?.close());
    // The checkers follow each step of the core (set once the runtime exists).
    let checkers: MirrorCheckers | null = null;
    runtime = createMirrorRuntime(
      initMirror(config, options.incarnation, bootId()),
      { clock, datagrams, stream, disk, processes: options.processes, probes: options.probes, log: { write: log }, ...(lane === null ? {} : { lane }) },
      {
        // Ids are unique across the volumes: the one that has it answers.
        complete: (id, result) => {
          for (const each of volumes) each.volume.complete(id, result);
        },
        vip: (up) => vip?.set(up),
        accepting: (on) => {
          for (const each of volumes) setVolumeMode(each.volume, on ? "intercept" : "readonly", log, () => queueMicrotask(() => runtime!.deliver({ kind: "command", command: "stop" })));
        },
        role: () => {},
      },
      () => {
        checkers?.update();
        options.observe?.();
      },
    );
    const running = runtime;
    // The resources told to the peer with each beat: the latest, after the step under way
    // (the checkers follow each step from inside it), those a beat can carry.
    let resourcesDue: readonly (readonly [string, "init" | "up" | "down"])[] | null = null;
    let resourcesClosed = false;
    let resourcesWarned = false;
    const tellResources = (entries: readonly (readonly [string, "init" | "up" | "down"])[]) => {
      const sent = entries.filter(([name]) => isResourceName(name)).slice(0, resourceCountMax);
      if (sent.length < entries.length && !resourcesWarned) {
        resourcesWarned = true;
        log({ level: "warn", event: "mirror.resources_not_told", fields: { resources: entries.length - sent.length, why: `the peer hears at most ${resourceCountMax} resources, named with letters, digits and _.:- (up to 128)` } });
      }
      const first = resourcesDue === null;
      resourcesDue = sent;
      if (!first) return;
      queueMicrotask(() => {
        const due = resourcesDue;
        resourcesDue = null;
        if (due !== null && !resourcesClosed) running.deliver({ kind: "resources", resources: due });
      });
    };
    const watching = startMirrorCheckers(module, options.probes, options.processes, { env: config.scriptEnv, handlerTimeoutMs: config.scriptTimeoutMs }, {
      state: () => roleOf(running.state),
      appFailed: (why, action) => running.deliver({ kind: "app-failed", why, action }),
      stop: () => running.deliver({ kind: "command", command: "stop" }),
      swap: () => running.deliver({ kind: "command", command: "swap" }),
      hold: (why) => running.deliver({ kind: "hold", why }),
      resources: tellResources,
      remote: () => new Map(running.state.peerResources ?? []),
      log,
    });
    checkers = watching;
    closers.push(() => watching.close());
    // Closed before the checkers (closers run last first): their last change is not told.
    closers.push(() => {
      resourcesClosed = true;
    });
    return {
      runtime: running,
      command: (command, fullsync) => running.deliver({ kind: "command", command, ...(fullsync === undefined ? {} : { fullsync }) }),
      setResource: (resource, state) => watching.setResource(resource, state),
      view: () => {
        const state = running.state;
        const { role, readiness } = roleOf(state);
        const fuse = volumes.map((each) => each.volume.stats());
        return {
          role,
          readiness,
          gen: state.meta.gen,
          peer: config.peer,
          peerRole: state.peerRole,
          peerConnected: stream.stats().connected[config.peer] === true,
          consistent: state.meta.consistent,
          dir: dirs.join(", "),
          volume: volumes[0]!.volume.mode,
          stats: { ...state.stats },
          intercepted: fuse.reduce((sum, each) => sum + (each?.intercepted ?? 0), 0),
          waiting: fuse.reduce((sum, each) => sum + (each?.waiting ?? 0), 0),
          excludedLocal: fuse.reduce((sum, each) => sum + (each?.excludedOps ?? 0), 0),
          lane: {
            on: state.lane?.state === "on",
            // The lane of a node alone: applied here only, marked for the peer's return.
            alone: state.lane?.state === "on" && state.lane.session === null,
            completed: nativeLanes.reduce((sum, each) => sum + each.stats().completed, 0),
            applied: nativeLanes.reduce((sum, each) => sum + each.stats().applied, 0),
            durableWrites: nativeLanes.reduce((sum, each) => sum + each.stats().durableWrites, 0),
            sparedFsyncs: nativeLanes.reduce((sum, each) => sum + each.stats().sparedFsyncs, 0),
          },
          why: readiness === "Ready" ? "" : state.why,
          resources: watching.resources(),
          resync: state.link === null || state.link.inSync ? null : { full: state.link.full, pathsLeft: state.link.plan.size, sentBytes: state.stats.resyncBlockBytes - state.link.startBlockBytes, elapsedMs: Math.max(0, clock.nowMs() - state.link.startedMs) },
        };
      },
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** The directories a mirror module replicates, each checked. */
function replicatedDirs(module: ModuleConfig): string[] {
  const dirs = (module.rfs?.replicated ?? []).map((each) => each.dir);
  if (dirs.length === 0) throw new Error(`module ${module.name} has no <replicated dir> in its <rfs>`);
  for (const dir of dirs) {
    // A dead mount is what a crashed service leaves: the volume detaches it.
    if (volumeDirState(dir) === "unusable") throw new Error(`the replicated directory ${dir} of module ${module.name} does not exist or is not a directory: create it on both nodes (empty on one of them)`);
  }
  return dirs;
}

/** Switches the volume; if the mount fails, the directory is left with no mount at all
 *  (nothing intercepts or refuses writes): it tries read-only, and the module stops, so
 *  that no application is started over an unprotected directory. */
function setVolumeMode(volume: MirrorVolume, mode: VolumeMode, log: (entry: LogEntry) => void, stopModule: () => void): void {
  try {
    volume.setMode(mode);
    return;
  } catch (error) {
    log({ level: "error", event: "mirror.volume_failed", fields: { mode, error: error instanceof Error ? error.message : String(error), then: "the module stops" } });
  }
  if (mode === "intercept") {
    try {
      volume.setMode("readonly");
    } catch (error) {
      log({ level: "error", event: "mirror.volume_failed", fields: { mode: "readonly", error: error instanceof Error ? error.message : String(error) } });
    }
  }
  stopModule();
}

/** The module's VIP on the interface that holds this node's address, or null without one. */
function createVip(module: ModuleConfig, localAddr: string, log: (line: string) => void): RealVip | null {
  const addrs = (module.vip?.interfaces ?? []).flatMap((each) => each.realInterface?.virtualAddrs.map((addr) => addr.addr) ?? []);
  if (addrs.length === 0) return null;
  const interfaceName = Object.entries(networkInterfaces()).find(([, addresses]) => (addresses ?? []).some((address) => address.address === localAddr))?.[0];
  if (interfaceName === undefined) throw new Error(`no interface of this host holds ${localAddr}, this node's address in cluster.xml`);
  return new RealVip(interfaceName, addrs, log);
}

/** This boot of the host: a different one at the next start means the page cache is gone. */
function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}
