// <errd>: process and service monitoring.
// A pure module: it performs no I/O.
//
// `<errd polltimer="30s">` with `<proc name nameregex argregex service atleast atmax action
// class start_after/>` (../../../../shared/userconfig.md). A class is enabled after its
// start script (start_prim for prim, start_both for both, …) and disabled before its stop
// script, so a process is only watched while it is meant to run.
//
// Defaults and decisions:
// - polltimer 30 s (a bare number is in s), service no, atleast 1, atmax -1 (no maximum),
//   action restart, start_after 0.
// - class defaults to prim in a mirror module and to both in a farm or light module. A
//   mirror runs its application on the primary only: watching it on the secondary too
//   (both) would restart a module whose application is rightly stopped there. A farm or
//   light node is UP, never PRIM or SECOND, and runs start_both, so both is the only
//   default under which anything is watched; prim, second and sec there are warned about.
//   When the caller does not give the mode, the mirror default (prim, SafeKit's) applies.
// - Exactly one of name (the exact process or service name) and nameregex; both would
//   leave it unclear which processes count. The regexes are JavaScript regular expressions,
//   since tandem matches with them; one that does not compile is an error.
// - action: restart, stopstart, stop, noaction, or the name of a handler program in the
//   module's bin/ (letters, digits, `_`, `-`, `.`, not starting with `.` or `-`, so it
//   cannot leave bin/ or read as an option). wait and swap are failover-rule actions, not
//   errd ones, and are refused rather than taken for handler names.
// - A class name other than the five is the user's own class: letters, digits, `_`, `-`.

import { assert } from "../../assert.ts";
import type { ErrdSection, ModuleMode, ProcAction, ProcWatch } from "../module-config.ts";
import type { ElementReader } from "../reader.ts";
import type { Parsed } from "../values.ts";
import { located, readParsed } from "./vip.ts";

export const pollTimerMsDefault = 30_000;
export const procCountMax = 128;
export const procCountLimit = 100_000;
export const regexLengthMax = 1_024;

const actionWords = ["restart", "stopstart", "stop", "noaction"] as const;
const classWords = ["prim", "second", "both", "pre", "sec"] as const;
const handlerPattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const classPattern = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

/** Reads `<errd>`; `mode` chooses the default class (prim when absent). */
export function readErrd(errd: ElementReader, mode?: ModuleMode): ErrdSection {
  const pollTimerMs = errd.time("polltimer", "s", pollTimerMsDefault);
  if (pollTimerMs === 0) errd.report("error", "CONFIG_INVALID_VALUE", "expected at least 1s: processes are counted every polltimer", located(errd, "polltimer"));
  const procs: ProcWatch[] = [];
  for (const [index, proc] of errd.children("proc").entries()) {
    if (index === procCountMax) proc.report("error", "CONFIG_TOO_MANY", `an <errd> watches at most ${procCountMax} <proc> elements`);
    const watch = readProc(proc, mode ?? "mirror");
    if (index < procCountMax) procs.push(watch);
    proc.finish();
  }
  errd.finish();
  assert(procs.length <= procCountMax, "readErrd keeps at most procCountMax watches");
  return { pollTimerMs: pollTimerMs === 0 ? pollTimerMsDefault : pollTimerMs, procs };
}

function readProc(proc: ElementReader, mode: ModuleMode): ProcWatch {
  const name = proc.optionalString("name")?.trim() ?? null;
  const nameRegex = readParsed(proc, "nameregex", parseRegex)?.value ?? null;
  const argRegex = readParsed(proc, "argregex", parseRegex)?.value ?? null;
  if (name === "") proc.report("error", "CONFIG_INVALID_VALUE", "expected the name of the process or service to watch", located(proc, "name"));
  if (located(proc, "name") === undefined && located(proc, "nameregex") === undefined) {
    proc.report("error", "CONFIG_MISSING_ATTRIBUTE", "a <proc> needs name (the exact process or service name) or nameregex (a regular expression on it)");
  } else if (name !== null && located(proc, "nameregex") !== undefined) {
    proc.report("error", "CONFIG_CONFLICT", "give name or nameregex, not both: it would be unclear which processes count", located(proc, "nameregex"));
  }
  const service = proc.bool("service", false);
  if (service && name === null && located(proc, "nameregex") !== undefined) {
    proc.report("error", "CONFIG_CONFLICT", `service="yes" watches one systemd service by its name: give name, not nameregex`, located(proc, "nameregex"));
  }
  const atLeast = proc.int("atleast", 1, 0, procCountLimit);
  const atMost = proc.int("atmax", -1, -1, procCountLimit);
  if (atMost !== -1 && atMost < atLeast) {
    proc.report("error", "CONFIG_INVALID_VALUE", `atmax (${atMost}) is below atleast (${atLeast}): no number of processes satisfies both; use -1 for no maximum`, located(proc, "atmax"));
  }
  const action = readAction(proc);
  const className = readClass(proc, mode);
  const startAfter = proc.int("start_after", 0, 0, procCountLimit);
  return { name: name === "" ? null : name, nameRegex, argRegex, service, atLeast, atMost, action, className, startAfter };
}

/** A JavaScript regular expression that compiles, at most regexLengthMax characters. */
export function parseRegex(text: string): Parsed<string> {
  if (text.length > regexLengthMax) return { ok: false, expected: `a regular expression of at most ${regexLengthMax} characters` };
  try {
    new RegExp(text);
    return { ok: true, value: text };
  } catch (error) {
    const why = error instanceof SyntaxError ? error.message : "it does not compile";
    return { ok: false, expected: `a regular expression that compiles (tandem matches with JavaScript regular expressions): ${why}` };
  }
}

function readAction(proc: ElementReader): ProcAction {
  const attribute = proc.raw("action");
  if (attribute === undefined) return "restart";
  const word = attribute.value.trim();
  if ((actionWords as readonly string[]).includes(word)) return word as (typeof actionWords)[number];
  if (word === "wait" || word === "swap") {
    proc.report("error", "CONFIG_INVALID_VALUE", `expected restart, stopstart, stop, noaction or a handler's name: ${word} is a failover rule action, not a process monitoring one`, attribute);
    return "restart";
  }
  if (!handlerPattern.test(word)) {
    proc.report("error", "CONFIG_INVALID_VALUE", "expected restart, stopstart, stop, noaction or the name of a handler program in the module's bin/ (letters, digits, _, - and ., not starting with . or -)", attribute);
    return "restart";
  }
  return { handler: word };
}

function readClass(proc: ElementReader, mode: ModuleMode): string {
  const attribute = proc.raw("class");
  if (attribute === undefined) return mode === "mirror" ? "prim" : "both";
  const className = attribute.value.trim();
  if (!(classWords as readonly string[]).includes(className) && !classPattern.test(className)) {
    proc.report("error", "CONFIG_INVALID_VALUE", `expected ${classWords.join(", ")} or a class name of your own (letters, digits, _ and -)`, attribute);
    return mode === "mirror" ? "prim" : "both";
  }
  if (mode !== "mirror" && (className === "prim" || className === "second" || className === "sec")) {
    proc.report("warning", "CONFIG_NEVER_ENABLED", `a ${mode} node is UP, never PRIM or SECOND, so class ${className} is never enabled; use both (while UP) or pre`, attribute);
  }
  return className;
}
