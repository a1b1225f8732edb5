// A lab whose farm module is written with chosen failure-detection timings (SafeKit's
// `<farm pulse="…" slost_count="…">`), optionally with more farm modules beside `web`,
// for the benchmarks' baselines (bench/lab-bench.ts). Composed from lab-config.ts and the
// Lab's public operations, without changing lab.ts: the lab is brought up with every node
// created but powered off (`up({ off })`), the module files are written into the stopped
// containers, then the nodes get power and the farms form.
//
// An extra module (`ExtraFarm`) is the lab's `web` module under another name and VIP, with
// its own timings and no application scripts: it filters and balances port 80 of its VIP,
// and the HTTP server that `web` starts (listening on every address) answers there. Two
// farms in one lab see the same network, the same loss and the same CPU at the same time,
// which is what a baseline run alongside wants.

import { farmModule, Lab, labVip, tandemCli, containerPrefix } from "./lab.ts";
import { nodeName, tarOf, userconfigXml, type FarmOptions, type TarEntry } from "./lab-config.ts";
import type { ModuleView } from "../service/node-service.ts";

/** SafeKit's `<farm pulse slost_count>`: a heartbeat every pulse, a peer lost after slost_count silent pulses. */
export interface FarmTimingsXml {
  readonly pulseMs: number;
  readonly slostCount: number;
}

/** SafeKit's default farm timings (about 1 s to detect a lost node). */
export const safekitFarmTimings: FarmTimingsXml = { pulseMs: 100, slostCount: 10 };

export interface ExtraFarm {
  /** The module's name (also the seed of its packet hash, so its buckets differ from web's). */
  readonly name: string;
  readonly vip: string;
  /** null: tandem's default timings. */
  readonly timings: FarmTimingsXml | null;
}

export interface TimedUpOptions {
  readonly nodes?: number;
  /** Timings of the `web` module; null or absent: tandem's defaults (the file names none). */
  readonly timings?: FarmTimingsXml | null;
  readonly farm?: FarmOptions;
  readonly extra?: readonly ExtraFarm[];
  readonly waitMs?: number;
}

/** The module file with `<farm>` given these timings (unchanged for null). */
export function withFarmTimings(userconfig: string, timings: FarmTimingsXml | null): string {
  if (timings === null) return userconfig;
  if (!userconfig.includes("<farm>")) throw new Error("withFarmTimings: the module file has no <farm> element to time");
  return userconfig.replace("<farm>", `<farm pulse="${timings.pulseMs}ms" slost_count="${timings.slostCount}">`);
}

/** An extra farm module's userconfig.xml: web's, with another VIP and its timings, and no
 *  <user> section (no scripts) nor <check> (web's health checker is a program in web's
 *  bin/, and the extra module has no application of its own to check). */
export function extraFarmXml(names: readonly string[], node: string, extra: ExtraFarm, farm: FarmOptions = {}): string {
  const base = userconfigXml(names, node, farm)
    .replace(`<macro name="VIRTUAL_IP" value="${labVip}"/>`, `<macro name="VIRTUAL_IP" value="${extra.vip}"/>`)
    .replace(/\n *<user[^>]*>[\s\S]*?<\/user>/, "")
    .replace(/\n *<check>[\s\S]*?<\/check>/, "")
    .replace('<group name="web">', `<group name="${extra.name}">`);
  if (!base.includes(extra.vip)) throw new Error(`extraFarmXml: the lab's module file no longer names its VIP as expected`);
  return withFarmTimings(base, extra.timings);
}

/** The files that differ from a plain lab node's, relative to /. */
export function timedNodeFiles(names: readonly string[], node: string, options: TimedUpOptions): TarEntry[] {
  const entries: TarEntry[] = [];
  if (options.timings != null) {
    entries.push({ path: `etc/tandem/modules/${farmModule}/conf/userconfig.xml`, content: withFarmTimings(userconfigXml(names, node, options.farm ?? {}), options.timings), mode: 0o644 });
  }
  for (const extra of options.extra ?? []) {
    if (!/^[a-z][a-z0-9_-]*$/.test(extra.name) || extra.name === farmModule) throw new Error(`extra farm module: bad name ${extra.name}`);
    const dir = `etc/tandem/modules/${extra.name}`;
    entries.push({ path: dir, mode: 0o755, directory: true }, { path: `${dir}/conf`, mode: 0o755, directory: true });
    entries.push({ path: `${dir}/conf/userconfig.xml`, content: extraFarmXml(names, node, extra, options.farm ?? {}), mode: 0o644 });
  }
  return entries;
}

/** A fresh lab (the one there is removed) whose farms run the given timings; resolves
 *  when every farm module is UP on every node with all of them as members. */
export async function upWithTimings(lab: Lab, options: TimedUpOptions = {}): Promise<void> {
  const count = options.nodes ?? 3;
  const names = Array.from({ length: count }, (_, index) => nodeName(index));
  const waitMs = options.waitMs ?? 60_000;
  await lab.down();
  await lab.up({ nodes: count, farm: options.farm ?? {}, off: names, waitMs });
  for (const name of names) {
    const entries = timedNodeFiles(names, name, options);
    if (entries.length > 0) await lab.docker.getContainer(`${containerPrefix}${name}`).putArchive(tarOf(entries), { path: "/" });
  }
  for (const name of names) await lab.start(name);
  await lab.waitForFarm(names, waitMs);
  for (const extra of options.extra ?? []) await waitForModule(lab, extra.name, names, waitMs);
}

/** Waits until `module` is UP with exactly `members` on each of them. */
export async function waitForModule(lab: Lab, module: string, members: readonly string[], timeoutMs: number): Promise<void> {
  const want = [...members].sort().join(",");
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const views = await Promise.all(members.map((name) => moduleView(lab, name, module)));
    last = views.map((view, index) => `${members[index]} ${view === null ? "no answer" : `${view.state}/${view.farm?.state ?? "-"} [${[...(view.farm?.members ?? [])].sort().join(",")}]`}`).join(", ");
    if (views.every((view) => view?.state === "UP" && view.farm?.state === "UP" && [...view.farm.members].sort().join(",") === want)) return;
    if (Date.now() > deadline) throw new Error(`module ${module} did not come UP on ${want} within ${timeoutMs / 1_000} s: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** `tandem state --json -m module` on a node, or null when it does not answer. */
export async function moduleView(lab: Lab, node: string, module: string): Promise<ModuleView | null> {
  const result = await lab.exec(`${containerPrefix}${node}`, ["node", tandemCli, "state", "--json", "-m", module], 15_000).catch(() => null);
  if (result === null || result.code !== 0) return null;
  try {
    return (JSON.parse(result.stdout) as ModuleView[])[0] ?? null;
  } catch {
    return null;
  }
}
