// A mirror module's configuration (userconfig.xml read into a ModuleConfig, with the
// cluster.xml it runs on) to the mirror core's MirrorConfig on one of its two nodes.
// A pure module: it performs no I/O.
//
// Decisions:
// - Nodes: the module runs on the nodes of its heartbeat lans in cluster.xml, which must be
//   exactly two (an error naming the lans otherwise); `self` is the node this config is for
//   (an error when it is not one of them) and `peer` the other. Rings are the <heartbeat>
//   names, or every lan of cluster.xml when <heart> lists none.
// - Timings: a file that writes neither pulse nor timeout (on <heart> or any <heartbeat>)
//   gets tandem's defaults, a beat every 50 ms and the peer lost after 250 ms of silence
//   (detection in 250–300 ms). One that writes either keeps SafeKit's meaning, the
//   unwritten one taking SafeKit's default (700 ms, 30 s). The core runs one pulse and one
//   timeout on every ring; heartbeats that set their own get the fastest pulse and the
//   longest timeout, with a warning: the peer is then never declared lost sooner than
//   SafeKit would declare it (each ring silent past its own timeout), only possibly later.
// - joinMs, how long a starting node listens for its peer before it decides alone, is two
//   timeouts and at least 600 ms: a live peer beats every pulse, so two timeouts hear it
//   despite lost beats, and the floor leaves a peer that is starting at the same moment
//   (loading its metadata, running prestart) time to answer with tandem's fast timings.
// - witnessTimeoutMs is the heartbeat timeout, at least 250 ms and at most 1 s. A witness
//   answers a ping in well under a millisecond on a LAN, so the bound matters only when it
//   does not answer; a primary cut off from its peer and the witness then holds its writes
//   and keeps its VIP that long before it steps down, so it stays near the detection time.
// - ack: async="second" (SafeKit's default) is "received", the secondary acknowledging on
//   receipt; async="none" is "applied", acknowledged once applied on both. Either way an
//   fsync completes only once durable on both (docs/configuration.md says what each means
//   for durability).
// - Witnesses are the addresses of the <splitbrain> checker. The core tests a witness by
//   ping only: a <splitbrain exec="program"> is an error (ignoring it would leave the
//   module without the split-brain protection its file asks for). The core pings only the
//   first witness; more than one is a warning.
// - blockSize and splitBrain come from the tandem extensions <rfs blocksize splitbrain>,
//   resyncWorkers from nbrei; checkpointMs (500), retryMs (1000) and resyncChunkBytes (1 MiB)
//   are constants.
// - Scripts run when the module has a <user> element, with SAFEMODULE, the <var> values and
//   the caller's variables (in that order, later ones winning), and the nice-stop timeout
//   (300 s without <user>).
// - notReplicated and toCheck: the replicated directory's <notreplicated> and <tocheck>
//   (checked at each start of the module on this node); with several directories, each
//   directory's own, below its name in the module's tree (core/mirror/volumes.ts).
// - The replicated directories, locktimeout, sendtimeout, reiallowedbw, the flow network,
//   the VIP and the heartbeat port are not part of MirrorConfig. syncdelta is not acted on:
//   a stale node never becomes primary without an operator (a warning when written).

import { assert } from "../assert.ts";
import type { MirrorConfig } from "../mirror/mirror.ts";
import { inVolume, volumeNameOf } from "../mirror/volumes.ts";
import type { Checker, ClusterConfig, HeartSection, ModuleConfig, ReplicatedDir } from "./module-config.ts";
import { hasErrors, type ConfigProblem, type Severity } from "./problems.ts";

export interface ToMirrorResult {
  /** Null when there is an error; problems say why. */
  readonly config: MirrorConfig | null;
  readonly problems: readonly ConfigProblem[];
}

export interface ToMirrorOptions {
  /** Added to every script's environment, after SAFEMODULE and the module's <var> values. */
  readonly scriptEnv?: Readonly<Record<string, string>>;
  /** The userconfig.xml named in problems; by default modules/NAME/conf/userconfig.xml. */
  readonly file?: string;
}

export interface MirrorTimings {
  readonly pulseMs: number;
  readonly timeoutMs: number;
  readonly joinMs: number;
  readonly witnessTimeoutMs: number;
}

/** tandem's own heartbeat, for a file that writes neither pulse nor timeout. */
export const mirrorPulseMsDefault = 50;
export const mirrorTimeoutMsDefault = 250;
export const joinMsMin = 600;
export const witnessTimeoutMsMin = 250;
export const witnessTimeoutMsMax = 1_000;
/** How often an attached primary clears the dirty marks of what is durable on both. */
export const mirrorCheckpointMs = 500;
/** A resync sends 1 MiB of a file per message: well inside a stream frame (16 MiB at
 *  most) once encoded, and small enough not to hold up the writes behind it. */
export const mirrorResyncChunkBytes = 1024 * 1024;
/** The activity log's extent (docs/mirror.md): a metadata write per 64 KiB newly written
 *  at most, and 64 KiB resent per extent a crashed primary had hot. */
export const mirrorHotExtentBytes = 64 * 1024;
/** How often a secondary whose disk failed asks to be attached again. */
export const mirrorRetryMs = 1_000;
/** SafeKit's nicestoptimeout, for a module without <user> (which runs no scripts). */
export const scriptTimeoutMsDefault = 300_000;

const servicePath = "safe/service";
const heartPath = "safe/service/heart";
const heartbeatPath = "safe/service/heart/heartbeat";
const splitbrainPath = "safe/service/check/splitbrain";

type Report = (severity: Severity, code: string, path: string, message: string) => void;

/** The `<notreplicated>` and `<tocheck>` of the replicated directories, as paths of the
 *  module's tree: relative to the one directory, or below each directory's volume name
 *  (and then the layout: those names). */
function rulesOf(dirs: readonly ReplicatedDir[]): Pick<MirrorConfig, "notReplicated" | "toCheck" | "layout"> {
  if (dirs.length === 1) return { notReplicated: dirs[0]!.notReplicated, toCheck: dirs[0]!.toCheck };
  return {
    layout: dirs.map((dir, index) => volumeNameOf(dir.dir, index)),
    notReplicated: dirs.flatMap((dir, index) => dir.notReplicated.map((rule) => ({ ...rule, within: volumeNameOf(dir.dir, index) }))),
    toCheck: dirs.flatMap((dir, index) => dir.toCheck.map((path) => inVolume(volumeNameOf(dir.dir, index), path))),
  };
}

/** Builds the MirrorConfig of a mirror module on `node`, one of its two nodes. */
export function toMirrorConfig(module: ModuleConfig, cluster: ClusterConfig, node: string, options: ToMirrorOptions = {}): ToMirrorResult {
  assert(module.mode === "mirror", `module ${module.name} is a ${module.mode} module, not a mirror`);
  assert(module.heart !== null, "a mirror module read without errors has a <heart>");
  assert(module.rfs !== null, "a mirror module read without errors has an <rfs>");
  assert(node !== "", "the node a config is built for has a name");
  const file = options.file ?? `modules/${module.name}/conf/userconfig.xml`;
  const problems: ConfigProblem[] = [];
  const report: Report = (severity, code, path, message) => problems.push({ severity, code, file, line: 0, column: 0, path, message });
  const rings = module.heart.heartbeats.length > 0 ? module.heart.heartbeats.map((heartbeat) => heartbeat.name) : cluster.lans.map((lan) => lan.name);
  const pair = nodePair(module, cluster, rings, node, report);
  const timings = mirrorTimingsOf(module.heart);
  warnUnevenHeartbeats(module.heart, timings, report);
  const witnesses = witnessesOf(module.checkers, report);
  if (module.rfs.syncDeltaMinutes > 0) {
    report("warning", "CONFIG_IGNORED", "safe/service/rfs", `syncdelta is not acted on: a node that is not up to date never becomes primary by itself in tandem, however recently it was; run prim (or primforce) on it to force it`);
  }
  if (pair === null || hasErrors(problems)) return { config: null, problems };
  const config: MirrorConfig = {
    module: module.name,
    self: pair.self,
    peer: pair.peer,
    rings,
    ...timings,
    blockSize: module.rfs.blockSize,
    ack: module.rfs.async === "second" ? "received" : "applied",
    failover: module.service.failover,
    defaultPrim: module.service.defaultPrim,
    witnesses,
    splitBrain: module.rfs.splitBrain,
    maxLoop: module.service.maxLoop,
    loopIntervalMs: module.service.loopIntervalMs,
    scripts: module.user !== null,
    scriptEnv: { SAFEMODULE: module.name, ...Object.fromEntries((module.user?.vars ?? []).map((each) => [each.name, each.value])), ...options.scriptEnv },
    scriptTimeoutMs: module.user?.niceStopTimeoutMs ?? scriptTimeoutMsDefault,
    forceStopTimeoutMs: module.user?.forceStopTimeoutMs ?? scriptTimeoutMsDefault,
    resyncWorkers: module.rfs.resyncWorkers,
    resyncChunkBytes: mirrorResyncChunkBytes,
    hotExtentBlocks: Math.max(1, Math.floor(mirrorHotExtentBytes / module.rfs.blockSize)),
    checkpointMs: mirrorCheckpointMs,
    retryMs: mirrorRetryMs,
    // The node service turns it on where the replicator runs one (service/mirror-parts.ts).
    lane: false,
    ...rulesOf(module.rfs.replicated),
  };
  assert(config.self !== config.peer, "nodePair returns two different nodes");
  assert(config.resyncWorkers >= 1, "the rfs reader keeps nbrei at 1 or more");
  return { config, problems };
}

/**
 * tandem's own timings unless the file wrote pulse or timeout; then SafeKit's: the fastest
 * pulse and the longest timeout of the heartbeat networks (the heart's when it lists none).
 */
export function mirrorTimingsOf(heart: HeartSection): MirrorTimings {
  const networks = heart.heartbeats.length > 0 ? heart.heartbeats : [heart];
  const pulseMs = heart.timingWritten === true ? Math.min(...networks.map((each) => each.pulseMs)) : mirrorPulseMsDefault;
  const timeoutMs = heart.timingWritten === true ? Math.max(...networks.map((each) => each.timeoutMs)) : mirrorTimeoutMsDefault;
  // The heart reader keeps every network's timeout above two of its pulses; the fastest
  // pulse and the longest timeout keep that bound.
  assert(timeoutMs > 2 * pulseMs, `a timeout of ${timeoutMs} ms is more than two pulses of ${pulseMs} ms`);
  const joinMs = Math.max(2 * timeoutMs, joinMsMin);
  const witnessTimeoutMs = Math.min(Math.max(timeoutMs, witnessTimeoutMsMin), witnessTimeoutMsMax);
  return { pulseMs, timeoutMs, joinMs, witnessTimeoutMs };
}

/** The node this config is for and the other node of the rings; null (reported) otherwise. */
function nodePair(module: ModuleConfig, cluster: ClusterConfig, rings: readonly string[], node: string, report: Report): { self: string; peer: string } | null {
  const known = new Map(cluster.lans.map((lan) => [lan.name, lan]));
  const unknown = rings.filter((name) => !known.has(name));
  for (const lan of unknown) {
    report("error", "CONFIG_UNKNOWN_LAN", heartbeatPath, `lan ${lan} is not in cluster.xml (its lans: ${[...known.keys()].join(", ") || "none"})`);
  }
  // With a lan missing, its nodes are unknown: counting the others would only add noise.
  if (unknown.length > 0 || rings.length === 0) {
    if (rings.length === 0) report("error", "CONFIG_MISSING_ELEMENT", heartPath, "cluster.xml declares no lan, and <heart> names none: a mirror needs a network for its heartbeats");
    return null;
  }
  const nodes = [...new Set(rings.flatMap((name) => known.get(name)!.nodes.map((each) => each.name)))];
  const where = `${module.heart!.heartbeats.length > 0 ? "its heartbeat lans" : "the lans"} (${rings.join(", ")}) in cluster.xml`;
  if (nodes.length !== 2) {
    report(
      "error",
      "CONFIG_MIRROR_NODES",
      heartPath,
      `a mirror module runs on exactly two nodes, but ${where} hold ${nodes.length} (${nodes.join(", ") || "none"}); list in <heart> only lans that hold this module's two nodes`,
    );
    return null;
  }
  const defaultPrim = module.service.defaultPrim;
  if (defaultPrim.kind === "node" && !nodes.includes(defaultPrim.node)) {
    report("error", "CONFIG_UNKNOWN_NODE", servicePath, `defaultprim names ${defaultPrim.node}, which is not one of this module's nodes (${nodes.join(", ")}); use alone, lastprim or a node name`);
  }
  if (!nodes.includes(node)) {
    report("error", "CONFIG_UNKNOWN_NODE", heartPath, `this node, ${node}, is not one of the module's two nodes in ${where} (${nodes.join(", ")}); run the module on those nodes, or correct the node's name in cluster.xml`);
    return null;
  }
  return { self: node, peer: nodes.find((each) => each !== node)! };
}

function warnUnevenHeartbeats(heart: HeartSection, timings: MirrorTimings, report: Report): void {
  if (heart.timingWritten !== true) return;
  const uneven = heart.heartbeats.some((each) => each.pulseMs !== timings.pulseMs || each.timeoutMs !== timings.timeoutMs);
  if (!uneven) return;
  report(
    "warning",
    "CONFIG_APPROXIMATED",
    heartbeatPath,
    `tandem runs one pulse and one timeout on every heartbeat network: the fastest pulse (${timings.pulseMs}ms) and the longest timeout (${timings.timeoutMs}ms), so the peer is never declared lost sooner than with each network's own timings, but possibly later; give every <heartbeat> the same pulse and timeout to silence this`,
  );
}

/** The <splitbrain> checker's witness addresses; empty without one. */
function witnessesOf(checkers: readonly Checker[], report: Report): readonly string[] {
  const checker = checkers.find((each) => each.kind === "splitbrain");
  if (checker === undefined) return [];
  assert(checker.kind === "splitbrain", "found by kind");
  if (checker.exec !== "ping") {
    report(
      "error",
      "CONFIG_UNSUPPORTED",
      splitbrainPath,
      `tandem tests a split-brain witness by ping only, not with ${checker.exec}; ignoring the checker would let both nodes become primary when the heartbeats are lost, so remove exec and give the witnesses' addresses in arg`,
    );
    return [];
  }
  assert(checker.witnesses.length > 0, "the check reader requires at least one witness address");
  if (checker.witnesses.length > 1) {
    report(
      "warning",
      "CONFIG_APPROXIMATED",
      splitbrainPath,
      `tandem's mirror pings only the first witness, ${checker.witnesses[0]}: while it does not answer, a node that loses its peer waits even if ${checker.witnesses.slice(1).join(", ")} would answer`,
    );
  }
  return checker.witnesses;
}
