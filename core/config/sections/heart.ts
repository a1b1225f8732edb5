// <heart>: the heartbeat networks of a mirror module and how fast they detect a silent peer.
// A pure module: it performs no I/O.
//
// `<heart port pulse="700ms" timeout="30000ms" permanent_arp="on">` with one
// `<heartbeat name="LAN" ident="…" pulse timeout/>` per network of cluster.xml
// (../../../../shared/userconfig.md). Bare times are in ms. A heartbeat's pulse and timeout
// default to the heart's. `ident="flow"` marks the network that also carries replication.
// The peer is down only when every heartbeat network is silent past its own timeout.
//
// Decisions:
// - Defaults are SafeKit's: pulse 700 ms, timeout 30 s, permanent_arp on, no port (the
//   runtime's default port).
// - A timeout must exceed two pulses, on the heart and on every heartbeat that sets its
//   own pulse or timeout: with less, one late or lost heartbeat declares the peer down,
//   and the secondary becomes primary while the primary still runs (a false failover).
// - Pulses and timeouts are whole milliseconds (the core's timings are integer ms); a
//   pulse is at most 60 s and a timeout at most a day, so detection stays bounded.
// - At most one heartbeat has ident="flow": replication goes over one network, and two
//   would leave it to chance which.
// - Pre-7.2 files put `<server addr>` under `<heartbeat>`; nodes are read from cluster.xml
//   only, so such children are reported (a warning) rather than silently dropped.
// - `timingWritten` records whether the file wrote pulse or timeout anywhere (on <heart>
//   or on a <heartbeat>). A file that wrote neither runs on tandem's faster detection, one
//   that wrote either keeps SafeKit's meaning (core/config/to-mirror.ts): so the defaults
//   above are what a SafeKit file means, not necessarily what tandem runs.

import { assert } from "../../assert.ts";
import type { HeartbeatNetwork, HeartSection } from "../module-config.ts";
import type { ElementReader } from "../reader.ts";
import { located } from "./vip.ts";

export const heartPulseMsDefault = 700;
export const heartTimeoutMsDefault = 30_000;
export const heartPulseMsMax = 60_000;
export const heartTimeoutMsMax = 86_400_000;
/** Heartbeat networks of one module; as many as a farm's rings. */
export const heartbeatCountMax = 8;

/** Reads `<heart>`; every problem is recorded in the reader's context. */
export function readHeart(heart: ElementReader): HeartSection {
  const port = heart.int("port", 0, 1, 65_535);
  const pulseMs = readPulse(heart, heartPulseMsDefault);
  const timeoutMs = readTimeout(heart, pulseMs, heartTimeoutMsDefault);
  const permanentArp = heart.bool("permanent_arp", true);
  const heartbeats = readHeartbeats(heart, pulseMs, timeoutMs);
  const timingWritten = [heart.element, ...heart.element.children.filter((child) => child.name === "heartbeat")].some((element) =>
    element.attributes.some((attribute) => attribute.name === "pulse" || attribute.name === "timeout"),
  );
  heart.finish();
  assert(heartbeats.length <= heartbeatCountMax, "readHeartbeats keeps at most heartbeatCountMax networks");
  assert(timeoutMs > 2 * pulseMs, "readTimeout never returns a timeout of two pulses or less");
  return { port: port === 0 ? null : port, pulseMs, timeoutMs, permanentArp, heartbeats, timingWritten };
}

function readHeartbeats(heart: ElementReader, pulseMs: number, timeoutMs: number): HeartbeatNetwork[] {
  const readers = heart.children("heartbeat");
  if (readers.length === 0) heart.report("error", "CONFIG_MISSING_ELEMENT", `a <heart> needs at least one <heartbeat name="…"/>: the networks of cluster.xml that carry its heartbeats`);
  const heartbeats: HeartbeatNetwork[] = [];
  for (const [index, heartbeat] of readers.entries()) {
    const network = readHeartbeat(heartbeat, pulseMs, timeoutMs);
    const flow = heartbeats.find((other) => other.flow);
    if (heartbeats.some((other) => other.name === network.name)) {
      heartbeat.report("error", "CONFIG_DUPLICATE", `heartbeat ${network.name} is listed twice in <heart>; each network carries one heartbeat`, located(heartbeat, "name"));
    } else if (network.flow && flow !== undefined) {
      heartbeat.report("error", "CONFIG_DUPLICATE", `only one heartbeat carries replication (ident="flow"), and ${flow.name} already does`, located(heartbeat, "ident"));
    } else if (index >= heartbeatCountMax) {
      heartbeat.report("error", "CONFIG_TOO_MANY", `a <heart> has at most ${heartbeatCountMax} heartbeats; this is heartbeat ${index + 1}`);
    } else if (network.name !== "") heartbeats.push(network);
  }
  return heartbeats;
}

function readHeartbeat(heartbeat: ElementReader, heartPulseMs: number, heartTimeoutMs: number): HeartbeatNetwork {
  const name = heartbeat.string("name", "", { required: true, nonEmpty: true }).trim();
  const ident = heartbeat.optionalString("ident")?.trim() || null;
  const own = located(heartbeat, "pulse") !== undefined || located(heartbeat, "timeout") !== undefined;
  const pulseMs = readPulse(heartbeat, heartPulseMs);
  // Inheriting both values: the heart's own check already covers them.
  const timeoutMs = own ? readTimeout(heartbeat, pulseMs, heartTimeoutMs) : heartTimeoutMs;
  for (const server of heartbeat.children("server")) {
    server.report("warning", "CONFIG_LEGACY_FORM", "<server> under <heartbeat> is the pre-7.2 form; tandem takes a lan's nodes from cluster.xml, so declare them there");
  }
  heartbeat.finish();
  return { name, ident, flow: ident === "flow", pulseMs, timeoutMs };
}

/** `pulse`, in whole ms from 1 ms to heartPulseMsMax; the fallback when absent or invalid. */
function readPulse(reader: ElementReader, fallbackMs: number): number {
  const pulseMs = reader.time("pulse", "ms", fallbackMs);
  if (Number.isInteger(pulseMs) && pulseMs >= 1 && pulseMs <= heartPulseMsMax) return pulseMs;
  reader.report("error", "CONFIG_INVALID_VALUE", `expected a whole number of milliseconds from 1ms to ${heartPulseMsMax / 1_000}s: the pulse paces the heartbeats`, located(reader, "pulse"));
  return fallbackMs;
}

/** `timeout`, in whole ms, more than two pulses; when invalid, a value that keeps the
 *  invariant so that later checks still run (the error is already reported). */
function readTimeout(reader: ElementReader, pulseMs: number, fallbackMs: number): number {
  const problemCount = reader.context.problems.length;
  const timeoutMs = reader.time("timeout", "ms", fallbackMs);
  const safeMs = Math.max(fallbackMs, 2 * pulseMs + 1);
  // Not a duration at all: already reported, and the fallback is not what the file says.
  if (reader.context.problems.length > problemCount) return safeMs;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > heartTimeoutMsMax) {
    reader.report("error", "CONFIG_INVALID_VALUE", `expected a whole number of milliseconds from 1ms to ${heartTimeoutMsMax / 3_600_000}h`, located(reader, "timeout"));
    return safeMs;
  }
  if (timeoutMs > 2 * pulseMs) return timeoutMs;
  reader.report(
    "error",
    "CONFIG_UNSAFE",
    `the timeout (${timeoutMs}ms) must exceed two pulses (${2 * pulseMs}ms): otherwise one late or lost heartbeat declares the peer down and causes a false failover, with both nodes primary`,
    located(reader, "timeout") ?? located(reader, "pulse"),
  );
  return safeMs;
}
