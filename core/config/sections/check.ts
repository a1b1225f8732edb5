// <check>: the module's checkers, each a resource CLASS.IDENT that failover rules test.
// A pure module: it performs no I/O.
//
// Children (../../../../shared/userconfig.md): `<tcp ident when action><to addr port
// interval timeout/></tcp>`, `<ping ident when action><to addr/></ping>`, `<intf
// ident><to local_addr/></intf>`, `<ip ident><to addr/></ip>`, `<custom ident when exec
// arg action/>`, `<module name><to addr port/></module>` and `<splitbrain ident exec
// arg/>`. Unknown children are left to finish(), which the caller turns into errors.
//
// Defaults ("app" is prim in a mirror module and both in a farm or light one, where nodes
// are UP and never PRIM; prim when the caller does not give the mode):
//
//   kind        when  action     ident when absent
//   tcp         app   restart    required
//   ping        pre   wait       the address
//   intf        pre   wait       the local address
//   ip          app   stopstart  the address
//   custom      app   restart    required
//   module      pre   wait       the module's name (attribute name)
//   splitbrain  pre   wait       witness
//
// Why: tcp, ip and custom test the application or its virtual address, which exist only
// where the application runs. ping, intf, module and splitbrain test the node's
// surroundings (network, interface, another module, a witness), which decide whether the
// module may start at all, so they run from prestart and make the module wait.
// Only the attributes listed above are read: a `when` or `action` on intf, ip, module or
// splitbrain is reported as unused rather than guessed at.
//
// Timing: every checker that probes a `<to>` target reads `interval` (default 10 s) and
// `timeout` (default 5 s) there, bare numbers in s. The timeout must be below the
// interval, or a probe would overlap the next; when only the interval is given and it is
// 5 s or less, the timeout defaults to half of it. custom and splitbrain have no `<to>` and
// keep the defaults.
//
// Other decisions: a user-given ident is letters, digits, `_` and `-`, in dot-separated
// parts, so that failover rules can name it; idents are unique per kind. custom's exec is
// a program in the module's bin/ (a file name) or an absolute path. splitbrain's exec is
// ping (the default) or an absolute path; with ping each word of arg is a witness IP
// address, with a program the words are its arguments, kept as they are. A module has at
// most one splitbrain checker, and it only matters in a mirror module.

import { assert } from "../../assert.ts";
import type { Checker, CheckerAction, CheckerWhen, ModuleMode } from "../module-config.ts";
import type { ElementReader } from "../reader.ts";
import type { Parsed } from "../values.ts";
import type { XmlAttribute, XmlElement } from "../xml-tree.ts";
import { located, parseIpAddress, readParsed } from "./vip.ts";

export const checkerCountMax = 128;
export const witnessCountMax = 8;
export const checkIntervalMsDefault = 10_000;
export const checkTimeoutMsDefault = 5_000;
export const checkIntervalMsMax = 86_400_000;

type Kind = Checker["kind"];
const kinds: readonly Kind[] = ["tcp", "ping", "intf", "ip", "custom", "module", "splitbrain"];
const whens: readonly CheckerWhen[] = ["pre", "prim", "second", "both"];
const actions: readonly CheckerAction[] = ["restart", "stopstart", "stop", "wait", "noaction"];
const identPattern = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const binNamePattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

interface Timing {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}
const defaultTiming: Timing = { intervalMs: checkIntervalMsDefault, timeoutMs: checkTimeoutMsDefault };

/** Reads `<check>` in file order; `mode` chooses the default `when` (see the table above). */
export function readCheck(check: ElementReader, mode?: ModuleMode): Checker[] {
  const readers = new Map<XmlElement, { kind: Kind; reader: ElementReader }>();
  for (const kind of kinds) for (const reader of check.children(kind)) readers.set(reader.element, { kind, reader });
  const checkers: Checker[] = [];
  const resources = new Set<string>();
  for (const element of check.element.children) {
    const entry = readers.get(element);
    if (entry === undefined) continue;
    const checker = readChecker(entry.kind, entry.reader, mode);
    if (checker !== null) admit(entry.reader, checker, checkers, resources, mode);
    entry.reader.finish();
  }
  check.finish();
  assert(checkers.length <= checkerCountMax, "admit keeps at most checkerCountMax checkers");
  return checkers;
}

/** Adds a checker unless its resource name is taken or a limit is reached. */
function admit(reader: ElementReader, checker: Checker, checkers: Checker[], resources: Set<string>, mode: ModuleMode | undefined): void {
  const resource = `${checker.kind}.${checker.ident}`;
  const where = located(reader, checker.kind === "module" ? "name" : "ident");
  if (resources.has(resource)) {
    reader.report("error", "CONFIG_DUPLICATE", `a second ${checker.kind} checker named ${checker.ident}: its resource ${resource} must be unique`, where);
  } else if (checker.kind === "splitbrain" && checkers.some((other) => other.kind === "splitbrain")) {
    reader.report("error", "CONFIG_DUPLICATE", "a module has at most one <splitbrain> checker: one witness test decides which node may become primary");
  } else if (checkers.length >= checkerCountMax) {
    reader.report("error", "CONFIG_TOO_MANY", `a module has at most ${checkerCountMax} checkers`);
  } else {
    if (checker.kind === "splitbrain" && mode !== undefined && mode !== "mirror") {
      reader.report("warning", "CONFIG_IGNORED", `<splitbrain> decides which node of a mirror may become primary; a ${mode} module has no primary, so it has no effect`);
    }
    resources.add(resource);
    checkers.push(checker);
  }
}

function readChecker(kind: Kind, reader: ElementReader, mode: ModuleMode | undefined): Checker | null {
  const app: CheckerWhen = mode === "farm" || mode === "light" ? "both" : "prim";
  switch (kind) {
    case "tcp":
      return readTcp(reader, app, mode);
    case "ping":
      return readPing(reader, mode);
    case "intf":
      return readTarget(reader, "intf", "local_addr", { when: "pre", action: "wait" });
    case "ip":
      return readTarget(reader, "ip", "addr", { when: app, action: "stopstart" });
    case "custom":
      return readCustom(reader, app, mode);
    case "module":
      return readModule(reader);
    case "splitbrain":
      return readSplitbrain(reader);
  }
}

function readTcp(reader: ElementReader, app: CheckerWhen, mode: ModuleMode | undefined): Checker | null {
  const ident = readIdent(reader, null);
  const when = readWhen(reader, app, mode);
  const action = reader.enumeration("action", actions, "restart");
  const to = requiredTo(reader, `<to addr="…" port="…"/>`);
  if (to === undefined) return null;
  const addr = readParsed(to, "addr", parseIpAddress, { required: true })?.value.canonical;
  const port = to.int("port", 0, 1, 65_535, { required: true });
  const timing = readTiming(to);
  to.finish();
  if (ident === null || addr === undefined || port === 0) return null;
  return { kind: "tcp", ident, when, action, ...timing, addr, port };
}

function readPing(reader: ElementReader, mode: ModuleMode | undefined): Checker | null {
  const identAttribute = reader.raw("ident");
  const when = readWhen(reader, "pre", mode);
  const action = reader.enumeration("action", actions, "wait");
  const to = requiredTo(reader, `<to addr="…"/>`);
  if (to === undefined) return null;
  const addr = readParsed(to, "addr", parseIpAddress, { required: true })?.value.canonical;
  const timing = readTiming(to);
  to.finish();
  const ident = identFrom(reader, identAttribute, addr ?? null);
  if (ident === null || addr === undefined) return null;
  return { kind: "ping", ident, when, action, ...timing, addr };
}

/** intf and ip: a target address in `<to>`, the ident defaulting to it; no when/action. */
function readTarget(reader: ElementReader, kind: "intf" | "ip", attribute: "local_addr" | "addr", base: { when: CheckerWhen; action: CheckerAction }): Checker | null {
  const identAttribute = reader.raw("ident");
  const to = requiredTo(reader, `<to ${attribute}="…"/>`);
  if (to === undefined) return null;
  const addr = readParsed(to, attribute, parseIpAddress, { required: true })?.value.canonical;
  const timing = readTiming(to);
  to.finish();
  const ident = identFrom(reader, identAttribute, addr ?? null);
  if (ident === null || addr === undefined) return null;
  return kind === "intf" ? { kind, ident, ...base, ...timing, localAddr: addr } : { kind, ident, ...base, ...timing, addr };
}

function readCustom(reader: ElementReader, app: CheckerWhen, mode: ModuleMode | undefined): Checker | null {
  const ident = readIdent(reader, null);
  const when = readWhen(reader, app, mode);
  const action = reader.enumeration("action", actions, "restart");
  const exec = readParsed(reader, "exec", parseCustomProgram, { required: true })?.value;
  const arg = reader.string("arg", "");
  if (ident === null || exec === undefined) return null;
  return { kind: "custom", ident, when, action, ...defaultTiming, exec, arg };
}

function readModule(reader: ElementReader): Checker | null {
  const module = readParsed(reader, "name", parseModuleName, { required: true })?.value;
  const to = reader.child("to");
  let addr: string | null = null;
  let port: number | null = null;
  let timing = defaultTiming;
  if (to !== undefined) {
    addr = readParsed(to, "addr", parseIpAddress, { required: true })?.value.canonical ?? null;
    port = located(to, "port") === undefined ? null : to.int("port", 0, 1, 65_535);
    timing = readTiming(to);
    to.finish();
  }
  if (module === undefined || (to !== undefined && (addr === null || port === 0))) return null;
  return { kind: "module", ident: module, when: "pre", action: "wait", ...timing, module, addr, port };
}

function readSplitbrain(reader: ElementReader): Checker | null {
  const ident = readIdent(reader, "witness");
  const exec = readParsed(reader, "exec", parseSplitbrainProgram)?.value ?? "ping";
  const arg = reader.raw("arg");
  if (arg === undefined) reader.report("error", "CONFIG_MISSING_ATTRIBUTE", "attribute arg is required: the witness addresses, separated by spaces");
  const witnesses = arg === undefined ? null : readWitnesses(reader, arg, exec);
  if (ident === null || witnesses === null) return null;
  return { kind: "splitbrain", ident, when: "pre", action: "wait", ...defaultTiming, exec, witnesses };
}

function readWitnesses(reader: ElementReader, arg: XmlAttribute, exec: string): string[] | null {
  const words = arg.value.split(/\s+/).filter((word) => word !== "");
  if (exec !== "ping") return words;
  if (words.length === 0 || words.length > witnessCountMax) {
    reader.report("error", "CONFIG_INVALID_VALUE", `expected 1 to ${witnessCountMax} witness IP addresses separated by spaces`, arg);
    return null;
  }
  const witnesses: string[] = [];
  for (const word of words) {
    const parsed = parseIpAddress(word);
    if (parsed.ok) witnesses.push(parsed.value.canonical);
    else reader.report("error", "CONFIG_INVALID_VALUE", `expected witness IP addresses separated by spaces: ${word} is not ${parsed.expected}`, arg);
  }
  return witnesses.length === words.length ? witnesses : null;
}

// ---- Shared pieces ----

/** The checker's ident, or `fallback` when absent; null (reported) when required or invalid. */
function readIdent(reader: ElementReader, fallback: string | null): string | null {
  return identFrom(reader, reader.raw("ident"), fallback);
}

function identFrom(reader: ElementReader, attribute: XmlAttribute | undefined, fallback: string | null): string | null {
  if (attribute === undefined) {
    if (fallback === null && !isTargetKind(reader.name)) {
      reader.report("error", "CONFIG_MISSING_ATTRIBUTE", `a <${reader.name}> checker needs ident: its resource is named ${reader.name}.IDENT in failover rules and logs`);
    }
    return fallback;
  }
  const ident = attribute.value.trim();
  if (identPattern.test(ident)) return ident;
  reader.report("error", "CONFIG_INVALID_VALUE", `expected letters, digits, _ and - (in parts separated by dots): failover rules name this checker ${reader.name}.IDENT`, attribute);
  return null;
}

/** Checkers whose ident defaults to their target: a missing target is reported on <to>. */
function isTargetKind(name: string): boolean {
  return name === "ping" || name === "intf" || name === "ip";
}

function readWhen(reader: ElementReader, fallback: CheckerWhen, mode: ModuleMode | undefined): CheckerWhen {
  const when = reader.enumeration("when", whens, fallback);
  if ((when === "prim" || when === "second") && mode !== undefined && mode !== "mirror") {
    reader.report("warning", "CONFIG_NEVER_ENABLED", `a ${mode} node is UP, never PRIM or SECOND, so when="${when}" never runs this checker; use both (while UP) or pre`, located(reader, "when"));
  }
  return when;
}

function requiredTo(reader: ElementReader, form: string): ElementReader | undefined {
  const to = reader.child("to");
  if (to === undefined) reader.report("error", "CONFIG_MISSING_ELEMENT", `a <${reader.name}> checker needs a ${form}: what it tests`);
  return to;
}

function readTiming(to: ElementReader): Timing {
  const intervalMs = to.time("interval", "s", checkIntervalMsDefault);
  if (intervalMs === 0 || intervalMs > checkIntervalMsMax) {
    to.report("error", "CONFIG_INVALID_VALUE", "expected a duration above 0 and at most 24h: the checker tests once every interval", located(to, "interval"));
    return defaultTiming;
  }
  const timeoutDefaultMs = intervalMs > checkTimeoutMsDefault ? checkTimeoutMsDefault : Math.floor(intervalMs / 2);
  const timeoutMs = to.time("timeout", "s", timeoutDefaultMs);
  if (timeoutMs === 0 || timeoutMs >= intervalMs) {
    const why = timeoutMs === 0 ? "a probe needs time to answer" : `at ${formatMs(timeoutMs)} with an interval of ${formatMs(intervalMs)}, a probe would overlap the next`;
    to.report("error", "CONFIG_INVALID_VALUE", `expected a timeout above 0 and below the interval: ${why}`, located(to, "timeout"));
    return { intervalMs, timeoutMs: timeoutDefaultMs };
  }
  assert(timeoutMs < intervalMs, "a probe's timeout is below its interval");
  return { intervalMs, timeoutMs };
}

function formatMs(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000}s` : `${ms}ms`;
}

function isAbsoluteProgram(text: string): boolean {
  return text.startsWith("/") && !text.endsWith("/") && !text.includes("\0");
}

function parseCustomProgram(text: string): Parsed<string> {
  const program = text.trim();
  if (binNamePattern.test(program) || isAbsoluteProgram(program)) return { ok: true, value: program };
  return { ok: false, expected: "a program in the module's bin/ (a file name: letters, digits, _, - and ., not starting with . or -) or an absolute path" };
}

function parseSplitbrainProgram(text: string): Parsed<string> {
  const program = text.trim();
  if (program === "ping" || isAbsoluteProgram(program)) return { ok: true, value: program };
  return { ok: false, expected: "ping or the absolute path of a program" };
}

function parseModuleName(text: string): Parsed<string> {
  const name = text.trim();
  if (/^[A-Za-z0-9_-]+$/.test(name)) return { ok: true, value: name };
  return { ok: false, expected: "a module's name (letters, digits, _ and -): the checker's resource is module.NAME" };
}
