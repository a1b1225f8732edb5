// The operator's commands, answered by the local node service over its control socket,
// or with -H by the services of the nodes named (`-H n1,n2`, `-H '*'` for all):
//   tandem start|stop|restart|stopstart -m MODULE [--wait]
//   tandem state [-m MODULE] [--json] [-q]
//   tandem set -m MODULE -r CLASS.IDENT -v up|down      (a custom checker reporting)
//   tandem log -m MODULE [-n COUNT] [--json]
//   tandem prim|second -m MODULE [fullsync] [--wait]   a mirror's roles (fullsync: resend everything)
//   tandem swap|primforce -m MODULE

import { parseArgs } from "node:util";
import type { LogEntry } from "../core/types.ts";
import { requestControl } from "../service/control.ts";
import type { ModuleView } from "../service/node-service.ts";
import type { MirrorView } from "../service/mirror-parts.ts";
import type { OperateVerb } from "./operate-verbs.ts";
import { servicePaths } from "./service-paths.ts";


/** SafeKit's `state -lq` exit codes, which operators' scripts test. */
const stateExitCodes: Readonly<Record<string, number>> = { STOP: 0, WAIT: 1, ALONE: 2, UP: 2, PRIM: 3, SECOND: 4 };
const requestTimeoutMs = 10_000;

export async function operateCommand(verb: OperateVerb, argv: readonly string[], print: (line: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      module: { type: "string", short: "m" },
      resource: { type: "string", short: "r" },
      value: { type: "string", short: "v" },
      count: { type: "string", short: "n" },
      wait: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      quiet: { type: "boolean", short: "q", default: false },
      socket: { type: "string" },
      hosts: { type: "string", short: "H" },
    },
    strict: true,
  });
  // A custom checker's program runs with SAFEMODULE set: `tandem set -r custom.x -v down` names its module.
  const module = values.module ?? (verb === "set" ? process.env["SAFEMODULE"] : undefined);
  const socket = servicePaths({ socket: values.socket }).socket;
  const ask = (fields: Record<string, unknown>, timeoutMs = requestTimeoutMs) => requestControl(socket, verb, { ...(module === undefined ? {} : { module }), ...fields }, timeoutMs);
  if (verb !== "state" && module === undefined) {
    print(`tandem ${verb}: give the module with -m NAME`);
    return 2;
  }
  const fullsync = positionals.length === 1 && positionals[0] === "fullsync" && (verb === "prim" || verb === "second");
  if (positionals.length > 0 && !fullsync) {
    print(`tandem ${verb}: unexpected ${positionals.join(" ")}${verb === "prim" || verb === "second" ? " (only fullsync may follow)" : ""}`);
    return 2;
  }
  if (values.wait && (verb === "swap" || verb === "primforce")) {
    print(`tandem ${verb}: --wait is for start, stop, restart, prim and second; follow a ${verb} with tandem state`);
    return 2;
  }
  if (values.hosts !== undefined) return onNodes(values.hosts, verb, module, values, socket, print);
  try {
    switch (verb) {
      case "state": {
        const views = (await ask({})) as ModuleView[];
        if (values.quiet) return module === undefined ? 0 : (stateExitCodes[views[0]!.state] ?? 0);
        if (values.json) print(JSON.stringify(views));
        else for (const view of views) print(formatView(view, colours()));
        return 0;
      }
      case "set": {
        if (values.resource === undefined || values.value === undefined) {
          print("tandem set: give the resource and its state: -r CLASS.IDENT -v up|down");
          return 2;
        }
        const view = (await ask({ resource: values.resource, value: values.value })) as ModuleView;
        print(formatView(view, colours()));
        return 0;
      }
      case "log": {
        const count = values.count === undefined ? 50 : Number(values.count);
        if (!Number.isInteger(count) || count <= 0) {
          print(`tandem log: -n ${values.count}: expected a positive whole number`);
          return 2;
        }
        const entries = (await ask({ count })) as LogEntry[];
        for (const entry of entries) print(values.json ? JSON.stringify(entry) : formatEntry(entry));
        return 0;
      }
      default: {
        const view = (await ask({ wait: values.wait, ...(fullsync ? { fullsync } : {}) }, values.wait ? 3_600_000 : requestTimeoutMs)) as ModuleView;
        print(formatView(view, colours()));
        return 0;
      }
    }
  } catch (error) {
    print(`tandem ${verb}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

/** `-H`: the local service relays the command to each node and returns every node's answer. */
async function onNodes(hosts: string, verb: OperateVerb, module: string | undefined, values: { wait: boolean; json: boolean; resource?: string | undefined; value?: string | undefined; count?: string | undefined }, socket: string, print: (line: string) => void): Promise<number> {
  const nodes = hosts.trim() === "*" ? "*" : hosts.split(",").map((each) => each.trim()).filter((each) => each !== "");
  if (nodes !== "*" && nodes.length === 0) {
    print(`tandem ${verb}: -H ${hosts}: expected node names separated by commas, or '*'`);
    return 2;
  }
  const timeoutMs = values.wait ? 3_600_000 : requestTimeoutMs;
  const request = { verb, ...(module === undefined ? {} : { module }), wait: values.wait, resource: values.resource, value: values.value, count: values.count === undefined ? undefined : Number(values.count) };
  let answers: { node: string; ok: boolean; result?: unknown; error?: string }[];
  try {
    answers = (await requestControl(socket, "relay", { nodes, request, timeoutMs }, timeoutMs + 1_000)) as typeof answers;
  } catch (error) {
    print(`tandem ${verb}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
  if (values.json) print(JSON.stringify(answers));
  else {
    for (const answer of answers) {
      if (!answer.ok) print(`${answer.node}: ${answer.error}`);
      else if (verb === "log") for (const entry of answer.result as LogEntry[]) print(`${answer.node}: ${formatEntry(entry)}`);
      else for (const view of [answer.result].flat() as ModuleView[]) print(formatView(view, colours()));
    }
  }
  return answers.every((answer) => answer.ok) ? 0 : 1;
}

interface Colours {
  readonly paint: (text: string, readiness: string, state: string) => string;
}

function colours(): Colours {
  const enabled = process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined;
  return {
    paint: (text, readiness, state) => {
      if (!enabled) return text;
      // Ready green, changing yellow, stopped or waiting red, as in SafeKit's console.
      const code = state === "STOP" ? 90 : readiness === "Ready" ? 32 : readiness === "Transient" ? 33 : 31;
      return `\u001b[${code}m${text}\u001b[0m`;
    },
  };
}

export function formatView(view: ModuleView, colours: Colours = { paint: (text) => text }): string {
  const state = colours.paint(`${view.state} (${view.readiness})`, view.readiness, view.state);
  const resources = Object.entries(view.resources).map(([name, value]) => `${name}=${value}`).join(" ");
  const parts = [`${view.module.padEnd(16)} ${view.node.padEnd(10)} ${view.mode.padEnd(6)} ${state}`];
  if (view.farm !== null) parts.push(`farm ${view.farm.state}, ${view.farm.ownedBuckets}/${view.farm.bucketCount} buckets, members ${view.farm.members.join(",") || "-"}`);
  if (view.mirror !== null) parts.push(formatMirror(view.mirror));
  if (view.problem !== null) parts.push(`not run here: ${view.problem}`);
  else if (view.goal === "stopped" && view.state !== "STOP") parts.push("stopping");
  if (resources !== "") parts.push(resources);
  return parts.join("  ");
}

function formatMirror(mirror: MirrorView): string {
  const peer = `peer ${mirror.peer} ${mirror.peerConnected ? mirror.peerRole : "unreachable"}`;
  const data = `${mirror.consistent ? "" : "not up to date, "}generation ${mirror.gen ?? "none"}`;
  const resync = mirror.stats.resyncs === 0 ? "" : `, resynced ${mirror.stats.resyncs}× (${mirror.stats.resyncPaths} paths, ${(mirror.stats.resyncBlockBytes / 1_048_576).toFixed(1)} MiB)`;
  const commits = mirror.lane.durableWrites === 0 && mirror.lane.sparedFsyncs === 0 ? "" : `: ${mirror.lane.durableWrites} writes durable on both, ${mirror.lane.sparedFsyncs} fsyncs spared`;
  const lane = mirror.lane.on ? `, lane on${mirror.lane.alone ? ", alone" : ""} (${mirror.lane.completed} ops${commits})` : mirror.lane.applied > 0 ? `, lane applied ${mirror.lane.applied} ops` : "";
  return `${data}, ${peer}, ${mirror.dir} ${mirror.volume ?? "unmounted"}${formatResync(mirror.resync)}${resync}${lane}${mirror.why === "" ? "" : `  (${mirror.why})`}`;
}

/** A resync under way, as its primary sees it: what is left and how fast it goes. */
function formatResync(resync: MirrorView["resync"]): string {
  if (resync === null) return "";
  const mebibytes = resync.sentBytes / 1_048_576;
  const seconds = resync.elapsedMs / 1000;
  const rate = seconds >= 1 ? ` (${(mebibytes / seconds).toFixed(0)} MiB/s)` : "";
  return `, resyncing the peer (${resync.full ? "full" : "changes"}): ${resync.pathsLeft} path${resync.pathsLeft === 1 ? "" : "s"} left, ${mebibytes.toFixed(1)} MiB sent in ${seconds.toFixed(0)} s${rate}`;
}

function formatEntry(entry: LogEntry): string {
  const { module: _module, node: _node, ...fields } = entry.fields;
  return `${entry.level.toUpperCase().padEnd(5)} ${entry.event} ${Object.entries(fields).map(([key, value]) => `${key}=${value}`).join(" ")}`;
}
